package compose

import (
	"bytes"
	"context"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// Mirror is one side of a mirrored pair.
type Mirror struct {
	// Name identifies the side in errors and logs.
	Name  string
	Store storage.BlobStore
}

// MirroredBlobStore keeps every blob on two backends, so that either can
// be stopped (a restart, a lost machine) with no error reaching clients.
//
// Durability: a Put succeeds when both sides stored the blob, or when one
// did and the other is UNAVAILABLE (logged; the missing copy is repaired
// once the side is back and the blob is read or looked up). A side that
// hangs instead of failing counts as UNAVAILABLE once it lags the other
// by secondSideWait (side_wait.go), in Put and FindMissing alike. Any
// other failure of either side fails the Put, so a blob acknowledged while
// both sides were up and keeping pace is on both. Reads go to the first
// side and fall back to the second when the first lacks the blob, is down
// (also in the middle of a stream, see failoverReader) or finds its copy
// corrupt before serving a byte; FindMissing reports a blob missing only
// if both lack it.
// A blob found on one side only is copied to the other in the background
// (at most a few copies at once, each streamed), see Repairer.
type MirroredBlobStore struct {
	sides  [2]Mirror
	repair *Repairer
	down   *downLog
	wait   time.Duration // secondSideWait; shorter in tests
}

// NewMirroredBlobStore returns the pair a, b; repairs run on rep.
func NewMirroredBlobStore(a, b Mirror, rep *Repairer, logger *slog.Logger) *MirroredBlobStore {
	return &MirroredBlobStore{sides: [2]Mirror{a, b}, repair: rep, down: newDownLog(logger, a.Name, b.Name), wait: secondSideWait}
}

// FindMissing implements storage.BlobStore.
func (m *MirroredBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing [2][]digest.Digest
	errs := bothWithin(ctx, m.wait, func(ctx context.Context, i int) error {
		var err error
		missing[i], err = m.sides[i].Store.FindMissing(ctx, ds)
		return err
	})
	switch {
	case errs[0] != nil && errs[1] != nil:
		return nil, m.bothFailed(errs)
	case errs[0] != nil:
		m.logDown(0, "find missing", errs[0])
		return missing[1], nil
	case errs[1] != nil:
		m.logDown(1, "find missing", errs[1])
		return missing[0], nil
	}
	in := [2]map[digest.Digest]bool{{}, {}}
	for i := range missing {
		for _, d := range missing[i] {
			in[i][d] = true
		}
	}
	var out []digest.Digest
	for _, d := range ds {
		switch a, b := in[0][d], in[1][d]; {
		case a && b:
			out = append(out, d)
		case a:
			m.startRepair(ctx, d, 1, 0)
		case b:
			m.startRepair(ctx, d, 0, 1)
		}
	}
	return out, nil
}

// startRepair copies d from side from to side to in the background, in
// the instance name of ctx (the call that found it on one side only): the
// sides may keep a CAS per tenant, chosen by it (storage.WithInstance),
// and a copy in no instance would land in another tenant's.
func (m *MirroredBlobStore) startRepair(ctx context.Context, d digest.Digest, from, to int) {
	src, dst := m.sides[from], m.sides[to]
	instance, _ := storage.InstanceFrom(ctx)
	m.repair.Start(fmt.Sprintf("cas %q %s %s>%s", instance, d, src.Name, dst.Name), func(ctx context.Context) error {
		ctx = storage.WithInstance(ctx, instance)
		r, err := src.Store.Get(ctx, d, 0)
		if err != nil {
			return backendError(src.Name, err)
		}
		defer r.Close()
		return backendError(dst.Name, dst.Store.Put(ctx, d, namedReader{r, src.Name}))
	})
}

// Get implements storage.BlobStore.
func (m *MirroredBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, errA := m.sides[0].Store.Get(ctx, d, offset)
	if errA == nil {
		return newFailoverReader(ctx, m, d, offset, r), nil
	}
	// NOT_FOUND, down, or a copy found corrupt (and removed) before any
	// byte was served: the other side may have it.
	switch status.Code(errA) {
	case codes.NotFound, codes.Unavailable, codes.DataLoss:
	default:
		return nil, backendError(m.sides[0].Name, errA)
	}
	r, errB := m.sides[1].Store.Get(ctx, d, offset)
	if errB != nil {
		if status.Code(errA) == codes.NotFound && status.Code(errB) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
		}
		return nil, m.bothFailed([2]error{errA, errB})
	}
	if !isUnavailable(errA) {
		m.startRepair(ctx, d, 1, 0)
	} else {
		m.logDown(0, "read", errA)
	}
	return namedReader{r, m.sides[1].Name}, nil
}

