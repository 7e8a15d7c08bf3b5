/*
 * process.c: what the init sets for the sandbox's processes (host name,
 * loopback, cgroup namespace, limits, capabilities, seccomp), and the
 * command's own start, wait and end.
 */
#include "init.h"

/* loopback_up brings lo up in a fresh network namespace. */
static long loopback_up(void)
{
	long fd = SYS3(__NR_socket, 2 /* AF_INET */, 2 /* SOCK_DGRAM */ | O_CLOEXEC, 0);
	if (is_err(fd))
		return fail_sys(fd, "loopback", NULL, NULL);
	struct k_ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	memcpy(ifr.name, "lo", 3);
	long r = SYS3(__NR_ioctl, fd, SIOCGIFFLAGS, &ifr);
	if (is_err(r)) {
		fail_sys(r, "loopback flags", NULL, NULL);
	} else {
		ifr.flags |= 1; /* IFF_UP */
		r = SYS3(__NR_ioctl, fd, SIOCSIFFLAGS, &ifr);
		if (is_err(r))
			fail_sys(r, "loopback up", NULL, NULL);
	}
	SYS1(__NR_close, fd);
	return is_err(r) ? r : 0;
}

/* setup_process sets what the sandbox's processes inherit from the init:
 * host name, loopback, cgroup namespace, resource limits, umask. */
long setup_process(const struct plan *p)
{
	long r;
	if (p->hostname[0] && is_err(r = SYS2(__NR_sethostname, p->hostname, str_len(p->hostname))))
		return fail_sys(r, "sethostname", NULL, NULL);
	if (p->loopback_up && is_err(r = loopback_up()))
		return r;
	/* The init was born in the sandbox's cgroup: make it the root of what
	 * the sandbox sees. */
	if (p->cgroup_ns && is_err(r = SYS1(__NR_unshare, CLONE_NEWCGROUP)))
		return fail_sys(r, "unshare cgroup namespace", NULL, NULL);
	for (size_t i = 0; i < p->nrlimits; i++) {
		struct rlimit64 lim = {.rlim_cur = p->rlimits[i].cur, .rlim_max = p->rlimits[i].max};
		r = SYS4(__NR_prlimit64, 0, p->rlimits[i].resource, &lim, NULL);
		if (is_err(r)) {
			char num[24];
			struct buf b;
			buf_init(&b, num, sizeof num);
			buf_uint(&b, p->rlimits[i].resource);
			return fail_sys(r, "setrlimit ", num, NULL);
		}
	}
	SYS1(__NR_umask, p->umask);
	return 0;
}

/* look_path finds name in the PATH of env, inside the sandbox's root, as
 * Go's exec.LookPath would there, into out (PATH_MAX bytes); except that
 * an empty element means the working directory, as POSIX says, and so
 * does an absent or empty PATH: REv2 leaves lookup without PATH to the
 * server, and v2.2 and older resolved an unqualified argv[0] as a file
 * of the action's own (there, relative to the input root). */
long look_path(const struct plan *p, char *out, size_t cap)
{
	const char *name = p->args[0];
	if (str_has_char(name, '/')) {
		if (str_len(name) >= cap)
			return fail_sys(-ENAMETOOLONG, "start ", name, NULL);
		memcpy(out, name, str_len(name) + 1);
		return 0;
	}
	const char *path = "";
	for (size_t i = 0; i < p->nenv; i++) {
		if (str_has_prefix(p->env[i], "PATH="))
			path = p->env[i] + 5;
	}
	/* Room for any one candidate: the directory, cwd, name and ".". */
	size_t room = str_len(p->cwd) + str_len(path) + str_len(name) + 8;
	char *joined = alloc(room), *clean = alloc(room);
	if (!joined || !clean)
		return fail_sys(-ENOMEM, "look up ", name, NULL);
	for (const char *s = path;;) {
		const char *e = s;
		while (*e && *e != ':')
			e++;
		size_t dlen = (size_t)(e - s);
		struct buf j;
		buf_init(&j, joined, room);
		if (dlen == 0 || s[0] != '/') {
			buf_str(&j, p->cwd);
			buf_str(&j, "/");
		}
		if (dlen == 0)
			buf_str(&j, ".");
		buf_mem(&j, s, dlen);
		buf_str(&j, "/");
		buf_str(&j, name);
		path_clean(joined, clean);
		struct stat st;
		if (!is_err(SYS4(__NR_newfstatat, AT_FDCWD, clean, &st, 0)) && (st.st_mode & 0170000) == 0100000 &&
		    (st.st_mode & 0111) && str_len(clean) < cap) {
			memcpy(out, clean, str_len(clean) + 1);
			return 0;
		}
		if (!*e)
			break;
		s = e + 1;
	}
	fail_msg(-ENOENT, "executable ", NULL, NULL);
	buf_quote(&err_msg, name);
	buf_str(&err_msg, " not found in PATH ");
	buf_quote(&err_msg, path);
	err_not_started = 1;
	return -ENOENT;
}

