package sandbox

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"syscall"
	"time"
)

// outputCapture reads one stream of a sandbox from a pipe into a file,
// keeping at most limit bytes and discarding (but draining) the rest, so a
// chatty command is neither blocked nor able to fill the disk. The pipe
// exists before the destination is known: a pre-started init holds its
// write end while it waits for work.
type outputCapture struct {
	r     *os.File // read end, owned
	w     *os.File // write end, handed to the sandbox, then closed here
	dst   *os.File // destination, nil = discard; owned
	limit int64
	done  chan OutputStats
}

func newOutputCapture() (*outputCapture, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// The pipe is the launcher's, mode 0600, so the sandbox's users could
	// write to the descriptor they were given but not open it again by
	// name: `echo x > /dev/stderr` (/proc/self/fd/2) failed with
	// EACCES, and genrules and test scripts that write there failed. Open
	// for writing by anyone: only the sandbox holds the descriptor, and a
	// sandbox cannot name another's processes' descriptors.
	if err := w.Chmod(0o622); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("let the sandbox reopen its output pipe: %w", err)
	}
	return &outputCapture{r: r, w: w, done: make(chan OutputStats, 1)}, nil
}

// openOutput creates or truncates dest for a captured stream ("" =
// discard: nil). A symlink at dest is refused rather than followed.
func openOutput(dest string) (*os.File, error) {
	if dest == "" {
		return nil, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open output %s: %w", dest, err)
	}
	clearFlushOnClose(f)
	return f, nil
}

// clearFlushOnClose opens f again and closes that at once. On ext4 (with
// its default auto_da_alloc), a file truncated to zero is flushed to the
// disk when it is next closed, to protect editors that rewrite files in
// place; the streams' files are truncated for every action (build
// directories are reused), read once and truncated again, so that flush was
// all cost: about 0.3 ms of CPU per action, and a disk write, on a 2-vCPU
// VM. ext4 clears the mark at the first close, so the second open's close
// takes it while the file is still empty. Elsewhere it is a harmless open
// and close; a failure changes nothing but the flush.
func clearFlushOnClose(f *os.File) {
	if g, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil {
		g.Close()
	}
}

// closeOutput closes a destination that was never handed to a capture.
func closeOutput(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// handedOver closes our copy of the write end once the sandbox has its own,
// so that the copy ends when every process holding it is gone.
func (c *outputCapture) handedOver() {
	if c.w != nil {
		c.w.Close()
		c.w = nil
	}
}

// start begins copying into dst (nil = discard), which it then owns,
// keeping at most limit bytes.
func (c *outputCapture) start(dst *os.File, limit int64) {
	c.dst, c.limit = dst, limit
	c.handedOver()
	go func() {
		var st OutputStats
		// Up to the limit into the destination (the kernel splices from
		// the pipe to the file: no copy through this process), then
		// drain and count the rest. A write error (a full disk) counts as
		// hitting the cap.
		dst := io.Writer(io.Discard)
		if c.dst != nil {
			dst = c.dst
		}
		limit := c.limit
		if limit <= 0 {
			limit = math.MaxInt64
		}
		src := &pipeReader{f: c.r}
		n, err := io.CopyN(dst, src, limit)
		st.Bytes = n
		if err != nil && !errors.Is(err, io.EOF) {
			st.Truncated = true
		}
		if rest, _ := io.Copy(io.Discard, src); rest > 0 {
			st.Truncated = true
			st.Discarded = rest
		}
		c.r.Close()
		if c.dst != nil {
			c.dst.Close()
		}
		c.done <- st
	}()
}

// stopAfterKill ends the copy once the pipe is empty, rather than when
// the last process holding its write end has exited: after the kill path
// no process of the sandbox writes again, but thousands may still be
// exiting. (A read deadline wakes the copy; pipeReader then takes what the
// pipe still holds without waiting.)
func (c *outputCapture) stopAfterKill() {
	_ = c.r.SetReadDeadline(time.Now())
}

// pipeReader reads a capture's pipe. Once the pipe's read deadline has
// passed (stopAfterKill), it reads what the pipe still holds without
// waiting, and then reports the end.
type pipeReader struct {
	f       *os.File
	nowait  bool
	drained bool
}

func (r *pipeReader) Read(p []byte) (int, error) {
	if !r.nowait {
		n, err := r.f.Read(p)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		r.nowait = true
		if n > 0 {
			return n, nil
		}
	}
	if r.drained {
		return 0, io.EOF
	}
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	// Control bypasses the deadline; the descriptor is non-blocking, so
	// an empty pipe answers EAGAIN at once.
	n, rerr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) { n, rerr = syscall.Read(int(fd), p) }); err != nil {
		return 0, err
	}
	if n <= 0 || rerr != nil {
		r.drained = true
		return 0, io.EOF
	}
	return n, nil
}

// abort releases everything when the copy never started.
func (c *outputCapture) abort() {
	c.handedOver()
	c.r.Close()
	if c.dst != nil {
		c.dst.Close()
	}
}

func (c *outputCapture) wait() OutputStats { return <-c.done }
