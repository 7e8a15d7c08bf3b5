/*
 * Command paddock-init is the first process of every native sandbox. The
 * sandbox spawner (package sandbox) runs it from a sealed memfd holding
 * this program, embedded in the paddock binary (sandbox/internal/initbin),
 * cloned into new user, mount, pid, ipc, uts and (usually) network
 * namespaces and born inside the sandbox's cgroup.
 *
 * It starts once per action, so it is freestanding C on raw system calls:
 * no libc and no language runtime to start (an empty Go program costs
 * 5 to 6 ms of CPU to start and exit on a VM where each CPUID and page
 * fault traps, an empty freestanding C one under 0.5 ms), one thread, and
 * nothing it does not need. Everything that can be decided before the
 * clone is decided by the spawner and arrives as plain values (package
 * initplan); the init resolves nothing on the host by name except the
 * bind sources it opens.
 *
 * Its life:
 *
 *  1. read a plan from fd 3, the control pipe (a warm init waits here; if
 *     the pipe closes first, it exits quietly);
 *  2. build the mount tree and pivot_root into it (rootfs.c);
 *  3. hostname, loopback up, a fresh cgroup namespace rooted at its
 *     cgroup, rlimits, umask, find the command in PATH;
 *  4. no_new_privs, dumpable 0, bounding/inheritable capabilities, the
 *     seccomp filter, close-on-exec on every descriptor above 2;
 *  5. fork+exec the command as the plan's user, in a new session; if the
 *     spawner has meanwhile written initplan.Terminate to the control
 *     pipe, pass SIGTERM to every process of the sandbox (the spawner
 *     signals the sandbox's processes itself after that, but could have
 *     looked before the command existed);
 *  6. reap every process until the command exits, then SIGKILL everything
 *     left, reap it, close its output pipes and write a status to fd 4
 *     (the spawner answers on that, before the init's own exit).
 *
 * When the init exits, the kernel kills anything left in the pid
 * namespace, and the mount namespace (with every mount made here) goes
 * with it. As pid 1 of its namespace with no signal handler, the init
 * cannot be signalled by the sandbox's own processes.
 */
#include "init.h"

char err_mem[ERR_MAX];
struct buf err_msg = {err_mem, 0, sizeof err_mem};
int err_missing_source;
int err_not_started;

static void put3(const char *a, const char *b, const char *c)
{
	buf_init(&err_msg, err_mem, sizeof err_mem);
	if (a)
		buf_str(&err_msg, a);
	if (b)
		buf_str(&err_msg, b);
	if (c)
		buf_str(&err_msg, c);
}

long fail_sys(long err, const char *a, const char *b, const char *c)
{
	put3(a, b, c);
	if (err_msg.len)
		buf_str(&err_msg, ": ");
	buf_errno(&err_msg, err);
	return err;
}

long fail_msg(long err, const char *a, const char *b, const char *c)
{
	put3(a, b, c);
	return err;
}

void wrap_err(const char *a, const char *b)
{
	static char old[sizeof err_mem];
	memcpy(old, err_mem, err_msg.len + 1);
	buf_init(&err_msg, err_mem, sizeof err_mem);
	if (a)
		buf_str(&err_msg, a);
	if (b)
		buf_str(&err_msg, b);
	buf_str(&err_msg, ": ");
	buf_str(&err_msg, old);
}

/* read_full reads until b is full or the pipe ends; it returns how much it
 * read, or a negative errno. */
static long read_full(int fd, unsigned char *b, size_t n)
{
	size_t got = 0;
	while (got < n) {
		long m = RETRY(SYS3(__NR_read, fd, b + got, n - got));
		if (is_err(m))
			return m;
		if (m == 0)
			break;
		got += (size_t)m;
	}
	return (long)got;
}

/* read_plan reads one framed plan from the control pipe. It returns 1 when
 * the pipe closed before a plan (a warm init that was never used). */
static long read_plan(struct plan *p)
{
	unsigned char header[FRAME_HEADER];
	long n = read_full(CONTROL_FD, header, sizeof header);
	if (is_err(n))
		return fail_sys(n, "read plan", NULL, NULL);
	if (n < (long)sizeof header)
		return 1;
	uint32_t size = header[0] | header[1] << 8 | header[2] << 16 | (uint32_t)header[3] << 24;
	if (size == 0 || size > MAX_PLAN_SIZE) {
		put3("malformed init plan at byte 0: frame length ", NULL, NULL);
		buf_uint(&err_msg, size);
		buf_str(&err_msg, " is out of range (1 to 67108864)");
		return -EINVAL;
	}
	unsigned char *b = alloc(size);
	if (!b)
		return fail_sys(-ENOMEM, "read plan", NULL, NULL);
	n = read_full(CONTROL_FD, b, size);
	if (is_err(n))
		return fail_sys(n, "read plan", NULL, NULL);
	if (n < (long)size)
		return fail_msg(-EPIPE, "read plan: control pipe closed in the middle of a plan", NULL, NULL);
	buf_init(&err_msg, err_mem, sizeof err_mem);
	if (decode_plan(b, size, p, &err_msg) < 0)
		return -EINVAL;
	return 0;
}

/* run_sandbox sets the sandbox up as p says, runs its command to the end
 * and fills st. An error means the command never ran. */
static long run_sandbox(const struct plan *p, struct status *st)
{
	long r = build_rootfs(p);
	if (is_err(r)) {
		wrap_err("rootfs", NULL);
		return r;
	}
	if (is_err(r = setup_process(p)))
		return r;
	static char argv0[4096];
	if (is_err(r = look_path(p, argv0, sizeof argv0)))
		return r;
	if (is_err(r = SYS2(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1)))
		return fail_sys(r, "no_new_privs", NULL, NULL);
	if (is_err(r = SYS2(__NR_prctl, PR_SET_DUMPABLE, 0)))
		return fail_sys(r, "dumpable", NULL, NULL);
	if (is_err(r = apply_capabilities(p)) || is_err(r = load_seccomp(p)))
		return r;
	if (is_err(r = SYS3(__NR_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC)))
		return fail_sys(r, "close_range", NULL, NULL);
	long pid = start_command(p, argv0);
	if (is_err(pid))
		return pid;
	if (terminate_requested())
		SYS2(__NR_kill, -1, SIGTERM);
	wait_command(pid, st);
	return 0;
}

/* report closes the command's output pipes (every process of the sandbox
 * is gone; dropping these copies lets the spawner's readers finish) and
 * writes st to the status pipe. */
static void report(const struct status *st)
{
	static unsigned char out[sizeof err_mem + 160];
	SYS1(__NR_close, 1);
	SYS1(__NR_close, 2);
	size_t n = encode_status(st, out);
	for (size_t done = 0; done < n;) {
		long w = RETRY(SYS3(__NR_write, STATUS_FD, out + done, n - done));
		if (is_err(w))
			break;
		done += (size_t)w;
	}
	SYS1(__NR_close, STATUS_FD);
}

__attribute__((noreturn, used)) void init_main(void)
{
	static struct plan plan;
	struct status st = {0};
	long r = read_plan(&plan);
	if (r == 1)
		sys_exit(0); /* a warm init that was never used */
	if (!is_err(r))
		r = run_sandbox(&plan, &st);
	if (is_err(r)) {
		st.error = err_mem;
		st.not_started = err_not_started;
		st.missing_source = err_missing_source;
	}
	report(&st);
	sys_exit(is_err(r) ? 1 : 0);
}

/* The entry point: align the stack as the ABI wants it at a call. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	and $-16, %rsp\n"
	"	call init_main\n"
	"	hlt\n");
