package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteout names from the OCI image-spec layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// layerMeta is what unpacking a layer records beside its tree. The tree
// itself holds only the layer's own files; the whiteouts and opaque
// directories, which delete things from lower layers, are kept here and
// applied when the layers are flattened into an image's rootfs.
type layerMeta struct {
	DiffID string `json:"diffID"`
	// Size is the total size of the layer's regular files.
	Size int64 `json:"size"`
	// Entries counts the layer's tar entries, whatever their kind.
	Entries int64 `json:"entries,omitempty"`
	// Whiteouts are paths removed from the layers below.
	Whiteouts pathNames `json:"whiteouts,omitempty"`
	// Opaque are directories whose contents in the layers below are hidden.
	Opaque pathNames `json:"opaque,omitempty"`
	// Owners records "uid:gid" for entries not owned by 0:0. Files on disk
	// belong to the runner's user: ownership inside the sandbox's user
	// namespace cannot be honoured for a shared read-only tree, so it is
	// kept for reference only.
	Owners map[string]string `json:"owners,omitempty"`
	// Origins are the repositories (registry/repository) that served the
	// layer's content, verified against DiffID (see origins.go).
	Origins []string `json:"origins,omitempty"`
	// Skipped names device nodes and FIFOs, which are never created.
	Skipped pathNames `json:"skipped,omitempty"`
	// recorded is the size of the names kept above (recordCost each),
	// which the runner holds in memory and in layer.json: it counts toward
	// the cache's bound like file bytes. It is not stored; scan recounts.
	recorded int64
}

// recordOverhead is what each kept name counts beside its bytes: enough
// for its JSON quoting and separators and its slice or map slot.
const recordOverhead = 16

// maxRecordedBytes bounds what one layer's metadata keeps of its entries
// (recorded), whatever the cache's bound: it is read whole at start-up.
// A real layer keeps a few bytes per entry owned by another uid or
// skipped; 16 MiB is hundreds of thousands of them.
const maxRecordedBytes = 16 << 20

// maxLayerJSONBytes is the largest layer.json start-up reads: every
// recorded byte takes at most 6 in JSON (\u00XX), plus room for the rest
// of the record. A bigger one was not written by this code; it is dropped
// unread (store.scan).
const maxLayerJSONBytes = 6*maxRecordedBytes + 1<<20

func recordCost(s string) int64 { return int64(len(s)) + recordOverhead }

// keep appends name to one of m's lists and counts it.
func (m *layerMeta) keep(list *pathNames, name string) {
	*list = append(*list, name)
	m.recorded += recordCost(name)
}

// setOwner records the owner of name and counts it.
func (m *layerMeta) setOwner(name, owner string) {
	if m.Owners == nil {
		m.Owners = map[string]string{}
	}
	if old, ok := m.Owners[name]; ok {
		m.recorded -= recordCost(name) + int64(len(old))
	}
	m.Owners[name] = owner
	m.recorded += recordCost(name) + int64(len(owner))
}

// recount sets recorded from the lists, for a layerMeta read from disk.
func (m *layerMeta) recount() {
	m.recorded = 0
	for _, l := range []pathNames{m.Whiteouts, m.Opaque, m.Skipped} {
		for _, n := range l {
			m.recorded += recordCost(n)
		}
	}
	for n, o := range m.Owners {
		m.recorded += recordCost(n) + int64(len(o))
	}
}

// entryCost is what each tar entry counts toward the cache's size budget
// beside its file's bytes: about a block, what an empty file or directory
// takes on disk. Without it a layer of millions of empty files (a few
// dozen compressed bytes each) counted as nothing, and could use up the
// worker's inodes, and the runner's memory for its metadata.
const entryCost = 4096

// cost is what the layer counts toward the cache's size budget.
func (m *layerMeta) cost() int64 { return m.Size + m.Entries*entryCost + m.recorded }

