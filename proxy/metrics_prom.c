/* proxy/metrics_prom.c: the Prometheus text of DESIGN.md section 6.
 *
 * Text format 0.0.4: a HELP and a TYPE line per family, then its samples.
 * A family is written whole before the next (promtool rejects one split
 * in two), so each family loops over the listeners, backends or servers
 * itself. Every listener and backend of the running config has its
 * series, also before its first connection, so that rate() and alerts see
 * a zero rather than nothing; names a reload dropped keep theirs (the
 * workers keep counting them) until the process ends.
 *
 * Server figures come from two places: what is shared (state, weight,
 * connections open now: struct server_state's atomics, summed over a
 * host-name server's addresses) and what the workers counted (connects,
 * by backend/server name, in the sample). */
#include <dirent.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/relay.h"
#include "spliced/srctable.h"
#include "spliced/zerocopy.h"

/* A label value, escaped as the format asks (backslash, quote, newline),
 * into buf. Names come from the config, which allows few characters; the
 * escaping is for the one that slips through. */
static const char *
prom_label(const char *v, char *buf, size_t n)
{
	size_t o = 0;

	for (; *v != '\0' && o + 3 < n; v++) {
		if (*v == '\\' || *v == '"') {
			buf[o++] = '\\';
			buf[o++] = *v;
		} else if (*v == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else
			buf[o++] = *v;
	}
	buf[o] = '\0';
	return buf;
}

/* The text being written; a failed append (out of memory) is remembered
 * rather than checked at every line. */
struct prom {
	struct evbuffer *out;
	bool failed;
};

static void prom_add(struct prom *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
prom_add(struct prom *pr, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(pr->out, fmt, ap) < 0)
		pr->failed = true;
	va_end(ap);
}

static void
prom_head(struct prom *pr, const char *name, const char *type,
    const char *help)
{
	prom_add(pr, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static const char *const prom_dir[STATS_DIR_MAX_] = {
	[STATS_UP] = "up", [STATS_DOWN] = "down",
};

/* The sample's block of a listener of the config, or a zeroed one. */
static const struct stats_listener *
prom_listener(const struct stats_sample *s, const char *name)
{
	static const struct stats_listener none;
	const struct stats_listener *l = stats_sample_listener(s, name);

	return l != NULL ? l : &none;
}

/* Listener names to write: the config's, then any the sample has that
 * the config no longer does (dropped by a reload). */
static size_t
prom_listener_names(const struct metrics_process *p,
    const struct stats_sample *s, const char **names, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < p->cfg->nlisteners && n < max; i++)
		names[n++] = p->cfg->listeners[i].name;
	for (size_t i = 0; i < s->nl && n < max; i++) {
		size_t k;

		for (k = 0; k < p->cfg->nlisteners; k++)
			if (strcmp(p->cfg->listeners[k].name, s->l[i].name) == 0)
				break;
		if (k == p->cfg->nlisteners)
			names[n++] = s->l[i].name;
	}
	return n;
}

static void
prom_hist(struct prom *pr, const char *name, const char *label,
    const char *value, const struct stats_hist *h, const double *le)
{
	uint64_t cum = 0;

	for (size_t i = 0; i < STATS_HIST_MAX; i++) {
		cum += h->bucket[i];
		prom_add(pr, "%s_bucket{%s=\"%s\",le=\"%g\"} %" PRIu64
		    "\n", name, label, value, le[i], cum);
	}
	prom_add(pr, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
	    name, label, value, h->count);
	prom_add(pr, "%s_sum{%s=\"%s\"} %.6f\n", name, label, value,
	    (double)h->sum_us / 1e6);
	prom_add(pr, "%s_count{%s=\"%s\"} %" PRIu64 "\n", name,
	    label, value, h->count);
}

static void
prom_listeners(struct prom *pr, const struct stats_sample *s,
    const struct metrics_process *p)
{
	const char *names[256];
	size_t n = prom_listener_names(p, s, names, 256);
	char v[256];

	prom_head(pr, "spliced_connections_total", "counter",
	    "Client connections accepted.");
	for (size_t i = 0; i < n; i++)
		prom_add(pr, "spliced_connections_total{listener=\"%s\"} %"
		    PRIu64 "\n", prom_label(names[i], v, sizeof(v)),
		    prom_listener(s, names[i])->connections);
	prom_head(pr, "spliced_connections_active", "gauge",
	    "Client connections open now.");
	for (size_t i = 0; i < n; i++)
		prom_add(pr, "spliced_connections_active{listener=\"%s\"} %"
		    PRIu64 "\n", prom_label(names[i], v, sizeof(v)),
		    prom_listener(s, names[i])->active);
	prom_head(pr, "spliced_connections_closed_total", "counter",
	    "Connections ended, by the reason in the access log.");
	for (size_t i = 0; i < n; i++)
		for (int r = 0; r < CONN_REASON_MAX_; r++)
			prom_add(pr, "spliced_connections_closed_total{"
			    "listener=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
			    prom_label(names[i], v, sizeof(v)),
			    conn_reason_name((enum conn_reason)r),
			    prom_listener(s, names[i])->closed[r]);
	prom_head(pr, "spliced_bytes_total", "counter",
	    "Bytes relayed, counted as they move (open connections included); "
	    "direction up is client to backend; mode splice moved through a "
	    "kernel pipe, copy through user space.");
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < STATS_DIR_MAX_; d++)
			for (int m = 0; m < RELAY_MODE_MAX_; m++)
				prom_add(pr, "spliced_bytes_total{"
				    "listener=\"%s\",direction=\"%s\",mode=\"%s\"} %"
				    PRIu64 "\n", prom_label(names[i], v, sizeof(v)),
				    prom_dir[d], relay_mode_name((enum relay_mode)m),
				    prom_listener(s, names[i])->bytes[d][m]);
	prom_head(pr, "spliced_connection_duration_seconds", "histogram",
	    "How long connections lived, from accept to close.");
	for (size_t i = 0; i < n; i++)
		prom_hist(pr, "spliced_connection_duration_seconds", "listener",
		    prom_label(names[i], v, sizeof(v)),
		    &prom_listener(s, names[i])->duration, stats_duration_le);
}

/* The handshake results a PROXY header can have; a TLS ClientHello may
 * have any. */
static const enum stats_hs_result prom_proxy_results[] = {
	STATS_HS_OK, STATS_HS_TIMEOUT, STATS_HS_TOO_LARGE, STATS_HS_INVALID,
};

/* Whether listener name reads ClientHellos: it has routes, or had them
 * before a reload and counted some. Other listeners have no sni series. */
static bool
prom_routes(const struct metrics_process *p, const struct stats_sample *s,
    const char *name)
{
	const struct stats_listener *sl = prom_listener(s, name);

	for (size_t i = 0; i < p->cfg->nlisteners; i++)
		if (strcmp(p->cfg->listeners[i].name, name) == 0 &&
		    p->cfg->listeners[i].nroutes > 0)
			return true;
	for (int r = 0; r < STATS_HS_RESULT_MAX_; r++)
		if (sl->handshake[STATS_HS_SNI][r] > 0)
			return true;
	return false;
}

static void
prom_admission(struct prom *pr, const struct stats_sample *s,
    const struct metrics_process *p)
{
	const char *names[256];
	size_t n = prom_listener_names(p, s, names, 256);
	char v[256];

	prom_head(pr, "spliced_denied_connections_total", "counter",
	    "Clients refused before a server was picked, by reason.");
	for (size_t i = 0; i < n; i++)
		for (int r = 0; r < STATS_DENY_MAX_; r++)
			prom_add(pr, "spliced_denied_connections_total{"
			    "listener=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
			    prom_label(names[i], v, sizeof(v)),
			    stats_deny_name((enum stats_deny)r),
			    prom_listener(s, names[i])->denied[r]);
	prom_head(pr, "spliced_handshake_total", "counter",
	    "PROXY headers and TLS ClientHellos read, by result.");
	for (size_t i = 0; i < n; i++)
		for (size_t r = 0; r < sizeof(prom_proxy_results) /
		    sizeof(*prom_proxy_results); r++)
			prom_add(pr, "spliced_handshake_total{listener=\"%s\","
			    "kind=\"proxy\",result=\"%s\"} %" PRIu64 "\n",
			    prom_label(names[i], v, sizeof(v)),
			    stats_hs_result_name(prom_proxy_results[r]),
			    prom_listener(s, names[i])->handshake[STATS_HS_PROXY]
			    [prom_proxy_results[r]]);
	for (size_t i = 0; i < n; i++)
		for (int r = 0; r < STATS_HS_RESULT_MAX_ &&
		    prom_routes(p, s, names[i]); r++)
			prom_add(pr, "spliced_handshake_total{listener=\"%s\","
			    "kind=\"sni\",result=\"%s\"} %" PRIu64 "\n",
			    prom_label(names[i], v, sizeof(v)),
			    stats_hs_result_name((enum stats_hs_result)r),
			    prom_listener(s, names[i])->handshake[STATS_HS_SNI][r]);
	if (p->sources != NULL) {
		struct srctable_stats st;

		srctable_stats(p->sources, &st);
		prom_head(pr, "spliced_source_table_entries", "gauge",
		    "Client sources the per-source limits track now.");
		prom_add(pr, "spliced_source_table_entries %u\n", st.entries);
		prom_head(pr, "spliced_source_table_capacity", "gauge",
		    "The most sources tracked at once (source_table_size).");
		prom_add(pr, "spliced_source_table_capacity %u\n", st.capacity);
		prom_head(pr, "spliced_source_table_evictions_total", "counter",
		    "Sources forgotten to make room for new ones, least "
		    "recently used first.");
		prom_add(pr, "spliced_source_table_evictions_total %" PRIu64
		    "\n", st.evictions);
	}
}

/* The numeric families of a server line, one sample each. */
enum prom_fig {
	PROM_WEIGHT,
	PROM_ACTIVE,
	PROM_CONNECTIONS,
	PROM_CONNECT_FAILURES,
	PROM_CHECK_FAILURES,
	PROM_FIG_MAX_,
};

static const struct {
	const char *name, *type, *help;
} prom_figs[PROM_FIG_MAX_] = {
	[PROM_WEIGHT] = { "spliced_server_weight", "gauge",
	    "The weight balancing gives the server now." },
	[PROM_ACTIVE] = { "spliced_server_connections_active", "gauge",
	    "Connections to the server now (connecting or relaying)." },
	[PROM_CONNECTIONS] = { "spliced_server_connections_total", "counter",
	    "Connects to the server that succeeded." },
	[PROM_CONNECT_FAILURES] = { "spliced_server_connect_failures_total",
	    "counter", "Connects to the server that failed (retried or not)." },
	[PROM_CHECK_FAILURES] = { "spliced_server_check_failures_total",
	    "counter", "Health checks of the server that failed." },
};

/* A server line's figures: its record's shared state (struct
 * server_line: over every address it had) and what the workers counted. */
struct prom_server {
	char backend[256], name[256];      /* as label values */
	enum backend_status status;
	uint64_t fig[PROM_FIG_MAX_];
};

static void
prom_server_of(const struct backend_shared *b, size_t j,
    const struct stats_sample *s, struct prom_server *ps)
{
	const struct config_server *cs = &b->cfg->servers[j];
	const struct stats_server *counted =
	    stats_sample_server(s, b->cfg->name, cs->name);

	memset(ps, 0, sizeof(*ps));
	prom_label(b->cfg->name, ps->backend, sizeof(ps->backend));
	prom_label(cs->name, ps->name, sizeof(ps->name));

	ps->status = backend_line_status(b, j);
	ps->fig[PROM_WEIGHT] = backend_line_weight(b, j);
	/* The line's counts: addresses a reload or DNS dropped still hold
	 * their connections, and checks failed on them still count. */
	ps->fig[PROM_ACTIVE] = atomic_load(&b->lines[j]->active);
	ps->fig[PROM_CHECK_FAILURES] = atomic_load(&b->lines[j]->check_failures);
	if (counted != NULL) {
		ps->fig[PROM_CONNECTIONS] = counted->connections;
		ps->fig[PROM_CONNECT_FAILURES] = counted->connect_failures;
	}
}

/* Every server line of the config, in config order. NULL when out of
 * memory (*n 0). */
static struct prom_server *
prom_servers_of(const struct backend_set *bs, const struct stats_sample *s,
    size_t *n)
{
	struct prom_server *v;
	size_t k = 0;

	*n = 0;
	for (size_t i = 0; i < bs->n; i++)
		*n += bs->b[i].cfg->nservers;
	if ((v = calloc(*n ? *n : 1, sizeof(*v))) == NULL) {
		*n = 0;
		return NULL;
	}
	for (size_t i = 0; i < bs->n; i++)
		for (size_t j = 0; j < bs->b[i].cfg->nservers; j++)
			prom_server_of(&bs->b[i], j, s, &v[k++]);
	return v;
}

static void
prom_servers(struct prom *pr, const struct stats_sample *s,
    const struct metrics_process *p)
{
	const struct backend_set *bs = p->bs;
	struct prom_server *v;
	size_t n;
	char vb[256];

	if ((v = prom_servers_of(bs, s, &n)) == NULL)
		pr->failed = true;
	prom_head(pr, "spliced_server_state", "gauge",
	    "The server's state, one-hot: up or down by health, drain or maint "
	    "as set at run time.");
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < BACKEND_STATUS_MAX_; k++)
			prom_add(pr, "spliced_server_state{backend=\"%s\","
			    "server=\"%s\",state=\"%s\"} %d\n", v[i].backend,
			    v[i].name, backend_status_name((enum backend_status)k),
			    v[i].status == (enum backend_status)k);
	for (int f = 0; f < PROM_FIG_MAX_; f++) {
		prom_head(pr, prom_figs[f].name, prom_figs[f].type,
		    prom_figs[f].help);
		for (size_t i = 0; i < n; i++)
			prom_add(pr, "%s{backend=\"%s\",server=\"%s\"} %" PRIu64
			    "\n", prom_figs[f].name, v[i].backend, v[i].name,
			    v[i].fig[f]);
	}
	free(v);
	prom_head(pr, "spliced_connect_duration_seconds", "histogram",
	    "How long connects to the backend's servers took, when they "
	    "succeeded.");
	for (size_t i = 0; i < bs->n; i++) {
		static const struct stats_backend none;
		const struct stats_backend *sb =
		    stats_sample_backend(s, bs->b[i].cfg->name);

		prom_hist(pr, "spliced_connect_duration_seconds", "backend",
		    prom_label(bs->b[i].cfg->name, vb, sizeof(vb)),
		    &(sb != NULL ? sb : &none)->connect, stats_connect_le);
	}
}

