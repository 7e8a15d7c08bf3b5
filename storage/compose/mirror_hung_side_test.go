package compose_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// hung is a side that hangs (a stopped process with its connections
// open): its calls wait until the test releases them or their context
// ends. It counts the calls that came in and those that returned, so a
// test can see that none is left waiting.
type hung struct {
	release       chan struct{}
	once          sync.Once
	entered, left atomic.Int64
}

func newHung(t *testing.T) *hung {
	h := &hung{release: make(chan struct{})}
	t.Cleanup(h.resume)
	return h
}

func (h *hung) resume() { h.once.Do(func() { close(h.release) }) }

// wait blocks until the side is resumed (nil) or ctx ends.
func (h *hung) wait(ctx context.Context) error {
	h.entered.Add(1)
	defer h.left.Add(1)
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hungStore hangs before a call; with readFirst, a Put takes the whole
// blob first and hangs before it answers.
type hungStore struct {
	storage.BlobStore
	h         *hung
	readFirst bool
}

func (s hungStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	if err := s.h.wait(ctx); err != nil {
		return nil, err
	}
	return s.BlobStore.FindMissing(ctx, ds)
}

func (s hungStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if s.readFirst {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	if err := s.h.wait(ctx); err != nil {
		return err
	}
	return s.BlobStore.Put(ctx, d, r)
}

type hungAC struct {
	storage.ActionCache
	h *hung
}

func (c hungAC) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	if err := c.h.wait(ctx); err != nil {
		return err
	}
	return c.ActionCache.Put(ctx, instance, action, result)
}

// answers runs f, and fails the test if it has not returned in 20 s.
func answers(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no answer in 20 s with one side hung", what)
		return nil
	}
}

// A side that hangs, rather than failing, is cut off once the other side
// has answered and it has not within the mirror's wait: lookups and
// writes go on from the other side, as with a side that is down, and what
// the hung side missed is repaired once it is back.
func TestMirroredHungSide(t *testing.T) {
	for _, tc := range []struct {
		side      int
		readFirst bool
	}{{0, false}, {0, true}, {1, false}, {1, true}} {
		t.Run(fmt.Sprintf("side%d/readFirst=%v", tc.side, tc.readFirst), func(t *testing.T) {
			ctx := context.Background()
			disks := [2]*storage.DiskBlobStore{newDisk(t, 0), newDisk(t, 0)}
			acs := [2]storage.ActionCache{newDiskAC(t), newDiskAC(t)}
			h := newHung(t)
			sides := [2]compose.Mirror{{Name: "a", Store: disks[0]}, {Name: "b", Store: disks[1]}}
			acSides := [2]compose.ACMirror{{Name: "a", Cache: acs[0]}, {Name: "b", Cache: acs[1]}}
			sides[tc.side].Store = hungStore{disks[tc.side], h, tc.readFirst}
			acSides[tc.side].Cache = hungAC{acs[tc.side], h}
			rep := newRepairer(t)
			m := compose.NewMirroredBlobStore(sides[0], sides[1], rep, nil)
			ac := compose.NewMirroredActionCache(acSides[0], acSides[1], rep, nil)
			compose.SetSecondSideWait(m, ac, 100*time.Millisecond)
			healthy := disks[1-tc.side]

			absent := digest.FromBytes(repb.DigestFunction_SHA256, []byte("absent"))
			err := answers(t, "FindMissing", func() error {
				missing, err := m.FindMissing(ctx, []digest.Digest{absent})
				if err == nil && (len(missing) != 1 || missing[0] != absent) {
					err = fmt.Errorf("missing %v, want the absent blob", missing)
				}
				return err
			})
			if err != nil {
				t.Fatalf("FindMissing: %v", err)
			}
			var written []digest.Digest
			for _, data := range [][]byte{[]byte("small"), bytes.Repeat([]byte("large "), 200<<10)} {
				d := digest.FromBytes(repb.DigestFunction_SHA256, data)
				if err := answers(t, "Put", func() error { return m.Put(ctx, d, bytes.NewReader(data)) }); err != nil || !healthy.Has(d) {
					t.Fatalf("Put of %d bytes: %v (on the other side: %v)", len(data), err, healthy.Has(d))
				}
				written = append(written, d)
			}
			if err := answers(t, "action cache Put", func() error {
				return ac.Put(ctx, "", absent, &repb.ActionResult{ExitCode: 3})
			}); err != nil {
				t.Fatalf("action cache Put: %v", err)
			}
			if r, err := acs[1-tc.side].Get(ctx, "", absent); err != nil || r.ExitCode != 3 {
				t.Fatalf("action result on the other side: %v, %v", r, err)
			}
			eventually(t, "the hung side's calls cut off", func() error {
				if in, out := h.entered.Load(), h.left.Load(); in == 0 || in != out {
					return fmt.Errorf("%d calls came in, %d returned", in, out)
				}
				return nil
			})

			h.resume()
			eventually(t, "repair of the side that hung", func() error {
				if _, err := m.FindMissing(ctx, written); err != nil {
					return err
				}
				missing, err := disks[tc.side].FindMissing(ctx, written)
				if err == nil && len(missing) > 0 {
					return fmt.Errorf("still missing on the side that hung: %v", missing)
				}
				return err
			})
		})
	}
}
