package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/dirnames"
)

// store is the cache's on-disk layout. Everything is published by renaming
// a finished directory or file out of tmp/, so a crash leaves either the
// old state or the new one plus debris in tmp/, which open moves aside
// for deletion in the background:
//
//	DIR/lock                          flock held by the owning process
//	DIR/tmp/                          work in progress, and trees to delete
//	DIR/tmp/trash-<bytes>-<random>/x  a tree to delete, counting <bytes>
//	DIR/layers/<hex diffID>/root/     a layer's own files
//	DIR/layers/<hex diffID>/layer.json layerMeta
//	DIR/images/<hex manifest>/rootfs/ the flattened tree, hard links into layers
//	DIR/images/<hex manifest>/image.json imageRecord
//	DIR/refs/<sha256 of key>.json     refRecord: a reference's resolution
//
// Directories are 0755 so that the sandbox's unprivileged uid can reach
// rootfs trees to bind-mount them.
type store struct {
	dir  string
	lock *os.File
	// leftover is what opening found to delete: the previous run's tmp/
	// and entries scan could not read, moved aside for the cache's remover.
	leftover []trashTree
}

// imageRecord describes a cached image.
type imageRecord struct {
	Digest string      `json:"digest"` // manifest digest
	Layers []string    `json:"layers"` // diffIDs, lowest first
	Config ImageConfig `json:"config"`
	// Origins are the repositories (registry/repository) that served the
	// image's manifest and every layer (see origins.go).
	Origins []string `json:"origins,omitempty"`
	// Bytes is what the rootfs tree itself counts toward the cache's
	// bound (flatten): its own directories and links, beside the layers'
	// files, which it shares.
	Bytes int64 `json:"bytes,omitempty"`
}

// refRecord remembers what a reference resolved to. Key is the tag
// reference (registry/repo:tag) or, for a digest that named an index, that
// digest; the latter never expires.
type refRecord struct {
	Key        string    `json:"key"`
	Digest     string    `json:"digest"`
	ResolvedAt time.Time `json:"resolvedAt"`
	// usedAt is when this process last looked the ref up, for the bound
	// on refs (ref_bound.go); not kept on disk.
	usedAt time.Time
}

func openStore(dir string) (*store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "layers"), filepath.Join(dir, "images"), filepath.Join(dir, "refs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("image cache %s is in use by another process: %w", dir, err)
	}
	s := &store{dir: dir, lock: lock}
	if err := s.setAsideTmp(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("set aside %s: %w", s.tmp(), err)
	}
	return s, nil
}

