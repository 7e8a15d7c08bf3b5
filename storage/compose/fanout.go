package compose

import (
	"context"
	"errors"
	"io"
	"sync"

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

// putAll streams r to every store's Put at once and returns each store's
// result. A store that fails or finishes early drops out while the others
// go on. If hold is given, store i's reader withholds its final EOF until
// hold[i] (called after the other stores have returned) says the write may
// commit: a cache then never keeps a blob its backend refused.
func putAll(ctx context.Context, d digest.Digest, r io.Reader, stores []storage.BlobStore, hold []func([]error) error) []error {
	errs := make([]error, len(stores))
	pws := make([]*io.PipeWriter, len(stores))
	var others, held sync.WaitGroup // stores without a gate, and those with
	for i, s := range stores {
		pr, pw := io.Pipe()
		pws[i] = pw
		var src io.Reader = pr
		wg := &others
		if i < len(hold) && hold[i] != nil {
			wg = &held
			src = &gatedReader{r: pr, gate: func() error { others.Wait(); return hold[i](errs) }}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(ctx, d, src)
			pr.CloseWithError(errStoreDone)
		}()
	}
	buf := make([]byte, min(fanoutChunk, max(d.SizeBytes()+1, 1)))
	var readErr error
	for live := len(stores); live > 0; {
		n, err := r.Read(buf)
		for i, pw := range pws {
			if n == 0 || pw == nil {
				continue
			}
			if _, werr := pw.Write(buf[:n]); werr != nil {
				pws[i] = nil
				live--
			}
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	for _, pw := range pws {
		if pw != nil {
			pw.CloseWithError(readErr) // nil: EOF
		}
	}
	others.Wait()
	held.Wait()
	return errs
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
