package storage

import (
	"context"
	"time"
)

// A parked upload (its stream broke or half-closed before finish_write)
// is kept for a resuming Write until UploadIdleTimeout passes, and holds
// meanwhile a ByteStream slot and the room its bytes reserved in the CAS
// (disk_reserve.go). Its client has gone; dropped, the upload starts
// again from offset 0. So a parked upload gives way to a live one: its
// slot to a stream that finds none (victimLocked), and its room to a Put
// that finds the CAS full (giveWay). Before, 16 uploads of 4 MiB blobs
// parked with 300 KiB each held all of an 8 MiB CAS: every stored blob
// was evicted, and every other upload refused RESOURCE_EXHAUSTED.
//
// Its idle time runs from the last parking of a Write that brought bytes:
// a Write that resumes it and sends none does not renew it. Before, the
// client of those 16 uploads claimed each every 40 s with a request at
// the committed offset and no data, and half-closed: each claim stopped
// the idle timer and each parking started a fresh one, and the uploads
// held the CAS for as long as it liked. Bazel resumes with the bytes
// after the committed offset, which renew it.

// park keeps u for a resuming Write, until its idle time runs out: from
// now, unless no stream has written to it since it was last claimed (a
// new upload counts as written to), in which case the time set when it
// was last parked stands. Meanwhile its slot is the first a stream that
// finds none takes back (victimLocked), so park wakes a waiter that may.
func (s *byteStreamServer) park(u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	u.parkedAt = now
	if u.expires.IsZero() || u.committed.Load() > u.claimedAt {
		u.expires = now.Add(s.opts.UploadIdleTimeout)
	}
	releaseLocked(u)
	u.parks++
	parking := u.parks
	u.idle = time.AfterFunc(u.expires.Sub(now), func() { s.expire(u, parking) })
	s.offerParkedLocked(u)
}

// expire aborts u if it is still in the parking its idle timer was set
// for. It waits for busy: the stream that parked u holds it until its
// handler returns, which may come after an idle time that had already run
// out (the old timer, finding busy held, left such an upload parked until
// a stream took it as a victim). A stream that claimed u meanwhile leaves
// it held, or parked anew with a timer of its own, and one that took it as
// a victim, or the server's close, aborted it; either way this timer's
// parking is over.
func (s *byteStreamServer) expire(u *upload, parking int) {
	u.busy.Lock()
	defer u.busy.Unlock()
	s.mu.Lock()
	current := u.parks == parking && !u.parkedAt.IsZero() && s.uploads[u.name] == u
	s.mu.Unlock()
	if current {
		s.abort(u, errUploadAborted)
	}
}

// giveWay aborts the parked upload, other than own, whose idle time runs
// out first, of those that hold room (that have bytes committed), for a
// Put that finds the CAS full; it reports whether it aborted one, once
// that upload's Put has returned and so given back its room and removed
// its temporary file. It gives up when ctx ends: the Put waiting is then
// ending too, and may be the parked upload the other's Put waits for.
func (s *byteStreamServer) giveWay(ctx context.Context, own *upload) bool {
	s.mu.Lock()
	v := s.oldestParkedLocked(func(u *upload) bool { return u != own && u.committed.Load() > 0 })
	s.mu.Unlock()
	if v == nil {
		return false
	}
	aborted := make(chan struct{})
	go func() {
		s.abort(v, errUploadAborted)
		v.busy.Unlock()
		close(aborted)
	}()
	select {
	case <-aborted:
		return true
	case <-ctx.Done():
		return false
	}
}

// giveWayKey carries, in a Put's context, what gives it room when the
// CAS has none (withGiveWay).
type giveWayKey struct{}

// withGiveWay returns ctx carrying f, which a DiskBlobStore's Put calls
// when the CAS has no room for its next bytes, and again while f reports
// that it freed some (byteStreamServer.giveWay). The ByteStream server
// sets it for its uploads' Puts, and the CAS server for BatchUpdateBlobs';
// a store knows nothing of the uploads parked in front of it.
func withGiveWay(ctx context.Context, f func(context.Context) bool) context.Context {
	return context.WithValue(ctx, giveWayKey{}, f)
}

// giveWayFrom has what ctx carries (withGiveWay) free room in the CAS,
// and reports whether it freed any.
func giveWayFrom(ctx context.Context) bool {
	f, _ := ctx.Value(giveWayKey{}).(func(context.Context) bool)
	return f != nil && f(ctx)
}