// failoverReader reads from the first side and, if it fails in the middle
// (stopped, not corrupt), goes on from the same offset on the second.
//
// The first side's reader checks its bytes against the digest only when it
// reaches the blob's end, and a failover discards it: the bytes it served
// up to then would go unchecked, and a corrupt first copy cut off mid-read
// was served whole with OK. So the bytes served from the first side are
// hashed as they pass (h), and on failover the second side is read from
// the read's own offset and its bytes up to the failover point must hash
// the same (DATA_LOSS otherwise); the second side's reader checks its own
// copy when it reaches the end. Not safe for concurrent use.
type failoverReader struct {
	m     *MirroredBlobStore
	ctx   context.Context
	d     digest.Digest
	start int64 // the read's offset
	off   int64 // bytes served so far end here
	h     hash.Hash
	side  int
	r     io.ReadCloser
	err   error // once set, every Read returns it
}

func newFailoverReader(ctx context.Context, m *MirroredBlobStore, d digest.Digest, offset int64, r io.ReadCloser) *failoverReader {
	return &failoverReader{m: m, ctx: ctx, d: d, start: offset, off: offset, h: d.NewHasher(), r: r}
}

func (f *failoverReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.r.Read(p)
	if f.side == 0 {
		f.h.Write(p[:n])
	}
	f.off += int64(n)
	if err == nil || err == io.EOF || f.side == 1 || status.Code(err) == codes.DataLoss || f.ctx.Err() != nil {
		return n, backendError(f.m.sides[f.side].Name, err)
	}
	if f.err = f.failover(err); f.err != nil {
		// Withheld: they may be the first side's corrupt bytes.
		return 0, f.err
	}
	if n > 0 {
		return n, nil
	}
	return f.Read(p)
}

// failover switches to the second side after the first failed with cause,
// once the second's bytes from the read's offset to f.off match those the
// first served.
func (f *failoverReader) failover(cause error) error {
	next, err := f.m.sides[1].Store.Get(f.ctx, f.d, f.start)
	if err != nil {
		return f.m.bothFailed([2]error{cause, err})
	}
	f.m.logDown(0, "read", cause)
	f.r.Close()
	f.r, f.side = next, 1
	h := f.d.NewHasher()
	if _, err := io.CopyN(h, next, f.off-f.start); err != nil {
		if err == io.EOF {
			err = status.Errorf(codes.DataLoss, "blob %s ended early", f.d)
		}
		return backendError(f.m.sides[1].Name, err)
	}
	if !bytes.Equal(h.Sum(nil), f.h.Sum(nil)) {
		return status.Errorf(codes.DataLoss, "blob %s: the bytes served from storage backend %q before it failed differ from %q's copy; read it again",
			f.d, f.m.sides[0].Name, f.m.sides[1].Name)
	}
	return nil
}

func (f *failoverReader) Close() error { return f.r.Close() }

// Put implements storage.BlobStore; see the type's comment for when it
// succeeds.
func (m *MirroredBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	errs := putAll(ctx, d, r, []storage.BlobStore{m.sides[0].Store, m.sides[1].Store}, nil, m.wait)
	return m.writeResult("write "+d.String(), [2]error{errs[0], errs[1]})
}

// writeResult is the result of a write to both sides: success if both
// succeeded or one did and the other is unavailable.
func (m *MirroredBlobStore) writeResult(what string, errs [2]error) error {
	return mirrorWriteResult(what, errs, m.down)
}

func mirrorWriteResult(what string, errs [2]error, down *downLog) error {
	names := down.names
	switch {
	case errs[0] == nil && errs[1] == nil:
		return nil
	case errs[0] != nil && errs[1] != nil:
		return bothFailed(names, errs)
	}
	failed := 0
	if errs[0] == nil {
		failed = 1
	}
	if isUnavailable(errs[failed]) {
		down.warn(failed, "mirror side down; written to the other only, to be repaired", what, errs[failed])
		return nil
	}
	return backendError(names[failed], errs[failed])
}

func (m *MirroredBlobStore) logDown(side int, what string, err error) {
	m.down.warn(side, "mirror side failed; using the other", what, err)
}

func (m *MirroredBlobStore) bothFailed(errs [2]error) error {
	return bothFailed([2]string{m.sides[0].Name, m.sides[1].Name}, errs)
}

// bothFailed is the error when neither side could serve a call: a side's
// own answer (NOT_FOUND, INVALID_ARGUMENT ...) wins over unavailability,
// and both unavailable is UNAVAILABLE naming both.
func bothFailed(names [2]string, errs [2]error) error {
	for i, err := range errs {
		if !isUnavailable(err) {
			return backendError(names[i], err)
		}
	}
	return status.Errorf(codes.Unavailable, "storage backends %q and %q are both unavailable; retry later", names[0], names[1])
}

var _ storage.BlobStore = (*MirroredBlobStore)(nil)
