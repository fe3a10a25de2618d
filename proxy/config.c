/* proxy/config.c: the snapshot, its sections and where each key was set.
 *
 * A struct config is built here: config_new() gives the defaults, and every
 * key, from a file (config_read.c) or from config_set() (the command line),
 * goes through config_sect_set(), which finds it in its section
 * (config_keys.c parses the value) and marks the line it was set on. The
 * marks are a private list behind the public struct: they give the line of
 * problems found only at the end (config_finish.c, and later ones such as a
 * server name that does not resolve), and tell a listener's own splice from
 * the inherited one. Errors all take one form, "FILE:LINE: [SECTION] KEY:
 * why", from config_err_put(). */
#include "spliced/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_int.h"

/* ---- sections and keys ---- */

static void *
sect_base(struct config *cfg, struct sect s)
{
	return s.kind == CONFIG_SECT_GLOBAL ? (void *)cfg :
	    s.kind == CONFIG_SECT_LISTENER ? (void *)&cfg->listeners[s.idx] :
	    (void *)&cfg->backends[s.idx];
}

const char *
config_sect_label(const struct config *cfg, struct sect s, char *buf,
    size_t n)
{
	if (s.kind == CONFIG_SECT_GLOBAL)
		return "global";
	if (s.kind == CONFIG_SECT_LISTENER)
		snprintf(buf, n, "listener %s", cfg->listeners[s.idx].name);
	else if (s.kind == CONFIG_SECT_BACKEND)
		snprintf(buf, n, "backend %s", cfg->backends[s.idx].name);
	else
		return NULL;
	return buf;
}

static const struct mark *
mark_find(const struct config_priv *p, struct sect s,
    const struct config_key *key, size_t sub)
{
	for (size_t i = 0; i < p->nmarks; i++) {
		const struct mark *m = &p->marks[i];

		if (m->sect.kind == s.kind && m->sect.idx == s.idx &&
		    m->key == key && m->sub == sub)
			return m;
	}
	return NULL;
}

int
config_mark_line(const struct config *cfg, struct sect s, const char *key,
    size_t sub)
{
	const struct mark *m = mark_find((const struct config_priv *)cfg, s,
	    config_key_find(s.kind, key), sub);

	return m != NULL ? m->line : -1;
}

bool
config_sect_find(const struct config *cfg, enum config_sect kind,
    const char *name, size_t *idx)
{
	size_t n = kind == CONFIG_SECT_LISTENER ? cfg->nlisteners :
	    cfg->nbackends;

	for (*idx = 0; *idx < n; (*idx)++) {
		const char *have = kind == CONFIG_SECT_LISTENER ?
		    cfg->listeners[*idx].name : cfg->backends[*idx].name;

		if (strcmp(have, name) == 0)
			return true;
	}
	return false;
}

static int
sect_create(struct config *cfg, enum config_sect kind, const char *name,
    int line)
{
	struct config_listener *l;
	struct config_backend *b;
	char *copy;

	if ((copy = strdup(name)) == NULL)
		return -1;
	if (kind == CONFIG_SECT_LISTENER) {
		if ((l = config_grow(cfg->listeners, cfg->nlisteners,
		    sizeof(*l))) == NULL)
			goto fail;
		cfg->listeners = l;
		/* splice, splice_threshold and tcp_keepalive come in
		 * config_finish() */
		cfg->listeners[cfg->nlisteners++] = (struct config_listener){
		    .name = copy, .line = line,
		    .timeout_connect_ms = 5 * 1000,
		    .timeout_idle_ms = 5 * 60 * 1000,
		    .timeout_handshake_ms = 5 * 1000, .source_prefix_v6 = 64,
		    .sni_max_bytes = 16 << 10 };
	} else {
		if ((b = config_grow(cfg->backends, cfg->nbackends,
		    sizeof(*b))) == NULL)
			goto fail;
		cfg->backends = b;
		cfg->backends[cfg->nbackends++] = (struct config_backend){
		    .name = copy, .retries = 2, .line = line,
		    .health_interval_ms = 2 * 1000, .health_timeout_ms = 1000,
		    .rise = 2, .fall = 3, .resolve_interval_ms = 30 * 1000 };
	}
	return 0;
fail:
	free(copy);
	return -1;
}

int
config_sect_open(struct config *cfg, const char *text, int line, bool reuse,
    struct sect *out, char *why, size_t n)
{
	struct config_priv *p = config_priv(cfg);
	size_t tlen = strcspn(text, " \t");
	const char *name = text + tlen + strspn(text + tlen, " \t");
	enum config_sect kind;
	char lbuf[32];

