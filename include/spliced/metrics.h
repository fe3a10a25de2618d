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
 * The fallback reasons are relay_fallback_name()'s. The admin endpoint
 * will read the same sums, while the workers run, into the Prometheus text
 * of DESIGN.md section 6. */
#ifndef SPLICED_METRICS_H
#define SPLICED_METRICS_H

#include <stddef.h>

#include "spliced/backend.h"
#include "spliced/worker.h"

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
