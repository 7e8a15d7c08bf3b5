package compose

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// fanoutChunk is how much of an upload is held at a time: a blob goes to
// every store in step, through pipes, never whole in memory.
const fanoutChunk = 256 << 10

// errStoreDone closes the pipe of a store whose Put has returned, so the
// copy stops feeding it (a store that already has a blob returns before
// reading it).
var errStoreDone = errors.New("store finished its write")

// errStoreLate closes the pipe of a store cut off for lagging.
var errStoreLate = errors.New("store cut off for lagging behind the others")

// putAll streams r to every store's Put at once and returns each store's
// result. A store that fails or finishes early drops out while the others
// go on. If hold is given, store i's reader withholds its final EOF until
// hold[i] (called after the other stores have returned) says the write may
// commit: a cache then never keeps a blob its backend refused.
//
// If wait > 0, a store that lags behind the others is cut off: once one
// store has taken a chunk, the others have wait to take it too, and once
// one has stored the blob (and the whole blob was handed out), the others
// have wait to answer. In step, one hung store would hold the others and
// the write for ever. A store cut off has its context cancelled and its
// result is UNAVAILABLE (lateError), as if it were down.
func putAll(ctx context.Context, d digest.Digest, r io.Reader, stores []storage.BlobStore, hold []func([]error) error, wait time.Duration) []error {
	f := &fanout{
		wait:    wait,
		errs:    make([]error, len(stores)),
		prs:     make([]*io.PipeReader, len(stores)),
		pws:     make([]*io.PipeWriter, len(stores)),
		cancels: make([]context.CancelFunc, len(stores)),
		late:    make([]atomic.Bool, len(stores)),
		answers: make(chan answer, len(stores)),
	}
	for i, s := range stores {
		var gate func() error
		if i < len(hold) && hold[i] != nil {
			gate = func() error { f.others.Wait(); return hold[i](f.errs) }
		}
		f.start(ctx, i, s, d, gate)
	}
	readErr := f.copy(r, d)
	for _, pw := range f.pws {
		if pw != nil {
			pw.CloseWithError(readErr) // nil: EOF
		}
	}
	all := make([]bool, len(stores))
	for i := range all {
		all[i] = true
	}
	awaitWithin(f.answers, all, f.wait, f.cut)
	f.others.Wait()
	f.held.Wait()
	for _, cancel := range f.cancels {
		cancel()
	}
	return f.errs
}

// fanout is one putAll in progress. The copy loop owns pws; each store's
// goroutine sets its errs entry once, before it answers.
type fanout struct {
	wait    time.Duration
	errs    []error
	prs     []*io.PipeReader
	pws     []*io.PipeWriter // nil once the store stopped reading
	cancels []context.CancelFunc
	late    []atomic.Bool // cut off for lagging
	answers chan answer   // each store's Put, once

	others, held sync.WaitGroup // stores without a gate, and those with
}

// start runs store i's Put on its own pipe and context; with a gate, its
// reader asks gate before it reports the end.
func (f *fanout) start(ctx context.Context, i int, s storage.BlobStore, d digest.Digest, gate func() error) {
	pr, pw := io.Pipe()
	f.prs[i], f.pws[i] = pr, pw
	sctx, cancel := context.WithCancel(ctx)
	f.cancels[i] = cancel
	var src io.Reader = pr
	wg := &f.others
	if gate != nil {
		wg = &f.held
		src = &gatedReader{r: pr, gate: gate}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := s.Put(sctx, d, src)
		if err != nil && f.late[i].Load() {
			err = lateError(f.wait)
		}
		f.errs[i] = err
		pr.CloseWithError(errStoreDone)
		f.answers <- answer{i, err == nil}
	}()
}

// copy feeds r to the stores until its end or until none reads any more,
// and returns r's error (nil at its end).
func (f *fanout) copy(r io.Reader, d digest.Digest) error {
	buf := make([]byte, min(fanoutChunk, max(d.SizeBytes()+1, 1)))
	for f.live() > 0 {
		n, err := r.Read(buf)
		if n > 0 {
			f.write(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *fanout) live() int {
	n := 0
	for _, pw := range f.pws {
		if pw != nil {
			n++
		}
	}
	return n
}

// write hands b to every store still reading, at once, and returns when
// each has taken it or dropped out (its Put returned, or it was cut off
// for lagging).
func (f *fanout) write(b []byte) {
	answers := make(chan answer, len(f.pws))
	out := make([]bool, len(f.pws))
	for i, pw := range f.pws {
		if pw == nil {
			continue
		}
		out[i] = true
		go func() {
			_, err := pw.Write(b)
			answers <- answer{i, err == nil}
		}()
	}
	took := awaitWithin(answers, out, f.wait, f.cut)
	for i := range f.pws {
		if out[i] && !took[i] {
			f.pws[i] = nil
		}
	}
}

// cut cuts store i off for lagging: its context ends and its pipe closes,
// so its Put returns soon, as UNAVAILABLE.
func (f *fanout) cut(i int) {
	f.late[i].Store(true)
	f.cancels[i]()
	f.prs[i].CloseWithError(errStoreLate)
}

// gatedReader passes r through but asks gate before it reports the end:
// gate's error replaces io.EOF.
type gatedReader struct {
	r    io.Reader
	gate func() error
	done bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err == io.EOF && !g.done {
		g.done = true
		if gerr := g.gate(); gerr != nil {
			return n, gerr
		}
	}
	return n, err
}
