/* include/spliced/reload.h: a new generation for the workers, built whole
 * before it is swapped in at one point (DESIGN.md section 5).
 *
 * Two things make one: a reload (SIGHUP) builds everything a new config
 * needs (parsed and checked, listeners bound or carried over, servers'
 * state carried over, a resolver and health checks for them), and the
 * resolver finds new addresses for a host-name server (same config, a new
 * struct backend_set). Either way nothing changes until all of it is
 * built; then the new struct worker_conf is published to every worker
 * (worker_publish()), which switches between two turns of its loop, and
 * the old generation is let go. Any failure before that leaves the
 * process as it was. Main thread only. */
#ifndef SPLICED_RELOAD_H
#define SPLICED_RELOAD_H

struct backend_set;
struct config;
struct proc;                    /* proxy/proc.h: the main thread's state */

/* SIGHUP: read p->path again and serve it. Keys that size what the workers
 * were built with (workers, pipe_size, buffer_size, max_pipes) or say who
 * the process is (user) keep their running values, with a warning each.
 * 0: reloaded, or nothing to read (started from the command line; logged);
 * -1: failed, why is logged, nothing changed. */
int reload_run(struct proc *p);

/* The resolver's publish callback (resolver_new(), arg p): bs, a new
 * generation of addresses, goes to the workers and the health checks.
 * Before the workers exist (the first round) it only replaces p->bs. */
void reload_addresses_cb(struct backend_set *bs, void *p);

/* Raise RLIMIT_NOFILE as far as cfg's max_connections needs with p->nw
 * workers, never lowering it: at start-up and after each reload. Logged at
 * start, and after a reload only when it is news. */
void reload_raise_nofile(struct proc *p, const struct config *cfg);

#endif
