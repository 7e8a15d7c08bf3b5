package sandbox

import (
	"fmt"
	"io"
	"os"
)

// outputCapture reads one stream of a sandbox from a pipe into a file,
// keeping at most limit bytes and discarding (but draining) the rest, so a
// chatty command is neither blocked nor able to fill the disk.
type outputCapture struct {
	r     *os.File // read end, owned
	w     *os.File // write end, handed to the sandbox then closed by start
	dst   *os.File // destination, nil = discard; owned
	limit int64
	done  chan OutputStats
}

// newOutputCapture opens dest (created or truncated; "" = discard) and a
// pipe whose write end the sandbox gets as stdout or stderr.
func newOutputCapture(dest string, limit int64) (*outputCapture, error) {
	c := &outputCapture{limit: limit, done: make(chan OutputStats, 1)}
	if dest != "" {
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open output %s: %w", dest, err)
		}
		c.dst = f
	}
	r, w, err := os.Pipe()
	if err != nil {
		if c.dst != nil {
			c.dst.Close()
		}
		return nil, err
	}
	c.r, c.w = r, w
	return c, nil
}

// start begins copying; call after the sandbox has its copy of the write
// end. The copy ends when every process holding the write end is gone.
func (c *outputCapture) start() {
	c.w.Close()
	go func() {
		var st OutputStats
		buf := make([]byte, 32*1024)
		for {
			n, err := c.r.Read(buf)
			if n > 0 {
				keep := int64(n)
				if c.limit > 0 && st.Bytes+keep > c.limit {
					keep = c.limit - st.Bytes
					st.Truncated = true
				}
				if keep > 0 && c.dst != nil {
					if _, werr := c.dst.Write(buf[:keep]); werr != nil {
						// A full disk is the same as hitting the cap.
						st.Truncated = true
						keep = 0
						c.limit = st.Bytes
					}
				}
				st.Bytes += keep
				st.Discarded += int64(n) - keep
			}
			if err == io.EOF || err != nil {
				break
			}
		}
		c.r.Close()
		if c.dst != nil {
			c.dst.Close()
		}
		c.done <- st
	}()
}

// abort releases everything when the sandbox never started.
func (c *outputCapture) abort() {
	c.w.Close()
	c.r.Close()
	if c.dst != nil {
		c.dst.Close()
	}
}

func (c *outputCapture) wait() OutputStats { return <-c.done }
