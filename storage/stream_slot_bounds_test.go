package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// refusalWithin is how long a stream that is refused at once may take to
// hear so. The servers of these tests let a stream wait a minute for a
// slot, so one that waits instead is still open when this passes.
const refusalWithin = 10 * time.Second

// endedWithin returns the status with which the server ended u's stream,
// without ending it from the client's side (which would make a waiting
// upload fail once it got its slot), or an error if it is still open
// after within.
func endedWithin(u *streamUpload, within time.Duration) error {
	ended := make(chan error, 1)
	go func() { ended <- u.stream.RecvMsg(&bytestream.WriteResponse{}) }()
	select {
	case err := <-ended:
		return err
	case <-time.After(within):
		return fmt.Errorf("%s: still open after %v", u.name, within)
	}
}

// readWithin reads d, giving up after within.
func readWithin(s *slotServer, d digest.Digest, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	stream, err := s.bs.Read(ctx, &bytestream.ReadRequest{ResourceName: readName(d)})
	if err == nil {
		_, err = stream.Recv()
	}
	return err
}

// waitingBytesAre checks what the server counts the waiting Writes' first
// messages as holding: the sizes of those of ws.
func (s *slotServer) waitingBytesAre(t *testing.T, ws ...*streamUpload) {
	t.Helper()
	var want int64
	for _, w := range ws {
		want += int64(proto.Size(w.firstHalf()))
	}
	if got := storage.StreamSlotWaitingBytes(s.srv); got != want {
		t.Fatalf("waiting Writes hold %d bytes, by the server's count; want %d", got, want)
	}
}

// Four streams wait per slot, and no more: one more, a read or an upload,
// is refused with RESOURCE_EXHAUSTED at once, as every stream was before
// streams waited, rather than after waiting its bound. The streams that
// wait still get their slots, in turn. Before, any number waited, each
// Write with its first message in memory: 800 with 4 MiB each took the
// server from 92 MB to 3.5 GB.
func TestByteStreamSlotWaitersAreBounded(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 2}, time.Minute)
	stored := "read by a stream within the waiters' bound"
	sd := putString(t, s.disk, stored)
	h0, h1 := s.holdUpload(t, t.Context(), 0), s.holdUpload(t, t.Context(), 1)
	var waiters []*streamUpload
	for i := range 7 {
		waiters = append(waiters, s.startUpload(t, t.Context(), 2+i))
		s.slotsAre(t, 2, i+1)
	}
	read := s.readInBackground(sd, stored)
	s.slotsAre(t, 2, 8)

	err := readWithin(s, sd, refusalWithin)
	wantStatus(t, err, codes.ResourceExhausted, "2 ByteStream reads and uploads are in progress, as many as this server allows at once; retry later")
	refused := s.startUpload(t, t.Context(), 20)
	wantStatus(t, endedWithin(refused, refusalWithin), codes.ResourceExhausted, "2 ByteStream reads and uploads are in progress")
	s.slotsAre(t, 2, 8)
	s.waitingBytesAre(t, waiters...)

	h0.finish(t)
	h1.finish(t)
	for _, w := range waiters {
		s.waitCommitted(t, w)
		w.finish(t)
	}
	if err := <-read; err != nil {
		t.Fatalf("the read that waited: %v", err)
	}
	s.slotsAre(t, 0, 0)
	s.waitingBytesAre(t)
}

// What the waiting Writes hold of their first messages is bounded
// together: an upload whose first message would take them past the bound
// is refused at once, while a read (which holds none) and a smaller
// upload still wait, and go through once slots free.
func TestByteStreamWaitingWritesHoldBoundedBytes(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 4}, time.Minute)
	const bound = 64 << 10
	storage.SetStreamSlotWaitBytes(s.srv, bound)
	var holders []*streamUpload
	for i := range 4 {
		holders = append(holders, s.holdUpload(t, t.Context(), i))
	}
	upload := func(i, n int) *streamUpload {
		data, d := randData(t, n)
		return s.startUploadOf(t, t.Context(), uploadName(i, d), data)
	}
	big := upload(10, 80<<10) // a first message of 40 KiB
	s.slotsAre(t, 4, 1)
	s.waitingBytesAre(t, big)

	tooBig := upload(11, 80<<10)
	wantStatus(t, endedWithin(tooBig, refusalWithin), codes.ResourceExhausted, "4 ByteStream reads and uploads are in progress")
	s.slotsAre(t, 4, 1)
	s.waitingBytesAre(t, big)

	sd := putString(t, s.disk, "read while the waiting uploads hold their bound")
	read := make(chan error, 1)
	go func() {
		_, err := readOf(s.testServer, sd)
		read <- err
	}()
	s.slotsAre(t, 4, 2)
	small := upload(12, 2<<10)
	s.slotsAre(t, 4, 3)
	s.waitingBytesAre(t, big, small)
	if held := storage.StreamSlotWaitingBytes(s.srv); held > bound {
		t.Fatalf("waiting Writes hold %d bytes, past the bound of %d", held, bound)
	}

	for _, h := range holders {
		h.finish(t)
	}
	if err := <-read; err != nil {
		t.Fatalf("the read that waited: %v", err)
	}
	for _, u := range []*streamUpload{big, small} {
		s.waitCommitted(t, u)
		u.finish(t)
	}
	s.slotsAre(t, 0, 0)
	s.waitingBytesAre(t)
}

// A tenant fills at most its share of the queue (four waiters per slot of
// its share): past it, its next stream is refused at once naming the
// tenant, while another tenant's stream still waits and gets a slot. Before,
// one tenant's waiting streams could fill the whole queue, and every
// other tenant's were refused at once while the slots were busy.
func TestByteStreamTenantHasAShareOfTheQueue(t *testing.T) {
	s := startSlotServer(t, storage.ServerOptions{MaxOpenStreams: 2}, time.Minute)
	a, b := asTenant(t.Context(), "a"), asTenant(t.Context(), "b")
	held := []*streamUpload{s.holdUpload(t, a, 0), s.holdUpload(t, b, 1)}
	var waiting []*streamUpload
	for i := range 4 { // a's share: 4 × 1 slot
		waiting = append(waiting, s.startUpload(t, a, 10+i))
		s.slotsAre(t, 2, i+1)
	}
	refused := s.startUpload(t, a, 20)
	wantStatus(t, endedWithin(refused, refusalWithin), codes.ResourceExhausted, `tenant "a"`)
	bWaiting := s.startUpload(t, b, 30)
	s.slotsAre(t, 2, 5)
	for _, u := range held {
		u.finish(t)
	}
	for _, u := range append(waiting, bWaiting) {
		s.waitCommitted(t, u)
		u.finish(t)
	}
	s.slotsAre(t, 0, 0)
}