	if (tlen == 6 && strncasecmp(text, "global", 6) == 0) {
		if (*name != '\0') {
			snprintf(why, n, "[global] takes no name");
			return -1;
		}
		if (p->global_seen && !reuse) {
			snprintf(why, n, "duplicate section (first%s)",
			    config_at_line(p->global_line, lbuf, sizeof(lbuf)));
			return -1;
		}
		if (!p->global_seen)
			p->global_line = line;
		p->global_seen = true;
		*out = (struct sect){ CONFIG_SECT_GLOBAL, 0 };
		return 0;
	}
	if (tlen == 8 && strncasecmp(text, "listener", 8) == 0)
		kind = CONFIG_SECT_LISTENER;
	else if (tlen == 7 && strncasecmp(text, "backend", 7) == 0)
		kind = CONFIG_SECT_BACKEND;
	else {
		snprintf(why, n, "unknown section (expected [global], "
		    "[listener NAME] or [backend NAME])");
		return -1;
	}
	if (*name == '\0') {
		snprintf(why, n, "missing name (write [%.*s NAME])", (int)tlen,
		    text);
		return -1;
	}
	if (!config_name_ok(name)) {
		snprintf(why, n, "'%s' is not a valid name "
		    "(letters, digits, '_', '.' and '-')", name);
		return -1;
	}
	out->kind = kind;
	if (config_sect_find(cfg, kind, name, &out->idx)) {
		if (reuse)
			return 0;
		snprintf(why, n, "duplicate section (first%s)", config_at_line(
		    kind == CONFIG_SECT_LISTENER ? cfg->listeners[out->idx].line :
		    cfg->backends[out->idx].line, lbuf, sizeof(lbuf)));
		return -1;
	}
	if (sect_create(cfg, kind, name, line) < 0) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	out->idx = (kind == CONFIG_SECT_LISTENER ? cfg->nlisteners :
	    cfg->nbackends) - 1;
	return 0;
}

/* The keys that add to a list each time they are given; every other key
 * is set once per section. */
static bool
key_repeats(const struct config_key *k)
{
	switch (k->type) {
	case CONFIG_KEY_BIND:
	case CONFIG_KEY_SERVER:
	case CONFIG_KEY_PROXY_FROM:
	case CONFIG_KEY_ALLOW:
	case CONFIG_KEY_DENY:
	case CONFIG_KEY_ROUTE:
		return true;
	default:
		return false;
	}
}

/* Which element of its list a repeating key just added. */
static size_t
key_sub(const struct config *cfg, struct sect s, const struct config_key *k)
{
	switch (k->type) {
	case CONFIG_KEY_BIND:
		return cfg->listeners[s.idx].nbinds - 1;
	case CONFIG_KEY_SERVER:
		return cfg->backends[s.idx].nservers - 1;
	case CONFIG_KEY_PROXY_FROM:
		return cfg->listeners[s.idx].naccept_proxy_from - 1;
	case CONFIG_KEY_ALLOW:
	case CONFIG_KEY_DENY:
		return cfg->listeners[s.idx].nrules - 1;
	case CONFIG_KEY_ROUTE:
		return cfg->listeners[s.idx].nroutes - 1;
	default:
		return 0;
	}
}

