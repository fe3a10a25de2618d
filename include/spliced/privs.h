/* include/spliced/privs.h: who spliced runs as, and the limits it runs under.
 *
 * [global] user names the user to become once every listener is bound:
 * its uid, its primary gid and its supplementary groups. The fd limit
 * (RLIMIT_NOFILE) is raised towards what max_connections may need. And
 * whether the kernel's per-user pipe budget applies to this process depends
 * on its capabilities, which the switch to a user takes away.
 *
 * Start-up, in this order, all on the main thread before any other thread
 * exists (setuid(2) and setgroups(2) change one thread in the kernel; glibc
 * broadcasts them to every thread, but a half-started worker must not be
 * left to race that):
 *   1. privs_user_lookup()    with the config, before binding: a user that
 *                             does not exist fails the start (exit 1);
 *      or privs_stays_root()  when no user is set: warn with
 *                             PRIVS_ROOT_WARNING;
 *   2. privs_nofile_raise()   log privs_nofile_text() (warn when it says so);
 *   3. bind the listeners     (ports below 1024 need root or
 *                             CAP_NET_BIND_SERVICE);
 *   4. privs_drop()           log "dropped privileges to user NAME (uid U,
 *                             gid G)" when it returns 1;
 *   5. privs_pipe_exempt()    for the pipe budget: after the drop;
 *   6. start the workers.
 * On a reload, privs_nofile_raise() may run again (it never lowers the
 * limit), logged only when privs_nofile_news(); the user cannot change
 * without a restart. */
#ifndef SPLICED_PRIVS_H
#define SPLICED_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "spliced/config.h"

#define PRIVS_ROOT_WARNING "running as root: set [global] user = ... to " \
	"drop privileges after binding"

/* ---- the user ---- */

struct privs_user {             /* caller-owned; privs_user_cleanup() */
	char *name;
	uid_t uid;
	gid_t gid;                  /* the user's primary group */
	gid_t *groups;              /* every group of the user, gid among them */
	size_t ngroups;
};

/* Look up cfg->user (getpwnam_r, getgrouplist). 0, or -1 with err naming
 * the config's file, line and key: "spliced.ini:3: [global] user: no such
 * user 'x'", or why the lookup failed. Call only when cfg->user is set. */
int privs_user_lookup(const struct config *, struct privs_user *,
    char *err, size_t errlen);
void privs_user_cleanup(struct privs_user *);   /* a zeroed one is fine */

/* Become u: setgroups(u's groups), setgid, setuid, in that order, then
 * check that real, effective and saved ids are all u's, that the groups
 * are, and that root cannot be regained (setuid(0) and setgid(0) fail).
 * 1: dropped; 0: nothing to do (already u in every id, or u is root:
 * "user = root" keeps root on purpose); -1 with err (naming the config
 * key): the caller must exit, for the process may be half-switched.
 * Call it before any thread starts. */
int privs_drop(const struct config *, const struct privs_user *u,
    char *err, size_t errlen);

/* Whether to warn PRIVS_ROOT_WARNING: the process runs as root (euid 0)
 * and the config names no user to drop to. Not under systemd's User= or
 * DynamicUser=, where spliced starts as that user. */
bool privs_stays_root(const struct config *);

/* ---- RLIMIT_NOFILE ---- */

/* Spare fds beyond what the formula of privs_nofile_need() counts: the
 * standard streams, the resolver's socket, the admin endpoint, files the
 * libraries open (resolv.conf, nsswitch) and slack. */
#define PRIVS_NOFILE_SPARE 64
/* Per worker: its epoll fd and the eventfds that wake its loop. */
#define PRIVS_NOFILE_PER_WORKER 4

/* The fds max_connections may need at worst with nworkers workers:
 *   2 per connection (client and server socket)
 * + 2 per pipe: 2 pipes per connection (one per direction), at most
 *   max_pipes when it is set, none when no listener splices
 * + each bind address once per worker (SO_REUSEPORT sockets)
 * + one health check socket per server
 * + PRIVS_NOFILE_PER_WORKER per worker + PRIVS_NOFILE_SPARE.
 * So 6 per connection plus a little, with the defaults. Pure. */
unsigned long long privs_nofile_need(const struct config *, unsigned nworkers);

/* The soft limit to set: need, but never above hard and never below soft
 * (a limit someone raised on purpose stays). RLIM_INFINITY is no limit.
 * Pure. */
rlim_t privs_nofile_target(rlim_t soft, rlim_t hard,
    unsigned long long need);

struct privs_nofile {
	rlim_t before;              /* the soft limit found */
	rlim_t now;                 /* after privs_nofile_raise(); the plan's target */
	rlim_t hard;                /* RLIM_INFINITY: none */
	unsigned long long need;    /* privs_nofile_need() */
	unsigned max_connections;   /* the config's, for the messages */
	int err;                    /* errno of a failed setrlimit, else 0 */
};

/* What start-up would do, without changing anything (for spliced -t):
 * now is the target. 0, or -1 (getrlimit failed) with errno. */
int privs_nofile_plan(const struct config *, unsigned nworkers,
    struct privs_nofile *);
/* The same, and set the soft limit to the target. A failed setrlimit is
 * not an error here: nf->err says it and nf->now stays nf->before. 0, or
 * -1 (getrlimit failed) with errno. */
int privs_nofile_raise(const struct config *, unsigned nworkers,
    struct privs_nofile *);
/* One log line about nf, after privs_nofile_raise(), e.g.
 * "RLIMIT_NOFILE: raised the soft limit from 1024 to 12136 (needed 12136
 * for max_connections 2000; hard limit 524288)". True when it is a warning: the limit is below
 * the need (accepting then pauses at the fd limit), or setrlimit failed. */
bool privs_nofile_text(const struct privs_nofile *, char *buf, size_t n);
/* Whether nf, after a reload, says anything that last (logged before) did
 * not: the soft limit was raised now, or moved or the hard limit moved
 * since (prlimit(1)), setrlimit failed otherwise, the warning came or went,
 * or max_connections changed. A need that moved a few fds under the same
 * verdict (a bind or a server more or fewer) is not news: each reload
 * would log the same warning again. Pure. */
bool privs_nofile_news(const struct privs_nofile *last,
    const struct privs_nofile *nf);
/* A limit as a number, or "unlimited"; returns buf. */
const char *privs_rlim_text(rlim_t, char *buf, size_t n);

/* ---- the pipe budget ---- */

/* Linux capability bits (linux/capability.h) that exempt a task from
 * pipe-user-pages-soft: fs/pipe.c, pipe_is_unprivileged_user(), checks
 * capable(CAP_SYS_RESOURCE) || capable(CAP_SYS_ADMIN). */
#define PRIVS_CAP_SYS_ADMIN     21
#define PRIVS_CAP_SYS_RESOURCE  24

/* The CapEff mask from the text of /proc/self/status. 0, or -1 when there
 * is no CapEff line or it is not hex. Pure. */
int privs_capeff_parse(const char *status, uint64_t *caps);

/* Whether the kernel exempts this process, as it is now, from the per-user
 * pipe budget (/proc/sys/fs/pipe-user-pages-soft): it has CAP_SYS_RESOURCE
 * or CAP_SYS_ADMIN in CapEff, in the initial user namespace (in any other,
 * capable() does not grant them). Without /proc: euid 0. why (may be NULL)
 * gets the reason: "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN", "no
 * CAP_SYS_RESOURCE or CAP_SYS_ADMIN", ... After privs_drop() the answer
 * changes: ask after it. */
bool privs_pipe_exempt_why(char *why, size_t n);
bool privs_pipe_exempt(void);

#endif
