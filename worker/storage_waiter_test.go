package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/worker"
)

// restartableStorage is a storage server on a fixed loopback address
// that a test stops and starts again there, its blobs and action cache
// kept meanwhile, as a storage process keeps its disk across a restart.
type restartableStorage struct {
	t    *testing.T
	cas  *storage.DiskBlobStore
	ac   *storage.MemoryActionCache
	srv  *storage.Server
	addr string
	opts []grpc.ServerOption

	mu sync.Mutex
	g  *grpc.Server
}

func newRestartableStorage(t *testing.T, opts ...grpc.ServerOption) *restartableStorage {
	t.Helper()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(t.TempDir(), "cas")})
	if err != nil {
		t.Fatal(err)
	}
	s := &restartableStorage{t: t, cas: cas, ac: storage.NewMemoryActionCache(), opts: opts}
	s.srv = storage.NewServer(storage.ServerOptions{CAS: s.cas, AC: s.ac})
	s.addr = "127.0.0.1:0"
	s.start()
	return s
}

// start serves on s.addr (a fresh port the first time).
func (s *restartableStorage) start() {
	s.t.Helper()
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	s.mu.Lock()
	s.g = grpctest.Start(s.t, lis, s.srv.Register, s.opts...)
	s.mu.Unlock()
}

// stop kills the server and its connections, as kill -9 would.
func (s *restartableStorage) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.g.Stop()
}

// dial connects to s as the worker role does (StorageDialOptions), with
// a reconnect backoff short enough for tests.
func (s *restartableStorage) dial(o worker.StorageWaitOptions) *grpc.ClientConn {
	reconnect := backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}
	return grpctest.Dial(s.t, s.addr, append(worker.StorageDialOptions(o),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnect, MinConnectTimeout: time.Second}))...)
}

// outageLog is a slog.Handler that counts the outages the worker logs and
// closes warned at the first.
type outageLog struct {
	warns, infos atomic.Int64
	warned       chan struct{}
}

func newOutageLog() *outageLog { return &outageLog{warned: make(chan struct{})} }

// awaitWhileRunning waits for event while a call whose end done delivers is
// still under way, failing the test if the call ends first (with what it
// ended with) or if event does not come within 20 s. The storage-wait
// tests share it to hold a call open across an outage or a retry.
func awaitWhileRunning[T any](t *testing.T, event <-chan struct{}, done <-chan T, call, eventName string) {
	t.Helper()
	select {
	case <-event:
	case v := <-done:
		t.Fatalf("%s ended while waiting for %s: %v", call, eventName, v)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: waited 20 s for %s", call, eventName)
	}
}

// awaitEnd returns what done delivers, failing the test if the call does
// not end within d of what happened last (a restart, a cancel): a call
// the storage wait still holds would otherwise hang the test.
func awaitEnd[T any](t *testing.T, done <-chan T, d time.Duration, call, since string) T {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
	}
	t.Fatalf("%s did not end within %v of %s", call, d, since)
	var zero T
	return zero
}

func (l *outageLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *outageLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *outageLog) WithGroup(string) slog.Handler            { return l }

func (l *outageLog) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "storage unavailable"):
		if l.warns.Add(1) == 1 {
			close(l.warned)
		}
	case r.Level == slog.LevelInfo && strings.HasPrefix(r.Message, "storage available again"):
		l.infos.Add(1)
	}
	return nil
}

// storageHarness is a harness whose worker reaches s over conn, with
// batches of 4 KiB at most so that larger blobs go by ByteStream.
func storageHarness(t *testing.T, s *restartableStorage, conn *grpc.ClientConn) *harness {
	t.Helper()
	dir := t.TempDir()
	cas := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{ForwardInstance: true, MaxBatchBytes: 4 << 10})
	h := &harness{t: t, dir: dir, cas: s.cas, ac: s.ac, runner: &farmtest.ExecRunner{}}
	var err error
	if h.files, err = worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas}); err != nil {
		t.Fatal(err)
	}
	h.w, err = worker.New(worker.Options{ID: "w1", CAS: cas, AC: storage.NewRemoteActionCache(conn), Files: h.files, Runner: h.runner, BuildDir: filepath.Join(dir, "builds")})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A storage restart while the worker fetches an action's inputs, or
