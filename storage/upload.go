package storage

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-build/paddock/digest"
)

// upload is one blob being written through Put. Only the stream holding
// busy may write to it.
type upload struct {
	name   string
	tenant string // whose slot it holds
	d      digest.Digest
	busy   sync.Mutex
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{} // closed when Put has returned
	err    error         // Put's result, valid after done
	idle   *time.Timer   // aborts the upload if nobody resumes it
	// parkedAt is when the upload was last parked, zero while a stream
	// holds it; guarded by the server's mu.
	parkedAt time.Time
	// expires is when the upload, parked, is aborted (park), and
	// claimedAt what it had committed when a stream last claimed it;
	// parks counts its parkings, so that an idle timer knows whether the
	// parking it was set for is the last; all guarded by the server's mu.
	expires   time.Time
	claimedAt int64
	parks     int
	// released is closed when a stream lets the upload go (it is parked,
	// or forgotten): the Writes of its name waiting for it (waitUntilFree)
	// wait on it. Non-nil while a stream holds it; guarded by the
	// server's mu.
	released chan struct{}

	// committed counts bytes accepted from the client (compressed bytes for
	// compressed uploads), i.e. handed to Put; QueryWriteStatus reads it
	// while a stream may be writing.
	committed atomic.Int64
}
