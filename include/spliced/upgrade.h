/* include/spliced/upgrade.h: the binary upgrade (SIGUSR2, DESIGN.md §9).
 *
 * The running ("old") process starts the binary it was started from (the
 * path on disk, which a package upgrade has replaced, or a symlink
 * switched to another release) with its own
 * arguments and environment, plus SPLICED_UPGRADE_FD: one end of a unix
 * SOCK_SEQPACKET socket (handover.h has the messages). The new process
 * reads its config as any start does; a config it cannot serve ends it
 * with exit 1, before it says a word. Then:
 *
 *  1. it takes the listening sockets (the old process's own, systemd's,
 *     the admin endpoint's) and builds everything, but accepts nothing;
 *  2. the old process stops accepting (clients wait in the backlogs,
 *     which the sockets keep), waits until none of its connections is
 *     still in a handshake or connecting (bounded by their own timeouts:
 *     they finish here, then travel), freezes every connection (the
 *     workers stop polling them: nothing moves, nothing is lost) and
 *     sends each whole, in batches: both sockets, a pipe with the bytes
 *     in it, the copy buffer's bytes, each direction's state, counters
 *     and stamps; clients accepted and waiting for a slot go too;
 *  3. the new process holds them all and says so; the old one sends its
 *     counters and its servers' states (up or down, drain, maint,
 *     weight) and commits;
 *     the new one confirms (the commit point) and starts: workers,
 *     connections, accepting; it sends systemd MAINPID= and READY=1;
 *  4. the old process closes its copies of the fds (no peer sees
 *     anything) and exits 0; its counters go with the commit, so the new
 *     process's metrics continue them.
 * Before the commit point any failure (the new process exits, dies, is
 * killed, speaks another version, says FAIL, or upgrade_timeout passes)
 * leaves the old process as it was: it thaws every connection, accepts
 * again, logs why, and stops the new process (SIGKILL) if it still runs.
 *
 * Test hook: SPLICED_UPGRADE_FAULT=stop:hello|stop:listeners|
 * stop:connections|stop:commit in the new process's environment makes it
 * stop itself (SIGSTOP) at that point (after its config; after the
 * listening sockets; after the first connection; with COMMIT read and
 * COMMITTED not yet sent), so that a test can kill it there, or let
 * upgrade_timeout pass. */
#ifndef SPLICED_UPGRADE_H
#define SPLICED_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct admin;
struct event;
struct proc;
struct stats_sample;
struct upgrade;                 /* the old process's side: upgrade.c */
struct upgrade_child;           /* the new process's side: upgrade_child.c */
struct worker;

/* At start-up, before anything else: where this binary is on disk (the
 * path it was started by, made absolute, symlinks not resolved, so that
 * one switched to a new release leads there; or found in PATH) and how
 * it was started, for the upgrade to start it again. argv is kept (not
 * copied): main()'s. */
void upgrade_remember(int argc, char **argv);

/* ---- the old process ---- */

/* Start an upgrade of p on a thread of its own; `finished`, an event of
 * p's main loop, is activated when it ends either way (then
 * upgrade_handed() tells which, and upgrade_free() joins it). admin: p's
 * admin endpoint, or NULL. NULL (logged) when it cannot even start. */
struct upgrade *upgrade_start(struct proc *p, struct admin *admin,
    struct event *finished);
/* Give up before the commit point (SIGTERM): the thread fails at its
 * next step. After it, the new process is sent SIGTERM instead. Any
 * thread. */
void upgrade_cancel(struct upgrade *);
/* After `finished`: whether the connections are the new process's (then
 * this one holds nothing and exits). */
bool upgrade_handed(const struct upgrade *);
/* The new process's pid (-1 before it started, or once it failed). */
pid_t upgrade_new_pid(const struct upgrade *);
void upgrade_free(struct upgrade *);        /* NULL is fine */

/* ---- the new process ---- */

/* Whether this process is an upgrade's new one: *out, else NULL.
 * SPLICED_UPGRADE_FD leaves the environment either way. -1 (logged)
 * when the variable is malformed. */
int upgrade_child_open(struct upgrade_child **out);
/* Say hello and take the listening sockets: the ones the old process
 * bound (*bound, *nbound), systemd's (*passed: fds and names, as
 * sdnotify_listen_fds() gives them), and the admin endpoint's (*admin,
 * -1: none). 0, or -1 (logged). */
struct sdnotify_fd;
int upgrade_child_listeners(struct upgrade_child *, int **bound,
    size_t *nbound, struct sdnotify_fd **passed, size_t *npassed,
    int *admin);
/* Everything is built (workers made, not started): take the connections,
 * confirm the commit, and give each to a worker (w, nw). timeout_ms: how
 * long the old process may take. 0, or -1 (logged; the old process
 * carries on). */
int upgrade_child_take(struct upgrade_child *, struct worker **w,
    unsigned nw, unsigned timeout_ms);
/* After upgrade_child_take(), before the health checks start: each
 * server is up or down as the old process saw it, with the runtime state
 * the admin endpoint gave it (drain, maint, weight), matched by backend
 * and server name (and address, for up or down). */
struct backend_set;
void upgrade_child_servers(const struct upgrade_child *, struct backend_set *);
/* Whether the old process's /healthz was set down (`spliced ctl health
 * down`): the new one answers the same until `health up`. */
bool upgrade_child_health_down(const struct upgrade_child *);
/* The old process's pid, and how many sockets and connections came. */
void upgrade_child_report(const struct upgrade_child *, pid_t *pid,
    size_t *socks, size_t *conns);
/* The workers run the connections: tell the old process (best effort;
 * it ends the pause it reports). */
void upgrade_child_running(struct upgrade_child *);
/* Tell the old process why this one gives up (best effort). */
void upgrade_child_fail(struct upgrade_child *, const char *why);
void upgrade_child_free(struct upgrade_child *);   /* NULL is fine */

#endif
