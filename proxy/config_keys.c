/* proxy/config_keys.c: every key of the config, and the syntax of values.
 *
 * One table per section gives each key its type, its field and its range;
 * config_key_set() parses a value by that type, checks the range and
 * stores it. Values: numbers are digits only (no sign); sizes take k, m or
 * g (powers of 1024); durations need ms, s, m or h ("0" alone is allowed);
 * keywords are case-insensitive, names are not. */
#include "config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define KIB		1024ull
#define MIB		(1024 * KIB)
#define GIB		(1024 * MIB)
#define DURATION_MAX	(24u * 3600 * 1000)	/* a day, in ms */
#define MAX_CONN	10000000u
#define USER_MAX	256		/* bytes of a user name */
/* Linux's MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL and MAX_TCP_KEEPCNT: the
 * kernel refuses more with EINVAL, at every connection. */
#define KEEPALIVE_SECS_MAX	32767u
#define KEEPALIVE_COUNT_MAX	127u

#define NUM(n, t, f, lo, hi, r) { .name = n, .type = CONFIG_KEY_##t, \
	.off = f, .min = lo, .max = hi, .range = r }
#define KW(n, t, f)	{ .name = n, .type = CONFIG_KEY_##t, .off = f }
#define G(f)		offsetof(struct config, f)
#define L(f)		offsetof(struct config_listener, f)
#define B(f)		offsetof(struct config_backend, f)

static const struct config_key global_keys[] = {
	NUM("workers", WORKERS, G(workers), 1, 1024, "1..1024 or auto"),
	NUM("max_connections", UINT, G(max_connections), 1, MAX_CONN,
	    "1..10000000"),
	KW("log_level", LOG_LEVEL, G(log_level)),
	KW("access_log", ACCESS_LOG, G(access_log)),
	KW("log_format", LOG_FORMAT, G(log_format)),
	KW("splice", SPLICE, G(splice)),
	NUM("splice_threshold", SIZE, G(splice_threshold), 0, GIB, "0..1g"),
	KW("tcp_keepalive", KEEPALIVE, G(tcp_keepalive)),
	NUM("pipe_size", SIZE, G(pipe_size), 4 * KIB, GIB, "4k..1g"),
	NUM("buffer_size", SIZE, G(buffer_size), KIB, 64 * MIB, "1k..64m"),
	NUM("max_pipes", UINT, G(max_pipes), 0, MAX_CONN, "0..10000000"),
	NUM("shutdown_timeout", DURATION, G(shutdown_timeout_ms), 0,
	    DURATION_MAX, "0..24h"),
	NUM("upgrade_timeout", DURATION, G(upgrade_timeout_ms), 1000,
	    10 * 60 * 1000, "1s..10m"),
	NUM("source_table_size", UINT, G(source_table_size), 1, MAX_CONN,
	    "1..10000000"),
	KW("resolver", RESOLVER, G(resolver)),
	KW("user", USER, G(user)),
	KW("admin", ADMIN, G(admin)),
	KW("admin_token_file", PATH, G(admin_token_file)),
	{ .name = NULL },
};

static const struct config_key listener_keys[] = {
	KW("bind", BIND, 0),
	KW("backend", NAME, L(backend_name)),
	NUM("timeout_connect", DURATION, L(timeout_connect_ms), 1,
	    DURATION_MAX, "1ms..24h"),
	NUM("timeout_idle", DURATION, L(timeout_idle_ms), 1, DURATION_MAX,
	    "1ms..24h"),
	NUM("max_connections", UINT, L(max_connections), 0, MAX_CONN,
	    "0..10000000"),
	KW("splice", SPLICE, L(splice)),
	NUM("splice_threshold", SIZE, L(splice_threshold), 0, GIB, "0..1g"),
	KW("tcp_keepalive", KEEPALIVE, L(tcp_keepalive)),
	KW("proxy_protocol", PROXY_PROTOCOL, L(proxy_protocol)),
	KW("accept_proxy", BOOL, L(accept_proxy)),
	KW("accept_proxy_from", PROXY_FROM, 0),
	NUM("timeout_handshake", DURATION, L(timeout_handshake_ms), 1,
	    DURATION_MAX, "1ms..24h"),
	KW("allow", ALLOW, 0),
	KW("deny", DENY, 0),
	NUM("max_connections_per_source", UINT, L(max_connections_per_source),
	    0, MAX_CONN, "0..10000000"),
	NUM("connection_rate_per_source", UINT, L(connection_rate_per_source),
	    0, 1000000, "0..1000000"),
	NUM("source_prefix_v6", UINT, L(source_prefix_v6), 1, 128, "1..128"),
	KW("route", ROUTE, 0),
	/* Below 4k a browser's hello with a post-quantum key share (about
	 * 1.8k, more with many ALPN entries or ECH) would go unrouted. */
	NUM("sni_max_bytes", SIZE, L(sni_max_bytes), 4 * KIB, MIB, "4k..1m"),
	{ .name = NULL },
};

