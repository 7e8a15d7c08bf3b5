package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestCrashDuringLargeWrites kills a storage process with SIGKILL while
// large ByteStream uploads are in flight, twice on the same directory, and
// checks the disk backend's promise: after a restart every blob is either
// absent or complete and correct, every acknowledged write survived, and no
// temporary file is visible in the CAS tree.
//
//  1. Eight 32 MiB uploads run concurrently; once the server holds part of
//     each in a temporary file, the writers resume streaming and the
//     process is killed under them.
//  2. After a restart, four more blobs are written completely and four are
//     left half-written; the process is killed again. The four complete
//     ones (and all of round 1) must be there byte for byte; the
//     half-written ones must be absent.
func TestCrashDuringLargeWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("moves ~600 MiB through a storage process; skipped in -short mode")
	}
	const blobSize = 32 << 20
	dir := t.TempDir()

	// Round 1: kill while eight uploads are streaming.
	p := startStorageProcess(t, dir)
	round1 := seededBlobs(t, 1, 8, blobSize)
	holds := make([]*writeHold, len(round1))
	results := make([]chan error, len(round1))
	for i, b := range round1 {
		holds[i] = newWriteHold(blobSize / 2)
		results[i] = make(chan error, 1)
		go func() { results[i] <- p.upload(t.Context(), b, holds[i]) }()
	}
	for _, h := range holds {
		<-h.reached
	}
	waitForPartialWrites(t, p, dir, len(round1))
	for _, h := range holds {
		close(h.release)
	}
	p.kill(t)
	acknowledged := map[digest.Digest]bool{}
	for i, b := range round1 {
		if err := <-results[i]; err == nil {
			acknowledged[b.d] = true
		}
	}
	checkCASFiles(t, dir) // before the restart's cleanup too: nothing half-visible

	p = startStorageProcess(t, dir)
	checkNoLeftovers(t, dir)
	present := p.checkBlobs(t, round1)
	t.Logf("round 1: %d of %d blobs were complete when killed, %d acknowledged", len(present), len(round1), len(acknowledged))
	for d := range acknowledged {
		if !present[d] {
			t.Errorf("blob %s: the write was acknowledged before the kill but the blob is gone after restart", d)
		}
	}
	// The store takes the missing ones again after the crash.
	for _, b := range round1 {
		if !present[b.d] {
			if err := p.upload(t.Context(), b, nil); err != nil {
				t.Fatalf("re-upload %s after restart: %v", b.d, err)
			}
		}
	}

	// Round 2: four complete writes, four left half-written, then kill.
	complete := seededBlobs(t, 100, 4, blobSize)
	inFlight := seededBlobs(t, 200, 4, blobSize)
	for _, b := range complete {
		if err := p.upload(t.Context(), b, nil); err != nil {
			t.Fatalf("upload %s: %v", b.d, err)
		}
	}
	holds = holds[:0]
	results = results[:0]
	for _, b := range inFlight {
		h, res := newWriteHold(blobSize/2), make(chan error, 1)
		holds, results = append(holds, h), append(results, res)
		go func() { res <- p.upload(t.Context(), b, h) }()
	}
	for _, h := range holds {
		<-h.reached
	}
	waitForPartialWrites(t, p, dir, len(inFlight))
	p.kill(t)
	for i := range inFlight {
		close(holds[i].release)
		if err := <-results[i]; err == nil {
			t.Errorf("upload %s succeeded although the server was killed half way", inFlight[i].d)
		}
	}
	checkCASFiles(t, dir)

	p = startStorageProcess(t, dir)
	checkNoLeftovers(t, dir)
	present = p.checkBlobs(t, slices.Concat(round1, complete, inFlight))
	for _, b := range slices.Concat(round1, complete) {
		if !present[b.d] {
			t.Errorf("blob %s was stored before the second kill but is missing after restart", b.d)
		}
	}
	for _, b := range inFlight {
		if present[b.d] {
			t.Errorf("blob %s is present although only half of it was ever sent", b.d)
		}
	}
	p.stop(t)
}

// TestCrashHelperProcess is not a test: it is the storage process that the
// crash test and the memory benchmark start by re-running the test binary,
// as runc's integration tests re-run theirs as a container's init. The
// wiring is that of `paddock storage` with the disk backend (blob store and
// action cache sharing one directory); re-running the test binary keeps the
// test free of a toolchain at run time and of the rest of cmd/paddock.
//
// It prints the same "paddock storage listening on ADDR" line and serves
// until its stdin closes, so it cannot outlive a test binary that dies.
func TestCrashHelperProcess(t *testing.T) {
	dir := os.Getenv(storageProcessDirEnv)
	if dir == "" {
		t.Skip("helper: runs only as the storage process that TestCrashDuringLargeWrites and the benchmarks start")
	}
	cas, ac := diskStores(t, dir)
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: ac})
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }() // returns when g.Stop ends the server
	fmt.Printf("paddock storage listening on %s\n", lis.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	g.Stop()
	srv.Close()
}

