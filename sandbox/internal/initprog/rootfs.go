package main

import (
	"errors"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// rootfsBuilder assembles a sandbox's mount tree inside the init's fresh
// mount namespace, then pivots into it. Every destination is resolved
// inside the new root with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS), so
// a symlink planted in a rootfs (at /proc, /dev, or any mount destination)
// is refused rather than followed out of the rootfs, and mounts are made
// onto the resolved descriptor (never onto a path that could change
// meanwhile). It is used by one init, on one goroutine.
type rootfsBuilder struct {
	plan   *initplan.Plan
	rootFd int            // O_PATH descriptor of the new root
	srcFds map[string]int // host sources, opened before anything is mounted
	fds    []int          // every descriptor opened, closed by close
}

func (r *rootfsBuilder) track(fd int) int {
	r.fds = append(r.fds, fd)
	return fd
}

func (r *rootfsBuilder) close() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}

// build sets up the whole tree and pivots into it; afterwards the process's
// root and cwd are the sandbox's "/".
func (r *rootfsBuilder) build() error {
	defer r.close()
	// Nothing we mount may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return wrap("make mounts slaves", err)
	}
	// Open every host-side source now, while the host's tree is still
	// visible: once /dev is covered (rootfs "/"), /dev/null would be ours.
	r.srcFds = map[string]int{}
	for _, m := range r.plan.Mounts {
		src := ""
		switch m.Kind {
		case initplan.MountBind:
			src = m.Source
		case initplan.MountMask:
			src = "/dev/null"
		default:
			continue
		}
		if _, ok := r.srcFds[src]; ok {
			continue
		}
		fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			err = wrap("open mount source "+src, err)
			if errors.Is(err, unix.ENOENT) {
				err = &missingSource{err}
			}
			return err
		}
		r.srcFds[src] = r.track(fd)
	}
	rootfs := r.plan.Rootfs
	if rootfs != "/" {
		if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return wrap("bind rootfs "+rootfs, err)
		}
	}
	fd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return wrap("open rootfs", err)
	}
	r.rootFd = r.track(fd)
	if r.plan.ReadonlyRoot {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(r.rootFd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return wrap("make rootfs read-only", err)
		}
	}
	for _, m := range r.plan.Mounts {
		if err := r.step(m); err != nil {
			return wrap(stepName(m.Kind)+" "+m.Dest, err)
		}
	}
	return r.pivot()
}

func stepName(k initplan.MountKind) string {
	switch k {
	case initplan.MountMask:
		return "mask"
	case initplan.MountReadonly:
		return "read-only"
	case initplan.MountSymlink:
		return "symlink"
	}
	return "mount"
}

func (r *rootfsBuilder) step(m initplan.Mount) error {
	switch m.Kind {
	case initplan.MountBind:
		src := r.srcFds[m.Source]
		var st unix.Stat_t
		if err := unix.Fstat(src, &st); err != nil {
			return err
		}
		return r.bindFrom(src, m.Dest, st.Mode&unix.S_IFMT != unix.S_IFDIR, m.Attrs)
	case initplan.MountFS:
		dst, err := r.resolve(m.Dest, true, false)
		if err != nil {
			return err
		}
		if err := unix.Mount(m.Source, fdPath(dst), m.FSType, uintptr(m.Flags), m.Data); err != nil {
			return wrap("mount "+m.FSType, err)
		}
		return nil
	case initplan.MountMask:
		return r.mask(m.Dest)
	case initplan.MountReadonly:
		return r.readonly(m.Dest)
	case initplan.MountSymlink:
		return r.symlink(m.Source, m.Dest)
	}
	return errors.New("unknown step")
}

// resolve opens dest inside the new root without following any symlink.
// With create, a missing destination (and its parents) is created, as a
// directory or, with file, an empty file.
func (r *rootfsBuilder) resolve(dest string, create, file bool) (int, error) {
	rel := strings.TrimPrefix(path.Clean(dest), "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(r.rootFd, rel, &how)
	if err == nil {
		return r.track(fd), nil
	}
	if errors.Is(err, unix.ELOOP) {
		return -1, errors.New(dest + " is or passes through a symlink: refused")
	}
	if !errors.Is(err, unix.ENOENT) || !create || rel == "." {
		return -1, wrap("resolve "+dest+" in rootfs", err)
	}
	parent, err := r.resolve(path.Dir("/"+rel), true, false)
	if err != nil {
		return -1, err
	}
	base := path.Base(rel)
	if file {
		nfd, err := unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, wrap("create mount point "+dest, err)
		}
		if err == nil {
			unix.Close(nfd)
		}
	} else if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, wrap("create mount point "+dest, err)
	}
	return r.resolve(dest, false, file)
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// bindFrom clones the mount tree at src (recursively: a non-recursive bind
// of a tree with locked submounts is refused in a user namespace), applies
// attrs to all of it, and attaches it at dest.
func (r *rootfsBuilder) bindFrom(src int, dest string, file bool, attrs uint64) error {
	dst, err := r.resolve(dest, true, file)
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return wrap("clone mount", err)
	}
	defer unix.Close(tree)
	if attrs != 0 {
		attr := unix.MountAttr{Attr_set: attrs}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return wrap("set mount attributes", err)
		}
	}
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return wrap("attach mount", err)
	}
	return nil
}

// symlink creates dest -> target unless dest exists.
func (r *rootfsBuilder) symlink(target, dest string) error {
	parent, err := r.resolve(path.Dir(dest), false, false)
	if err != nil {
		return err
	}
	// The O_PATH descriptor names the directory (a fresh tmpfs, say);
	// reopen it as a real directory for symlinkat.
	dir, err := unix.Openat(parent, ".", unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return wrap("open "+path.Dir(dest), err)
	}
	defer unix.Close(dir)
	if err := unix.Symlinkat(target, dir, path.Base(dest)); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// mask hides p: a read-only empty tmpfs over a directory, /dev/null over a
// file. Missing paths are skipped.
func (r *rootfsBuilder) mask(p string) error {
	fd, err := r.resolve(p, false, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.Mount("tmpfs", fdPath(fd), "tmpfs", unix.MS_RDONLY, "size=0")
	}
	return r.bindFrom(r.srcFds["/dev/null"], p, true, unix.MOUNT_ATTR_RDONLY)
}

// readonly re-binds p onto itself read-only. Missing paths are skipped.
func (r *rootfsBuilder) readonly(p string) error {
	fd, err := r.resolve(p, false, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	return r.bindFrom(fd, p, false, unix.MOUNT_ATTR_RDONLY)
}

// pivot makes the new root the process's root and detaches the old one. A
// rootfs of "/" is already the root of this mount namespace.
func (r *rootfsBuilder) pivot() error {
	if err := unix.Fchdir(r.rootFd); err != nil {
		return wrap("chdir rootfs", err)
	}
	if r.plan.Rootfs == "/" {
		return nil
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return wrap("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return wrap("detach old root", err)
	}
	return unix.Chdir("/")
}