static const struct config_key backend_keys[] = {
	KW("server", SERVER, 0),
	NUM("retries", UINT, B(retries), 0, 100, "0..100"),
	KW("balance", BALANCE, B(balance)),
	KW("health_check", HEALTH, B(health_check)),
	NUM("health_interval", DURATION, B(health_interval_ms), 10,
	    DURATION_MAX, "10ms..24h"),
	NUM("health_timeout", DURATION, B(health_timeout_ms), 1,
	    DURATION_MAX, "1ms..24h"),
	NUM("rise", UINT, B(rise), 1, 100, "1..100"),
	NUM("fall", UINT, B(fall), 1, 100, "1..100"),
	NUM("resolve_interval", DURATION, B(resolve_interval_ms), 100,
	    DURATION_MAX, "100ms..24h"),
	{ .name = NULL },
};

static const char *const splice_names[] = {
	[CONFIG_SPLICE_AUTO] = "auto",
	[CONFIG_SPLICE_ALWAYS] = "always",
	[CONFIG_SPLICE_NEVER] = "never",
};

static const char *const balance_names[] = {
	[CONFIG_BALANCE_ROUNDROBIN] = "roundrobin",
	[CONFIG_BALANCE_LEASTCONN] = "leastconn",
	[CONFIG_BALANCE_SOURCE] = "source",
	[CONFIG_BALANCE_RANDOM] = "random",
};

static const char *const health_names[] = {
	[CONFIG_HEALTH_OFF] = "off",
	[CONFIG_HEALTH_TCP] = "tcp",
};

static const char *const log_level_names[] = {
	[CONFIG_LOG_ERROR] = "error",
	[CONFIG_LOG_WARN] = "warn",
	[CONFIG_LOG_INFO] = "info",
	[CONFIG_LOG_DEBUG] = "debug",
};

static const char *const log_format_names[] = {
	[CONFIG_LOG_FORMAT_TEXT] = "text",
	[CONFIG_LOG_FORMAT_JSON] = "json",
};

/* ---- values ---- */

/* Leading digits: no sign, no space, no base prefix. 0, or -1 with EINVAL
 * (no digit) or ERANGE. */
static int
digits(const char **sp, unsigned long long *v)
{
	const char *s = *sp;
	unsigned long long n = 0;

	if (!isdigit((unsigned char)*s))
		return errno = EINVAL, -1;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (n > (ULLONG_MAX - d) / 10)
			return errno = ERANGE, -1;
		n = n * 10 + d;
	}
	*sp = s;
	*v = n;
	return 0;
}

static int
number_parse(const char *s, unsigned long long *v)
{
	if (digits(&s, v) < 0)
		return -1;
	return *s == '\0' ? 0 : (errno = EINVAL, -1);
}

int
config_parse_size(const char *s, size_t *out)
{
	unsigned long long n;
	unsigned shift = 0;

	if (s == NULL || digits(&s, &n) < 0)
		return -1;
	switch (tolower((unsigned char)*s)) {
	case 'k': shift = 10; s++; break;
	case 'm': shift = 20; s++; break;
	case 'g': shift = 30; s++; break;
	}
	if (*s != '\0')
		return errno = EINVAL, -1;
	if (n > (SIZE_MAX >> shift))
		return errno = ERANGE, -1;
	*out = (size_t)(n << shift);
	return 0;
}