const storageProcessDirEnv = "PADDOCK_TEST_STORAGE_PROCESS_DIR"

// storageProcess is a storage server in another OS process (see
// TestCrashHelperProcess), and a client connection to it.
type storageProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer // read only after exited is closed
	exited chan struct{}
	conn   *grpc.ClientConn
	bs     bytestream.ByteStreamClient
	cas    repb.ContentAddressableStorageClient
}

var listeningRE = regexp.MustCompile(`^paddock storage listening on (\S+)$`)

// startStorageProcess starts a storage process on dir and waits for its
// "listening on" line. The test's cleanup kills it if it still runs.
func startStorageProcess(t testing.TB, dir string) *storageProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestCrashHelperProcess$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), storageProcessDirEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &storageProcess{cmd: cmd, stdin: stdin, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = outW, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if p.conn != nil {
			p.conn.Close()
		}
	})
	addrc := make(chan string, 1)
	go func() {
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-p.exited:
		t.Fatalf("storage process exited before listening: %v\n%s", cmd.ProcessState, p.stderr)
	case <-time.After(time.Minute): // a guard against a hung start, not a wait for state
		t.Fatal("storage process did not print its address within a minute")
	}
	p.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.bs = bytestream.NewByteStreamClient(p.conn)
	p.cas = repb.NewContentAddressableStorageClient(p.conn)
	return p
}

// kill sends SIGKILL and checks that is what ended the process.
func (p *storageProcess) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill storage process: %v", err)
	}
	<-p.exited
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("storage process ended with %v before SIGKILL reached it\n%s", p.cmd.ProcessState, p.stderr)
	}
	p.conn.Close()
	p.conn = nil
}

// stop closes the process's stdin, which makes it stop serving and exit.
func (p *storageProcess) stop(t testing.TB) {
	t.Helper()
	p.stdin.Close()
	<-p.exited
	if !p.cmd.ProcessState.Success() {
		t.Errorf("storage process: %v\n%s", p.cmd.ProcessState, p.stderr)
	}
}

// seededBlob is a pseudo-random blob generated from its seed whenever it is
// needed, so that tests move hundreds of MiB without holding them.
type seededBlob struct {
	seed uint64
	d    digest.Digest
}

func (b seededBlob) reader() io.Reader { return seededReader(b.seed, b.d.SizeBytes()) }

// seededReader yields size pseudo-random bytes determined by seed.
func seededReader(seed uint64, size int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// seededBlobs returns n blobs of size bytes from seeds first, first+1, ...
func seededBlobs(t testing.TB, first uint64, n int, size int64) []seededBlob {
	t.Helper()
	blobs := make([]seededBlob, n)
	for i := range blobs {
		seed := first + uint64(i)
		d, err := digest.FromReader(repb.DigestFunction_SHA256, seededReader(seed, size))
		if err != nil {
			t.Fatal(err)
		}
		blobs[i] = seededBlob{seed: seed, d: d}
	}
	return blobs
}

// writeHold stops an upload after at bytes: the writer closes reached and
// waits for the test to close release.
type writeHold struct {
	at               int64
	reached, release chan struct{}
}

func newWriteHold(at int64) *writeHold {
	return &writeHold{at: at, reached: make(chan struct{}), release: make(chan struct{})}
}

// upload writes b over ByteStream (see uploadStream).
func (p *storageProcess) upload(ctx context.Context, b seededBlob, hold *writeHold) error {
	return uploadStream(ctx, p.bs, b.d, b.reader(), hold)
}

// uploadStream writes d, whose bytes r yields, over ByteStream in 1 MiB
// messages, pausing at hold if it is not nil. It returns nil only if the
// server acknowledged the whole blob.
func uploadStream(ctx context.Context, bs bytestream.ByteStreamClient, d digest.Digest, r io.Reader, hold *writeHold) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := bs.Write(ctx)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("uploads/%s/blobs/%s/%d", uuid.NewString(), d.Hash(), d.SizeBytes())
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if hold != nil && off == hold.at {
			close(hold.reached)
			select {
			case <-hold.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), d.SizeBytes()-off)])
		if err != nil {
			return err
		}
		last := off+int64(n) == d.SizeBytes()
		req := &bytestream.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: last}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // the real error comes from CloseAndRecv
		}
		off += int64(n)
		if last {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.CommittedSize != d.SizeBytes() {
		return fmt.Errorf("write %s: committed_size %d", d, resp.CommittedSize)
	}
	return nil
}