/* apply_capabilities sets the init's bounding and inheritable sets to the
 * plan's, leaving its effective and permitted sets (it still needs
 * CAP_SETUID and friends to start the command). A command started as
 * container root then gets exactly the bounding set; one started as
 * another user gets the ambient set. */
long apply_capabilities(const struct plan *p)
{
	long r;
	for (uint32_t c = 0; c <= p->last_cap && c < 64; c++) {
		if (p->bounding & (1ull << c))
			continue;
		if (is_err(r = SYS2(__NR_prctl, PR_CAPBSET_DROP, c))) {
			char num[24];
			struct buf b;
			buf_init(&b, num, sizeof num);
			buf_uint(&b, c);
			return fail_sys(r, "drop bounding capability ", num, NULL);
		}
	}
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	if (is_err(r = SYS2(__NR_capget, &hdr, data)))
		return fail_sys(r, "capget", NULL, NULL);
	/* Ambient capabilities must be permitted and inheritable; the command
	 * raises them itself after changing user. */
	uint64_t inh = p->inheritable | (p->ambient & p->bounding);
	data[0].inheritable = (uint32_t)inh;
	data[1].inheritable = (uint32_t)(inh >> 32);
	if (is_err(r = SYS2(__NR_capset, &hdr, data)))
		return fail_sys(r, "capset", NULL, NULL);
	return 0;
}

/* load_seccomp installs the plan's filter. no_new_privs must be set. */
long load_seccomp(const struct plan *p)
{
	if (p->seccomp_len == 0)
		return 0;
	if (p->seccomp_len % sizeof(struct sock_filter) || p->seccomp_len / sizeof(struct sock_filter) > 0xffff)
		return fail_msg(-EINVAL, "seccomp: malformed program", NULL, NULL);
	/* Copy into aligned instructions (the wire holds them little-endian,
	 * in the kernel's layout). */
	struct sock_filter *insns = alloc(p->seccomp_len);
	if (!insns)
		return fail_sys(-ENOMEM, "seccomp", NULL, NULL);
	memcpy(insns, p->seccomp, p->seccomp_len);
	struct sock_fprog prog = {.len = (unsigned short)(p->seccomp_len / sizeof *insns), .filter = insns};
	long r = SYS3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
	if (is_err(r))
		return fail_sys(r, "seccomp", NULL, NULL);
	if (r != 0)
		return fail_msg(-EINVAL, "seccomp: a thread could not be synchronised", NULL, NULL);
	return 0;
}

/* The command's process starts on a stack of its own in this process's
 * memory (see start_command), and leaves the errno of a failed start in
 * child_errno. */
static struct {
	const struct plan *plan;
	const char *argv0;
} child_args;
static volatile int child_errno;
#define CHILD_STACK 65536
#define STR_(x) #x
#define STR(x) STR_(x)
static char child_stack[CHILD_STACK] __attribute__((aligned(16), used));

/* child runs in the command's process, until its exec: a new session, the
 * plan's user and groups, ambient capabilities, its directory, then the
 * command (as Go's syscall.ForkExec does, in that order). It shares the
 * init's memory, so it writes nothing but its own stack and, on failure,
 * child_errno. */
static __attribute__((noreturn, used)) void child(void)
{
	const struct plan *p = child_args.plan;
	long r;
	uint64_t ambient = p->ambient & p->bounding;
	unsigned long empty = 0;
	if (is_err(r = SYS4(__NR_rt_sigprocmask, SIG_SETMASK, &empty, NULL, sizeof empty)))
		goto fail;
	if (is_err(r = SYS0(__NR_setsid)))
		goto fail;
	/* Keep the permitted set across the change of user, to raise the
	 * ambient capabilities from it. */
	if (ambient && is_err(r = SYS2(__NR_prctl, PR_SET_KEEPCAPS, 1)))
		goto fail;
	if (is_err(r = SYS2(__NR_setgroups, p->ngroups, p->ngroups ? p->groups : NULL)))
		goto fail;
	if (is_err(r = SYS1(__NR_setgid, p->gid)) || is_err(r = SYS1(__NR_setuid, p->uid)))
		goto fail;
	if (ambient) {
		struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct data[2];
		if (is_err(r = SYS2(__NR_capget, &hdr, data)))
			goto fail;
		data[0].permitted |= (uint32_t)ambient;
		data[1].permitted |= (uint32_t)(ambient >> 32);
		data[0].inheritable |= (uint32_t)ambient;
		data[1].inheritable |= (uint32_t)(ambient >> 32);
		if (is_err(r = SYS2(__NR_capset, &hdr, data)))
			goto fail;
		for (unsigned c = 0; c < 64; c++) {
			if ((ambient & (1ull << c)) &&
			    is_err(r = SYS5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0)))
				goto fail;
		}
	}
	if (p->cwd[0] && is_err(r = SYS1(__NR_chdir, p->cwd)))
		goto fail;
	for (int fd = 0; fd < 3; fd++)
		SYS3(__NR_fcntl, fd, F_SETFD, 0);
	r = SYS3(__NR_execve, child_args.argv0, p->args, p->env);
