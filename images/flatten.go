package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// flatLayer is one unpacked layer as the flattener sees it.
type flatLayer struct {
	root string // the layer's own tree
	meta *layerMeta
}

// flatten composes layers, lowest first, into the empty directory dst with
// the semantics of overlayfs: a layer's opaque directories and whiteouts
// first remove what the layers below put there, then its entries are
// merged in — directories are created (an upper directory replaces a lower
// non-directory), everything else is hard-linked from the layer's tree, so
// the rootfs costs inodes for its directories and nothing for its files.
//
// The layer trees are the cache's own, immutable once published, but their
// symlinks come from the image: no path in dst is ever resolved through a
// symlink (see tree), so a symlink from one layer cannot redirect a file of
// a later layer outside dst.
//
// Flattening stops when ctx ends, checked at every entry: it is part of a
// pull, bound by the pull's timeout, and an image can list one layer many
// times (up to maxLayers), each listing merged again.
//
// It returns what it made: each image has its own directories, and its
// own links to the layers' files, so a layer of many directories shared
// by many images costs inodes and blocks for each of them. Once that
// costs more than limit (when not negative) it stops with
// errTreeOverLimit: the tree could not be held beside its layers.
func flatten(ctx context.Context, dst string, layers []flatLayer, limit int64) (flatMade, error) {
	var made flatMade
	t, err := openTree(dst)
	if err != nil {
		return made, err
	}
	defer t.Close()
	for _, l := range layers {
		if err := flattenLayer(ctx, t, l, &made, limit); err != nil {
			return made, fmt.Errorf("layer %s: %w", l.meta.DiffID, err)
		}
	}
	return made, nil
}

// flatMade counts what flattening made in a rootfs tree (entries later
// removed again included: the count bounds work and space conservatively).
type flatMade struct {
	dirs, links int64
}

// linkCost is what a hard link counts toward the cache's bound: a
// directory entry, not an inode.
const linkCost = 64

// cost is what a rootfs tree counts toward the cache's bound beside its
// layers: each directory as much as a layer's entry (entryCost).
func (m flatMade) cost() int64 { return m.dirs*entryCost + m.links*linkCost }

// errTreeOverLimit is flatten's error when the tree outgrows its limit.
var errTreeOverLimit = errors.New("flattened tree over its limit")

func flattenLayer(ctx context.Context, t *tree, l flatLayer, made *flatMade, limit int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, d := range l.meta.Opaque {
		if err := clearIn(t, d); err != nil {
			return fmt.Errorf("opaque directory %s: %w", QuoteShort(d), err)
		}
	}
	for _, w := range l.meta.Whiteouts {
		pfd, base, err := t.parent(w, false)
		if err != nil {
			continue // the parent is absent or not a directory below: nothing to hide
		}
		err = removeAt(pfd, base, nil)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", QuoteShort(w), err)
		}
	}
	return filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		rel, rerr := filepath.Rel(l.root, p)
		if rerr != nil {
			return rerr
		}
		if err != nil {
			return fmt.Errorf("entry %s: %w", QuoteShort(rel), withoutPath(err))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if err := mergeEntry(t, p, rel, d, made); err != nil {
			return fmt.Errorf("entry %s: %w", QuoteShort(rel), withoutPath(err))
		}
		if limit >= 0 && made.cost() > limit {
			return errTreeOverLimit
		}
		return nil
	})
}

func mergeEntry(t *tree, src, rel string, d fs.DirEntry, made *flatMade) error {
	pfd, base, st, ok, err := t.lstatEntry(rel, false)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if d.IsDir() {
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := uint32(info.Sys().(*syscall.Stat_t).Mode) & 0o7777
		if ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := unix.Unlinkat(pfd, base, 0); err != nil {
				return err
			}
			ok = false
		}
		if !ok {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
			made.dirs++
		}
		// The upper layer's directory attributes win, as in overlayfs.
		return unix.Fchmodat(pfd, base, mode, 0)
	}
	if ok {
		if err := removeAt(pfd, base, nil); err != nil {
			return err
		}
	}
	// linkat without AT_SYMLINK_FOLLOW links a symlink itself.
	made.links++
	return unix.Linkat(unix.AT_FDCWD, src, pfd, base, 0)
}

// clearIn empties the directory rel of t, if it is one.
func clearIn(t *tree, rel string) error {
	if rel == "." {
		return clearDirAt(t.fd, ".", nil)
	}
	pfd, base, err := t.parent(rel, false)
	if err != nil {
		return nil
	}
	defer unix.Close(pfd)
	st, ok, err := lstatAt(pfd, base)
	if err != nil || !ok || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return err
	}
	return clearDirAt(pfd, base, nil)
}

// withoutPath drops the path from a *fs.PathError, keeping its operation
// and cause: the caller names the entry (QuoteShort), and a path of an
// image's entry can be 4 KB long, which pushed the cause ("file name too
// long") past where the runner cuts the message.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