static void
prom_relay(struct prom *pr, const struct stats_sample *s)
{
	prom_head(pr, "spliced_splice_fallbacks_total", "counter",
	    "Directions that wanted to splice and copied instead, by reason.");
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		prom_add(pr, "spliced_splice_fallbacks_total{reason=\"%s\"} %"
		    PRIu64 "\n", relay_fallback_name((enum relay_fallback)f),
		    s->fallbacks[f]);
	prom_head(pr, "spliced_pipes_in_use", "gauge",
	    "Pipes held by directions that are splicing.");
	prom_add(pr, "spliced_pipes_in_use %u\n", s->pipes.in_use);
	prom_head(pr, "spliced_pipes_pooled", "gauge",
	    "Empty pipes kept for reuse.");
	prom_add(pr, "spliced_pipes_pooled %u\n", s->pipes.pooled);
	prom_head(pr, "spliced_pipe_bytes_held", "gauge",
	    "Capacity of the pipes held, in use or pooled (kernel memory).");
	prom_add(pr, "spliced_pipe_bytes_held %zu\n", s->pipes.held);
	prom_head(pr, "spliced_log_lines_dropped_total", "counter",
	    "Log lines dropped because the log reader was stalled.");
	prom_add(pr, "spliced_log_lines_dropped_total %" PRIu64 "\n",
	    log_dropped_total());
}

