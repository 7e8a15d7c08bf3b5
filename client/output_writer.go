package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// outputWriter writes an outputPlan, already checked whole, under root.
// Every path it touches goes through root, so nothing lands outside it.
type outputWriter struct {
	c    *Client
	root *os.Root
}

func (w outputWriter) write(ctx context.Context, p *outputPlan) error {
	for _, f := range p.files {
		if err := w.replaceFile(ctx, f); err != nil {
			return err
		}
	}
	for _, d := range p.dirs {
		if err := w.replaceDir(ctx, d); err != nil {
			return err
		}
	}
	for _, l := range p.links {
		if err := w.replaceLink(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// tempName returns a fresh name beside p. It is random rather than
// derived from p alone, so that a file the user keeps under that name is
// never removed, and it is created with O_EXCL or Mkdir, which fail
// rather than reuse anything already there.
func tempName(p string) string {
	return path.Join(path.Dir(p), ".paddock-tmp-"+path.Base(p)+"-"+rand.Text())
}

func (w outputWriter) mkParent(p string) error {
	if dir := path.Dir(p); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output %q: %w", p, err)
		}
	}
	return nil
}

// replaceFile writes f beside its destination, verified, then renames it
// into place, so that a reader never sees half a file and a bad blob
// leaves the old file alone.
func (w outputWriter) replaceFile(ctx context.Context, f plannedFile) error {
	if err := w.mkParent(f.path); err != nil {
		return err
	}
	tmp := tempName(f.path)
	err := w.create(ctx, tmp, f)
	if err == nil {
		if err = w.root.Rename(tmp, f.path); err != nil {
			err = fmt.Errorf("output %q: %w", f.path, err)
		}
	}
	if err != nil {
		w.root.Remove(tmp)
	}
	return err
}

// create writes f's content to a new file at at, streaming a CAS blob
// through its hash (ReadTo) rather than holding it in memory. at must not
// exist.
func (w outputWriter) create(ctx context.Context, at string, f plannedFile) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("output %q: %w", f.path, err)
	}
	mode := os.FileMode(0o644)
	if f.executable {
		mode = 0o755
	}
	fh, err := w.root.OpenFile(at, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("output %q: %w", f.path, err)
	}
	if f.inline != nil {
		_, err = fh.Write(f.inline)
	} else {
		err = w.c.ReadTo(ctx, f.digest, fh)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.root.Chmod(at, mode) // the umask may have cut bits
	}
	if err != nil {
		return fmt.Errorf("output %q: %w", f.path, err)
	}
	return nil
}

// replaceDir builds d in a fresh directory beside its destination and
// swaps it in only once every file is written and verified.
func (w outputWriter) replaceDir(ctx context.Context, d plannedDir) error {
	if err := w.mkParent(d.path); err != nil {
		return err
	}
	tmp := tempName(d.path)
	err := w.tree(ctx, tmp, d.path, d, d.root)
	if err == nil {
		err = w.root.RemoveAll(d.path)
		if err == nil {
			err = w.root.Rename(tmp, d.path)
		}
		if err != nil {
			err = fmt.Errorf("output %q: %w", d.path, err)
		}
	}
	if err != nil {
		w.root.RemoveAll(tmp)
	}
	return err
}

// tree writes dir at at; final is where it will end up, for messages.
func (w outputWriter) tree(ctx context.Context, at, final string, d plannedDir, dir *repb.Directory) error {
	if err := w.root.Mkdir(at, 0o755); err != nil {
		return fmt.Errorf("output %q: %w", final, err)
	}
	for _, f := range dir.Files {
		dg, err := digest.FromProto(repb.DigestFunction_SHA256, f.Digest, "output file")
		if err != nil {
			return err
		}
		pf := plannedFile{path: final + "/" + f.Name, digest: dg, executable: f.IsExecutable}
		if err := w.create(ctx, at+"/"+f.Name, pf); err != nil {
			return err
		}
	}
	for _, l := range dir.Symlinks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("output %q: %w", final, err)
		}
		if err := w.root.Symlink(l.Target, at+"/"+l.Name); err != nil {
			return fmt.Errorf("output %q: %w", final+"/"+l.Name, err)
		}
	}
	for _, sub := range dir.Directories {
		_, ch, err := d.child(final, sub)
		if err != nil {
			return err
		}
		if err := w.tree(ctx, at+"/"+sub.Name, final+"/"+sub.Name, d, ch); err != nil {
			return err
		}
	}
	return nil
}

// replaceLink creates l beside its destination and renames it into place.
func (w outputWriter) replaceLink(ctx context.Context, l plannedLink) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("output %q: %w", l.path, err)
	}
	if err := w.mkParent(l.path); err != nil {
		return err
	}
	tmp := tempName(l.path)
	err := w.root.Symlink(l.target, tmp)
	if err == nil {
		if err = w.root.Rename(tmp, l.path); err != nil {
			w.root.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("output %q: %w", l.path, err)
	}
	return nil
}
