/* proxy/admin_json.c: the admin endpoint's JSON (the shapes of
 * CONTRACT.md: /status, a server, /connections), from the config, the
 * servers' shared state (atomics, read now) and a gathered sample.
 *
 * Written straight into an evbuffer; a failed write (out of memory) marks
 * the document failed, and the caller answers 500 instead. */
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin_int.h"
#include "spliced/addr.h"
#include "spliced/backend.h"
#include "spliced/relay.h"
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

/* One server line j of backend sh: its addresses in sh, summed. */
static void
jw_server(struct jw *w, const struct backend_shared *sh, size_t j,
    const struct stats_sample *s)
{
	const struct config_server *cs = &sh->cfg->servers[j];
	const struct stats_server *ss = stats_sample_server(s, sh->cfg->name,
	    cs->name);
	unsigned admin = BACKEND_ADMIN_READY, weight = 0, active = 0;
	unsigned long long checks = 0;
	bool up = false, first = true;
	char text[ADDR_TEXT_MAX];
	const char *state;

	for (size_t i = 0; i < sh->n; i++) {
		const struct server_state *st = sh->servers[i];

		if (sh->entry[i] != cs)
			continue;
		/* Every address of a server has the server's runtime state. */
		admin = atomic_load(&st->admin);
		weight = atomic_load(&st->weight);
		active += atomic_load(&st->active);
		checks += atomic_load(&st->check_failures);
		up |= atomic_load(&st->up);
	}
	if (admin >= BACKEND_ADMIN_MAX_)
		admin = BACKEND_ADMIN_READY;
	state = admin == BACKEND_ADMIN_MAINT ? "maint" :
	    admin == BACKEND_ADMIN_DRAIN ? "drain" : up ? "up" : "down";
	jw_printf(w, "{\"backend\": ");
	jw_str(w, sh->cfg->name);
	jw_printf(w, ", \"name\": ");
	jw_str(w, cs->name);
	jw_printf(w, ", \"state\": \"%s\", \"admin\": \"%s\", \"health\": "
	    "\"%s\", \"weight\": %u, \"active\": %u, \"connections\": %llu, "
	    "\"connect_failures\": %llu, \"check_failures\": %llu, "
	    "\"addresses\": [", state,
	    backend_admin_name((enum backend_admin)admin), up ? "up" : "down",
	    weight != 0 ? weight : cs->weight, active,
	    ss ? (unsigned long long)ss->connections : 0ull,
	    ss ? (unsigned long long)ss->connect_failures : 0ull, checks);
	for (size_t i = 0; i < sh->n; i++) {
		const struct server_state *st = sh->servers[i];

		if (sh->entry[i] != cs)
			continue;
		jw_printf(w, "%s{\"address\": ", first ? "" : ", ");
		jw_str(w, addr_format((const struct sockaddr *)&st->addr.ss,
		    text, sizeof(text)));
		jw_printf(w, ", \"health\": \"%s\", \"active\": %u}",
		    atomic_load(&st->up) ? "up" : "down",
		    atomic_load(&st->active));
		first = false;
	}
	jw_printf(w, "]}");
}

int
admin_json_server(struct evbuffer *out, const struct backend_set *bs,
    const char *backend, const char *server, const struct stats_sample *s)
{
	struct jw w = { out, false };

	for (size_t b = 0; b < bs->n; b++) {
		const struct backend_shared *sh = &bs->b[b];

		if (strcmp(sh->cfg->name, backend) != 0)
			continue;
		for (size_t j = 0; j < sh->cfg->nservers; j++)
			if (strcmp(sh->cfg->servers[j].name, server) == 0) {
				jw_server(&w, sh, j, s);
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
	jw_str(w, l->backend_name);
	jw_printf(w, ", \"active\": %llu, \"total\": %llu, \"bytes\": ",
	    sl ? (unsigned long long)sl->active : 0ull,
	    sl ? (unsigned long long)sl->connections : 0ull);
	jw_bytes(w, sl ? sl->bytes : none);
	jw_printf(w, "}");
}

int
admin_json_status(struct evbuffer *out, const struct admin_view *v,
    const struct stats_sample *s)
{
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_] = { { 0 } };
	unsigned long long active = 0, total = 0;
	struct jw w = { out, false };

	/* The process's figures are its listeners' (every listener that
	 * counted, including one a reload removed). */
	for (size_t i = 0; i < s->nl; i++) {
		active += s->l[i].active;
		total += s->l[i].connections;
		for (int d = 0; d < STATS_DIR_MAX_; d++)
			for (int m = 0; m < RELAY_MODE_MAX_; m++)
				bytes[d][m] += s->l[i].bytes[d][m];
	}
	jw_printf(&w, "{\"version\": \"%s\", \"zero_copy\": ", SPLICED_VERSION);
	jw_str(&w, zc_backend_name());
	jw_printf(&w, ", \"uptime_s\": %.1f, \"workers\": %u, \"draining\": %s, "
	    "\"health\": \"%s\", \"connections\": {\"active\": %llu, "
	    "\"total\": %llu}, \"bytes\": ", v->uptime_s, v->workers,
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
			jw_server(&w, sh, j, s);
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
	jw_printf(&w, "}}\n");
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
		jw_printf(&w, ", \"age_s\": %.3f, \"connecting\": %s, \"bytes\": ",
		    (double)c->age_ms / 1000, c->connecting ? "true" : "false");
		jw_bytes(&w, c->bytes);
		jw_printf(&w, ", \"up\": {\"state\": \"%s\", \"mode\": \"%s\"}, "
		    "\"down\": {\"state\": \"%s\", \"mode\": \"%s\"}}",
		    relay_state_name(c->state[STATS_UP]),
		    c->mode[STATS_UP] == RELAY_MODE_SPLICE ? "splice" : "copy",
		    relay_state_name(c->state[STATS_DOWN]),
		    c->mode[STATS_DOWN] == RELAY_MODE_SPLICE ? "splice" : "copy");
	}
	jw_printf(&w, "]}\n");
	return w.failed ? -1 : 0;
}