// unpacker extracts one layer tarball into an empty directory, treating
// every entry name and link target as hostile. It refuses, with an error
// naming the entry, anything that would reach outside the directory: a name
// with "..", a file or directory below a symlink, a hard link to a path
// outside the layer, a whiteout naming an outside path. Absolute names are
// taken relative to the root. Device nodes and FIFOs are skipped (an
// unprivileged sandbox has no use for them and they are a cross-sandbox
// channel in a shared tree). Setuid and setgid bits are stripped unless
// keepSetuid is set, and group/other write bits always are: the tree is
// shared read-only between sandboxes.
//
// Each unpack charges what it writes to its image's budget (imageBudget)
// before writing it, so a hostile image cannot fill the disk beyond the
// cache's own bound.
type unpacker struct {
	keepSetuid bool
	logger     *slog.Logger
}

// dirAttr is applied to a directory after its contents are written, so a
// read-only directory does not stop its own extraction and its mtime is not
// disturbed by its children.
type dirAttr struct {
	name  string
	mode  uint32
	mtime unix.Timespec
}

// unpack extracts the layer r into dst, charging budget for it.
func (u *unpacker) unpack(r io.Reader, dst string, budget *imageBudget) (*layerMeta, error) {
	t, err := openTree(dst)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	meta := &layerMeta{}
	var charged int64                  // what budget holds for this layer so far
	charge := func(extra int64) bool { // meta's cost and extra bytes
		need := meta.cost() + extra
		if need > charged && !budget.take(need-charged) {
			return false
		}
		charged = max(charged, need)
		return true
	}
	overBound := func(what string) error {
		return fmt.Errorf("%s: the image's layers unpack to more than the cache bound of %d bytes (files count their size, and this layer's %d entries count %d bytes each beside)",
			what, budget.limit, meta.Entries, entryCost)
	}
	var dirs []dirAttr
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read layer: %w", err)
		}
		if meta.Entries++; !charge(fileBytes(hdr)) {
			return nil, overBound("entry " + QuoteShort(hdr.Name))
		}
		if err := u.entry(t, tr, hdr, meta, &dirs); err != nil {
			return nil, fmt.Errorf("entry %s: %w", QuoteShort(hdr.Name), err)
		}
		if meta.recorded > maxRecordedBytes {
			return nil, fmt.Errorf("entry %s: layer records more than %d bytes of names (whiteouts, skipped entries, owners)", QuoteShort(hdr.Name), maxRecordedBytes)
		}
	}
	if !charge(0) { // the names the last entry recorded
		return nil, overBound("end of layer")
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := setAttrs(t, d.name, d.mode, d.mtime); err != nil {
			return nil, fmt.Errorf("entry %s: %w", QuoteShort(d.name), err)
		}
	}
	return meta, nil
}

// fileBytes is what the entry hdr writes to disk beside its inode: a
// regular file's size (a sparse file's logical size, as it is written
// out in full).
func fileBytes(hdr *tar.Header) int64 {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		return hdr.Size
	}
	return 0
}

// isAUFSMeta reports whether the layer entry name is AUFS's metadata
// (.wh..wh.aufs, .wh..wh.orph/…, .wh..wh.plnk/… at the layer's root),
// which images saved from an AUFS-backed Docker keep. Docker skips it,
// and such an image was refused ("whiteout names no entry").
func isAUFSMeta(name string) bool {
	first, _, _ := strings.Cut(name, "/")
	return strings.HasPrefix(first, whiteoutPrefix+whiteoutPrefix) && first != whiteoutOpaque
}

