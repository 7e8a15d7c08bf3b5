package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// countCalls counts the unary and streaming RPCs a server receives, by
// method.
type countCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countCalls) add(method string) {
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
}

func (c *countCalls) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// remoteHarness is a harness whose worker uses a RemoteBlobStore over a
// loopback storage server (disk-backed) that counts the RPCs it serves.
func remoteHarness(t *testing.T) (*harness, *countCalls) {
	t.Helper()
	return remoteHarnessServing(t, func(s storage.BlobStore) storage.BlobStore { return s })
}

// remoteHarnessServing is remoteHarness whose server serves serve(disk)
// instead of the disk store itself.
func remoteHarnessServing(t *testing.T, serve func(storage.BlobStore) storage.BlobStore) (*harness, *countCalls) {
	t.Helper()
	dir := t.TempDir()
	backing, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "server")})
	if err != nil {
		t.Fatal(err)
	}
	calls := &countCalls{n: map[string]int{}}
	srv := storage.NewServer(storage.ServerOptions{CAS: serve(backing), AC: storage.NewMemoryActionCache()})
	conn := grpctest.Serve(t, srv.Register,
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			calls.add(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			calls.add(info.FullMethod)
			return h(s, ss)
		}))
	cas := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{})
	// Blobs the test stores go straight to the server's disk (h.cas).
	h := &harness{t: t, dir: dir, cas: backing, ac: storage.NewMemoryActionCache(), runner: &farmtest.ExecRunner{}}
	if h.files, err = worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas}); err != nil {
		t.Fatal(err)
	}
	if h.w, err = worker.New(worker.Options{ID: "remote", CAS: cas, AC: h.ac, Files: h.files, Runner: h.runner, BuildDir: filepath.Join(dir, "builds")}); err != nil {
		t.Fatal(err)
	}
	return h, calls
}

// A worker on another machine (remote CAS) fetches an input root of many
// small files in a few BatchReadBlobs requests, not one request per file.
func TestRemoteInputsAreFetchedInBatches(t *testing.T) {
	h, calls := remoteHarness(t)
	root := &repb.Directory{}
	const n = 300
	for i := range n {
		d := h.put([]byte(fmt.Sprintf("small input %d\n", i)))
		root.Files = append(root.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d", i), Digest: d.Proto(), IsExecutable: i%10 == 0})
	}
	a := h.action(sh("cat f000 f299 | wc -l"), root, false)
	res := ok(t, h.w.Execute(context.Background(), a))
	if got := string(h.read(res.StdoutDigest)); got != "2\n" {
		t.Fatalf("stdout %q", got)
	}
	batches := calls.get("/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs")
	// Action, Command and the root directory are read one by one; the 300
	// files go in batches of at most 1 MiB.
	if batches > 6 {
		t.Fatalf("%d BatchReadBlobs requests for %d small files: they were not batched", batches, n)
	}
	if reads := calls.get("/google.bytestream.ByteStream/Read"); reads != 0 {
		t.Fatalf("%d ByteStream reads for small files", reads)
	}
}

// Its outputs of many small files are stored with one FindMissingBlobs and
// a few BatchUpdateBlobs, not two requests each.
func TestRemoteOutputsAreUploadedInBatches(t *testing.T) {
	h, calls := remoteHarness(t)
	a := h.action(sh("mkdir out && for i in $(seq 200); do echo $i > out/f$i; done", "out"), &repb.Directory{}, false)
	res := ok(t, h.w.Execute(context.Background(), a))
	tree := &repb.Tree{}
	if err := proto.Unmarshal(h.read(res.OutputDirectories[0].TreeDigest), tree); err != nil || len(tree.Root.Files) != 200 {
		t.Fatalf("output tree: %v, %d files", err, len(tree.Root.GetFiles()))
	}
	if string(h.read(tree.Root.Files[0].Digest)) != "1\n" {
		t.Fatal("an output file's content is wrong")
	}
	finds := calls.get("/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs")
	updates := calls.get("/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs")
	if finds > 1 || updates > 2 {
		t.Fatalf("%d FindMissingBlobs and %d BatchUpdateBlobs for 200 small outputs: not batched", finds, updates)
	}
}

// A failure the remote storage reports reaches the ExecuteResponse's
// status with its code and words, without Go's "rpc error: code = ...
// desc =" text of the inner status (internal/grpcerr): the server's
// interceptors clean returned errors, not statuses in response bodies.
func TestRemoteFailureStatusReadsClean(t *testing.T) {
	h, _ := remoteHarness(t)
	garbage := h.put([]byte("\xff\xff\xff not a Directory"))
	root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: garbage.Proto()}}}
	resp := h.w.Execute(t.Context(), h.action(sh("true"), root, false))
	st := status.FromProto(resp.Status)
	if st.Code() != codes.InvalidArgument || strings.Contains(st.Message(), "rpc error") || !strings.Contains(st.Message(), garbage.Hash()) {
		t.Fatalf("status %v %q; want INVALID_ARGUMENT naming the blob, without Go's error text", st.Code(), st.Message())
	}
}

