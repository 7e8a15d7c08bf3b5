/*
 * sys.h: the little of a C library the sandbox init needs, on raw Linux
 * system calls (x86_64). The init is freestanding: no libc, so no start-up
 * code of its own beyond _start, no CPU feature probing (each CPUID traps
 * to the hypervisor on a VM), no threads, no heap but what it maps.
 * Constants and structure layouts come from the kernel's UAPI headers.
 */
#ifndef PADDOCK_INIT_SYS_H
#define PADDOCK_INIT_SYS_H

#include <stddef.h>
#include <stdint.h>

#include <asm/unistd.h>
#include <asm/errno.h>
#include <asm/signal.h>
#include <asm/stat.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/fcntl.h>
#include <linux/filter.h>
#include <linux/mman.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/resource.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>

/* umount2(2) flag, from the C library's sys/mount.h. */
#define MNT_DETACH 2

#define CONTROL_FD 3
#define STATUS_FD 4

/* A system call's result: >= 0 on success, -errno on failure. */
static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define SYS(n, a, b, c, d, e, f) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define SYS0(n) SYS(n, 0, 0, 0, 0, 0, 0)
#define SYS1(n, a) SYS(n, a, 0, 0, 0, 0, 0)
#define SYS2(n, a, b) SYS(n, a, b, 0, 0, 0, 0)
#define SYS3(n, a, b, c) SYS(n, a, b, c, 0, 0, 0)
#define SYS4(n, a, b, c, d) SYS(n, a, b, c, d, 0, 0)
#define SYS5(n, a, b, c, d, e) SYS(n, a, b, c, d, e, 0)

/* Retries a call while a signal interrupts it. */
#define RETRY(expr)                  \
	({                           \
		long r_;             \
		do {                 \
			r_ = (expr); \
		} while (r_ == -EINTR); \
		r_;                  \
	})

static inline __attribute__((noreturn)) void sys_exit(int code)
{
	for (;;)
		SYS1(__NR_exit_group, code);
}

/* The x86_64 kernel's struct rusage (struct timeval is two longs). */
struct k_rusage {
	long utime_sec, utime_usec, stime_sec, stime_usec;
	long maxrss, ixrss, idrss, isrss, minflt, majflt, nswap, inblock, oublock, msgsnd, msgrcv, nsignals,
		nvcsw, nivcsw;
};

/* struct ifreq, as far as SIOC[GS]IFFLAGS use it. */
struct k_ifreq {
	char name[16];
	short flags;
	char pad[22];
};

/* mem.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t str_len(const char *s);
int str_eq(const char *a, const char *b);
int str_has_prefix(const char *s, const char *prefix);
int str_has_char(const char *s, char c);

/* Arena allocation: memory that lives until the init exits. NULL when the
 * kernel refuses to map more. */
void *alloc(size_t n);
char *str_dup(const char *s, size_t n);

/* A growing string, for messages and paths; truncated at its capacity. */
struct buf {
	char *p;
	size_t len, cap;
};
void buf_init(struct buf *b, char *mem, size_t cap);
void buf_str(struct buf *b, const char *s);
void buf_mem(struct buf *b, const char *s, size_t n);
void buf_uint(struct buf *b, unsigned long v);
void buf_quote(struct buf *b, const char *s);

/* buf_errno appends the text of an errno ("no such file or directory", as
 * Go's syscall.Errno prints the common ones), or "errno N". */
void buf_errno(struct buf *b, long err);

#endif
