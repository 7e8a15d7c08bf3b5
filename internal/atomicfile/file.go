// Package atomicfile writes files that appear under their final name whole
// or not at all: the stores' blobs, action results and cached inputs.
//
// A file is written unnamed (open(2)'s O_TMPFILE) and given its name by
// one link(2) when it is complete. The usual way, a named temporary file
// renamed into place, costs two directory operations per file in one
// shared temporary directory, and the farm writes a few files per action
// from several goroutines at once: under a load of trivial actions, those
// creates and renames had 47% of `paddock up`'s CPU samples. Writing
// unnamed took 11% off the CPU per blob stored, and the creation of the
// inode itself is the rest (docs/benchmarks.md, "Files written unnamed").
// An unnamed file also leaves nothing behind when the process dies
// mid-write. Where the file system or kernel has no O_TMPFILE, or /proc is
// not mounted (the link goes through /proc/self/fd), a named temporary
// file in the same directory is renamed into place instead.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// File is a file being written. Write to it, then Commit it under its final
// name, or Abort it; Abort after Commit does nothing, so `defer f.Abort()`
// is the way to write one.
type File struct {
	*os.File
	tmpName string // the named temporary file's path; "" when unnamed
	done    bool
}

// unnamed reports whether files may be written unnamed: /proc/self/fd is
// there to link them by. Tests turn it off to cover the fallback.
var unnamed = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// Create starts a file with permissions mode (exactly: the umask does not
// apply, as other users may need to read it) on dir's file system. dir
// must exist; the final name given to Commit must be on the same file
// system.
func Create(dir string, mode os.FileMode) (*File, error) {
	f, err := create(dir, mode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Abort()
		return nil, err
	}
	return f, nil
}

func create(dir string, mode os.FileMode) (*File, error) {
	if unnamed() {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(mode.Perm()))
		if err == nil {
			return &File{File: os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)"))}, nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
			return nil, &fs.PathError{Op: "create unnamed file in", Path: dir, Err: err}
		}
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, tmpName: f.Name()}, nil
}

// Existing returns a File for the regular file f, which has a name
// elsewhere on the same filesystem already: Commit gives it final as
// another name (a hard link), Abort leaves it as it was. The File has a
// descriptor of its own (f stays the caller's to close). Commit needs
// /proc (the link goes through /proc/self/fd).
func Existing(f *os.File) (*File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &File{File: os.NewFile(uintptr(fd), f.Name())}, nil
}

// Commit closes the file and names it final, replacing a file already
// there; it creates final's parent directories when missing, mode 0700:
// the stores written this way (the disk CAS and action cache, the
// worker's file cache) are this process's alone. After an error the file
// is gone.
func (f *File) Commit(final string) error {
	if f.done {
		return errors.New("atomicfile: commit of a file already committed or aborted")
	}
	err := f.commit(final)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(final), 0o700); err == nil {
			err = f.commit(final)
		}
	}
	if err != nil {
		f.Abort()
		return err
	}
	f.done = true
	return f.File.Close()
}

func (f *File) commit(final string) error {
	if f.tmpName != "" {
		return os.Rename(f.tmpName, final)
	}
	err := f.link(final)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Replace: link under a name of its own beside final, then rename
	// over it, so that final is never missing.
	side := f.sideName(final)
	err = f.link(side)
	if errors.Is(err, fs.ErrExist) {
		// Left by a crash of an earlier process with the same pid (as pid
		// 1 of a container): no live writer uses this name.
		os.Remove(side)
		err = f.link(side)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(side, final); err != nil {
		os.Remove(side)
		return err
	}
	return nil
}

// sideName is the name beside final that a replacement is linked under
// before the rename: this process's and descriptor's own.
func (f *File) sideName(final string) string {
	return fmt.Sprintf("%s.tmp-%d-%d", final, os.Getpid(), f.Fd())
}

// link gives the unnamed file the name path.
func (f *File) link(path string) error {
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}

// Abort closes and discards the file unless it was committed.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	if f.tmpName != "" {
		os.Remove(f.tmpName)
	}
}
