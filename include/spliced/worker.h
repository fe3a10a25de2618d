/* include/spliced/worker.h: worker threads, one event_base each.
 *
 * A worker owns everything its connections touch: the event base, the pipe
 * pool, copy buffers, balancing state and counters (per server too, in its
 * backend_lb). Nothing on the data path is shared with other workers except
 * the read-only config, the limit counters and the servers' state (atomics,
 * struct backend_set). Other threads talk to a worker only through
 * worker_wake/worker_drain/worker_stop/worker_publish/worker_ping, which
 * are thread-safe.
 *
 * The worker runs two parts, each with a seam of its own: its connections
 * (conn.h: a conn_home, with the fd reserve) and its accepting (accept.h:
 * an acceptor). They report back through hooks the worker installs (a
 * connection ended, fds ran short, peers should be woken); neither calls
 * into worker.c, and struct worker is defined there alone.
 *
 * What a worker serves comes from the main thread as a struct worker_conf:
 * a config, the listening sockets bound for it and a generation of its
 * servers' addresses. A reload (new config) and a host name resolving
 * elsewhere (new addresses, same config) both publish a new one, through a
 * one-slot mailbox: the main thread stores a reference in it with an
 * atomic exchange (dropping one the worker never took) and wakes the
 * worker, which takes it out with an exchange too, so whoever takes a conf
 * out of the slot owns that reference and no reader ever races a free.
 *
 * The worker then accepts and balances under the new conf (balancers of
 * the same backend name carry their counters and round-robin credit over),
 * while each connection keeps the struct worker_snap it started under:
 * its listener, its timeouts and its backend's settings (a connect retry
 * picks among the newest servers of that backend: conn.c). A retired
 * snap is freed by the worker once no connection of its is left and none
 * holds a slot in its balancers (checked every second).
 *
 * The watchdog (supervise.c) asks each worker to answer a ping, a sequence
 * number, from its loop; a worker that stops turning stops answering. */
#ifndef SPLICED_WORKER_H
#define SPLICED_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/conn.h"
#include "spliced/listener.h"
#include "spliced/relay.h"
#include "spliced/stats.h"

struct event;
struct worker;                  /* worker.c */

/* Immutable once made; references may be dropped on any thread. */
struct worker_conf {
	atomic_uint refs;
	struct config *cfg;         /* a reference */
	struct listener_set *ls;    /* a reference, bound for cfg */
	struct backend_set *bs;     /* a reference, of cfg */
};

/* One worker's view of a conf: its balancers, and how many of its
 * connections started under it. Written on the worker's thread only
 * (worker.c makes and frees it; conn.c counts its connections). */
struct worker_snap {
	struct worker_conf *conf;   /* a reference */
	struct backend_lb *lb;      /* one per conf->bs->b[] */
	/* The worker's counter blocks (stats.h) for what the snap serves,
	 * looked up once here so that the data path never searches. */
	struct stats_listener **sl; /* [conf->ls->n] */
	struct stats_backend **sb;  /* [conf->bs->n] */
	struct stats_server ***ss;  /* [conf->bs->n][lb[i].n] */
	unsigned conns;
	struct worker_snap *next;   /* the retired list */
};

/* Point s's sl, sb and ss at the blocks of w (made as needed) for what
 * s->conf serves; worker.c does it for every snap it makes. 0, or -1
 * with ENOMEM (worker_snap_stats_cleanup() then frees what was made). */
int worker_snap_stats(struct worker_snap *s, struct stats_worker *w);
void worker_snap_stats_cleanup(struct worker_snap *s);

/* What a worker counted, for the totals at exit. */
struct worker_totals {
	struct conn_stats conn;
	struct relay_stats relay;
};

/* A conf of ls and bs (both of one config), holding references to them.
 * NULL with errno. */
struct worker_conf *worker_conf_new(struct listener_set *, struct backend_set *);
struct worker_conf *worker_conf_ref(struct worker_conf *);
void worker_conf_unref(struct worker_conf *);  /* NULL is fine */

/* NULL with err. conf: what it serves first; its config is also the
 * start-up one. max_pipes, pipe_budget: this worker's share of the
 * process's pipes and pipe bytes (pipepool_new(); budget 0: no limit). */
