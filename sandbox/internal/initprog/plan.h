/*
 * plan.h: the init's side of package initplan's contract: the Plan it
 * reads from the spawner and the Status it answers, in the wire format of
 * package wirecodec (see initplan/codec.go, which encodes what this
 * decodes, field for field).
 */
#ifndef PADDOCK_INIT_PLAN_H
#define PADDOCK_INIT_PLAN_H

#include "sys.h"

/* initplan.MountKind */
enum {
	MOUNT_BIND = 1,
	MOUNT_FS,
	MOUNT_MASK,
	MOUNT_READONLY,
	MOUNT_SYMLINK,
};

struct mount_step {
	unsigned kind;
	const char *source, *dest, *fstype, *data;
	uint64_t flags, attrs;
};

struct rlimit_step {
	uint32_t resource;
	uint64_t cur, max;
};

/* initplan.Plan. Strings are NUL-terminated copies (a NUL inside one makes
 * the plan malformed); args and env end with a NULL for execve. */
struct plan {
	const char *rootfs;
	int readonly_root;
	struct mount_step *mounts;
	size_t nmounts;
	const char *hostname;
	int loopback_up, cgroup_ns;
	struct rlimit_step *rlimits;
	size_t nrlimits;
	uint32_t umask;
	char **args, **env;
	size_t nargs, nenv;
	const char *cwd;
	uint32_t uid, gid;
	uint32_t *groups;
	size_t ngroups;
	uint64_t bounding, inheritable, ambient;
	uint32_t last_cap;
	const unsigned char *seccomp;
	size_t seccomp_len;
};

/* initplan.Status */
struct status {
	const char *error;
	int not_started, missing_source;
	int32_t exit_code, signal;
	int64_t user_nanos, system_nanos, max_rss_kib, minor_faults, major_faults, voluntary, involuntary;
};

/* initplan.FrameHeader and initplan.MaxPlanSize */
#define FRAME_HEADER 4
#define MAX_PLAN_SIZE (64u << 20)

/* decode_plan decodes a plan's payload. On failure it returns -1 and
 * writes why to msg ("malformed init plan at byte N: ..."). */
int decode_plan(const unsigned char *b, size_t len, struct plan *p, struct buf *msg);

/* encode_status writes s to out (at least 128 + strlen(s->error) bytes)
 * and returns its length. */
size_t encode_status(const struct status *s, unsigned char *out);

#endif
