/* proxy/metrics.c: the workers' counters, summed, and their text.
 *
 * Today that is the `totals:` lines logged at exit (metrics.h shows
 * them). Names of enum-indexed counters come from their modules
 * (relay_fallback_name()), so a reason added there shows up here without
 * a second list to keep in step. */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "spliced/addr.h"
#include "spliced/backend.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/relay.h"
#include "spliced/worker.h"

/* Append to buf[*off..n); a line that does not fit is cut, never overrun. */
static void metrics_append(char *buf, size_t n, size_t *off,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
metrics_append(char *buf, size_t n, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*off >= n)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + *off, n - *off, fmt, ap);
	va_end(ap);
	if (r > 0)
		*off += (size_t)r;
}

const char *
metrics_totals_text(const struct worker_totals *t, char *buf, size_t n)
{
	const struct conn_stats *st = &t->conn;
	const struct relay_stats *rs = &t->relay;
	size_t off = 0;

	if (n == 0)
		return buf;
	buf[0] = '\0';
	metrics_append(buf, n, &off, "totals: connections=%" PRIu64
	    " connect_failures=%" PRIu64 " bytes_splice=%" PRIu64
	    " bytes_copy=%" PRIu64 " splice_fallbacks", st->connections,
	    st->connect_failures, rs->bytes[RELAY_MODE_SPLICE],
	    rs->bytes[RELAY_MODE_COPY]);
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		metrics_append(buf, n, &off, " %s=%" PRIu64,
		    relay_fallback_name((enum relay_fallback)f), rs->fallbacks[f]);
	/* Binary upgrades: the connections that went to the new process
	 * (counted there when they end) and those that came from the old. */
	if (st->handed > 0)
		metrics_append(buf, n, &off, " handed_over=%" PRIu64, st->handed);
	if (st->adopted > 0)
		metrics_append(buf, n, &off, " taken_over=%" PRIu64, st->adopted);
	return buf;
}

const char *
metrics_server_text(const struct backend_shared *sh, size_t s,
    const struct server_stats *st, char *buf, size_t n)
{
	char a[ADDR_TEXT_MAX + 1];

	/* A host-name server has one line per address: name that address. */
	a[0] = ' ';
	if (sh->entry[s]->dnsname != NULL)
		addr_format((const struct sockaddr *)&sh->servers[s]->addr.ss,
		    a + 1, sizeof(a) - 1);
	else
		a[0] = '\0';
	snprintf(buf, n, "totals: server %s/%s%s connections=%" PRIu64
	    " connect_failures=%" PRIu64 " up=%d", sh->cfg->name,
	    sh->entry[s]->name, a, st->connections, st->connect_failures,
	    (int)atomic_load(&sh->servers[s]->up));
	return buf;
}

/* Per server address, summed over the workers (each counts in the
 * balancer of the backend of that name in its current snap; the counts
 * follow an address from one generation to the next). */
static void
metrics_log_servers(struct worker *const *w, unsigned nw,
    const struct backend_set *bs)
{
	char line[LOG_LINE_MAX];

	for (size_t b = 0; b < bs->n; b++) {
		const struct backend_shared *sh = &bs->b[b];

		for (size_t s = 0; s < sh->n; s++) {
			struct server_stats st = { 0 };

			for (unsigned i = 0; i < nw; i++)
				worker_server_totals_add(w[i], sh->servers[s], &st);
			log_info("%s", metrics_server_text(sh, s, &st, line,
			    sizeof(line)));
		}
	}
}

void
metrics_log_totals(struct worker *const *w, unsigned nw,
    const struct backend_set *bs)
{
	struct worker_totals t = { 0 };
	char line[LOG_LINE_MAX];

	for (unsigned i = 0; i < nw; i++)
		worker_totals_add(w[i], &t);
	log_info("%s", metrics_totals_text(&t, line, sizeof(line)));
	metrics_log_servers(w, nw, bs);
}

/* One gather: a question per worker, each answered into a sample of its
 * own on the worker's thread (no lock, no worker waits for another), and
 * the sum the main loop builds from the answers as they come. */
struct metrics_gather {
	struct stats_sample s;
	bool failed;                /* out of memory adding or summing */
	struct worker **w;          /* [nw] */
	unsigned nw, pending;
	struct metrics_slot *slot;  /* [nw] */
	struct event *timeout;
	metrics_gather_cb cb;
	void *arg;
};

struct metrics_slot {
	struct metrics_gather *g;
	bool answered;              /* its sample is in g->s */
	bool failed;                /* written by the worker, read after done */
	struct stats_sample s;
	struct worker_query q;
};