// setAsideTmp moves what a previous run left in tmp/ (half-finished work,
// trees waiting for deletion) into a fresh tmp/ as one tree to delete,
// recorded in leftover for the cache's remover. It only renames: deleting
// ~175,000 entries of trash here kept a runner from serving for longer
// than `paddock up` waits for it to be ready. A crash between the renames
// leaves tmp-old-* beside tmp/, which the next start takes in too.
func (s *store) setAsideTmp() error {
	if _, err := os.Lstat(s.tmp()); err == nil {
		aside, err := os.MkdirTemp(s.dir, "tmp-old-")
		if err != nil {
			return err
		}
		// rename(2) replaces the empty directory aside (os.Rename
		// refuses to).
		if err := unix.Rename(s.tmp(), aside); err != nil {
			return &os.LinkError{Op: "rename", Old: s.tmp(), New: aside, Err: err}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Mkdir(s.tmp(), 0o755); err != nil {
		return err
	}
	olds, err := filepath.Glob(filepath.Join(s.dir, "tmp-old-*"))
	if err != nil {
		return err
	}
	for _, old := range olds {
		t, err := s.discard(old, trashBytesIn(old))
		if t.path != "" {
			s.leftover = append(s.leftover, t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// trashBytesIn is what the trees waiting for deletion in a previous run's
// tmp directory counted toward the bound, read from their names (discard):
// one directory listing, not a walk of the trees. Half-finished work there
// is not counted; each piece was bounded by its pull.
func trashBytesIn(dir string) int64 {
	names, _ := dirnames.Read(dir)
	var total int64
	for _, n := range names {
		if n, ok := trashBytesOf(n); ok {
			total += n
		}
	}
	return total
}

func (s *store) close() error { return s.lock.Close() }

func (s *store) tmp() string { return filepath.Join(s.dir, "tmp") }

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

func (s *store) layerDir(diffID string) string {
	return filepath.Join(s.dir, "layers", hexOf(diffID))
}

func (s *store) imageDir(digest string) string {
	return filepath.Join(s.dir, "images", hexOf(digest))
}

// newTemp makes a work directory. It becomes a layer or image directory
// by rename, so it gets the cache's 0755, not MkdirTemp's 0700: the
// sandbox uid must be able to reach rootfs trees below it.
func (s *store) newTemp() (string, error) {
	d, err := os.MkdirTemp(s.tmp(), "work-")
	if err == nil {
		err = os.Chmod(d, 0o755)
	}
	return d, err
}

// publish renames the finished directory tmp to final. If final already
// exists the work was done twice; the existing copy wins.
func (s *store) publish(tmp, final string) error {
	err := os.Rename(tmp, final)
	if err != nil && (errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY)) {
		return os.RemoveAll(tmp)
	}
	return err
}

// discard moves dir into tmp/ (instant, so it can be done under the cache's
// lock) and returns where it went, for removal later. bytes is what the
// tree counts toward the cache's bound until it is deleted; its name
// records it, so that a restart counts what is still there
// (trashBytesIn).
func (s *store) discard(dir string, bytes int64) (trashTree, error) {
	t, err := os.MkdirTemp(s.tmp(), fmt.Sprintf("%s%d-", trashPrefix, bytes))
	if err != nil {
		return trashTree{}, err
	}
	if err := os.Rename(dir, filepath.Join(t, "x")); err != nil {
		return trashTree{path: t}, err
	}
	return trashTree{path: t, bytes: bytes}, nil
}

const trashPrefix = "trash-"

// trashBytesOf reads the bytes a discarded tree's name records.
func trashBytesOf(name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, trashPrefix)
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	b, err := strconv.ParseInt(n, 10, 64)
	return b, err == nil && b >= 0
}

func (s *store) refPath(key string) string {
	return filepath.Join(s.dir, "refs", sha256Hex(key)+".json")
}

func (s *store) writeRef(r refRecord) error {
	return writeJSONAtomic(s, s.refPath(r.Key), r)
}

// rekeyRef writes r, the record once kept under old, under its key, and
// removes the old one.
func (s *store) rekeyRef(old string, r refRecord) error {
	if err := s.writeRef(r); err != nil {
		return err
	}
	return os.Remove(s.refPath(old))
}

// writeJSONAtomic writes v to path through a temporary file and a rename.
func writeJSONAtomic(s *store, path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.tmp(), "json-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// readLayerMeta reads the layer.json of the layer directory dir. One
// bigger than this code writes (maxLayerJSONBytes) is not read: an older
// runner recorded hostile layers' names without bound (2 GB took a minute
// to load, and the runner could not start in time), so it is refused, and
// the layer fetched again if an image needs it.
func readLayerMeta(dir string) (*layerMeta, bool) {
	p := filepath.Join(dir, "layer.json")
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxLayerJSONBytes {
		return nil, false
	}
	var m layerMeta
	if err := readJSON(p, &m); err != nil {
		return nil, false
	}
	m.recount()
	return &m, m.recorded <= maxRecordedBytes
}

// discardLeftover moves an unreadable entry of the store aside for the
// remover (leftover), as setAsideTmp does, rather than deleting a tree of
// any size before the cache serves.
func (s *store) discardLeftover(p string) {
	t, err := s.discard(p, 0)
	if t.path != "" {
		s.leftover = append(s.leftover, t)
	}
	if err != nil {
		os.RemoveAll(p)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// scan reads what a previous run left. Entries that cannot be read are
// removed: everything in the cache can be fetched again.
func (s *store) scan() (layers map[string]*layerMeta, images map[string]imageRecord, refs map[string]refRecord, mtimes map[string]time.Time, err error) {
	layers, images, refs, mtimes = map[string]*layerMeta{}, map[string]imageRecord{}, map[string]refRecord{}, map[string]time.Time{}
	ents, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, e := range ents {
		p := filepath.Join(s.dir, "layers", e.Name())
		m, ok := readLayerMeta(p)
		if !ok || hexOf(m.DiffID) != e.Name() {
			s.discardLeftover(p)
			continue
		}
		layers[m.DiffID] = m
	}
	ents, err = os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, e := range ents {
		p := filepath.Join(s.dir, "images", e.Name())
		var r imageRecord
		ok := readJSON(filepath.Join(p, "image.json"), &r) == nil && hexOf(r.Digest) == e.Name()
		for _, l := range r.Layers {
			ok = ok && layers[l] != nil
		}
		info, err := os.Stat(filepath.Join(p, "image.json"))
		if !ok || err != nil {
			s.discardLeftover(p)
			continue
		}
		images[r.Digest] = r
		mtimes[r.Digest] = info.ModTime()
	}
	ents, err = os.ReadDir(filepath.Join(s.dir, "refs"))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, e := range ents {
		p := filepath.Join(s.dir, "refs", e.Name())
		var r refRecord
		if err := readJSON(p, &r); err != nil || r.Key == "" {
			os.Remove(p)
			continue
		}
		refs[r.Key] = r
	}
	return layers, images, refs, mtimes, nil
}
