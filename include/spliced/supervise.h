/* include/spliced/supervise.h: the main thread watching over the workers:
 * signals, the drain, systemd's watchdog and status line, and a worker
 * whose loop returned (DESIGN.md section 5).
 *
 *  - SIGTERM, SIGINT: STOPPING=1; stop accepting and let connections drain
 *    for up to shutdown_timeout, then close what is left (0: at once); the
 *    same signal again closes everything at once. The main loop returns
 *    once every worker's has.
 *  - SIGHUP: RELOADING=1, reload_run() (reload.h), READY=1 with the
 *    status line, or with "reload failed, see the log; " before it. Not
 *    while draining.
 *  - SIGUSR1: log_reopen(): the access-log file is opened again (log.h).
 *  - STATUS= every 2 s: "serving 12 connections on 3 listeners, 2 workers"
 *    ("draining ..." once a drain began).
 *  - WATCHDOG=1 every half WatchdogSec, only while every worker answers
 *    its pings from its loop (worker_ping()): a worker stuck in a callback
 *    lets systemd's watchdog fire, though the main thread is well.
 *  - A worker's loop that returns without a drain is a failure: every
 *    connection is closed, the process exits 1 (supervise_failed()).
 * All of it runs on the main loop. */
#ifndef SPLICED_SUPERVISE_H
#define SPLICED_SUPERVISE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

struct event;
struct proc;                    /* proxy/proc.h: the main thread's state */
struct supervise;               /* supervise.c */

/* Everything above, on p->base, for p's workers (made, not yet started;
 * link them to supervise_exited_event()). Logs the watchdog's period when
 * systemd asks for one. NULL on failure (errno); nothing is left behind. */
struct supervise *supervise_new(struct proc *p);
void supervise_free(struct supervise *);     /* NULL is fine */

/* The signals handled here: block them in every other thread (start the
 * workers with them blocked), so that only the main loop sees them. */
void supervise_sigset(sigset_t *);
/* The event a worker activates when its loop returns (worker_link()). */
struct event *supervise_exited_event(struct supervise *);
/* The status line, into buf; returns buf. */
const char *supervise_status(const struct supervise *, char *buf, size_t n);
/* Whether a drain began (SIGTERM, SIGINT, or a worker that failed): what
 * the admin endpoint's /healthz reports as 503 "draining". */
bool supervise_draining(const struct supervise *);
/* At exit, before the workers are freed: an upgrade still running gives
 * up, and its thread is joined. NULL is fine. */
void supervise_upgrade_join(struct supervise *);
/* Whether the main loop ended because a worker failed: exit 1. */
bool supervise_failed(const struct supervise *);

#endif
