package worker

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// bigStream is the runner's sandbox output_limit: the most one stream
// can hold.
const bigStream = 64 << 20

// streamJob is a job whose action wrote stdout and stderr as given (nil:
// the file is absent), and an uploadStep storing into a disk CAS, which
// streams a Put to a file and keeps nothing.
func streamJob(t testing.TB, stdout, stderr []byte) (*uploadStep, *Job, storage.BlobStore) {
	t.Helper()
	dir := t.TempDir()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "cas")})
	if err != nil {
		t.Fatal(err)
	}
	req := &runnerpb.RunRequest{StdoutPath: filepath.Join(dir, "stdout"), StderrPath: filepath.Join(dir, "stderr")}
	for _, f := range []struct {
		path string
		b    []byte
	}{{req.StdoutPath, stdout}, {req.StderrPath, stderr}} {
		if f.b != nil {
			if err := os.WriteFile(f.path, f.b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := ExecutorFunc(func(context.Context, *Job) (*repb.ExecuteResponse, error) {
		return &repb.ExecuteResponse{Result: &repb.ActionResult{}}, nil
	})
	s := &uploadStep{next: next, cas: cas, limits: DefaultOutputLimits(), clock: clock.Real{}, checkOver: checkUploadsOver(0)}
	j := &Job{Metadata: &repb.ExecutedActionMetadata{}, Fn: repb.DigestFunction_SHA256, Command: &repb.Command{}, Request: req}
	return s, j, cas
}

// TestLargeStdoutIsUploadedFromItsFile: a 64 MiB stdout (the runner's
// output_limit) is hashed and uploaded from its file, never read whole
// into the worker's memory, which no sandbox is charged for and which
// grew with every action at once (64 MiB per stream per action). Its
// digest and the stored bytes are right, and a small stderr beside it
// and an absent one are uploaded as before.
func TestLargeStdoutIsUploadedFromItsFile(t *testing.T) {
	ctx := context.Background()
	big := make([]byte, bigStream)
	for i := range big {
		big[i] = byte(i % 251)
	}
	for _, tc := range []struct {
		name   string
		stderr []byte
	}{{"small stderr", []byte("a few words\n")}, {"no stderr", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			s, j, cas := streamJob(t, big, tc.stderr)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := s.Execute(ctx, j)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			// Copying buffers and the CAS's own cost come to well under
			// 8 MiB; reading the stream whole allocates 64 MiB or more.
			alloc := after.TotalAlloc - before.TotalAlloc
			if alloc > 8<<20 {
				t.Errorf("uploading a %d-byte stdout allocated %d bytes; want under 8 MiB", bigStream, alloc)
			} else {
				t.Logf("uploading a %d-byte stdout allocated %d bytes", bigStream, alloc)
			}
			checkStream(t, cas, "stdout", resp.Result.StdoutDigest, big)
			checkStream(t, cas, "stderr", resp.Result.StderrDigest, tc.stderr)
		})
	}
}

func checkStream(t *testing.T, cas storage.BlobStore, name string, got *repb.Digest, want []byte) {
	t.Helper()
	wantD := digest.FromBytes(repb.DigestFunction_SHA256, want)
	if got.GetHash() != wantD.Proto().GetHash() || got.GetSizeBytes() != int64(len(want)) {
		t.Fatalf("%s digest %v, want %v", name, got, wantD)
	}
	r, err := cas.Get(context.Background(), wantD, 0)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer r.Close()
	d, err := digest.FromReader(repb.DigestFunction_SHA256, r)
	if err != nil || d != wantD {
		t.Fatalf("%s stored as %v (%v), want %v", name, d, err, wantD)
	}
}

// BenchmarkUploadStdout64MiB measures the upload step's allocations for a
// 64 MiB stdout (B/op: the worker's memory one such action costs).
func BenchmarkUploadStdout64MiB(b *testing.B) {
	big := make([]byte, bigStream)
	s, j, _ := streamJob(b, big, nil)
	b.ReportAllocs()
	b.SetBytes(bigStream)
	for b.Loop() {
		if _, err := s.Execute(context.Background(), j); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUploadSmallStreams measures the upload step for the streams
// of a usual action (a few KB each), staged in memory as before.
func BenchmarkUploadSmallStreams(b *testing.B) {
	s, j, _ := streamJob(b, bytes.Repeat([]byte("compiling...\n"), 400), []byte("a warning\n"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(context.Background(), j); err != nil {
			b.Fatal(err)
		}
	}
}