// An input the remote storage finds corrupt at rest (and so removes) is
// MISSING in the action's FAILED_PRECONDITION, as the spec asks for an
// input not present in the CAS, so the client uploads it again and
// retries; then the action reads the right bytes. Before, the storage's
// DATA_LOSS reached the client as the action's status, which Bazel does
// not retry: the build failed. Both ways a worker fetches: a small file
// in a batch, a large one by ByteStream.
func TestRemoteInputCorruptAtRestIsMissing(t *testing.T) {
	for _, size := range []int{100, 3 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			h, _ := remoteHarness(t)
			data := []byte(strings.Repeat("x", size-1) + "\n")
			d := h.put(data)
			p, stored := h.cas.Path(d)
			if !stored {
				t.Fatal("the input is not on the storage's disk")
			}
			damaged := bytes.Clone(data)
			damaged[0] = 'y'
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, damaged, 0o444); err != nil {
				t.Fatal(err)
			}
			root := &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: d.Proto()}}}
			a := h.action(sh("head -c 1 in"), root, false)
			st := status.FromProto(h.w.Execute(t.Context(), a).Status)
			subjects, _ := rev2.MissingSubjects(st)
			if st.Code() != codes.FailedPrecondition || len(subjects) != 1 || !strings.Contains(subjects[0], d.Hash()) {
				t.Fatalf("status %v %q, MISSING %v; want FAILED_PRECONDITION with the input MISSING", st.Code(), st.Message(), subjects)
			}
			h.put(data) // the client's upload
			res := ok(t, h.w.Execute(t.Context(), a))
			if got := string(h.read(res.StdoutDigest)); got != "x" {
				t.Fatalf("after the upload the action read %q", got)
			}
		})
	}
}

// flipOne serves the blob target with its first byte flipped and no
// error, as a remote CAS that does not check what it serves would.
type flipOne struct {
	storage.BlobStore
	target digest.Digest
}

func (s flipOne) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := s.BlobStore.Get(ctx, d, 0)
	if err != nil || d != s.target {
		return r, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	b[0] ^= 1
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// A remote storage that answers a batch read with wrong bytes and OK: the
// worker's RemoteBlobStore refuses them (DATA_LOSS), its batch prefetch
// leaves the batch to the file-by-file fetches, and the input is MISSING,
// not a failed action.
func TestRemoteInputServedWrongIsMissing(t *testing.T) {
	data := []byte("the true input\n")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	h, _ := remoteHarnessServing(t, func(s storage.BlobStore) storage.BlobStore { return flipOne{s, d} })
	h.put(data)
	root := &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: d.Proto()}}}
	st := status.FromProto(h.w.Execute(t.Context(), h.action(sh("cat in"), root, false)).Status)
	subjects, _ := rev2.MissingSubjects(st)
	if st.Code() != codes.FailedPrecondition || len(subjects) != 1 || !strings.Contains(subjects[0], d.Hash()) {
		t.Fatalf("status %v %q, MISSING %v; want FAILED_PRECONDITION with the input MISSING", st.Code(), st.Message(), subjects)
	}
}

// One small input named 3,000 times (half of them executable) is written
// into the file cache once for each mode, not once for each name: each
// write renamed a new file over the entry, so a few KB of Directory blobs
// made a worker create and write up to max_input_files files, and the
// hit ratio read 0.
func TestRemoteInputNamedManyTimesIsFetchedOnce(t *testing.T) {
	h, _ := remoteHarness(t)
	d := h.put([]byte("one small input\n"))
	sub := &repb.Directory{}
	for i := range 300 {
		sub.Files = append(sub.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d", i), Digest: d.Proto(), IsExecutable: i%2 == 0})
	}
	subDigest := h.putProto(sub)
	root := &repb.Directory{}
	for i := range 10 {
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%d", i), Digest: subDigest.Proto()})
	}
	res := ok(t, h.w.Execute(t.Context(), h.action(sh("cat d9/f299 && find . -type f | wc -l"), root, false)))
	if got := string(h.read(res.StdoutDigest)); got != "one small input\n3000\n" {
		t.Fatalf("stdout %q", got)
	}
	if links, fetched := h.files.Counts(); links != 3000 || fetched != 2 {
		t.Errorf("%d links made from %d files written into the cache, want 3000 from 2 (one for each mode)", links, fetched)
	}
}
