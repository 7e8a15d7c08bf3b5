/*
 * rootfs.c: the sandbox's mount tree, built inside the init's fresh mount
 * namespace, then pivoted into.
 *
 * Every destination is resolved inside the new root with
 * openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS), so a symlink planted in a
 * rootfs (at /proc, /dev, or any mount destination) is refused rather than
 * followed out of the rootfs, and mounts are made onto the resolved
 * descriptor, never onto a path that could change meanwhile. Host sources
 * are opened before anything is mounted, while the host's tree is still
 * visible: once /dev is covered (rootfs "/"), /dev/null would be ours.
 */
#include "init.h"

static const struct plan *plan;
static int root_fd = -1;

/* Every descriptor the build opens stays open until it ends, and is then
 * closed at once (close_range from FIRST_BUILD_FD): the init holds
 * nothing else above the control and status pipes. */
#define FIRST_BUILD_FD (STATUS_FD + 1)

/* The host sources, by path. */
struct source {
	const char *path;
	int fd;
};
static struct source *sources;
static size_t nsources;

static int source_fd(const char *path)
{
	for (size_t i = 0; i < nsources; i++) {
		if (str_eq(sources[i].path, path))
			return sources[i].fd;
	}
	return -1;
}

void path_clean(const char *in, char *out)
{
	int rooted = in[0] == '/';
	size_t o = 0, floor = 0; /* floor: where ".." may no longer pop */
	if (rooted)
		out[o++] = '/', floor = 1;
	for (const char *s = in; *s;) {
		while (*s == '/')
			s++;
		const char *e = s;
		while (*e && *e != '/')
			e++;
		size_t n = (size_t)(e - s);
		if (n == 0 || (n == 1 && s[0] == '.')) {
			/* nothing */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (o > floor) {
				while (o > floor && out[o - 1] != '/')
					o--;
				if (o > floor)
					o--; /* the slash before the element */
				else if (rooted)
					o = 1;
			} else if (!rooted) {
				if (o > 0)
					out[o++] = '/';
				out[o++] = '.', out[o++] = '.';
				floor = o;
			}
		} else {
			if (o > 0 && out[o - 1] != '/')
				out[o++] = '/';
			memcpy(out + o, s, n);
			o += n;
		}
		s = e;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = 0;
}

/* split returns the cleaned parent ("/" at the top) of the rooted, clean
 * path p in dir, and a pointer to its last element. */
static const char *split(const char *p, char *dir)
{
	size_t n = str_len(p);
	while (n > 0 && p[n - 1] != '/')
		n--;
	const char *base = p + n;
	if (n <= 1) {
		dir[0] = '/', dir[1] = 0;
	} else {
		memcpy(dir, p, n - 1);
		dir[n - 1] = 0;
	}
	return base;
}

static void fd_path(int fd, char out[32])
{
	struct buf b;
	buf_init(&b, out, 32);
	buf_str(&b, "/proc/self/fd/");
	buf_uint(&b, (unsigned long)fd);
}

/* resolve opens dest inside the new root without following any symlink.
 * With create, a missing destination (and its parents) is created, as a
 * directory or, with file, an empty file. */
static long resolve(const char *dest, int create, int file)
{
	size_t n = str_len(dest);
	char *clean = alloc(n + 3), *rooted = alloc(n + 3);
	if (!clean || !rooted)
		return fail_sys(-ENOMEM, "resolve ", dest, NULL);
	rooted[0] = '/';
	memcpy(rooted + 1, dest, n + 1);
	path_clean(rooted, clean); /* "/" + dest: clean is rooted */
	const char *rel = clean[1] ? clean + 1 : ".";
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = SYS4(__NR_openat2, root_fd, rel, &how, sizeof how);
	if (!is_err(fd))
		return fd;
	if (fd == -ELOOP)
		return fail_msg(-ELOOP, dest, " is or passes through a symlink: refused", NULL);
	if (fd != -ENOENT || !create || str_eq(rel, "."))
		return fail_sys(fd, "resolve ", dest, " in rootfs");
	char *dir = alloc(n + 3);
	if (!dir)
		return fail_sys(-ENOMEM, "resolve ", dest, NULL);
	const char *base = split(clean, dir);
	long parent = resolve(dir, 1, 0);
	if (is_err(parent))
		return parent;
	long r;
	if (file) {
		r = SYS4(__NR_openat, parent, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (!is_err(r))
			SYS1(__NR_close, r);
	} else {
		r = SYS3(__NR_mkdirat, parent, base, 0755);
	}
	if (is_err(r) && r != -EEXIST)
		return fail_sys(r, "create mount point ", dest, NULL);
	return resolve(dest, 0, file);
}

/* bind_from clones the mount tree at src (recursively: a non-recursive
 * bind of a tree with locked submounts is refused in a user namespace),
 * applies attrs to all of it, and attaches it at dest. */
static long bind_from(int src, const char *dest, int file, uint64_t attrs)
{
	long dst = resolve(dest, 1, file);
	if (is_err(dst))
		return dst;
	long tree = SYS3(__NR_open_tree, src, "",
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (is_err(tree))
		return fail_sys(tree, "clone mount", NULL, NULL);
	long r = 0;
	if (attrs) {
		struct mount_attr attr = {.attr_set = attrs};
		r = SYS5(__NR_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
		if (is_err(r))
			fail_sys(r, "set mount attributes", NULL, NULL);
	}
	if (!is_err(r)) {
		r = SYS5(__NR_move_mount, tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
		if (is_err(r))
			fail_sys(r, "attach mount", NULL, NULL);
	}
	SYS1(__NR_close, tree);
	return is_err(r) ? r : 0;
}

static int is_dir(long fd, long *err)
{
	struct stat st;
	*err = SYS2(__NR_fstat, fd, &st);
	return !is_err(*err) && (st.st_mode & 0170000) == 0040000;
}

/* mount_fs mounts a fresh filesystem at m->dest. */
static long mount_fs(const struct mount_step *m)
{
	long dst = resolve(m->dest, 1, 0);
	if (is_err(dst))
		return dst;
	char target[32];
	fd_path((int)dst, target);
	long r = SYS5(__NR_mount, m->source, target, m->fstype, m->flags, m->data[0] ? m->data : NULL);
	if (is_err(r))
		return fail_sys(r, "mount ", m->fstype, NULL);
	return 0;
}

/* symlink creates dest -> target unless dest exists. */
static long symlink(const char *target, const char *dest)
{
	size_t n = str_len(dest);
	char *clean = alloc(n + 3), *dir = alloc(n + 3);
	if (!clean || !dir)
		return fail_sys(-ENOMEM, "symlink", NULL, NULL);
	path_clean(dest, clean);
	const char *base = split(clean, dir);
	long parent = resolve(dir, 0, 0);
	if (is_err(parent))
		return parent;
	/* The O_PATH descriptor names the directory (a fresh tmpfs, say);
	 * reopen it as a real directory for symlinkat. */
	long d = SYS4(__NR_openat, parent, ".", O_DIRECTORY | O_CLOEXEC, 0);
	if (is_err(d))
		return fail_sys(d, "open ", dir, NULL);
	long r = SYS3(__NR_symlinkat, target, d, base);
	SYS1(__NR_close, d);
	if (is_err(r) && r != -EEXIST)
		return fail_sys(r, NULL, NULL, NULL);
	return 0;
}

/* mask hides p: a read-only empty tmpfs over a directory, /dev/null over a
 * file. A missing p is skipped. */
static long mask(const char *p)
{
	long fd = resolve(p, 0, 0), err;
	if (fd == -ENOENT)
		return 0;
	if (is_err(fd))
		return fd;
	if (is_dir(fd, &err)) {
		char target[32];
		fd_path((int)fd, target);
		long r = SYS5(__NR_mount, "tmpfs", target, "tmpfs", MS_RDONLY, "size=0");
		return is_err(r) ? fail_sys(r, NULL, NULL, NULL) : 0;
	}
	if (is_err(err))
		return fail_sys(err, NULL, NULL, NULL);
	return bind_from(source_fd("/dev/null"), p, 1, MOUNT_ATTR_RDONLY);
}

/* readonly re-binds p onto itself read-only. A missing p is skipped. */
static long readonly(const char *p)
{
	long fd = resolve(p, 0, 0);
	if (fd == -ENOENT)
		return 0;
	if (is_err(fd))
		return fd;
	return bind_from((int)fd, p, 0, MOUNT_ATTR_RDONLY);
}

static long step(const struct mount_step *m)
{
	long err;
	int src, dir;
	switch (m->kind) {
	case MOUNT_BIND:
		src = source_fd(m->source);
		dir = is_dir(src, &err);
		if (is_err(err))
			return fail_sys(err, NULL, NULL, NULL);
		return bind_from(src, m->dest, !dir, m->attrs);
	case MOUNT_FS:
		return mount_fs(m);
	case MOUNT_MASK:
		return mask(m->dest);
	case MOUNT_READONLY:
		return readonly(m->dest);
	case MOUNT_SYMLINK:
		return symlink(m->source, m->dest);
	}
	return fail_msg(-EINVAL, "unknown step", NULL, NULL);
}

static const char *step_name(unsigned kind)
{
	switch (kind) {
	case MOUNT_MASK:
		return "mask ";
	case MOUNT_READONLY:
		return "read-only ";
	case MOUNT_SYMLINK:
		return "symlink ";
	}
	return "mount ";
}

/* open_sources opens every host-side source of the plan's mounts. */
static long open_sources(void)
{
	sources = alloc((2 * plan->nmounts + 1) * sizeof *sources);
	if (!sources)
		return fail_sys(-ENOMEM, "open mount sources", NULL, NULL);
	for (size_t i = 0; i < plan->nmounts; i++) {
		const char *src;
		switch (plan->mounts[i].kind) {
		case MOUNT_BIND:
			src = plan->mounts[i].source;
			break;
		case MOUNT_MASK:
			src = "/dev/null";
			break;
		default:
			continue;
		}
		if (source_fd(src) >= 0)
			continue;
		long fd = SYS4(__NR_openat, AT_FDCWD, src, O_PATH | O_CLOEXEC, 0);
		if (is_err(fd)) {
			err_missing_source = fd == -ENOENT;
			return fail_sys(fd, "open mount source ", src, NULL);
		}
		sources[nsources].path = src;
		sources[nsources++].fd = (int)fd;
	}
	return 0;
}

/* pivot makes the new root the process's root and detaches the old one.
 * A rootfs of "/" is already the root of this mount namespace. */
static long pivot(void)
{
	long r = SYS1(__NR_fchdir, root_fd);
	if (is_err(r))
		return fail_sys(r, "chdir rootfs", NULL, NULL);
	if (str_eq(plan->rootfs, "/"))
		return 0;
	if (is_err(r = SYS2(__NR_pivot_root, ".", ".")))
		return fail_sys(r, "pivot_root", NULL, NULL);
	if (is_err(r = SYS2(__NR_umount2, ".", MNT_DETACH)))
		return fail_sys(r, "detach old root", NULL, NULL);
	if (is_err(r = SYS1(__NR_chdir, "/")))
		return fail_sys(r, "chdir /", NULL, NULL);
	return 0;
}

static long build(void)
{
	/* Nothing mounted here may propagate back to the host. */
	long r = SYS5(__NR_mount, "", "/", "", MS_SLAVE | MS_REC, NULL);
	if (is_err(r))
		return fail_sys(r, "make mounts slaves", NULL, NULL);
	if (is_err(r = open_sources()))
		return r;
	const char *rootfs = plan->rootfs;
	if (!str_eq(rootfs, "/")) {
		r = SYS5(__NR_mount, rootfs, rootfs, "", MS_BIND | MS_REC, NULL);
		if (is_err(r))
			return fail_sys(r, "bind rootfs ", rootfs, NULL);
	}
	r = SYS4(__NR_openat, AT_FDCWD, rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (is_err(r))
		return fail_sys(r, "open rootfs", NULL, NULL);
	root_fd = (int)r;
	if (plan->readonly_root) {
		struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
		r = SYS5(__NR_mount_setattr, root_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
		if (is_err(r))
			return fail_sys(r, "make rootfs read-only", NULL, NULL);
	}
	for (size_t i = 0; i < plan->nmounts; i++) {
		const struct mount_step *m = &plan->mounts[i];
		if (is_err(r = step(m))) {
			wrap_err(step_name(m->kind), m->dest);
			return r;
		}
	}
	return pivot();
}

long build_rootfs(const struct plan *p)
{
	plan = p;
	long r = build();
	SYS3(__NR_close_range, FIRST_BUILD_FD, ~0u, 0);
	return r;
}
