package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// ReadTo streams blob d into w, hashing it on the way, so that a blob of
// any size costs a buffer, not its size, in memory. The bytes must be
// exactly d's size and hash to d, or the error is DATA_LOSS. w has
// received the bytes by then: a caller that must not use unverified bytes
// writes to a temporary file and uses it only once ReadTo returns nil.
//
// A read that receives nothing for readIdle ends with DEADLINE_EXCEEDED: a
// server that sent a byte and then nothing held `paddock run` for ever.
func (c *Client) ReadTo(ctx context.Context, d digest.Digest, w io.Writer) error {
	if d.IsEmpty() {
		return nil
	}
	ctx, cancel := context.WithCancelCause(c.Context(ctx))
	defer cancel(nil)
	idle := time.AfterFunc(readIdle, func() { cancel(errReadStalled) })
	defer idle.Stop()
	r, err := c.store.Get(ctx, d, 0)
	if err == nil {
		defer r.Close()
		h := d.NewHasher()
		// One byte past the size is read, so that a longer blob is caught.
		var n int64
		n, err = io.Copy(io.MultiWriter(w, h), io.LimitReader(idleReader{r, idle}, d.SizeBytes()+1))
		if err == nil {
			if n != d.SizeBytes() || hex.EncodeToString(h.Sum(nil)) != d.Hash() {
				return status.Errorf(codes.DataLoss, "read %s: the server sent bytes that do not match the digest", d)
			}
			return nil
		}
	}
	if errors.Is(context.Cause(ctx), errReadStalled) {
		return status.Errorf(codes.DeadlineExceeded, "read %s: the server sent nothing for %s", d, readIdle)
	}
	return fmt.Errorf("read %s: %w", d, err)
}

// readIdle is how long ReadTo waits for the next bytes of a blob.
var readIdle = 2 * time.Minute

var errReadStalled = errors.New("the server sent nothing")

// idleReader restarts its timer whenever bytes come.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
}

func (i idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.timer.Reset(readIdle)
	}
	return n, err
}

// maxStreamBytes bounds the stdout or stderr WriteStream fetches: it
// stages them on disk to check them before printing, and a server's
// digest may claim any size (one of 100 GB was being written to $TMPDIR
// as fast as the server sent zeros). Paddock's workers keep 64 MiB of
// each.
const maxStreamBytes = 1 << 30

// CheckInline checks bytes a server sent inline (OutputFile.contents,
// stdout_raw) against the digest it sent with them: DATA_LOSS if they
// differ.
func CheckInline(field string, d digest.Digest, data []byte) error {
	if got := digest.FromBytes(d.Function(), data); got != d {
		return status.Errorf(codes.DataLoss, "%s: the inline bytes hash to %s, not to the digest %s", field, got, d)
	}
	return nil
}

// WriteStream copies a result's stdout or stderr to w: raw when the
// server inlined it (checked against d when d is set), otherwise blob d
// from the CAS, streamed to a temporary file and copied to w only once
// verified. The bytes themselves are passed on as they are (a command's
// output may hold terminal escapes on purpose).
func (c *Client) WriteStream(ctx context.Context, w io.Writer, field string, raw []byte, d *repb.Digest) error {
	if len(raw) > 0 {
		if d != nil {
			dg, err := digest.FromProto(repb.DigestFunction_SHA256, d, field+"_digest")
			if err != nil {
				return err
			}
			if err := CheckInline(field+"_raw", dg, raw); err != nil {
				return err
			}
		}
		_, err := w.Write(raw)
		return err
	}
	if d.GetSizeBytes() == 0 {
		return nil
	}
	dg, err := digest.FromProto(repb.DigestFunction_SHA256, d, field+"_digest")
	if err != nil {
		return err
	}
	if dg.SizeBytes() > maxStreamBytes {
		return status.Errorf(codes.ResourceExhausted, "%s is %d bytes, more than the %d printed here; it is blob %s in the CAS", field, dg.SizeBytes(), maxStreamBytes, dg)
	}
	tmp, err := os.CreateTemp("", "paddock-"+field+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := c.ReadTo(ctx, dg, tmp); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, tmp)
	return err
}
