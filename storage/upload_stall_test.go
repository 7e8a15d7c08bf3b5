package storage_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// stallingPut is a CAS whose Put takes the first KiB of a blob and then
// no more bytes until its context ends, as an S3 endpoint that accepts a
// part and never reads its body; ended is closed when its context ends.
type stallingPut struct {
	*storage.MemoryBlobStore
	ended chan struct{}
}

func (s stallingPut) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	_, _ = io.ReadFull(r, make([]byte, 1024)) // an upload aborted sooner fails it; the wait below stands either way
	<-ctx.Done()
	close(s.ended)
	return ctx.Err()
}

// An upload whose backend stops taking bytes is aborted, its backend
// request cancelled and its name freed: when the Put takes nothing for a
// minute (UNAVAILABLE, which clients retry), and when the client's call
// ends. Before, the Write handler stayed blocked writing to
// the Put, holding its stream slot and upload name, after the client had
// long given up (five minutes later in an outside probe against S3).
func TestUploadToAStalledBackendIsAborted(t *testing.T) {
	for _, how := range []string{"the Put takes no bytes", "the client's call ends"} {
		t.Run(how, func(t *testing.T) {
			cas := stallingPut{MemoryBlobStore: storage.NewMemoryBlobStore(), ended: make(chan struct{})}
			if how == "the Put takes no bytes" {
				storage.SetPutStallTimeout(t, 300*time.Millisecond)
			}
			ts := startServer(t, storage.ServerOptions{CAS: cas})
			d, data := sizedBlob(4096, 3)
			name := "uploads/3f1e1a52-9c55-4c57-8f2b-3c1b1f7a1e01/blobs/" + d.String()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			bs := bytestream.NewByteStreamClient(ts.conn)
			stream, err := bs.Write(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, off := range []int{0, 1024, 2048} {
				if err := stream.Send(&bytestream.WriteRequest{ResourceName: name, WriteOffset: int64(off), Data: data[off : off+1024], FinishWrite: i == 2}); err != nil {
					break // the server ended the call
				}
			}
			if how == "the Put takes no bytes" {
				_, err := stream.CloseAndRecv()
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("a Write whose backend took no bytes: %v, want UNAVAILABLE", err)
				}
			} else {
				// Poll until the server has the upload, then end the call.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					if _, err := bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name}); err == nil {
						break
					} else if time.Now().After(deadline) {
						t.Fatalf("the upload never started: %v", err)
					}
				}
				cancel()
			}
			select {
			case <-cas.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend's Put was not cancelled")
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				_, err := bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
				if status.Code(err) == codes.NotFound {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the aborted upload is still known: %v", err)
				}
			}
		})
	}
}
