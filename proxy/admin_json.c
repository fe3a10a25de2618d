/* proxy/admin_json.c: the admin endpoint's documents: JSON (the shapes
 * of CONTRACT.md: /status, a server, /connections) and the text table of
 * /status?format=text (spliced ctl status), from the config, the servers'
 * shared state (atomics, read now) and a gathered sample.
 *
 * Written straight into an evbuffer; a failed write (out of memory) marks
 * the document failed, and the caller answers 500 instead. */
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin_int.h"
#include "spliced/addr.h"
#include "spliced/backend.h"
#include "spliced/relay.h"
#include "spliced/srctable.h"
#include "spliced/stats.h"
#include "spliced/zerocopy.h"

struct jw {
	struct evbuffer *out;
	bool failed;
};

static void jw_printf(struct jw *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
jw_printf(struct jw *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(w->out, fmt, ap) < 0)
		w->failed = true;
	va_end(ap);
}

void
admin_json_str(struct evbuffer *out, const char *s)
{
	const char *run = s;

	evbuffer_add(out, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		evbuffer_add(out, run, (size_t)(s - run));
		if (c == '"' || c == '\\')
			evbuffer_add_printf(out, "\\%c", c);
		else
			evbuffer_add_printf(out, "\\u%04x", c);
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
	evbuffer_add(out, "\"", 1);
}

static void
jw_str(struct jw *w, const char *s)
{
	size_t before = evbuffer_get_length(w->out);

	admin_json_str(w->out, s);
	if (evbuffer_get_length(w->out) < before + 2 + strlen(s))
		w->failed = true;
}

/* "bytes": {"up": {"splice": N, "copy": N}, "down": {...}} */
static void
jw_bytes(struct jw *w, const uint64_t b[STATS_DIR_MAX_][RELAY_MODE_MAX_])
{
	jw_printf(w, "{\"up\": {\"splice\": %llu, \"copy\": %llu}, \"down\": "
	    "{\"splice\": %llu, \"copy\": %llu}}",
	    (unsigned long long)b[STATS_UP][RELAY_MODE_SPLICE],
	    (unsigned long long)b[STATS_UP][RELAY_MODE_COPY],
	    (unsigned long long)b[STATS_DOWN][RELAY_MODE_SPLICE],
	    (unsigned long long)b[STATS_DOWN][RELAY_MODE_COPY]);
}

/* What is said of server line j of backend sh: its health over the
 * addresses it has now, its counts over every address it ever had (its
 * line's record: connections on an address a reload or DNS dropped still
 * count, so wait-empty waits for them). */
struct admin_fig {
	const struct config_server *cs;
	const char *state, *admin;
	bool up;
	unsigned weight, active;
	unsigned long long checks, connections, connect_failures;
};

static void
admin_fig(const struct backend_shared *sh, size_t j,
    const struct stats_sample *s, struct admin_fig *f)
{
	const struct config_server *cs = &sh->cfg->servers[j];
	const struct stats_server *ss = stats_sample_server(s, sh->cfg->name,
	    cs->name);
	unsigned admin = atomic_load(&sh->lines[j]->admin);

	*f = (struct admin_fig){ .cs = cs };
	for (size_t i = 0; i < sh->n; i++) {
		const struct server_state *st = sh->servers[i];

		if (sh->entry[i] == cs)
			f->up |= atomic_load(&st->up);
	}
	f->active = atomic_load(&sh->lines[j]->active);
	f->checks = atomic_load(&sh->lines[j]->check_failures);
	f->admin = backend_admin_name((enum backend_admin)admin);
	f->state = backend_status_name(backend_line_status(sh, j));
	f->weight = backend_line_weight(sh, j);
	f->connections = ss ? ss->connections : 0;
	f->connect_failures = ss ? ss->connect_failures : 0;
}

/* One server line j of backend sh; a document of its own (nw > 0) says
 * how many of the nw workers answered, as /status does. */
static void
jw_server(struct jw *w, const struct backend_shared *sh, size_t j,
    const struct stats_sample *s, unsigned nw)
{
	struct admin_fig f;
	char text[ADDR_TEXT_MAX];
	bool first = true;

	admin_fig(sh, j, s, &f);
	jw_printf(w, "{\"backend\": ");
	jw_str(w, sh->cfg->name);
	jw_printf(w, ", \"name\": ");
	jw_str(w, f.cs->name);
	jw_printf(w, ", \"state\": \"%s\", \"admin\": \"%s\", \"health\": "
	    "\"%s\", \"weight\": %u, \"active\": %u, \"connections\": %llu, "
	    "\"connect_failures\": %llu, \"check_failures\": %llu, "
	    "\"addresses\": [", f.state, f.admin, f.up ? "up" : "down", f.weight,
	    f.active, f.connections, f.connect_failures, f.checks);
	for (size_t i = 0; i < sh->n; i++) {
		const struct server_state *st = sh->servers[i];

		if (sh->entry[i] != f.cs)
			continue;
		jw_printf(w, "%s{\"address\": ", first ? "" : ", ");
		jw_str(w, addr_format((const struct sockaddr *)&st->addr.ss,
		    text, sizeof(text)));
		jw_printf(w, ", \"health\": \"%s\", \"active\": %u}",
		    atomic_load(&st->up) ? "up" : "down",
		    atomic_load(&st->active));
		first = false;
	}
	jw_printf(w, "]");
	if (nw > 0)
		jw_printf(w, ", \"workers\": %u, \"workers_answered\": %u", nw,
		    s->workers);
	jw_printf(w, "}");
}

int
admin_json_server(struct evbuffer *out, const struct backend_set *bs,
    const char *backend, const char *server, const struct stats_sample *s,
    unsigned nw)
{
	struct jw w = { out, false };

	for (size_t b = 0; b < bs->n; b++) {
		const struct backend_shared *sh = &bs->b[b];

		if (strcmp(sh->cfg->name, backend) != 0)
			continue;
		for (size_t j = 0; j < sh->cfg->nservers; j++)
			if (strcmp(sh->cfg->servers[j].name, server) == 0) {
				jw_server(&w, sh, j, s, nw);
				jw_printf(&w, "\n");
				return w.failed ? -1 : 0;
			}
	}
	return 1;
}

static void
jw_listener(struct jw *w, const struct config_listener *l,
    const struct stats_sample *s)
{
	static const uint64_t none[STATS_DIR_MAX_][RELAY_MODE_MAX_];
	const struct stats_listener *sl = stats_sample_listener(s, l->name);
	char text[ADDR_TEXT_MAX];

	jw_printf(w, "{\"name\": ");
	jw_str(w, l->name);
	jw_printf(w, ", \"binds\": [");
	for (size_t k = 0; k < l->nbinds; k++) {
		jw_printf(w, "%s", k > 0 ? ", " : "");
		jw_str(w, addr_written(&l->binds[k], text, sizeof(text)));
	}
	jw_printf(w, "], \"backend\": ");
	if (l->backend_name != NULL)
		jw_str(w, l->backend_name);
	else
		jw_printf(w, "null");
	jw_printf(w, ", \"routes\": [");
	for (size_t k = 0; k < l->nroutes; k++) {
		char name[260];

		snprintf(name, sizeof(name), "%s%s", l->routes[k].wildcard ?
		    "*" : "", l->routes[k].name);
		jw_printf(w, "%s{\"name\": ", k > 0 ? ", " : "");
		jw_str(w, name);
		jw_printf(w, ", \"backend\": ");
		jw_str(w, l->routes[k].backend_name);
		jw_printf(w, "}");
	}
	jw_printf(w, "]");
	jw_printf(w, ", \"active\": %llu, \"total\": %llu, \"bytes\": ",
	    sl ? (unsigned long long)sl->active : 0ull,
	    sl ? (unsigned long long)sl->connections : 0ull);
	jw_bytes(w, sl ? sl->bytes : none);
	jw_printf(w, ", \"denied\": {");
	for (int r = 0; r < STATS_DENY_MAX_; r++)
		jw_printf(w, "%s\"%s\": %llu", r > 0 ? ", " : "",
		    stats_deny_name((enum stats_deny)r),
		    sl ? (unsigned long long)sl->denied[r] : 0ull);
	jw_printf(w, "}}");
}

static void admin_totals(const struct stats_sample *, unsigned long long *,
    unsigned long long *, uint64_t[STATS_DIR_MAX_][RELAY_MODE_MAX_]);

int
admin_json_status(struct evbuffer *out, const struct admin_view *v,
    const struct stats_sample *s)
{
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_];
	unsigned long long active, total;
	struct jw w = { out, false };

	admin_totals(s, &active, &total, bytes);
	jw_printf(&w, "{\"version\": \"%s\", \"pid\": %ld, \"zero_copy\": ",
	    SPLICED_VERSION, (long)getpid());
	jw_str(&w, zc_backend_name());
	jw_printf(&w, ", \"uptime_s\": %.1f, \"workers\": %u, "
	    "\"workers_answered\": %u, \"draining\": %s, \"health\": \"%s\", "
	    "\"connections\": {\"active\": %llu, \"total\": %llu}, "
	    "\"bytes\": ", v->uptime_s, v->workers, s->workers,
	    v->draining ? "true" : "false", v->health, active, total);
	jw_bytes(&w, bytes);
	jw_printf(&w, ",\n \"listeners\": [");
	for (size_t i = 0; i < v->cfg->nlisteners; i++) {
		jw_printf(&w, "%s", i > 0 ? ",\n  " : "\n  ");
		jw_listener(&w, &v->cfg->listeners[i], s);
	}
	jw_printf(&w, "],\n \"backends\": [");
	for (size_t b = 0; b < v->bs->n; b++) {
		const struct backend_shared *sh = &v->bs->b[b];

		jw_printf(&w, "%s{\"name\": ", b > 0 ? ",\n  " : "\n  ");
		jw_str(&w, sh->cfg->name);
		jw_printf(&w, ", \"balance\": \"%s\", \"servers\": [",
		    config_balance_name(sh->cfg->balance));
		for (size_t j = 0; j < sh->cfg->nservers; j++) {
			jw_printf(&w, "%s", j > 0 ? ",\n   " : "\n   ");
			jw_server(&w, sh, j, s, 0);
		}
		jw_printf(&w, "]}");
	}
	jw_printf(&w, "],\n \"pipes\": {\"in_use\": %u, \"pooled\": %u, "
	    "\"bytes_held\": %zu},\n \"splice_fallbacks\": {", s->pipes.in_use,
	    s->pipes.pooled, s->pipes.held);
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		jw_printf(&w, "%s\"%s\": %llu", f > 0 ? ", " : "",
		    relay_fallback_name((enum relay_fallback)f),
		    (unsigned long long)s->fallbacks[f]);
	jw_printf(&w, "}");
	if (v->sources != NULL) {
		struct srctable_stats st;

		srctable_stats(v->sources, &st);
		jw_printf(&w, ",\n \"sources\": {\"entries\": %u, \"capacity\": "
		    "%u, \"evictions\": %llu, \"evicted_busy\": %llu}",
		    st.entries, st.capacity, (unsigned long long)st.evictions,
		    (unsigned long long)st.evicted_busy);
	}
	jw_printf(&w, "}\n");
	return w.failed ? -1 : 0;
}