int
config_sect_set(struct config *cfg, struct sect s, const char *name,
    const char *value, int line, char *why, size_t n)
{
	struct config_priv *p = config_priv(cfg);
	const struct config_key *key;
	const struct mark *m;
	struct mark *marks;
	const char *home;
	char lbuf[32];
	size_t sub;

	if (s.kind == CONFIG_SECT_NONE) {
		snprintf(why, n, "key outside any section (put it under "
		    "[global], [listener NAME] or [backend NAME])");
		return -1;
	}
	if (*name == '\0' || name[strcspn(name, " \t")] != '\0') {
		snprintf(why, n, "not a key (write 'key = value')");
		return -1;
	}
	if ((key = config_key_find(s.kind, name)) == NULL) {
		if ((home = config_key_home(s.kind, name)) != NULL)
			snprintf(why, n, "unknown key (it belongs in %s)", home);
		else
			snprintf(why, n, "unknown key");
		return -1;
	}
	/* Only lists repeat; a key given twice is more likely a pasting
	 * mistake than an override. */
	if (!key_repeats(key) && (m = mark_find(p, s, key, 0)) != NULL) {
		snprintf(why, n, "set twice (first%s)",
		    config_at_line(m->line, lbuf, sizeof(lbuf)));
		return -1;
	}
	if (config_key_set(key, sect_base(cfg, s), value, line, why, n) < 0)
		return -1;
	sub = key_sub(cfg, s, key);
	if ((marks = config_grow(p->marks, p->nmarks,
	    sizeof(*marks))) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	p->marks = marks;
	p->marks[p->nmarks++] = (struct mark){ s, key, sub, line };
	return 0;
}

/* ---- the builder ---- */

struct config *
config_new(const char *name)
{
	struct config_priv *p;
	struct config *cfg;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	cfg = &p->pub;
	if ((cfg->path = strdup(name != NULL ? name : "command line")) == NULL) {
		free(p);
		return NULL;
	}
	atomic_init(&cfg->refs, 1);
	cfg->max_connections = 10000;
	cfg->log_level = CONFIG_LOG_INFO;
	cfg->access_log = CONFIG_ACCESS_LOG_ON;
	cfg->splice = CONFIG_SPLICE_AUTO;
	cfg->splice_threshold = 64 << 10;
	cfg->pipe_size = 1 << 20;
	cfg->buffer_size = 64 << 10;    /* by benchmark: see README */
	cfg->shutdown_timeout_ms = 30 * 1000;
	cfg->upgrade_timeout_ms = 30 * 1000;
	cfg->source_table_size = 100000;
	return cfg;
}

int
config_set(struct config *cfg, const char *section, const char *key,
    const char *value, char *err, size_t errlen)
{
	char why[CONFIG_WHY_MAX], label[CONFIG_LABEL_MAX];
	struct sect s;

	if (section == NULL || key == NULL) {
		config_err_put(err, errlen, cfg->path, 0, NULL, NULL,
		    "no section or key");
		return -1;
	}
	if (config_sect_open(cfg, section, 0, true, &s, why, sizeof(why)) < 0) {
		config_err_put(err, errlen, cfg->path, 0, section, NULL, why);
		return -1;
	}
	if (config_sect_set(cfg, s, key, value != NULL ? value : "", 0, why,
	    sizeof(why)) < 0) {
		config_err_put(err, errlen, cfg->path, 0,
		    config_sect_label(cfg, s, label, sizeof(label)), key, why);
		return -1;
	}
	return 0;
}

/* ---- errors ---- */

void
config_err_put(char *err, size_t errlen, const char *file, int line,
    const char *label, const char *key, const char *why)
{
	int n = 0;

	if (err == NULL || errlen == 0)
		return;
	if (line > 0)
		n = snprintf(err, errlen, "%s:%d: ", file, line);
	else if (label == NULL)
		n = snprintf(err, errlen, "%s: ", file);
	if (n < 0 || (size_t)n >= errlen)
		return;
	snprintf(err + n, errlen - (size_t)n, "%s%s%s%s%s%s%s",
	    label ? "[" : "", label ? label : "", label ? "]" : "",
	    label && key ? " " : "", key ? key : "",
	    label || key ? ": " : "", why);
}

const char *
config_at_line(int line, char *buf, size_t n)
{
	if (line > 0)
		snprintf(buf, n, " on line %d", line);
	else
		buf[0] = '\0';
	return buf;
}

void
config_server_error(const struct config *cfg, const struct config_backend *b,
    const struct config_server *s, const char *why, char *err, size_t errlen)
{
	char label[CONFIG_LABEL_MAX];

	snprintf(label, sizeof(label), "backend %s", b->name);
	config_err_put(err, errlen, cfg->path, s->line, label, "server", why);
}

void
config_global_error(const struct config *cfg, const char *key,
    const char *why, char *err, size_t errlen)
{
	struct sect s = { CONFIG_SECT_GLOBAL, 0 };
	int line = config_mark_line(cfg, s, key, 0);

	config_err_put(err, errlen, cfg->path, line > 0 ? line : 0, "global",
	    key, why);
}

void
config_bind_error(const struct config *cfg, const struct config_listener *l,
    size_t k, const char *why, char *err, size_t errlen)
{
	char label[CONFIG_LABEL_MAX];
	struct sect s = { CONFIG_SECT_LISTENER, (size_t)(l - cfg->listeners) };
	int line = config_mark_line(cfg, s, "bind", k);

	snprintf(label, sizeof(label), "listener %s", l->name);
	config_err_put(err, errlen, cfg->path, line > 0 ? line : 0, label,
	    "bind", why);
}

/* ---- the rest of the public side ---- */

unsigned
config_workers(const struct config *cfg)
{
	long n;

	if (cfg->workers > 0)
		return cfg->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

size_t
config_dns_servers(const struct config *cfg)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nbackends; i++)
		for (size_t j = 0; j < cfg->backends[i].nservers; j++)
			n += cfg->backends[i].servers[j].dnsname != NULL;
	return n;
}

struct config *
config_ref(struct config *cfg)
{
	if (cfg != NULL)
		atomic_fetch_add(&cfg->refs, 1);
	return cfg;
}

void
config_unref(struct config *cfg)
{
	if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) != 1)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].name);
		free(cfg->listeners[i].binds);
		free(cfg->listeners[i].backend_name);
		free(cfg->listeners[i].accept_proxy_from);
		free(cfg->listeners[i].rules);
		for (size_t j = 0; j < cfg->listeners[i].nroutes; j++) {
			free(cfg->listeners[i].routes[j].name);
			free(cfg->listeners[i].routes[j].backend_name);
		}
		free(cfg->listeners[i].routes);
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		struct config_backend *b = &cfg->backends[i];

		for (size_t j = 0; j < b->nservers; j++) {
			free(b->servers[j].name);
			free(b->servers[j].host);
			free(b->servers[j].dnsname);
		}
		free(b->servers);
		free(b->name);
	}
	free(cfg->listeners);
	free(cfg->backends);
	free(cfg->user);
	free(cfg->access_log_path);
	free(cfg->admin.unix_path);
	free(cfg->admin_token_file);
	free(cfg->path);
	free(config_priv(cfg)->marks);
	free(config_priv(cfg));
}
