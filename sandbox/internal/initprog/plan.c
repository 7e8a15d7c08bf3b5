/*
 * plan.c: decoding the plan, encoding the status (see plan.h). Every
 * length is checked against what is left, so a truncated or hostile plan
 * is an error, never a read past its end or a huge allocation.
 */
#include "plan.h"

#define PLAN_VERSION 1
#define STATUS_VERSION 2

struct reader {
	const unsigned char *b;
	size_t len, pos;
	const char *problem; /* set at the first failure */
	size_t at;           /* where the failed field starts */
	unsigned long detail; /* a number the problem names, if any */
};

static void fail(struct reader *r, const char *problem, size_t at, unsigned long detail)
{
	if (!r->problem) {
		r->problem = problem;
		r->at = at;
		r->detail = detail;
	}
}

static unsigned char read_byte(struct reader *r)
{
	if (r->problem)
		return 0;
	if (r->pos >= r->len) {
		fail(r, "message ends before a byte", r->pos, 0);
		return 0;
	}
	return r->b[r->pos++];
}

/* A LEB128 unsigned varint, as Go's encoding/binary writes it. */
static uint64_t read_uvarint(struct reader *r)
{
	if (r->problem)
		return 0;
	uint64_t v = 0;
	for (unsigned shift = 0, i = 0;; shift += 7, i++) {
		if (r->pos + i >= r->len) {
			fail(r, "message ends inside an integer", r->pos, 0);
			return 0;
		}
		unsigned char c = r->b[r->pos + i];
		if (i == 9 && c > 1) {
			fail(r, "integer overflows 64 bits", r->pos, 0);
			return 0;
		}
		v |= (uint64_t)(c & 0x7f) << shift;
		if (c < 0x80) {
			r->pos += i + 1;
			return v;
		}
	}
}

static uint32_t read_u32(struct reader *r)
{
	size_t at = r->pos;
	uint64_t v = read_uvarint(r);
	if (v > 0xffffffffu) {
		fail(r, "integer overflows 32 bits", at, 0);
		return 0;
	}
	return (uint32_t)v;
}

static int read_bool(struct reader *r)
{
	if (r->problem)
		return 0;
	if (r->pos >= r->len) {
		fail(r, "message ends before a boolean", r->pos, 0);
		return 0;
	}
	unsigned char v = r->b[r->pos];
	if (v > 1) {
		fail(r, "boolean byte is neither 0 nor 1", r->pos, v);
		return 0;
	}
	r->pos++;
	return v;
}

/* read_count reads a count of items of at least min bytes each, refusing
 * one that could not fit in what is left. */
static size_t read_count(struct reader *r, size_t min)
{
	size_t at = r->pos;
	uint64_t n = read_uvarint(r);
	if (r->problem)
		return 0;
	if (n > (r->len - r->pos) / min) {
		fail(r, "length is beyond the bytes left", at, 0);
		return 0;
	}
	return (size_t)n;
}

static const unsigned char *read_bytes(struct reader *r, size_t *n)
{
	*n = read_count(r, 1);
	const unsigned char *p = r->b + r->pos;
	r->pos += *n;
	return p;
}

static int memchr_nul(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == 0)
			return 1;
	}
	return 0;
}

static const char *read_str(struct reader *r)
{
	size_t at = r->pos, n;
	const unsigned char *p = read_bytes(r, &n);
	if (r->problem)
		return "";
	if (memchr_nul(p, n)) {
		fail(r, "a string holds a NUL byte", at, 0);
		return "";
	}
	char *s = str_dup((const char *)p, n);
	if (!s) {
		fail(r, "out of memory", at, 0);
		return "";
	}
	return s;
}