// whiteout records the whiteout entry base of directory dir in meta.
func whiteout(meta *layerMeta, dir, base string) error {
	if base == whiteoutOpaque {
		meta.keep(&meta.Opaque, dir)
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.HasPrefix(target, whiteoutPrefix) {
		return errors.New("whiteout names no entry")
	}
	meta.keep(&meta.Whiteouts, path.Join(dir, target))
	return nil
}

// writeFile writes the regular file entry base of directory pfd from tr
// (already charged, fileBytes), and counts it in meta.
func (u *unpacker) writeFile(pfd int, base, name string, tr io.Reader, hdr *tar.Header, meta *layerMeta) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	n, err := io.Copy(f, tr)
	if err == nil {
		err = f.Chmod(os.FileMode(u.mode(hdr.Mode)) | modeExtra(u.mode(hdr.Mode)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	meta.Size += n
	return nil
}

// hardLink makes base in directory pfd a hard link to linkname, which must
// be an earlier file of the layer (never a directory, never outside).
func hardLink(t *tree, linkname string, pfd int, base string) error {
	target, err := cleanName(linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	tfd, tbase, err := t.parent(target, false)
	if err != nil {
		return fmt.Errorf("hard link target %s: %w", QuoteShort(linkname), parentError(err))
	}
	defer unix.Close(tfd)
	st, ok, err := lstatAt(tfd, tbase)
	if err != nil {
		return err
	}
	if !ok || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %s is not an earlier file of this layer", QuoteShort(linkname))
	}
	return unix.Linkat(tfd, tbase, pfd, base, 0)
}

func (u *unpacker) entry(t *tree, tr *tar.Reader, hdr *tar.Header, meta *layerMeta, dirs *[]dirAttr) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the layer root itself: its attributes are the cache's
	}
	if isAUFSMeta(name) {
		return nil
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return whiteout(meta, dir, base)
	}
	if hdr.Uid != 0 || hdr.Gid != 0 {
		meta.setOwner(name, fmt.Sprintf("%d:%d", hdr.Uid, hdr.Gid))
	}
	mtime := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		meta.keep(&meta.Skipped, name)
		u.logger.Debug("layer entry skipped", "entry", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	case tar.TypeDir:
		if err := u.mkdir(t, name); err != nil {
			return err
		}
		*dirs = append(*dirs, dirAttr{name: name, mode: u.mode(hdr.Mode) | 0o700, mtime: mtime})
		return nil
	}
	pfd, base, err := t.parent(name, true)
	if err != nil {
		return parentError(err)
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, base, nil); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		if err := u.writeFile(pfd, base, name, tr, hdr, meta); err != nil {
			return err
		}
	case tar.TypeSymlink:
		// The target is only data: it is never resolved here, and the
		// flattener never follows it either.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
	case tar.TypeLink:
		return hardLink(t, hdr.Linkname, pfd, base)
	default:
		u.logger.Debug("layer entry of unknown type skipped", "entry", hdr.Name, "type", string(hdr.Typeflag))
		meta.keep(&meta.Skipped, name)
		return nil
	}
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

// mkdir makes the directory name, replacing a non-directory of the same
// name written earlier in the layer.
func (u *unpacker) mkdir(t *tree, name string) error {
	pfd, base, st, ok, err := t.lstatEntry(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	if ok {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return err
		}
	}
	return unix.Mkdirat(pfd, base, 0o700)
}

// mode is the permission bits an entry gets on disk.
func (u *unpacker) mode(m int64) uint32 {
	p := uint32(m) & 0o7777 &^ 0o022
	if !u.keepSetuid {
		p &^= unix.S_ISUID | unix.S_ISGID
	}
	return p
}

// modeExtra converts the setuid, setgid and sticky bits of a unix mode to
// their os.FileMode flags.
func modeExtra(p uint32) os.FileMode {
	var m os.FileMode
	if p&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if p&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if p&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// setAttrs sets a directory's final mode and mtime. A directory that a
// later entry replaced with something else is left alone; chmod is only
// issued on something lstat has just shown to be a directory, in a parent
// reached without symlinks, and nothing else writes to the tree meanwhile.
func setAttrs(t *tree, name string, mode uint32, mtime unix.Timespec) error {
	pfd, base, err := t.parent(name, false)
	if err != nil {
		return nil // a later entry replaced a parent: nothing to set
	}
	defer unix.Close(pfd)
	st, ok, err := lstatAt(pfd, base)
	if err != nil || !ok || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return err
	}
	if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
		return err
	}
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

// parentError explains the errors openat2 gives when a path would pass
// through a symlink or a non-directory.
func parentError(err error) error {
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return fmt.Errorf("path passes through a symlink: %w", err)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("path passes through a non-directory: %w", err)
	}
	return err
}
