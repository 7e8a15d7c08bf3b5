package worker

import (
	"bytes"
	"context"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/fileid"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// Prefetch fetches, in batches, the small files among want that neither the
// cache nor the local CAS holds, when the CAS can read many blobs in one
// request (storage.Batcher): an input root of many small files then
// costs a few round trips instead of one per file. Missing blobs are left
// for Link to report. Without a Batcher it does nothing.
func (c *FileCache) Prefetch(ctx context.Context, want []FileRef) error {
	bg, ok := c.opts.CAS.(storage.Batcher)
	if !ok {
		return nil
	}
	limit := bg.MaxBatchBytes()
	var batches [][]digest.Digest
	var cur []digest.Digest
	var size int64
	need := map[digest.Digest][]cacheKey{}
	part := c.partition(ctx)
	for _, f := range want {
		k := cacheKey{d: f.Digest, exec: f.Executable, part: part}
		if _, cached := c.set.Peek(k); cached || f.Digest.SizeBytes() > limit/4 || f.Digest.IsEmpty() {
			continue
		}
		if c.opts.Local != nil {
			if c.opts.Local.Has(f.Digest) { // Link verifies it, once
				continue
			}
		}
		if _, dup := need[f.Digest]; !dup {
			if size+f.Digest.SizeBytes() > limit && len(cur) > 0 {
				batches, cur, size = append(batches, cur), nil, 0
			}
			cur = append(cur, f.Digest)
			size += f.Digest.SizeBytes()
		}
		// One write per entry, however many names the root gives it:
		// one 25-byte blob named 75,000 times was written (and renamed
		// over its own entry) 75,000 times.
		if !slices.Contains(need[f.Digest], k) {
			need[f.Digest] = append(need[f.Digest], k)
		}
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, batch := range batches {
		g.Go(func() error {
			blobs, err := bg.GetMany(gctx, batch)
			if rev2.Gone(err) {
				// A blob of the batch was found corrupt (missing ones
				// are left out, not errors): Link fetches each of the
				// batch alone and finds which one is gone.
				return nil
			}
			if err != nil {
				return err
			}
			for d, data := range blobs {
				for _, k := range need[d] {
					if _, err := c.fill(k, func(p string) (fileid.ID, error) { return c.write(k, p, bytes.NewReader(data)) }); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// FileRef names one input file: its digest and executable bit.
type FileRef struct {
	Digest     digest.Digest
	Executable bool
}