int
admin_json_connections(struct evbuffer *out, const struct stats_sample *s)
{
	struct jw w = { out, false };

	jw_printf(&w, "{\"connections\": [");
	for (size_t i = 0; i < s->nc; i++) {
		const struct stats_conn *c = &s->c[i];

		jw_printf(&w, "%s{\"id\": %llu, \"listener\": ",
		    i > 0 ? ",\n  " : "\n  ", (unsigned long long)c->id);
		jw_str(&w, c->listener);
		jw_printf(&w, ", \"client\": ");
		jw_str(&w, c->client);
		jw_printf(&w, ", \"server\": ");
		jw_str(&w, c->server);
		jw_printf(&w, ", \"sni\": ");
		if (c->sni[0] != '\0')
			jw_str(&w, c->sni);
		else
			jw_printf(&w, "null");
		jw_printf(&w, ", \"age_s\": %.3f, \"connecting\": %s, \"bytes\": ",
		    (double)c->age_ms / 1000, c->connecting ? "true" : "false");
		jw_bytes(&w, c->bytes);
		jw_printf(&w, ", \"up\": {\"state\": \"%s\", \"mode\": \"%s\"}, "
		    "\"down\": {\"state\": \"%s\", \"mode\": \"%s\"}}",
		    relay_state_name(c->state[STATS_UP]),
		    relay_mode_name(c->mode[STATS_UP]),
		    relay_state_name(c->state[STATS_DOWN]),
		    relay_mode_name(c->mode[STATS_DOWN]));
	}
	jw_printf(&w, "]}\n");
	return w.failed ? -1 : 0;
}