// checkBlobs asks FindMissingBlobs about blobs and reads back every one
// present, failing the test unless its bytes hash to its digest. It returns
// the set of present blobs.
func (p *storageProcess) checkBlobs(t testing.TB, blobs []seededBlob) map[digest.Digest]bool {
	t.Helper()
	req := &repb.FindMissingBlobsRequest{DigestFunction: repb.DigestFunction_SHA256}
	for _, b := range blobs {
		req.BlobDigests = append(req.BlobDigests, b.d.Proto())
	}
	resp, err := p.cas.FindMissingBlobs(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	present := map[digest.Digest]bool{}
	for _, b := range blobs {
		present[b.d] = true
	}
	for _, m := range resp.MissingBlobDigests {
		d, err := digest.New(repb.DigestFunction_SHA256, m.Hash, m.SizeBytes)
		if err != nil {
			t.Fatal(err)
		}
		delete(present, d)
	}
	for d := range present {
		if got, err := p.readDigest(t.Context(), d); err != nil || got != d {
			t.Errorf("blob %s is reported present but reads back as %s (err %v)", d, got, err)
		}
	}
	return present
}

// readDigest reads d over ByteStream and returns the digest of what came.
func (p *storageProcess) readDigest(ctx context.Context, d digest.Digest) (digest.Digest, error) {
	return readStreamDigest(ctx, p.bs, d)
}

// readStreamDigest reads d over ByteStream and returns the digest of what
// came.
func readStreamDigest(ctx context.Context, bs bytestream.ByteStreamClient, d digest.Digest) (digest.Digest, error) {
	stream, err := bs.Read(ctx, &bytestream.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", d.Hash(), d.SizeBytes())})
	if err != nil {
		return digest.Digest{}, err
	}
	h := d.NewHasher()
	var n int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return digest.Digest{}, err
		}
		h.Write(resp.Data)
		n += int64(len(resp.Data))
	}
	return digest.New(repb.DigestFunction_SHA256, hex.EncodeToString(h.Sum(nil)), n)
}

// waitForPartialWrites polls storage process p until it holds a non-empty
// file in its tmp directory (DiskOptions.Dir/tmp, where in-flight writes
// are opened) for each of n uploads, so that the kill lands mid-write.
func waitForPartialWrites(t testing.TB, p *storageProcess, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		started := partialWrites(p.cmd.Process.Pid, filepath.Join(dir, "tmp"))
		if started >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute only %d of %d uploads have bytes in files the server holds open in %s/tmp", started, n, dir)
		}
		<-tick.C
	}
}

// partialWrites counts the non-empty files process pid holds open in tmp:
// the uploads in flight, written unnamed (open(2)'s O_TMPFILE), so found
// through the process's descriptors rather than the directory.
func partialWrites(pid int, tmp string) int {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(fds)
	started := 0
	for _, e := range entries {
		fd := filepath.Join(fds, e.Name())
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(target, tmp+"/") {
			continue
		}
		if info, err := os.Stat(fd); err == nil && info.Mode().IsRegular() && info.Size() > 0 {
			started++
		}
	}
	return started
}

// checkCASFiles walks the CAS tree and fails the test for any file that is
// not a complete blob: each must sit at cas/<function>/<2 hex>/<hash> and
// its bytes must hash to its name.
func checkCASFiles(t testing.TB, dir string) {
	t.Helper()
	root := filepath.Join(dir, "cas")
	hashName := regexp.MustCompile(`^[0-9a-f]{64}$`)
	err := filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 3 || parts[0] != "sha256" || !hashName.MatchString(parts[2]) || parts[1] != parts[2][:2] {
			t.Errorf("stray file in the CAS tree: %s", rel)
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		d, err := digest.FromReader(repb.DigestFunction_SHA256, f)
		if err != nil {
			return err
		}
		if d.Hash() != parts[2] {
			t.Errorf("CAS file %s holds bytes hashing to %s (%d bytes): a half-written blob is visible", rel, d.Hash(), d.SizeBytes())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkNoLeftovers checks, after a restart, that no temporary file of an
// interrupted write remains and that the CAS tree holds only whole blobs.
func checkNoLeftovers(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temporary file %s survived the restart", e.Name())
	}
	checkCASFiles(t, dir)
}