struct worker *worker_new(unsigned id, struct worker_conf *, unsigned max_pipes,
    size_t pipe_budget, char *err, size_t errlen);
void worker_free(struct worker *);            /* after worker_join; NULL ok */
int worker_start(struct worker *);            /* 0 / -1 with errno */
void worker_join(struct worker *);

/* Thread-safe. */
void worker_wake(struct worker *);            /* re-check waiting clients */
void worker_drain(struct worker *);           /* stop accepting; exit once idle */
void worker_stop(struct worker *);            /* close everything now; exit */
/* Serve new connections under conf from the worker's next loop turn on.
 * Takes its own reference. */
void worker_publish(struct worker *, struct worker_conf *);
/* The watchdog: ask the worker to answer seq from its loop; whether it
 * has answered seq. */
void worker_ping(struct worker *, unsigned seq);
bool worker_answered(const struct worker *, unsigned seq);

/* Before worker_start: the process's workers (self included), woken
 * when a slot this worker frees or takes back may let them admit a
 * client, and an event of the main loop, activated once this worker's
 * loop has returned (any reason). */
void worker_link(struct worker *, struct worker **peers, unsigned npeers,
    struct event *exited);
/* Whether its loop has returned. Any thread. */
bool worker_finished(const struct worker *);

/* A question for a worker, answered on its own thread: fn runs from the
 * worker's loop (or, once its loop has returned, from the asking thread,
 * the worker's state being final then), then `done`, an event of the
 * asker's base, is activated. The caller owns q and keeps it until done
 * fires or worker_query_cancel() says it will not run. fn gets
 * worker_sample() to call; it must be quick. */
struct worker_query {
	void (*fn)(struct worker *, void *arg);
	void *arg;
	struct event *done;
	struct worker_query *next;  /* the worker's, while queued */
};
/* Thread-safe. */
void worker_query(struct worker *, struct worker_query *);
/* Take q back if it has not run: true then (fn will not run, done will
 * not fire); false when it ran already (done fired or is about to). */
bool worker_query_cancel(struct worker *, struct worker_query *);
/* From a query's fn only: add the worker's figures to s, with its open
 * connections, newest first, while s keeps fewer than s->conn_limit. 0,
 * or -1 ENOMEM. */
int worker_sample(struct worker *, struct stats_sample *);

/* A binary upgrade (upgrade.h, conn.h). From a query's fn only: */
/* Stop accepting, keeping the sockets, or go on. */
void worker_hold(struct worker *, bool hold);
/* Connections not yet relaying, and clients waiting for a slot: what
 * must settle before the worker's connections can be handed over. */
unsigned worker_unsettled(struct worker *);
/* Freeze every connection and describe it at the end of *items. 0, or
 * -1 (ENOMEM: none frozen). */
int worker_export(struct worker *, struct handover_items *);
void worker_thaw(struct worker *);
/* The new process committed and then failed: the frozen connections
 * cannot go on (it may have moved their bytes): reset them. */
void worker_abort_frozen(struct worker *);
/* Let go of the frozen connections (the new process has them). */
unsigned worker_release(struct worker *);
/* The new process, before worker_start(), on the starting thread: */
bool worker_adopt_check(const struct worker *, const struct handover_conn *,
    char *err, size_t errlen);
void worker_adopt(struct worker *, const struct handover_conn *,
    const int *fds, const void *const data[2]);
/* What the old process counted (metrics continue across an upgrade):
 * added once to this worker's counters. 0, or -1 (ENOMEM). */
struct stats_sample;
struct worker_totals;
int worker_adopt_stats(struct worker *, const struct stats_sample *,
    const struct worker_totals *);
/* From a query's fn: the worker's counters (not its open connections'
 * bytes) added to s and t. 0, or -1 (ENOMEM). */
int worker_counters(struct worker *, struct stats_sample *,
    struct worker_totals *);

/* After worker_join: add what the worker counted, in total and for
 * server s (in its current balancer of every backend that has s). */
void worker_totals_add(const struct worker *, struct worker_totals *);
void worker_server_totals_add(const struct worker *, const struct server_state *s,
    struct server_stats *);

#endif