/* The process's figures are its listeners' (every listener that counted,
 * including one a reload removed). */
static void
admin_totals(const struct stats_sample *s, unsigned long long *active,
    unsigned long long *total, uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_])
{
	*active = *total = 0;
	memset(bytes, 0, sizeof(uint64_t) * STATS_DIR_MAX_ * RELAY_MODE_MAX_);
	for (size_t i = 0; i < s->nl; i++) {
		*active += s->l[i].active;
		*total += s->l[i].connections;
		for (int d = 0; d < STATS_DIR_MAX_; d++)
			for (int m = 0; m < RELAY_MODE_MAX_; m++)
				bytes[d][m] += s->l[i].bytes[d][m];
	}
}

int
admin_text_status(struct evbuffer *out, const struct admin_view *v,
    const struct stats_sample *s)
{
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_];
	unsigned long long active, total;
	struct jw w = { out, false };
	char text[ADDR_TEXT_MAX], name[160];

	admin_totals(s, &active, &total, bytes);
	jw_printf(&w, "spliced %s (zero-copy %s), up %.0f s, %u worker%s, "
	    "health %s%s\n", SPLICED_VERSION, zc_backend_name(), v->uptime_s,
	    v->workers, v->workers == 1 ? "" : "s", v->health,
	    v->draining ? ", draining" : "");
	if (s->workers < v->workers)
		jw_printf(&w, "only %u of %u workers answered in time: the "
		    "figures below are short\n", s->workers, v->workers);
	jw_printf(&w, "connections: %llu active, %llu total\n\n", active, total);
	jw_printf(&w, "%-16s %-8s %8s %10s  %s\n", "LISTENER", "BACKEND",
	    "ACTIVE", "TOTAL", "BINDS");
	for (size_t i = 0; i < v->cfg->nlisteners; i++) {
		const struct config_listener *l = &v->cfg->listeners[i];
		const struct stats_listener *sl = stats_sample_listener(s, l->name);

		jw_printf(&w, "%-16s %-8s %8llu %10llu ", l->name,
		    l->backend_name != NULL ? l->backend_name : "-",
		    sl ? (unsigned long long)sl->active : 0ull,
		    sl ? (unsigned long long)sl->connections : 0ull);
		for (size_t k = 0; k < l->nbinds; k++)
			jw_printf(&w, " %s", addr_written(&l->binds[k], text,
			    sizeof(text)));
		jw_printf(&w, "\n");
	}
	jw_printf(&w, "\n%-24s %-6s %-6s %-6s %6s %8s %11s %8s\n",
	    "BACKEND/SERVER", "STATE", "ADMIN", "HEALTH", "WEIGHT", "ACTIVE",
	    "CONNECTIONS", "FAILURES");
	for (size_t b = 0; b < v->bs->n; b++) {
		const struct backend_shared *sh = &v->bs->b[b];

		for (size_t j = 0; j < sh->cfg->nservers; j++) {
			struct admin_fig f;

			admin_fig(sh, j, s, &f);
			snprintf(name, sizeof(name), "%s/%s", sh->cfg->name,
			    f.cs->name);
			jw_printf(&w, "%-24s %-6s %-6s %-6s %6u %8u %11llu %8llu\n",
			    name, f.state, f.admin, f.up ? "up" : "down", f.weight,
			    f.active, f.connections, f.connect_failures);
		}
	}
	return w.failed ? -1 : 0;
}
