package sandbox

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rootfsBuilder assembles a sandbox's mount tree inside the init's fresh
// mount namespace, before pivot_root. Every destination is resolved inside
// the new root with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS), so a
// symlink planted in a rootfs (at /proc, /dev, or any mount destination) is
// refused rather than followed out of the rootfs, and mounts are made onto
// the resolved descriptor (never onto a path that could change meanwhile).
// It is used by one init, on one goroutine.
type rootfsBuilder struct {
	spec   *specs.Spec
	bundle string
	rootfs string // host path of the rootfs, absolute
	rootFd int    // O_PATH descriptor of the new root
	srcFds map[string]int
	fds    []int // every descriptor opened, closed by close
}

// defaultDevices are bind-mounted from the host into a /dev tmpfs.
var defaultDevices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// defaultDevSymlinks are created in a /dev tmpfs. Constant table.
var defaultDevSymlinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
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
		return fmt.Errorf("make mounts slaves: %w", err)
	}
	// Open every host-side source now, while the host's tree is still
	// visible: once /dev is covered (rootfs "/"), /dev/null would be ours.
	r.srcFds = map[string]int{}
	openSrc := func(p string) error {
		if _, ok := r.srcFds[p]; ok {
			return nil
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open mount source %s: %w", p, err)
		}
		r.srcFds[p] = r.track(fd)
		return nil
	}
	for _, m := range r.spec.Mounts {
		if isBind(m) {
			if err := openSrc(r.bindSource(m)); err != nil {
				return err
			}
		}
	}
	for _, d := range defaultDevices {
		if err := openSrc("/dev/" + d); err != nil {
			return err
		}
	}
	for _, d := range r.spec.Linux.Devices {
		if err := openSrc(d.Path); err != nil {
			return err
		}
	}

	if r.rootfs != "/" {
		if err := unix.Mount(r.rootfs, r.rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind rootfs %s: %w", r.rootfs, err)
		}
	}
	fd, err := unix.Open(r.rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	r.rootFd = r.track(fd)
	if r.spec.Root.Readonly {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(r.rootFd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	devTmpfs := false
	for _, m := range r.spec.Mounts {
		if err := r.mount(m); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if path.Clean(m.Destination) == "/dev" && m.Type == "tmpfs" {
			devTmpfs = true
		}
	}
	if devTmpfs {
		if err := r.populateDev(); err != nil {
			return err
		}
	}
	for _, d := range r.spec.Linux.Devices {
		if err := r.bindFrom(r.srcFds[d.Path], d.Path, false, 0); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	for _, p := range r.spec.Linux.MaskedPaths {
		if err := r.mask(p); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range r.spec.Linux.ReadonlyPaths {
		if err := r.readonly(p); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	return r.pivot()
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// bindSource returns the host path of a bind mount; relative sources are
// relative to the bundle, as in runc.
func (r *rootfsBuilder) bindSource(m specs.Mount) string {
	if filepath.IsAbs(m.Source) {
		return filepath.Clean(m.Source)
	}
	return filepath.Join(r.bundle, m.Source)
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
		return -1, fmt.Errorf("%s is or passes through a symlink: refused", dest)
	}
	if !errors.Is(err, unix.ENOENT) || !create || rel == "." {
		return -1, fmt.Errorf("resolve %s in rootfs: %w", dest, err)
	}
	parent, err := r.resolve(path.Dir("/"+rel), true, false)
	if err != nil {
		return -1, err
	}
	base := path.Base(rel)
	if file {
		nfd, err := unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create mount point %s: %w", dest, err)
		}
		if err == nil {
			unix.Close(nfd)
		}
	} else if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create mount point %s: %w", dest, err)
	}
	return r.resolve(dest, false, file)
}

// mountFlags splits runtime-spec mount options into mount(2) flags, mount
// attributes (for binds) and filesystem data.
func mountFlags(opts []string) (flags uintptr, attrs uint64, data string) {
	var rest []string
	for _, o := range opts {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
			attrs |= unix.MOUNT_ATTR_RDONLY
		case "rw", "bind", "rbind", "private", "rprivate", "slave", "rslave", "shared", "rshared":
		case "nosuid":
			flags |= unix.MS_NOSUID
			attrs |= unix.MOUNT_ATTR_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
			attrs |= unix.MOUNT_ATTR_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
			attrs |= unix.MOUNT_ATTR_NOEXEC
		case "sync":
			flags |= unix.MS_SYNCHRONOUS
		case "dirsync":
			flags |= unix.MS_DIRSYNC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "strictatime":
			flags |= unix.MS_STRICTATIME
		default:
			rest = append(rest, o)
		}
	}
	return flags, attrs, strings.Join(rest, ",")
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func (r *rootfsBuilder) mount(m specs.Mount) error {
	flags, attrs, data := mountFlags(m.Options)
	if isBind(m) {
		src := r.srcFds[r.bindSource(m)]
		var st unix.Stat_t
		if err := unix.Fstat(src, &st); err != nil {
			return err
		}
		return r.bindFrom(src, m.Destination, st.Mode&unix.S_IFMT != unix.S_IFDIR, attrs)
	}
	switch m.Type {
	case "proc", "tmpfs", "devpts", "mqueue", "sysfs":
	default:
		return fmt.Errorf("filesystem type %q is not supported", m.Type)
	}
	dst, err := r.resolve(m.Destination, true, false)
	if err != nil {
		return err
	}
	if err := unix.Mount(m.Source, fdPath(dst), m.Type, flags, data); err != nil {
		return fmt.Errorf("mount %s: %w", m.Type, err)
	}
	return nil
}

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
		return fmt.Errorf("clone mount: %w", err)
	}
	defer unix.Close(tree)
	if attrs != 0 {
		attr := unix.MountAttr{Attr_set: attrs}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("set mount attributes: %w", err)
		}
	}
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach mount: %w", err)
	}
	return nil
}

func (r *rootfsBuilder) populateDev() error {
	for _, d := range defaultDevices {
		if err := r.bindFrom(r.srcFds["/dev/"+d], "/dev/"+d, true, 0); err != nil {
			return fmt.Errorf("device /dev/%s: %w", d, err)
		}
	}
	dev, err := r.resolve("/dev", false, false)
	if err != nil {
		return err
	}
	// The O_PATH descriptor of /dev names the tmpfs; reopen it as a real
	// directory for symlinkat.
	dir, err := unix.Openat(dev, ".", unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev: %w", err)
	}
	defer unix.Close(dir)
	for _, l := range defaultDevSymlinks {
		if err := unix.Symlinkat(l[0], dir, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
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
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if r.rootfs == "/" {
		return nil
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}