static void
metrics_gather_free(struct metrics_gather *g)
{
	for (unsigned i = 0; g->slot != NULL && i < g->nw; i++) {
		if (g->slot[i].q.done != NULL)
			event_free(g->slot[i].q.done);
		stats_sample_cleanup(&g->slot[i].s);
	}
	if (g->timeout != NULL)
		event_free(g->timeout);
	stats_sample_cleanup(&g->s);
	free(g->slot);
	free(g->w);
	free(g);
}

/* The worker's answer is complete (its done event fired, or a cancel
 * found it had run): add it to the sum. */
static void
metrics_slot_add(struct metrics_gather *g, struct metrics_slot *sl)
{
	sl->answered = true;
	if (sl->failed || stats_sample_merge(&g->s, &sl->s) == -1)
		g->failed = true;
	stats_sample_cleanup(&sl->s);
}

/* Take back the questions not answered yet. One that ran meanwhile is
 * complete once worker_query_cancel() says so (fn and the activation of
 * done happen under the worker's lock, which cancel takes): its answer
 * still counts. Nothing touches g after this. */
static void
metrics_gather_withdraw(struct metrics_gather *g, bool add)
{
	for (unsigned i = 0; i < g->nw; i++) {
		struct metrics_slot *sl = &g->slot[i];

		if (sl->q.done == NULL || sl->answered)
			continue;
		if (!worker_query_cancel(g->w[i], &sl->q) && add)
			metrics_slot_add(g, sl);
	}
}

static void
metrics_gather_end(struct metrics_gather *g)
{
	metrics_gather_withdraw(g, true);
	for (unsigned i = 0; i < g->nw; i++)
		if (!g->slot[i].answered)
			log_warn("metrics: worker %u did not answer within %u ms; "
			    "its figures are left out", i, METRICS_GATHER_WAIT_MS);
	if (g->failed)
		log_warn("metrics: out of memory gathering the workers' figures; "
		    "the answer is incomplete");
	stats_sample_sort_conns(&g->s);
	g->cb(&g->s, g->arg);
	metrics_gather_free(g);
}

/* On a worker's thread (or the asker's, for a worker that finished). */
static void
metrics_gather_fn(struct worker *w, void *arg)
{
	struct metrics_slot *sl = arg;

	if (worker_sample(w, &sl->s) == -1)
		sl->failed = true;
}

static void
metrics_answered_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_slot *sl = arg;
	struct metrics_gather *g = sl->g;

	(void)fd, (void)what;
	metrics_slot_add(g, sl);
	if (--g->pending == 0)
		metrics_gather_end(g);
}

static void
metrics_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	metrics_gather_end(arg);
}

struct metrics_gather *
metrics_gather(struct worker *const *w, unsigned nw, struct event_base *base,
    size_t conn_limit, metrics_gather_cb cb, void *arg)
{
	struct timeval wait = { METRICS_GATHER_WAIT_MS / 1000,
	    (METRICS_GATHER_WAIT_MS % 1000) * 1000 };
	struct metrics_gather *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->nw = nw;
	g->cb = cb;
	g->arg = arg;
	if (stats_sample_init(&g->s, conn_limit) == -1 ||
	    (g->w = calloc(nw ? nw : 1, sizeof(*g->w))) == NULL ||
	    (g->slot = calloc(nw ? nw : 1, sizeof(*g->slot))) == NULL ||
	    (g->timeout = evtimer_new(base, metrics_timeout_cb, g)) == NULL)
		goto fail;
	for (unsigned i = 0; i < nw; i++) {
		struct metrics_slot *sl = &g->slot[i];

		g->w[i] = w[i];
		sl->g = g;
		sl->q.fn = metrics_gather_fn;
		sl->q.arg = sl;
		if (stats_sample_init(&sl->s, conn_limit) == -1 ||
		    (sl->q.done = event_new(base, -1, 0, metrics_answered_cb,
		    sl)) == NULL)
			goto fail;
	}
	if (evtimer_add(g->timeout, &wait) == -1)
		goto fail;
	/* Every question is asked only once nothing can fail any more: an
	 * answer (even one given at once, by a finished worker) is then
	 * always awaited. With no worker, the answer is the empty sum. */
	g->pending = nw;
	for (unsigned i = 0; i < nw; i++)
		worker_query(g->w[i], &g->slot[i].q);
	if (nw == 0)
		event_active(g->timeout, EV_TIMEOUT, 1);
	return g;
fail:
	metrics_gather_free(g);
	errno = ENOMEM;
	return NULL;
}

void
metrics_gather_cancel(struct metrics_gather *g)
{
	if (g == NULL)
		return;
	metrics_gather_withdraw(g, false);
	metrics_gather_free(g);
}
