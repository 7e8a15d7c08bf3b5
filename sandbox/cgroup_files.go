package sandbox

import (
	"errors"
	"io"
	"os"
	"sync"
)

// cgroupFiles keeps cgroup control files open once used, so that reading
// and writing one again (for every sandbox of a pooled cgroup) costs one
// system call instead of a path walk through cgroupfs plus open and close.
// Safe for concurrent use.
type cgroupFiles struct {
	mu    sync.Mutex
	files map[string]*os.File
}

func (c *cgroupFiles) get(path string) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[path]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(path) // a read-only file
	}
	if err != nil {
		return nil, err
	}
	if c.files == nil {
		c.files = map[string]*os.File{}
	}
	c.files[path] = f
	return f, nil
}

// read returns the whole content of path.
func (c *cgroupFiles) read(path string) ([]byte, error) {
	f, err := c.get(path)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 512)
	n := 0
	for {
		m, err := f.ReadAt(buf[n:], int64(n))
		n += m
		if errors.Is(err, io.EOF) || (err == nil && m == 0) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
	}
}

// write writes value to path, as one write at offset 0.
func (c *cgroupFiles) write(path, value string) error {
	f, err := c.get(path)
	if err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(value), 0)
	return err
}

// close closes every open file (before the cgroup is removed).
func (c *cgroupFiles) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}