/* Open fds: the entries of /proc/self/fd, less the one reading it. */
static long
prom_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}

static void
prom_process(struct prom *pr, const struct metrics_process *p)
{
	struct rusage ru;
	struct rlimit rl;
	long fds = prom_open_fds(), pages = 0;
	FILE *f;

	if (fds >= 0) {
		prom_head(pr, "process_open_fds", "gauge",
		    "Number of open file descriptors.");
		prom_add(pr, "process_open_fds %ld\n", fds);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		prom_head(pr, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.");
		prom_add(pr, "process_max_fds %.0f\n",
		    rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
	}
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(f, "%*s %ld", &pages) == 1) {
			prom_head(pr, "process_resident_memory_bytes", "gauge",
			    "Resident memory size in bytes.");
			prom_add(pr, "process_resident_memory_bytes %.0f\n",
			    (double)pages * (double)sysconf(_SC_PAGESIZE));
		}
		fclose(f);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		prom_head(pr, "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds.");
		prom_add(pr, "process_cpu_seconds_total %.6f\n",
		    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	}
	prom_head(pr, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.");
	prom_add(pr, "process_start_time_seconds %.3f\n",
	    p->start_time);
}

int
metrics_prometheus(struct evbuffer *out, const struct stats_sample *s,
    const struct metrics_process *p)
{
	struct prom text = { out, false }, *pr = &text;
	char v1[256], v2[256];

	prom_head(pr, "spliced_build_info", "gauge",
	    "The version and the zero-copy primitives built in.");
	prom_add(pr, "spliced_build_info{version=\"%s\","
	    "zero_copy=\"%s\"} 1\n", prom_label(SPLICED_VERSION, v1, sizeof(v1)),
	    prom_label(zc_backend_name(), v2, sizeof(v2)));
	prom_listeners(pr, s, p);
	prom_admission(pr, s, p);
	prom_servers(pr, s, p);
	prom_relay(pr, s);
	prom_process(pr, p);
	return pr->failed ? -1 : 0;
}
