package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/storage"
)

// The benchmarks run the storage services on a real gRPC server on
// loopback with the disk backend, in this process (client and server share
// the machine's cores), except BenchmarkByteStreamServerMemory, which
// measures a server in its own process. Figures and the command that
// produced them are in docs/benchmarks.md.

// benchClients starts a disk-backed server in b.TempDir and returns clients
// of it.
func benchClients(b *testing.B) (repb.ContentAddressableStorageClient, bytestream.ByteStreamClient) {
	b.Helper()
	dir := b.TempDir()
	cas, ac := diskStores(b, dir)
	addr := serveLoopback(b, storage.ServerOptions{CAS: cas, AC: ac})
	conn := grpctest.Dial(b, addr)
	return repb.NewContentAddressableStorageClient(conn), bytestream.NewByteStreamClient(conn)
}

var benchSizes = []struct {
	name string
	size int64
}{{"1MiB", 1 << 20}, {"256MiB", 256 << 20}}

// variant turns base into the i-th distinct blob of its size, in place:
// the first 8 bytes hold i. Benchmarks need a new blob per iteration,
// because a write of a blob already stored completes without moving data.
func variant(base []byte, i int) []byte {
	binary.LittleEndian.PutUint64(base, uint64(i))
	return base
}

func randomBytes(b *testing.B, seed uint64, size int64) []byte {
	b.Helper()
	data, err := io.ReadAll(seededReader(seed, size))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkByteStreamWrite uploads a new blob per iteration in 1 MiB
// messages; the server hashes it and writes it to disk.
func BenchmarkByteStreamWrite(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			_, bs := benchClients(b)
			data := randomBytes(b, 1, sz.size)
			// Digests are computed before the clock starts: the client
			// already knows its blob's digest when it uploads.
			ds := make([]digest.Digest, b.N)
			for i := range ds {
				ds[i] = digest.FromBytes(repb.DigestFunction_SHA256, variant(data, i))
			}
			b.SetBytes(sz.size)
			b.ResetTimer()
			for i := range b.N {
				if err := uploadStream(b.Context(), bs, ds[i], bytes.NewReader(variant(data, i)), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkByteStreamRead downloads one stored blob per iteration; the
// server verifies its hash as it reads. The file is in the page cache, so
// this measures the service, not the disk. The 1KiB case is the common one
// in a build (a genrule's output, a stdout) and shows the bytes allocated
// per read with -benchmem.
func BenchmarkByteStreamRead(b *testing.B) {
	for _, sz := range append([]struct {
		name string
		size int64
	}{{"1KiB", 1 << 10}}, benchSizes...) {
		b.Run(sz.name, func(b *testing.B) {
			_, bs := benchClients(b)
			data := randomBytes(b, 2, sz.size)
			d := digest.FromBytes(repb.DigestFunction_SHA256, data)
			if err := uploadStream(b.Context(), bs, d, bytes.NewReader(data), nil); err != nil {
				b.Fatal(err)
			}
			name := fmt.Sprintf("blobs/%s/%d", d.Hash(), d.SizeBytes())
			b.SetBytes(sz.size)
			b.ResetTimer()
			for range b.N {
				n, err := readStreamCount(b.Context(), bs, name)
				if err != nil {
					b.Fatal(err)
				}
				if n != sz.size {
					b.Fatalf("read %d bytes of %s", n, d)
				}
			}
		})
	}
}

// readStreamCount reads a blob over ByteStream and returns how many bytes
// came, without keeping them.
func readStreamCount(ctx context.Context, bs bytestream.ByteStreamClient, name string) (int64, error) {
	var n int64
	err := readChunks(ctx, bs, &bytestream.ReadRequest{ResourceName: name}, func(data []byte) { n += int64(len(data)) })
	return n, err
}

// BenchmarkFindMissingBlobs asks about 10,000 digests per call, half of
// them stored, as a client does before uploading an action's inputs.
func BenchmarkFindMissingBlobs(b *testing.B) {
	const total, stored = 10000, 5000
	cas, _ := benchClients(b)
	req := &repb.FindMissingBlobsRequest{DigestFunction: repb.DigestFunction_SHA256}
	var batch []*repb.BatchUpdateBlobsRequest_Request
	for i := range total {
		data := fmt.Appendf(nil, "find-missing blob %d", i)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		req.BlobDigests = append(req.BlobDigests, d.Proto())
		if i < stored {
			batch = append(batch, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: data})
		}
		if len(batch) == 1000 {
			batchUpdate(b, cas, batch)
			batch = nil
		}
	}
	b.ResetTimer()
	for range b.N {
		resp, err := cas.FindMissingBlobs(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.MissingBlobDigests) != total-stored {
			b.Fatalf("%d missing, want %d", len(resp.MissingBlobDigests), total-stored)
		}
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "digests/s")
}

// BenchmarkBazelActionCalls makes, per iteration, the storage calls Bazel
// 4.2.3 makes around one remotely executed genrule: GetActionResult (a
// miss), FindMissingBlobs for the Action and the Command, a ByteStream
// Write of each (new blobs of about 150 and 300 bytes), and a ByteStream
// Read of an 80-byte output. It reports the CPU time of this process
// (client and server) per iteration, the farm's share of which is about
// half:
//
//	go test ./storage/ -run '^$' -bench BazelActionCalls -benchtime 3000x -count 5
func BenchmarkBazelActionCalls(b *testing.B) {
	conn := grpctest.Dial(b, serveLoopback(b, func() storage.ServerOptions {
		cas, ac := diskStores(b, b.TempDir())
		return storage.ServerOptions{CAS: cas, AC: ac}
	}()))
	cas, acs, bs := repb.NewContentAddressableStorageClient(conn), repb.NewActionCacheClient(conn), bytestream.NewByteStreamClient(conn)
	output := bytes.Repeat([]byte("o"), 80)
	od := digest.FromBytes(repb.DigestFunction_SHA256, output)
	if err := uploadStream(b.Context(), bs, od, bytes.NewReader(output), nil); err != nil {
		b.Fatal(err)
	}
	outName := fmt.Sprintf("blobs/%s/%d", od.Hash(), od.SizeBytes())
	action, command := randomBytes(b, 3, 150), randomBytes(b, 4, 300)
	before := proctest.SelfCPU()
	b.ResetTimer()
	for i := range b.N {
		ad := digest.FromBytes(repb.DigestFunction_SHA256, variant(action, i))
		cd := digest.FromBytes(repb.DigestFunction_SHA256, variant(command, i))
		_, err := acs.GetActionResult(b.Context(), &repb.GetActionResultRequest{ActionDigest: ad.Proto(), DigestFunction: repb.DigestFunction_SHA256})
		if status.Code(err) != codes.NotFound {
			b.Fatalf("GetActionResult of a new action: %v, want NOT_FOUND", err)
		}
		if _, err := cas.FindMissingBlobs(b.Context(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{ad.Proto(), cd.Proto()}, DigestFunction: repb.DigestFunction_SHA256}); err != nil {
			b.Fatal(err)
		}
		for _, blob := range []struct {
			d    digest.Digest
			data []byte
		}{{ad, action}, {cd, command}} {
			stream, err := bs.Write(b.Context())
			if err == nil {
				err = stream.Send(&bytestream.WriteRequest{ResourceName: fmt.Sprintf("uploads/bench-%d/blobs/%s/%d", i, blob.d.Hash(), blob.d.SizeBytes()), Data: blob.data, FinishWrite: true})
			}
			if err == nil {
				_, err = stream.CloseAndRecv()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if n, err := readStreamCount(b.Context(), bs, outName); err != nil || n != od.SizeBytes() {
			b.Fatalf("read the output: %d bytes, %v", n, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((proctest.SelfCPU()-before).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkBatchUpdateBlobs stores 1,000 new 1 KiB blobs per call (1 MiB,
// within the default 4 MiB batch limit).
func BenchmarkBatchUpdateBlobs(b *testing.B) {
	const count, size = 1000, 1 << 10
	cas, _ := benchClients(b)
	reqs := make([][]*repb.BatchUpdateBlobsRequest_Request, b.N)
	for i := range reqs {
		data := randomBytes(b, uint64(1000+i), count*size)
		for j := range count {
			blob := data[j*size : (j+1)*size]
			reqs[i] = append(reqs[i], &repb.BatchUpdateBlobsRequest_Request{
				Digest: digest.FromBytes(repb.DigestFunction_SHA256, blob).Proto(),
				Data:   blob,
			})
		}
	}
	b.SetBytes(count * size)
	b.ResetTimer()
	start := proctest.SelfCPU()
	for i := range b.N {
		batchUpdate(b, cas, reqs[i])
	}
	b.ReportMetric(float64(count)*float64(b.N)/b.Elapsed().Seconds(), "blobs/s")
	b.ReportMetric(float64((proctest.SelfCPU()-start).Microseconds())/float64(count*b.N), "cpu-µs/blob")
}

func batchUpdate(b *testing.B, cas repb.ContentAddressableStorageClient, reqs []*repb.BatchUpdateBlobsRequest_Request) {
	resp, err := cas.BatchUpdateBlobs(b.Context(), &repb.BatchUpdateBlobsRequest{
		Requests: reqs, DigestFunction: repb.DigestFunction_SHA256,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range resp.Responses {
		if codes.Code(r.Status.GetCode()) != codes.OK {
			b.Fatalf("BatchUpdateBlobs %s: %v", r.Digest.GetHash(), r.Status)
		}
	}
}

// BenchmarkByteStreamServerMemory streams a 1 GiB blob into a storage
// server in its own process and reads it back, then reports the server's
// peak resident memory (VmHWM) and how much it grew over the peak before
// the transfer. The server must stream: growth well below the blob's size
// shows it never holds a blob whole. The client generates the bytes as it
// sends them, so it does not hold the blob either.
//
// Only `go test -bench` runs it; a 1 GiB transfer has no place in go test.
func BenchmarkByteStreamServerMemory(b *testing.B) {
	const size = 1 << 30
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc/PID/status (Linux) to read the server's peak memory")
	}
	p := startStorageProcess(b, b.TempDir())
	pid := p.cmd.Process.Pid

	// Warm up with 1 MiB each way so the baseline includes gRPC's buffers.
	warm := seededBlobs(b, 3, 1, 1<<20)[0]
	if err := p.upload(b.Context(), warm, nil); err != nil {
		b.Fatal(err)
	}
	if got, err := p.readDigest(b.Context(), warm.d); err != nil || got != warm.d {
		b.Fatalf("warm-up read: %s, %v", got, err)
	}
	before := vmHWM(b, pid)

	blobs := seededBlobs(b, 10, b.N, size)
	b.SetBytes(2 * size) // written and read back
	b.ResetTimer()
	for _, blob := range blobs {
		if err := p.upload(b.Context(), blob, nil); err != nil {
			b.Fatal(err)
		}
		if got, err := p.readDigest(b.Context(), blob.d); err != nil || got != blob.d {
			b.Fatalf("read back %s: got %s, %v", blob.d, got, err)
		}
	}
	b.StopTimer()
	peak := vmHWM(b, pid)
	p.stop(b)

	const mib = 1 << 20
	b.ReportMetric(float64(before)/mib, "server-peak-before-MiB")
	b.ReportMetric(float64(peak)/mib, "server-peak-MiB")
	b.ReportMetric(float64(peak-before)/mib, "server-growth-MiB")
	if peak-before > size/8 {
		b.Errorf("server peak memory grew by %d MiB while streaming a %d MiB blob: it is not streaming", (peak-before)/mib, size/mib)
	}
}

// vmHWM returns the peak resident set size of process pid, from
// /proc/PID/status.
func vmHWM(b *testing.B, pid int) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("parse VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
