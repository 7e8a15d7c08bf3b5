/*
 * mem.c: memory and strings for the freestanding init (see sys.h).
 */
#include "sys.h"

/* The compiler may turn loops into calls of these four, so they must exist
 * (and must not be turned into calls of themselves: the build passes
 * -fno-tree-loop-distribute-patterns). */
void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n--)
			d[n] = s[n];
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	unsigned char *d = dst;
	while (n--)
		*d++ = (unsigned char)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (; n; n--, x++, y++) {
		if (*x != *y)
			return *x - *y;
	}
	return 0;
}

size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

int str_has_prefix(const char *s, const char *prefix)
{
	while (*prefix) {
		if (*s++ != *prefix++)
			return 0;
	}
	return 1;
}

int str_has_char(const char *s, char c)
{
	for (; *s; s++) {
		if (*s == c)
			return 1;
	}
	return 0;
}

/* The arena: chunks mapped on demand, never freed (the init is short-lived
 * and its whole address space goes at exit). */
static char *arena_next, *arena_end;

void *alloc(size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0 || (size_t)(arena_end - arena_next) < n) {
		size_t size = n > (1 << 20) ? n : (1 << 20);
		long p = SYS(__NR_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p < 0 && p > -4096)
			return NULL;
		arena_next = (char *)p;
		arena_end = arena_next + size;
	}
	void *p = arena_next;
	arena_next += n;
	return p;
}

char *str_dup(const char *s, size_t n)
{
	char *p = alloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

void buf_init(struct buf *b, char *mem, size_t cap)
{
	b->p = mem;
	b->len = 0;
	b->cap = cap;
	if (cap)
		mem[0] = 0;
}

void buf_mem(struct buf *b, const char *s, size_t n)
{
	if (b->cap == 0)
		return;
	size_t room = b->cap - 1 - b->len;
	if (n > room)
		n = room;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void buf_str(struct buf *b, const char *s) { buf_mem(b, s, str_len(s)); }

void buf_uint(struct buf *b, unsigned long v)
{
	char d[24];
	int i = sizeof d;
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_mem(b, d + i, sizeof d - i);
}

/* buf_quote appends s in double quotes, with quotes, backslashes and
 * control bytes escaped (as Go's strconv.Quote does for them). */
void buf_quote(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	buf_str(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			buf_mem(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
			buf_mem(b, e, 4);
		} else {
			buf_mem(b, (const char *)&c, 1);
		}
	}
	buf_str(b, "\"");
}

static const char *errno_text(long err)
{
	switch (err < 0 ? -err : err) {
	case EPERM: return "operation not permitted";
	case ENOENT: return "no such file or directory";
	case ESRCH: return "no such process";
	case EINTR: return "interrupted system call";
	case EIO: return "input/output error";
	case E2BIG: return "argument list too long";
	case ENOEXEC: return "exec format error";
	case EBADF: return "bad file descriptor";
	case ECHILD: return "no child processes";
	case EAGAIN: return "resource temporarily unavailable";
	case ENOMEM: return "cannot allocate memory";
	case EACCES: return "permission denied";
	case EFAULT: return "bad address";
	case EBUSY: return "device or resource busy";
	case EEXIST: return "file exists";
	case EXDEV: return "invalid cross-device link";
	case ENODEV: return "no such device";
	case ENOTDIR: return "not a directory";
	case EISDIR: return "is a directory";
	case EINVAL: return "invalid argument";
	case ENFILE: return "too many open files in system";
	case EMFILE: return "too many open files";
	case ETXTBSY: return "text file busy";
	case ENOSPC: return "no space left on device";
	case EROFS: return "read-only file system";
	case EPIPE: return "broken pipe";
	case ENAMETOOLONG: return "file name too long";
	case ENOSYS: return "function not implemented";
	case ELOOP: return "too many levels of symbolic links";
	case EOVERFLOW: return "value too large for defined data type";
	case EOPNOTSUPP: return "operation not supported";
	}
	return NULL;
}

void buf_errno(struct buf *b, long err)
{
	const char *t = errno_text(err);
	if (t) {
		buf_str(b, t);
		return;
	}
	buf_str(b, "errno ");
	buf_uint(b, (unsigned long)(err < 0 ? -err : err));
}
