package storage_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestRemoteUploadOfATricklingReaderKeepsTheConnection: a RemoteBlobStore
// (a scheduler in front of storage) passes an upload's bytes on as they
// come. Before, it opened the stream and then waited to fill a 1 MiB
// message: a client trickling its upload through the scheduler left the
// storage call without a message past the server's request timeout, and
// the server closed the connection that every tenant's calls share.
// (Here 10 KiB every 300 ms for 3 s, against a 2 s request timeout.)
func TestRemoteUploadOfATricklingReaderKeepsTheConnection(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.RequestTimeout = 2 * time.Second
	t.Cleanup(grpclimit.SetConnLimits(limits))
	mem := storage.NewMemoryBlobStore()
	srv := storage.NewServer(storage.ServerOptions{CAS: mem, AC: storage.NewMemoryActionCache(), MaxBatchTotalSizeBytes: 64 << 10})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpctest.Start(t, grpclimit.TrackSends(lis), srv.Register, append(srv.GRPCServerOptions(), grpclimit.New(0).ServerOptions()...)...)
	remote := storage.NewRemoteBlobStore(grpctest.Dial(t, lis.Addr().String()), storage.RemoteOptions{})

	data := bytes.Repeat([]byte("trickle!"), 100<<10/8) // by ByteStream: over the 64 KiB batch limit
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(data); i += 10 << 10 { // 10 KiB every 300 ms: 3 s in all
			time.Sleep(300 * time.Millisecond)
			if _, err := pw.Write(data[i:min(i+10<<10, len(data))]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	if err := remote.Put(context.Background(), d, pr); err != nil {
		t.Fatalf("an upload trickling for 3 s past a 2 s request timeout: %v", err)
	}
	if m, err := mem.FindMissing(context.Background(), []digest.Digest{d}); err != nil || len(m) != 0 {
		t.Fatalf("the blob is not stored: %v %v", m, err)
	}
}
