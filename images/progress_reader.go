package images

import (
	"context"
	"io"
	"log/slog"
)

// progressReader stops a read loop when its context ends (a registry
// download is bound to the context too, a loaded file is not), and logs
// the progress of large layers.
type progressReader struct {
	ctx    context.Context
	r      io.Reader
	log    *slog.Logger
	diffID string
	n      int64
}

const progressEvery = 256 << 20

func (r *progressReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if r.n/progressEvery != (r.n+int64(n))/progressEvery {
		r.log.Info("image layer progress", "diffID", r.diffID, "unpackedBytes", r.n+int64(n))
	}
	r.n += int64(n)
	return n, err
}