fail:
	child_errno = (int)-r;
	sys_exit(253);
}

/* clone_vfork starts child() in a new process that shares this one's
 * memory (CLONE_VM) on child_stack, and returns once it has exec'd or
 * exited (CLONE_VFORK), with its pid or a negative errno. As Go's and the C
 * library's spawn do: no page tables copied, no copy-on-write faults, no
 * address space torn down at the exec. Safe because the init is one
 * thread with no signal handler, and child() touches only its own stack
 * and child_errno. */
long clone_vfork(void);
__asm__(".text\n"
	"clone_vfork:\n"
	"	lea child_stack+" STR(CHILD_STACK) "(%rip), %rsi\n" /* newsp: the top, 16-byte aligned */
	"	mov $0x4111, %edi\n"                /* CLONE_VM|CLONE_VFORK|SIGCHLD */
	"	xor %edx, %edx\n"
	"	xor %r10d, %r10d\n"
	"	xor %r8d, %r8d\n"
	"	mov $56, %eax\n" /* __NR_clone */
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jnz 1f\n"
	"	xor %ebp, %ebp\n"
	"	call child\n"
	"	hlt\n"
	"1:	ret\n");

/* start_command starts the command. It returns its pid, or an error naming
 * the command when it could not be started. */
long start_command(const struct plan *p, const char *argv0)
{
	child_args.plan = p;
	child_args.argv0 = argv0;
	child_errno = 0;
	long pid = clone_vfork();
	if (is_err(pid))
		return fail_sys(pid, "start ", p->args[0], NULL);
	if (child_errno == 0)
		return pid;
	int ws;
	RETRY(SYS4(__NR_wait4, pid, &ws, 0, NULL));
	err_not_started = 1;
	return fail_sys(-child_errno, "start ", p->args[0], NULL);
}

/* terminate_requested reports whether the spawner has written
 * initplan.Terminate ('T') to the control pipe, without waiting. */
int terminate_requested(void)
{
	struct pollfd fds = {.fd = CONTROL_FD, .events = POLLIN};
	long n = RETRY(SYS3(__NR_poll, &fds, 1, 0));
	if (n <= 0 || !(fds.revents & POLLIN))
		return 0;
	char b = 0;
	return SYS3(__NR_read, CONTROL_FD, &b, 1) == 1 && b == 'T';
}

/* wait_command waits for the command (pid), kills whatever it left behind
 * in the sandbox, and reports how it ended with the resources all of them
 * used. */
void wait_command(long pid, struct status *st)
{
	for (;;) {
		int ws = 0;
		long w = RETRY(SYS4(__NR_wait4, -1, &ws, 0, NULL));
		if (is_err(w))
			break; /* no child left: cannot happen while pid runs */
		if (w != pid)
			continue;
		if ((ws & 0x7f) != 0 && (ws & 0x7f) != 0x7f) {
			st->signal = ws & 0x7f;
			st->exit_code = -1;
		} else {
			st->exit_code = (ws >> 8) & 0xff;
		}
		break;
	}
	/* The command is gone: so is everything it left behind. */
	SYS2(__NR_kill, -1, SIGKILL);
	while (!is_err(RETRY(SYS4(__NR_wait4, -1, NULL, 0, NULL))))
		;
	struct k_rusage ru;
	if (!is_err(SYS2(__NR_getrusage, -1 /* RUSAGE_CHILDREN */, &ru))) {
		st->user_nanos = ru.utime_sec * 1000000000 + ru.utime_usec * 1000;
		st->system_nanos = ru.stime_sec * 1000000000 + ru.stime_usec * 1000;
		st->max_rss_kib = ru.maxrss;
		st->minor_faults = ru.minflt;
		st->major_faults = ru.majflt;
		st->voluntary = ru.nvcsw;
		st->involuntary = ru.nivcsw;
	}
}