// while the action runs and before its outputs are uploaded, delays the
// action instead of failing it: the worker waits for storage and then
// reads (BatchReadBlobs, ByteStream Read) and writes (FindMissingBlobs,
// ByteStream Write, UpdateActionResult) as if nothing had happened.
func TestStorageRestartDoesNotFailAction(t *testing.T) {
	for _, tc := range []struct {
		name          string
		stopDuringRun bool
	}{{"before fetch", false}, {"during run", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRestartableStorage(t)
			log := newOutageLog()
			h := storageHarness(t, s, s.dial(worker.StorageWaitOptions{Logger: slog.New(log)}))
			big := bytes.Repeat([]byte("input "), 10000)
			in := h.put(big)
			a := h.action(sh("cat in in > out", "out"), &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: in.Proto()}}}, false)
			if tc.stopDuringRun {
				h.runner.Before = func(string) { s.stop() }
			} else {
				s.stop()
			}
			done := make(chan *repb.ExecuteResponse, 1)
			go func() { done <- h.w.Execute(context.Background(), a) }()
			awaitWhileRunning(t, log.warned, done, "the action", "the storage's outage to be logged")
			s.start()
			res := ok(t, awaitEnd(t, done, 20*time.Second, "the action", "the storage's restart"))
			if len(res.OutputFiles) != 1 || !bytes.Equal(h.read(res.OutputFiles[0].Digest), append(big, big...)) {
				t.Fatalf("outputs %v: not the action's", res.OutputFiles)
			}
			if _, err := s.ac.Get(context.Background(), a.InstanceName, actionDigest(a)); err != nil {
				t.Errorf("the result was not cached: %v", err)
			}
			if w, i := log.warns.Load(), log.infos.Load(); w != 1 || i != 1 {
				t.Errorf("logged %d outages and %d recoveries, want 1 and 1", w, i)
			}
		})
	}
}

// An outage longer than the wait still fails the action with
// UNAVAILABLE (the scheduler then requeues it), after the wait and not
// before, logged once however many tries it took.
func TestStorageOutageLongerThanWaitFails(t *testing.T) {
	s := newRestartableStorage(t)
	log := newOutageLog()
	const wait = 700 * time.Millisecond
	h := storageHarness(t, s, s.dial(worker.StorageWaitOptions{Wait: wait, Logger: slog.New(log)}))
	a := h.action(sh("true"), &repb.Directory{}, false)
	s.stop()
	start := time.Now()
	resp := h.w.Execute(context.Background(), a)
	st := status.FromProto(resp.Status)
	if st.Code() != codes.Unavailable || resp.Result != nil || !strings.Contains(st.Message(), "storage still unavailable after waiting 700ms") {
		t.Fatalf("with storage gone: %v (result %v), want UNAVAILABLE after waiting, no result", st, resp.Result)
	}
	if waited := time.Since(start); waited < wait {
		t.Errorf("gave up after %s, before the wait of %s", waited, wait)
	}
	if w, i := log.warns.Load(), log.infos.Load(); w != 1 || i != 0 {
		t.Errorf("logged %d outages and %d recoveries, want 1 and 0", w, i)
	}
}

