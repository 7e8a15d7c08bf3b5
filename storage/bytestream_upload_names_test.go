package storage_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/storage"
)

// Two streams that wait for slots to upload the same resource name from
// its start do not both upload it: whichever starts second gives its slot
// back and waits for the other, and once that one has stored the blob it
// ends at once with the blob's full size, as the spec answers a write of
// a blob another upload completed. BuildStream 1.6's push jobs give
// concurrent uploads of one blob the same uuid; the second used to be
// told FAILED_PRECONDITION, and bst failed the push. Before that, both
// uploaded, the second overwrote the first in the server's register, and
// once both clients left the first held its slot where no new stream
// could take it back, until UploadIdleTimeout (here an hour).
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
	s.slotsAre(t, 1, 0)   // one uploads; the other waits for it, without a slot
	s.waitCommitted(t, a) // the uploading one's first MiB, under the name

	ended := make(chan error, 2)
	for _, u := range []*streamUpload{a, b} {
		go func() {
			half := len(u.data) / 2
			err := u.stream.Send(&bytestream.WriteRequest{WriteOffset: int64(half), Data: u.data[half:], FinishWrite: true})
			if err != nil && err != io.EOF { // EOF: the server answered already
				ended <- err
				return
			}
			resp, err := u.stream.CloseAndRecv()
			if err == nil && resp.CommittedSize != d.SizeBytes() {
				err = fmt.Errorf("committed_size %d, want %d", resp.CommittedSize, d.SizeBytes())
			}
			ended <- err
		}()
	}
	for range 2 {
		select {
		case err := <-ended:
			if err != nil {
				t.Fatalf("a stream of the shared name: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a stream of the shared name never ended")
		}
	}
	if m := missing(t, s.disk, d); m[d] {
		t.Fatal("the blob is not stored")
	}
	s.slotsAre(t, 0, 0)
}

// A stream that would resume an upload that another stream is writing
// waits for it, as a resume after a broken connection does while the
// broken stream still hands its last bytes in: told FAILED_PRECONDITION,
// Bazel gave up the build. Here the other stream stores the blob, and
// the waiting one completes at once, as a Write of a stored blob does.
func TestByteStreamResumeOfABusyUploadWaits(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 2, UploadIdleTimeout: time.Hour}, time.Minute)
	a := s.holdUpload(t, t.Context(), 0)
	half := len(a.data) / 2
	resumed := make(chan error, 1)
	go func() {
		resp, err := write(t, s.testServer, &bytestream.WriteRequest{ResourceName: a.name, WriteOffset: int64(half), Data: a.data[half:], FinishWrite: true})
		if err == nil && resp.CommittedSize != int64(len(a.data)) {
			err = fmt.Errorf("committed_size %d, want %d", resp.CommittedSize, len(a.data))
		}
		resumed <- err
	}()
	a.finish(t)
	select {
	case err := <-resumed:
		if err != nil {
			t.Fatalf("a resume that waited for the other stream: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a resume that waited for the other stream never ended")
	}
	s.slotsAre(t, 0, 0)
}

// Writes waiting for another stream's upload of the same name hold their
// first messages against the same bound as Writes waiting for a slot:
// past it they are refused at once, and what they held is counted back
// when they end. Before, 200 waiters of 4 MB each took the server from
// 47 MB to 1.36 GB.
func TestByteStreamSameNameWaitersAreBounded(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 4, UploadIdleTimeout: time.Hour}, time.Minute)
	data, d := randData(t, 1<<20)
	name := uploadName(1, d)
	first := s.startUploadOf(t, t.Context(), name, data) // holds the name
	s.waitCommitted(t, first)
	storage.SetStreamSlotWaitBytes(s.srv, 3<<20/2) // room for two waiters' first halves, not three
	var waiters []*streamUpload
	for range 2 {
		waiters = append(waiters, s.startUploadOf(t, t.Context(), name, data))
	}
	waitFor(t, "two waiters counted", func() bool { return storage.StreamSlotWaitingBytes(s.srv) >= 2*int64(len(data)/2) })
	third := s.startUploadOf(t, t.Context(), name, data)
	wantStatus(t, third.stream.RecvMsg(&bytestream.WriteResponse{}), codes.ResourceExhausted, "is being written by another stream")
	for _, w := range waiters {
		w.cancel()
	}
	waitFor(t, "the cancelled waiters' bytes counted back", func() bool { return storage.StreamSlotWaitingBytes(s.srv) == 0 })
	first.finish(t)
}

// A tenant's Writes waiting for uploads of their names hold at most its
// share of the waiting bytes (half, as of its share of the slots): past it
// they are refused at once naming the tenant, while another tenant's
// waiter still waits and ends with the blob stored. Before, the share
// counted only streams, and one tenant's 16 waiters of 4 MiB each took the
// whole bound, so every other tenant's same-name waits were refused.
func TestByteStreamTenantHasAShareOfTheWaitingBytes(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 4, UploadIdleTimeout: time.Hour}, time.Minute)
	a, b := asTenant(t.Context(), "a"), asTenant(t.Context(), "b")
	aData, aD := randData(t, 1<<20)
	bData, bD := randData(t, 1<<20)
	aName, bName := uploadName(1, aD), uploadName(2, bD)
	aFirst, bFirst := s.startUploadOf(t, a, aName, aData), s.startUploadOf(t, b, bName, bData)
	s.waitCommitted(t, aFirst)
	s.waitCommitted(t, bFirst)
	// Three first halves in all; a tenant's share, half, holds one.
	storage.SetStreamSlotWaitBytes(s.srv, 3<<20/2)
	aWaiter := s.startUploadOf(t, a, aName, aData)
	waitFor(t, "a's waiter counted", func() bool { return storage.SameNameWaiters(s.srv) == 1 })
	aRefused := s.startUploadOf(t, a, aName, aData)
	wantStatus(t, aRefused.stream.RecvMsg(&bytestream.WriteResponse{}), codes.ResourceExhausted, `tenant "a" has as many Writes waiting`)
	bWaiter := s.startUploadOf(t, b, bName, bData)
	waitFor(t, "b's waiter counted", func() bool { return storage.SameNameWaiters(s.srv) == 2 })
	bFirst.finish(t)
	resp := &bytestream.WriteResponse{}
	if err := bWaiter.stream.RecvMsg(resp); err != nil || resp.CommittedSize != int64(len(bData)) {
		t.Fatalf("b's waiter ended with %v, committed_size %d; want %d", err, resp.CommittedSize, len(bData))
	}
	aWaiter.cancel()
	aFirst.finish(t)
}

// Writes waiting for another stream's upload of their name count as
// waiters of the queue too: past its bound (4 per slot), one more is
// refused at once, however little it holds. Before, thousands of them,
// each with a 1-byte first message, waited, and every upload's end woke
// them all.
func TestByteStreamSameNameWaitersCountInTheQueue(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 1, UploadIdleTimeout: time.Hour}, time.Minute)
	data, d := randData(t, 1<<10)
	name := uploadName(1, d)
	first := s.startUploadOf(t, t.Context(), name, data)
	s.waitCommitted(t, first)
	for range 4 { // the queue's bound: 4 per slot
		s.startUploadOf(t, t.Context(), name, data)
	}
	waitFor(t, "four waiters counted", func() bool { return storage.StreamSlotWaitingBytes(s.srv) > 0 && storage.SameNameWaiters(s.srv) == 4 })
	fifth := s.startUploadOf(t, t.Context(), name, data)
	wantStatus(t, fifth.stream.RecvMsg(&bytestream.WriteResponse{}), codes.ResourceExhausted, "as many Writes wait")
	first.finish(t)
}
