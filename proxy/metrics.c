/* proxy/metrics.c: the workers' counters, summed, and their text.
 *
 * Today that is the `totals:` lines logged at exit (metrics.h shows
 * them). Names of enum-indexed counters come from their modules
 * (relay_fallback_name()), so a reason added there shows up here without
 * a second list to keep in step. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

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