int
config_parse_duration_ms(const char *s, unsigned *out)
{
	unsigned long long n, mul;

	if (s == NULL || digits(&s, &n) < 0)
		return -1;
	/* A bare number is refused (seconds? milliseconds?), except 0,
	 * which is the same in every unit. */
	if (*s == '\0' && n != 0)
		return errno = EINVAL, -1;
	if (*s == '\0' || strcasecmp(s, "ms") == 0)
		mul = 1;
	else if (strcasecmp(s, "s") == 0)
		mul = 1000;
	else if (strcasecmp(s, "m") == 0)
		mul = 60 * 1000;
	else if (strcasecmp(s, "h") == 0)
		mul = 3600 * 1000;
	else
		return errno = EINVAL, -1;
	if (n > UINT_MAX / mul)
		return errno = ERANGE, -1;
	*out = (unsigned)(n * mul);
	return 0;
}

int
config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true", "1" };
	static const char *const no[] = { "off", "no", "false", "0" };

	for (size_t i = 0; s != NULL && i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*out = strcasecmp(s, yes[i]) == 0;
			return 0;
		}
	}
	return -1;
}

static int
keyword(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcasecmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

int
config_parse_splice(const char *s, enum config_splice *out)
{
	int i = keyword(s, splice_names, 3);

	if (i < 0)
		return -1;
	*out = (enum config_splice)i;
	return 0;
}

/* Part i of IDLE,INTERVAL,COUNT: s, len bytes, spaces around it already
 * cut. Empty: the kernel's own (0). */
static int
keys_keepalive_part(const char *s, size_t len, int i, unsigned *out,
    char *why, size_t n)
{
	static const char *const what[] = { "IDLE", "INTERVAL", "COUNT" };
	unsigned long long v;
	char part[32];
	unsigned ms;

	*out = 0;
	if (len == 0)
		return 0;
	if (len >= sizeof(part)) {
		snprintf(why, n, "%s '%.*s...' is too long", what[i], 16, s);
		return -1;
	}
	memcpy(part, s, len);
	part[len] = '\0';
	errno = 0;
	if (i == 2) {
		if (number_parse(part, &v) < 0 && errno != ERANGE) {
			snprintf(why, n, "COUNT '%s' is not a number", part);
			return -1;
		}
		if (errno == ERANGE || v < 1 || v > KEEPALIVE_COUNT_MAX) {
			snprintf(why, n, "COUNT '%s' is out of range (1..%u)",
			    part, KEEPALIVE_COUNT_MAX);
			return -1;
		}
		*out = (unsigned)v;
		return 0;
	}
	if (config_parse_duration_ms(part, &ms) < 0 && errno != ERANGE) {
		if (part[strspn(part, "0123456789")] == '\0')
			snprintf(why, n, "%s '%s' needs a unit (ms, s, m or h)",
			    what[i], part);
		else
			snprintf(why, n, "%s '%s' is not a duration "
			    "(use ms, s, m or h)", what[i], part);
		return -1;
	}
	if (errno == ERANGE || ms < 1000 || ms / 1000 > KEEPALIVE_SECS_MAX) {
		snprintf(why, n, "%s '%s' is out of range (1s..%us)", what[i],
		    part, KEEPALIVE_SECS_MAX);
		return -1;
	}
	if (ms % 1000 != 0) {
		snprintf(why, n, "%s '%s' is not whole seconds (the kernel "
		    "counts in seconds)", what[i], part);
		return -1;
	}
	*out = ms / 1000;
	return 0;
}

/* Words are booleans (on, off, yes, ...); anything that starts with a
 * digit or a comma is IDLE,INTERVAL,COUNT, so a bare "1" is an IDLE
 * without a unit, never "on". Parts may be left out or empty, as nginx's
 * so_keepalive=30m::10 allows: "60s,,3" keeps the kernel's interval. */
int
config_parse_keepalive(const char *s, struct config_keepalive *out,
    char *why, size_t n)
{
	struct config_keepalive ka = { .on = true };
	unsigned *field[] = { &ka.idle_s, &ka.interval_s, &ka.count };
	const char *p = s, *end, *a, *b;
	int i;

	if (*s != ',' && !isdigit((unsigned char)*s)) {
		if (config_parse_bool(s, &ka.on) == 0) {
			*out = (struct config_keepalive){ .on = ka.on };
			return 0;
		}
		snprintf(why, n, "'%s' is not off, on or IDLE[,INTERVAL[,COUNT]] "
		    "(e.g. 60s,10s,6)", s);
		return -1;
	}
	for (i = 0; ; i++) {
		if (i == 3) {
			snprintf(why, n, "'%s': more than IDLE,INTERVAL,COUNT", s);
			return -1;
		}
		end = p + strcspn(p, ",");
		for (a = p; a < end && isspace((unsigned char)*a); a++)
			;
		for (b = end; b > a && isspace((unsigned char)b[-1]); b--)
			;
		if (keys_keepalive_part(a, (size_t)(b - a), i, field[i], why,
		    n) < 0)
			return -1;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	if (ka.idle_s == 0 && ka.interval_s == 0 && ka.count == 0) {
		snprintf(why, n, "'%s' sets nothing (on: the kernel's defaults)",
		    s);
		return -1;
	}
	*out = ka;
	return 0;
}

const char *
config_splice_name(enum config_splice s)
{
	return (unsigned)s < 3 ? splice_names[s] : "?";
}

const char *
config_balance_name(enum config_balance b)
{
	return (unsigned)b < 4 ? balance_names[b] : "?";
}

bool
config_name_ok(const char *s)
{
	return *s != '\0' && s[strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")] == '\0';
}

void *
config_grow(void *arr, size_t n, size_t size)
{
	if (n >= SIZE_MAX / size - 1)
		return NULL;
	return realloc(arr, (n + 1) * size);
}

/* ---- keys ---- */

static const struct config_key *
table(enum config_sect kind)
{
	switch (kind) {
	case CONFIG_SECT_GLOBAL: return global_keys;
	case CONFIG_SECT_LISTENER: return listener_keys;
	case CONFIG_SECT_BACKEND: return backend_keys;
	default: return NULL;
	}
}

const struct config_key *
config_key_find(enum config_sect kind, const char *name)
{
	const struct config_key *k = table(kind);

	for (; k != NULL && k->name != NULL; k++)
		if (strcasecmp(k->name, name) == 0)
			return k;
	return NULL;
}

const char *
config_key_home(enum config_sect kind, const char *name)
{
	if (kind != CONFIG_SECT_GLOBAL &&
	    config_key_find(CONFIG_SECT_GLOBAL, name) != NULL)
		return "[global]";
	if (kind != CONFIG_SECT_LISTENER &&
	    config_key_find(CONFIG_SECT_LISTENER, name) != NULL)
		return "[listener NAME]";
	if (kind != CONFIG_SECT_BACKEND &&
	    config_key_find(CONFIG_SECT_BACKEND, name) != NULL)
		return "[backend NAME]";
	return NULL;
}

static int
bind_add(struct config_listener *l, const char *value, char *why, size_t n)
{
	struct addr a, *binds;

	if (addr_parse(&a, value, false, why, n) < 0)
		return -1;
	if ((binds = realloc(l->binds, (l->nbinds + 1) * sizeof(*binds))) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	l->binds = binds;
	l->binds[l->nbinds++] = a;
	return 0;
}

/* weight=N or max_connections=N; seen: the options already given. */
static int
server_option(struct config_server *srv, const char *opt, unsigned *seen,
    char *why, size_t n)
{
	static const struct {
		const char *name;
		unsigned long long min, max;
		const char *range;
	} opts[] = {
		{ "weight=", 1, CONFIG_WEIGHT_MAX, "1..256" },
		{ "max_connections=", 0, MAX_CONN, "0..10000000" },
	};
	unsigned long long v;
	size_t i, len;

	for (i = 0; i < 2; i++)
		if (strncasecmp(opt, opts[i].name, strlen(opts[i].name)) == 0)
			break;
	if (i == 2) {
		snprintf(why, n, "unknown server option '%s' "
		    "(expected weight=N or max_connections=N)", opt);
		return -1;
	}
	len = strlen(opts[i].name);
	if (*seen & (1u << i)) {
		snprintf(why, n, "%.*s given twice", (int)len - 1, opts[i].name);
		return -1;
	}
	if (number_parse(opt + len, &v) < 0 || v < opts[i].min ||
	    v > opts[i].max) {
		snprintf(why, n, "'%s': %.*s must be %s", opt, (int)len - 1,
		    opts[i].name, opts[i].range);
		return -1;
	}
	if (i == 0)
		srv->weight = (unsigned)v;
	else
		srv->max_connections = (unsigned)v;
	*seen |= 1u << i;
	return 0;
}

/* "NAME ADDRESS:PORT [weight=N] [max_connections=N]" */
static int
server_add(struct config_backend *b, const char *value, int line, char *why,
    size_t n)
{
	struct config_server srv = { .weight = 1, .line = line }, *servers;
	char *copy, *name, *where, *opt, *save = NULL;
	unsigned seen = 0;
	int rc = -1;

	if ((copy = strdup(value)) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	name = strtok_r(copy, " \t", &save);
	if ((where = strtok_r(NULL, " \t", &save)) == NULL) {
		snprintf(why, n, "'%s': expected NAME ADDRESS:PORT [weight=N] "
		    "[max_connections=N]", value);
		goto fail;
	}
	if (!config_name_ok(name)) {
		snprintf(why, n, "'%s' is not a valid server name "
		    "(letters, digits, '_', '.' and '-')", name);
		goto fail;
	}
	for (size_t i = 0; i < b->nservers; i++) {
		if (strcmp(b->servers[i].name, name) != 0)
			continue;
		if (b->servers[i].line > 0)
			snprintf(why, n, "server name '%s' is already used "
			    "on line %d", name, b->servers[i].line);
		else
			snprintf(why, n, "server name '%s' is already used",
			    name);
		goto fail;
	}
	while ((opt = strtok_r(NULL, " \t", &save)) != NULL)
		if (server_option(&srv, opt, &seen, why, n) < 0)
			goto fail;
	/* A host name is resolved later, by resolve.c, never here. */
	if (addr_parse_server(&srv.addr, where, &srv.dnsname, why, n) < 0)
		goto fail;
	if ((srv.name = strdup(name)) == NULL ||
	    (srv.host = strdup(where)) == NULL ||
	    (servers = realloc(b->servers,
	    (b->nservers + 1) * sizeof(*servers))) == NULL) {
		snprintf(why, n, "out of memory");
		goto fail;
	}
	b->servers = servers;
	b->servers[b->nservers++] = srv;
	srv.name = srv.host = srv.dnsname = NULL;  /* the backend's now */
	rc = 0;
fail:
	free(srv.name);
	free(srv.host);
	free(srv.dnsname);
	free(copy);
	return rc;
}

/* The name server: an IP address with its port. A name would need a name
 * server of its own to resolve. */
static int
keys_resolver_set(void *field, const char *value, char *why, size_t n)
{
	struct addr a;
	char *name = NULL;

	if (addr_parse_server(&a, value, &name, why, n) < 0)
		return -1;
	if (name != NULL || a.wildcard) {
		free(name);
		snprintf(why, n, "'%s': the name server must be an IP address "
		    "(ADDRESS:PORT, e.g. 127.0.0.1:53)", value);
		return -1;
	}
	*(struct addr *)field = a;
	return 0;
}

/* The admin endpoint: unix:PATH (what fits in sun_path), or an address
 * with its port, resolved now as a bind is. */
static int
keys_admin_set(struct config_admin *a, const char *value, char *why, size_t n)
{
	struct sockaddr_un sun;

	if (strncmp(value, "unix:", 5) == 0) {
		if (value[5] == '\0' || strlen(value + 5) >= sizeof(sun.sun_path)) {
			snprintf(why, n, "'%.64s': expected unix:PATH, the path "
			    "shorter than %zu bytes", value, sizeof(sun.sun_path));
			return -1;
		}
		if ((a->unix_path = strdup(value + 5)) == NULL) {
			snprintf(why, n, "out of memory");
			return -1;
		}
		return 0;
	}
	return addr_parse(&a->addr, value, false, why, n);
}

/* A user name as the password database holds it. Only what no such name
 * can hold is refused here (a ':' separates passwd fields; a leading '-'
 * reads as an option to the tools): NSS modules (LDAP, sssd, systemd's
 * DynamicUser=) allow more than useradd does. A number is a name too, and
 * is looked up as one: uids change between machines, names do not. */
static int
user_set(char **field, const char *value, char *why, size_t n)
{
	size_t len = strlen(value);
	bool ok = len <= USER_MAX && value[0] != '-';

	for (const char *c = value; ok && *c != '\0'; c++)
		ok = !isspace((unsigned char)*c) && !iscntrl((unsigned char)*c) &&
		    *c != ':' && *c != '/';
	if (!ok) {
		snprintf(why, n, "'%.64s%s' is not a user name (a name from "
		    "the password database, such as nobody)", value,
		    len > 64 ? "..." : "");
		return -1;
	}
	if ((*field = strdup(value)) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	return 0;
}

/* on | off (any boolean) | an absolute path: the file is opened at start
 * (log.h), not here, so that spliced -t and the start name its problems
 * with file:line:key too. Relative paths are refused: the daemon's working
 * directory is no place to look for a log. */
static int
access_log_set(struct config *cfg, const char *value, char *why, size_t n)
{
	bool on;

	if (config_parse_bool(value, &on) == 0) {
		cfg->access_log = on ? CONFIG_ACCESS_LOG_ON : CONFIG_ACCESS_LOG_OFF;
		return 0;
	}
	if (value[0] != '/') {
		snprintf(why, n, "'%.64s%s' is not on, off or an absolute file "
		    "path", value, strlen(value) > 64 ? "..." : "");
		return -1;
	}
	if ((cfg->access_log_path = strdup(value)) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	cfg->access_log = CONFIG_ACCESS_LOG_FILE;
	return 0;
}

/* Numbers of every kind, range-checked. Too large to parse is out of
 * range too: the operator needs the range, not the overflow. */
static int
number_set(const struct config_key *k, const char *v, unsigned long long *x,
    char *why, size_t n)
{
	const char *what;
	size_t size;
	unsigned ms;
	int rc;

	errno = 0;
	if (k->type == CONFIG_KEY_SIZE) {
		what = "a size (a number, optionally with k, m or g)";
		if ((rc = config_parse_size(v, &size)) == 0)
			*x = size;
	} else if (k->type == CONFIG_KEY_DURATION) {
		what = "a duration (use ms, s, m or h)";
		if ((rc = config_parse_duration_ms(v, &ms)) == 0)
			*x = ms;
	} else {
		what = k->type == CONFIG_KEY_WORKERS ? "a number or auto" :
		    "a number";
		rc = number_parse(v, x);
	}
	if (rc < 0 && errno != ERANGE) {
		if (k->type == CONFIG_KEY_DURATION &&
		    v[strspn(v, "0123456789")] == '\0')
			snprintf(why, n, "'%s' needs a unit (ms, s, m or h)", v);
		else
			snprintf(why, n, "'%s' is not %s", v, what);
		return -1;
	}
	if (rc < 0 || *x < k->min || *x > k->max) {
		snprintf(why, n, "'%s' is out of range (%s)", v, k->range);
		return -1;
	}
	return 0;
}

int
config_key_set(const struct config_key *k, void *base, const char *v,
    int line, char *why, size_t n)
{
	char *field = (char *)base + k->off;
	unsigned long long x;
	int i;

	if (*v == '\0') {
		snprintf(why, n, "empty value");
		return -1;
	}
	if (k->type == CONFIG_KEY_WORKERS && strcasecmp(v, "auto") == 0) {
		*(unsigned *)field = 0;
		return 0;
	}
	switch (k->type) {
	case CONFIG_KEY_WORKERS:
	case CONFIG_KEY_UINT:
	case CONFIG_KEY_DURATION:
		if (number_set(k, v, &x, why, n) < 0)
			return -1;
		*(unsigned *)field = (unsigned)x;
		return 0;
	case CONFIG_KEY_SIZE:
		if (number_set(k, v, &x, why, n) < 0)
			return -1;
		*(size_t *)field = (size_t)x;
		return 0;
	case CONFIG_KEY_BOOL:
		if (config_parse_bool(v, (bool *)field) == 0)
			return 0;
		snprintf(why, n, "'%s' is not a boolean "
		    "(on/off, yes/no, true/false, 1/0)", v);
		return -1;
	case CONFIG_KEY_SPLICE:
		if (config_parse_splice(v, (enum config_splice *)field) == 0)
			return 0;
		snprintf(why, n, "'%s' is not a splice mode "
		    "(auto, always or never)", v);
		return -1;
	case CONFIG_KEY_LOG_LEVEL:
		if ((i = keyword(v, log_level_names, 4)) < 0) {
			snprintf(why, n, "'%s' is not a log level "
			    "(error, warn, info or debug)", v);
			return -1;
		}
		*(enum config_log_level *)field = (enum config_log_level)i;
		return 0;
	case CONFIG_KEY_ACCESS_LOG:
		return access_log_set(base, v, why, n);
	case CONFIG_KEY_LOG_FORMAT:
		if ((i = keyword(v, log_format_names, 2)) < 0) {
			snprintf(why, n, "'%s' is not a log format (text or json)", v);
			return -1;
		}
		*(enum config_log_format *)field = (enum config_log_format)i;
		return 0;
	case CONFIG_KEY_NAME:
		if (!config_name_ok(v)) {
			snprintf(why, n, "'%s' is not a valid name "
			    "(letters, digits, '_', '.' and '-')", v);
			return -1;
		}
		if ((*(char **)field = strdup(v)) == NULL) {
			snprintf(why, n, "out of memory");
			return -1;
		}
		return 0;
	case CONFIG_KEY_BIND:
		return bind_add(base, v, why, n);
	case CONFIG_KEY_SERVER:
		return server_add(base, v, line, why, n);
	case CONFIG_KEY_BALANCE:
		if ((i = keyword(v, balance_names, 4)) < 0) {
			snprintf(why, n, "'%s' is not a balance algorithm "
			    "(roundrobin, leastconn, source or random)", v);
			return -1;
		}
		*(enum config_balance *)field = (enum config_balance)i;
		return 0;
	case CONFIG_KEY_RESOLVER:
		return keys_resolver_set(field, v, why, n);
	case CONFIG_KEY_USER:
		return user_set((char **)field, v, why, n);
	case CONFIG_KEY_ADMIN:
		return keys_admin_set((struct config_admin *)field, v, why, n);
	case CONFIG_KEY_PATH:
		if ((*(char **)field = strdup(v)) == NULL) {
			snprintf(why, n, "out of memory");
			return -1;
		}
		return 0;
	case CONFIG_KEY_KEEPALIVE:
		return config_parse_keepalive(v, (struct config_keepalive *)field,
		    why, n);
	case CONFIG_KEY_PROXY_PROTOCOL:
	case CONFIG_KEY_PROXY_FROM:
	case CONFIG_KEY_ALLOW:
	case CONFIG_KEY_DENY:
		return config_acl_set(k, base, v, line, why, n);
	case CONFIG_KEY_ROUTE:
		return config_route_set(base, v, line, why, n);
	case CONFIG_KEY_HEALTH:
		if ((i = keyword(v, health_names, 2)) < 0) {
			snprintf(why, n, "'%s' is not a health check "
			    "(tcp or off)", v);
			return -1;
		}
		*(enum config_health *)field = (enum config_health)i;
		return 0;
	default:
		snprintf(why, n, "internal error: key type %d", (int)k->type);
		return -1;
	}
}