// Only UNAVAILABLE is tried again: a storage that answers
// RESOURCE_EXHAUSTED, NOT_FOUND or FAILED_PRECONDITION has answered, and
// its answer reaches the worker at once, after one call.
func TestStorageRetriesOnlyUnavailable(t *testing.T) {
	for _, tc := range []struct {
		code  codes.Code
		calls int64
	}{{codes.Unavailable, 2}, {codes.ResourceExhausted, 1}, {codes.NotFound, 1}, {codes.FailedPrecondition, 1}} {
		t.Run(tc.code.String(), func(t *testing.T) {
			var calls atomic.Int64
			s := newRestartableStorage(t, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod == repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName && calls.Add(1) == 1 {
					return nil, status.Error(tc.code, "injected")
				}
				return h(ctx, req)
			}))
			cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
			data := []byte("an output")
			d := digest.FromBytes(sha256, data)
			err := cas.Put(context.Background(), d, bytes.NewReader(data))
			want := tc.code
			if want == codes.Unavailable {
				want = codes.OK // answered on the second try
			}
			if status.Code(err) != want {
				t.Fatalf("Put after %v: %v, want %v", tc.code, err, want)
			}
			if n := calls.Load(); n != tc.calls {
				t.Errorf("%d BatchUpdateBlobs calls after %v, want %d", n, tc.code, tc.calls)
			}
		})
	}
}

// breakingStream fails a ByteStream Read with UNAVAILABLE after its
// first message, as a storage that dies part way through would, and
// counts the bytes it sent.
type breakingStream struct {
	grpc.ServerStream
	sent  int64
	broke bool
}

func (s *breakingStream) SendMsg(m any) error {
	if s.sent > 0 {
		s.broke = true
		return status.Error(codes.Unavailable, "injected: storage going away")
	}
	s.sent += int64(len(m.(*bytestream.ReadResponse).Data))
	return s.ServerStream.SendMsg(m)
}

// A ByteStream Read that breaks part way resumes from the byte where it
// broke, and the reader gets the whole blob, verified.
func TestStorageReadResumesWhereItBroke(t *testing.T) {
	var reads atomic.Int64
	var firstSent atomic.Int64
	var offsets []int64
	var mu sync.Mutex
	s := newRestartableStorage(t, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != "/google.bytestream.ByteStream/Read" {
			return h(srv, ss)
		}
		if reads.Add(1) > 1 {
			return h(srv, &offsetRecorder{ServerStream: ss, record: func(o int64) { mu.Lock(); offsets = append(offsets, o); mu.Unlock() }})
		}
		b := &breakingStream{ServerStream: ss}
		err := h(srv, b)
		firstSent.Store(b.sent)
		if b.broke {
			return status.Error(codes.Unavailable, "injected: storage going away")
		}
		return err
	}))
	data := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB, several messages
	d := digest.FromBytes(sha256, data)
	if err := s.cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 4 << 10})
	got, err := storagetest.ReadAll(t, cas, d, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes of %d after a break: %v", len(got), len(data), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if reads.Load() != 2 || len(offsets) != 1 || offsets[0] != firstSent.Load() || offsets[0] == 0 {
		t.Errorf("%d reads, resumed at %v, want 2, resumed at %d", reads.Load(), offsets, firstSent.Load())
	}
}

// offsetRecorder records the read_offset of the Read request it receives.
type offsetRecorder struct {
	grpc.ServerStream
	record func(int64)
}

func (s *offsetRecorder) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*bytestream.ReadRequest); ok && err == nil {
		s.record(r.ReadOffset)
	}
	return err
}

// A ByteStream Write that cannot start because storage is down waits for
// it, and then writes the blob from its first byte.
func TestStorageWriteWaitsToStart(t *testing.T) {
	s := newRestartableStorage(t)
	log := newOutageLog()
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{Logger: slog.New(log)}), storage.RemoteOptions{MaxBatchBytes: 4 << 10})
	data := bytes.Repeat([]byte("output "), 10000)
	d := digest.FromBytes(sha256, data)
	s.stop()
	done := make(chan error, 1)
	go func() { done <- cas.Put(context.Background(), d, bytes.NewReader(data)) }()
	awaitWhileRunning(t, log.warned, done, "Put", "the storage's outage to be logged")
	s.start()
	if err := awaitEnd(t, done, 20*time.Second, "Put", "the storage's restart"); err != nil {
		t.Fatalf("Put after the restart: %v", err)
	}
	if got, err := storagetest.ReadAll(t, s.cas, d, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes of %d: %v", len(got), len(data), err)
	}
}
