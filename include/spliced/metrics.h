/* include/spliced/metrics.h: what the workers counted, summed.
 *
 * Counters are kept per worker, by the worker's own thread (worker.h), and
 * summed only when read. Today they are read once, at exit, into the
 * `totals:` lines, which people and scripts parse, so their text does not
 * change:
 *
 *     totals: connections=N connect_failures=N bytes_splice=N bytes_copy=N splice_fallbacks pool_full=N pipe_budget=N pipe_error=N unsupported=N
 *     totals: server BACKEND/SERVER connections=N connect_failures=N up=0|1
 *     totals: server BACKEND/SERVER ADDRESS connections=N ...   (a host-name server: one per address)
 *
 * The fallback reasons are relay_fallback_name()'s.
 *
 * While the workers run, the admin endpoint (admin.h) gathers their
 * figures with metrics_gather(): each worker copies its stats_worker
 * (stats.h) into a sample on its own thread, from its loop, so nothing on
 * the data path is shared or locked; the sums become the Prometheus text
 * of DESIGN.md section 6 (metrics_prometheus()) or the admin's JSON. */
#ifndef SPLICED_METRICS_H
#define SPLICED_METRICS_H

#include <stddef.h>

#include "spliced/backend.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

struct evbuffer;
struct event_base;
struct metrics_gather;
struct srctable;

/* How long a gather waits for a worker's answer before it gives up on it
 * (a worker stuck in a callback; the watchdog reports those). */
#define METRICS_GATHER_WAIT_MS 2000

/* Called on the gathering base's thread with the sum of the workers that
 * answered (s->workers of nw; fewer when one did not answer in time).
 * s belongs to the gather: use it before returning. */
typedef void (*metrics_gather_cb)(struct stats_sample *s, void *arg);

/* Ask each of the nw workers for its figures (and at most conn_limit of
 * its open connections, newest first; 0 for none) and call cb once, from
 * base's loop, when all answered or METRICS_GATHER_WAIT_MS passed. A
 * worker whose loop has returned is read directly: its figures are final.
 * Returns the gather (freed after cb returns; metrics_gather_cancel()
 * before that frees it without calling cb), or NULL with errno. */
struct metrics_gather *metrics_gather(struct worker *const *w, unsigned nw,
    struct event_base *base, size_t conn_limit, metrics_gather_cb cb,
    void *arg);
void metrics_gather_cancel(struct metrics_gather *);

/* What the Prometheus text needs beyond the workers' sums. */
struct metrics_process {
	const struct config *cfg;   /* listeners' and backends' names */
	const struct backend_set *bs;   /* the servers' shared state */
	double start_time;          /* seconds since the epoch */
	/* The per-source limits' table (listener.h), or NULL. */
	struct srctable *sources;
};

/* The Prometheus text (format 0.0.4) of every name of DESIGN.md
 * section 6 into out. 0, or -1 (out of memory). */
int metrics_prometheus(struct evbuffer *out, const struct stats_sample *,
    const struct metrics_process *);

/* Sum the counters of the nw workers w (after worker_join() of each) and
 * log the totals lines at info: the process's, then one per server
 * address of bs, in config order. */
void metrics_log_totals(struct worker *const *w, unsigned nw,
    const struct backend_set *bs);

/* The process's line, for t (summed over the workers), into buf;
 * returns buf. */
const char *metrics_totals_text(const struct worker_totals *t, char *buf,
    size_t n);
/* The line of server address s of sh, with its counts st summed over the
 * workers, into buf; returns buf. */
const char *metrics_server_text(const struct backend_shared *sh, size_t s,
    const struct server_stats *st, char *buf, size_t n);

#endif
