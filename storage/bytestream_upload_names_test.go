package storage_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/storage"
)

// Two streams that wait for slots to upload the same resource name do
// not both upload it: whichever starts its upload second is told
// FAILED_PRECONDITION and gives its slot back. Once the client of the
// other leaves, its parked upload is the one a new stream takes back, so
// every slot is reachable. Before, the name was looked up only before the
// wait: both uploaded, the second overwrote the first in the server's
// register, and once both clients left the first held its slot where no
// new stream could take it back, until UploadIdleTimeout (here an hour).
func TestByteStreamSameNameWaitersUploadOnce(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 2, UploadIdleTimeout: time.Hour}, time.Minute)
	h0, h1 := s.holdUpload(t, t.Context(), 0), s.holdUpload(t, t.Context(), 1)
	data, d := randData(t, 2<<20)
	name := uploadName(2, d)
	a := s.startUploadOf(t, t.Context(), name, data) // its first MiB
	s.slotsAre(t, 2, 1)
	b := s.startUploadOf(t, t.Context(), name, data)
	s.slotsAre(t, 2, 2)
	h0.finish(t)
	h1.finish(t)

	ended := make(chan error, 2)
	for _, u := range []*streamUpload{a, b} {
		go func() { ended <- u.stream.RecvMsg(&bytestream.WriteResponse{}) }()
	}
	select {
	case err := <-ended:
		wantStatus(t, err, codes.FailedPrecondition, "is being written by another stream")
	case <-time.After(10 * time.Second):
		t.Fatal("both streams of one resource_name are still open: both upload it")
	}
	s.waitCommitted(t, a) // the other's first MiB, under the same name
	s.slotsAre(t, 1, 0)

	a.cancel()
	b.cancel()
	// The free slot, and the one the parked upload gives back.
	n0, n1 := s.holdUpload(t, t.Context(), 3), s.holdUpload(t, t.Context(), 4)
	_, err := s.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
	wantStatus(t, err, codes.NotFound)
	n0.finish(t)
	n1.finish(t)
	s.slotsAre(t, 0, 0)
}
