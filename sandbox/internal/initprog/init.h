/*
 * init.h: what the init's files share: the error being reported and the
 * steps of a sandbox's life.
 */
#ifndef PADDOCK_INIT_INIT_H
#define PADDOCK_INIT_INIT_H

#include "plan.h"

#define ERR_MAX 8192

/* The error the init will report, built as the failure unwinds: the
 * innermost step writes what failed, each caller puts its context in
 * front ("rootfs: mount /proc: resolve /proc in rootfs: ..."). */
extern struct buf err_msg;
extern char err_mem[ERR_MAX];
/* The error is a bind source that does not exist (Status.MissingSource). */
extern int err_missing_source;
/* The error is the command's: not found, not executable (Status.NotStarted). */
extern int err_not_started;

/* fail_sys sets the error to a, b and c (each may be NULL) followed by
 * ": " and the text of err (a negative errno), and returns err. */
long fail_sys(long err, const char *a, const char *b, const char *c);
/* fail_msg sets the error to a, b and c alone, and returns err. */
long fail_msg(long err, const char *a, const char *b, const char *c);
/* wrap_err puts a, b and ": " in front of the error. */
void wrap_err(const char *a, const char *b);

/* is_err: a system call's result that is an error. */
static inline int is_err(long r) { return r < 0 && r > -4096; }

/* path helpers (rootfs.c): clean writes Go's path.Clean of in to out,
 * which must hold str_len(in) + 2 bytes. */
void path_clean(const char *in, char *out);

/* build_rootfs sets the plan's mount tree up and pivots into it. */
long build_rootfs(const struct plan *p);

/* process.c, in the order the init calls them: */
long setup_process(const struct plan *p);
long look_path(const struct plan *p, char *out, size_t cap);
long apply_capabilities(const struct plan *p);
long load_seccomp(const struct plan *p);
long start_command(const struct plan *p, const char *argv0);
int terminate_requested(void);
void wait_command(long pid, struct status *st);

#endif
