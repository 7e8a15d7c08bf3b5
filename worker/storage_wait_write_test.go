package worker_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/worker"
)

// breakingWrites fails the first n ByteStream Write streams (all of them
// if n < 0) with UNAVAILABLE once it has received their first request, as
// a storage front does when the shard it forwards the upload to is down:
// the stream opens, and fails later. It records the first request of
// every Write stream.
type breakingWrites struct {
	n int

	mu     sync.Mutex
	firsts []*bytestream.WriteRequest
}

func (b *breakingWrites) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != "/google.bytestream.ByteStream/Write" {
		return h(srv, ss)
	}
	b.mu.Lock()
	broken := b.n < 0 || len(b.firsts) < b.n
	b.mu.Unlock()
	fs := &firstWriteRecorder{ServerStream: ss, b: b}
	if !broken {
		return h(srv, fs)
	}
	if err := fs.RecvMsg(&bytestream.WriteRequest{}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, `injected: storage backend "s1" is unavailable; retry later`)
}

func (b *breakingWrites) recorded() []*bytestream.WriteRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*bytestream.WriteRequest(nil), b.firsts...)
}

// firstWriteRecorder records the first request its stream receives.
type firstWriteRecorder struct {
	grpc.ServerStream
	b    *breakingWrites
	seen bool
}

func (s *firstWriteRecorder) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*bytestream.WriteRequest); ok && err == nil && !s.seen {
		s.seen = true
		s.b.mu.Lock()
		s.b.firsts = append(s.b.firsts, &bytestream.WriteRequest{ResourceName: r.ResourceName, WriteOffset: r.WriteOffset})
		s.b.mu.Unlock()
	}
	return err
}

// A ByteStream Write that fails UNAVAILABLE after it started is written
// again from its first byte, under a new upload id, until it is stored,
// when its bytes can be read again: from memory, from a file (as the
// worker uploads its outputs), or from a file read part way before.
func TestStorageWaitWritesABrokenWriteAgain(t *testing.T) {
	data := bytes.Repeat([]byte("an output bigger than a batch "), 100000) // 3 MB, several requests
	d := digest.FromBytes(sha256, data)
	for _, tc := range []struct {
		name   string
		reader func(t *testing.T) io.Reader
	}{
		{"bytes", func(*testing.T) io.Reader { return bytes.NewReader(data) }},
		{"file", func(t *testing.T) io.Reader {
			f := writeFile(t, data)
			return io.NewSectionReader(f, 0, d.SizeBytes())
		}},
		{"file read part way", func(t *testing.T) io.Reader {
			f := writeFile(t, append([]byte("a header already read "), data...))
			if _, err := f.Seek(int64(len("a header already read ")), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			return f
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &breakingWrites{n: 2}
			s := newRestartableStorage(t, grpc.StreamInterceptor(b.intercept))
			cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 4 << 10})
			if err := cas.Put(context.Background(), d, tc.reader(t)); err != nil {
				t.Fatalf("Put with two Writes broken: %v", err)
			}
			if got, err := storagetest.ReadAll(t, s.cas, d, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes of %d: %v", len(got), len(data), err)
			}
			firsts := b.recorded()
			if len(firsts) != 3 {
				t.Fatalf("%d Write streams, want 3", len(firsts))
			}
			for i, r := range firsts {
				if rn, err := digest.ParseWriteResourceName(r.ResourceName); err != nil || rn.Digest != d || r.WriteOffset != 0 {
					t.Errorf("Write %d began with %q at %d, want the blob from its first byte", i, r.ResourceName, r.WriteOffset)
				}
				if i > 0 && r.ResourceName == firsts[i-1].ResourceName {
					t.Errorf("Write %d used the upload id of the broken one before it", i)
				}
			}
		})
	}
}

// writeFile is an open file holding data, closed when the test ends.
func writeFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A Write that keeps breaking fails after the wait and not before,
// UNAVAILABLE, saying how long the worker waited.
func TestStorageWaitGivesUpOnABrokenWriteAfterTheWait(t *testing.T) {
	b := &breakingWrites{n: -1}
	s := newRestartableStorage(t, grpc.StreamInterceptor(b.intercept))
	const wait = 300 * time.Millisecond
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{Wait: wait}), storage.RemoteOptions{MaxBatchBytes: 4 << 10})
	data := bytes.Repeat([]byte("an output for a shard that stays down "), 10000)
	checkGivesUpAfter(t, wait, "Put", func() error {
		return cas.Put(context.Background(), digest.FromBytes(sha256, data), bytes.NewReader(data))
	})
	if n := len(b.recorded()); n < 2 {
		t.Errorf("%d Write streams, want more than one", n)
	}
}