/* read_strs reads a string list into a NULL-terminated array. */
static char **read_strs(struct reader *r, size_t *count)
{
	size_t n = read_count(r, 1);
	char **v = alloc((n + 1) * sizeof *v);
	if (!v) {
		fail(r, "out of memory", r->pos, 0);
		*count = 0;
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = (char *)read_str(r);
	v[n] = NULL;
	*count = r->problem ? 0 : n;
	return v;
}

static void read_mount(struct reader *r, struct mount_step *m)
{
	size_t at = r->pos;
	uint64_t kind = read_uvarint(r);
	if (!r->problem && (kind < MOUNT_BIND || kind > MOUNT_SYMLINK))
		fail(r, "unknown mount kind", at, kind);
	m->kind = (unsigned)kind;
	m->source = read_str(r);
	m->dest = read_str(r);
	m->fstype = read_str(r);
	m->flags = read_uvarint(r);
	m->attrs = read_uvarint(r);
	m->data = read_str(r);
}

static void read_body(struct reader *r, struct plan *p)
{
	p->rootfs = read_str(r);
	p->readonly_root = read_bool(r);
	p->nmounts = read_count(r, 7);
	p->mounts = alloc((p->nmounts + 1) * sizeof *p->mounts);
	for (size_t i = 0; p->mounts && i < p->nmounts; i++)
		read_mount(r, &p->mounts[i]);
	p->hostname = read_str(r);
	p->loopback_up = read_bool(r);
	p->cgroup_ns = read_bool(r);
	p->nrlimits = read_count(r, 3);
	p->rlimits = alloc((p->nrlimits + 1) * sizeof *p->rlimits);
	for (size_t i = 0; p->rlimits && i < p->nrlimits; i++) {
		p->rlimits[i].resource = read_u32(r);
		p->rlimits[i].cur = read_uvarint(r);
		p->rlimits[i].max = read_uvarint(r);
	}
	p->umask = read_u32(r);
	p->args = read_strs(r, &p->nargs);
	p->env = read_strs(r, &p->nenv);
	p->cwd = read_str(r);
	p->uid = read_u32(r);
	p->gid = read_u32(r);
	p->ngroups = read_count(r, 1);
	p->groups = alloc((p->ngroups + 1) * sizeof *p->groups);
	for (size_t i = 0; p->groups && i < p->ngroups; i++)
		p->groups[i] = read_u32(r);
	p->bounding = read_uvarint(r);
	p->inheritable = read_uvarint(r);
	p->ambient = read_uvarint(r);
	p->last_cap = read_u32(r);
	p->seccomp = read_bytes(r, &p->seccomp_len);
	if (!p->mounts || !p->rlimits || !p->groups)
		fail(r, "out of memory", r->pos, 0);
}

int decode_plan(const unsigned char *b, size_t len, struct plan *p, struct buf *msg)
{
	struct reader r = {.b = b, .len = len};
	memset(p, 0, sizeof *p);
	unsigned char v = read_byte(&r);
	if (!r.problem && v != PLAN_VERSION)
		fail(&r, "unknown version", 0, v);
	read_body(&r, p);
	if (!r.problem && r.pos != r.len)
		fail(&r, "unexpected bytes at the end", r.pos, r.len - r.pos);
	if (!r.problem && p->nargs == 0)
		fail(&r, "no command", r.pos, 0);
	if (!r.problem)
		return 0;
	buf_str(msg, "malformed init plan at byte ");
	buf_uint(msg, r.at);
	buf_str(msg, ": ");
	buf_str(msg, r.problem);
	if (r.detail) {
		buf_str(msg, " (");
		buf_uint(msg, r.detail);
		buf_str(msg, ")");
	}
	return -1;
}

static unsigned char *put_uvarint(unsigned char *o, uint64_t v)
{
	while (v >= 0x80) {
		*o++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*o++ = (unsigned char)v;
	return o;
}

/* Go's zig-zag signed varint. */
static unsigned char *put_varint(unsigned char *o, int64_t v)
{
	uint64_t u = (uint64_t)v << 1;
	if (v < 0)
		u = ~u;
	return put_uvarint(o, u);
}

size_t encode_status(const struct status *s, unsigned char *out)
{
	unsigned char *o = out;
	const char *e = s->error ? s->error : "";
	size_t n = str_len(e);
	*o++ = STATUS_VERSION;
	o = put_uvarint(o, n);
	memcpy(o, e, n);
	o += n;
	*o++ = (unsigned char)(s->not_started != 0);
	*o++ = (unsigned char)(s->missing_source != 0);
	int64_t vs[] = {s->exit_code, s->signal, s->user_nanos, s->system_nanos, s->max_rss_kib,
			s->minor_faults, s->major_faults, s->voluntary, s->involuntary};
	for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
		o = put_varint(o, vs[i]);
	return (size_t)(o - out);
}
