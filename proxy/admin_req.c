/* proxy/admin_req.c: what the admin endpoint makes of a request before it
 * acts: the route, the token, the query and the body. Pure functions (no
 * socket, no loop), so that every refusal is tested without a server. */
#include "spliced/admin.h"
#include "spliced/backend.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <sys/queue.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the token ---- */

int
admin_token_load(const char *path, char **token, char *why, size_t n)
{
	char buf[ADMIN_TOKEN_MAX + 2];
	size_t len, start = 0;
	FILE *f = fopen(path, "r");

	*token = NULL;
	if (f == NULL) {
		snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f)) {
		snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	if (len > ADMIN_TOKEN_MAX) {
		snprintf(why, n, "%s: a token of more than %d bytes", path,
		    ADMIN_TOKEN_MAX);
		return -1;
	}
	buf[len] = '\0';
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	while (start < len && isspace((unsigned char)buf[start]))
		start++;
	if (start == len || memchr(buf, '\0', len) != NULL) {
		snprintf(why, n, "%s: %s", path, start == len ?
		    "empty (it must hold the token)" : "holds a NUL byte");
		return -1;
	}
	for (size_t i = start; i < len; i++)
		if (!isgraph((unsigned char)buf[i])) {
			snprintf(why, n, "%s: the token holds white space or a "
			    "control character (one line, one token)", path);
			return -1;
		}
	if ((*token = strdup(buf + start)) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	return 0;
}

bool
admin_auth_ok(const char *token, const char *header)
{
	size_t tlen = strlen(token), hlen;
	unsigned char diff = 0;

	if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	header += 7;
	while (*header == ' ')
		header++;
	hlen = strlen(header);
	while (hlen > 0 && header[hlen - 1] == ' ')
		hlen--;
	/* Every byte of the token is looked at, whatever the header holds:
	 * the time taken tells only the token's length. */
	for (size_t i = 0; i < tlen; i++)
		diff |= (unsigned char)token[i] ^
		    (unsigned char)(i < hlen ? header[i] : 0);
	return diff == 0 && hlen == tlen;
}

/* ---- who may ask ---- */

int
admin_origin_ok(const char *origin, const char *host, char *why, size_t n)
{
	if (origin == NULL)
		return 0;
	if (host != NULL && strncasecmp(origin, "http://", 7) == 0 &&
	    strcasecmp(origin + 7, host) == 0)
		return 0;
	snprintf(why, n, "Origin '%.64s' is not this endpoint's (http://%.64s): "
	    "a page of another site may not ask", origin, host ? host : "");
	return -1;
}

/* A port: 1 to 5 digits, at most 65535, the whole string. */
static bool
host_port_ok(const char *p)
{
	size_t len = strspn(p, "0123456789");

	return len > 0 && len <= 5 && p[len] == '\0' &&
	    strtoul(p, NULL, 10) <= 65535;
}

int
admin_host_ok(const char *host, char *why, size_t n)
{
	char name[64];
	const char *colon;
	struct in_addr in;
	size_t len;

	if (host == NULL || *host == '\0') {
		snprintf(why, n, "a Host header is required (127.0.0.1, [::1] or "
		    "localhost)");
		return -1;
	}
	if (host[0] == '[') {
		colon = strchr(host, ']');
		if (colon != NULL && (size_t)(colon - host) == 4 &&
		    strncmp(host + 1, "::1", 3) == 0 &&
		    (colon[1] == '\0' || (colon[1] == ':' && host_port_ok(colon + 2))))
			return 0;
		goto refuse;
	}
	colon = strchr(host, ':');
	len = colon != NULL ? (size_t)(colon - host) : strlen(host);
	if (len >= sizeof(name) || (colon != NULL && !host_port_ok(colon + 1)))
		goto refuse;
	memcpy(name, host, len);
	name[len] = '\0';
	if (strcasecmp(name, "localhost") == 0 ||
	    (inet_pton(AF_INET, name, &in) == 1 &&
	    (ntohl(in.s_addr) >> 24) == 127))
		return 0;
refuse:
	snprintf(why, n, "Host '%.64s' is not 127.0.0.1, [::1] or localhost "
	    "(a name that resolves here may be another site's: set "
	    "admin_token_file to be asked by name)", host);
	return -1;
}

int
admin_type_ok(const char *type, char *why, size_t n)
{
	static const char *const known[] = { "application/x-www-form-urlencoded",
	    "application/json" };
	const char *p = type, *end;

	if (type == NULL)
		goto refuse;
	p += strspn(p, " \t");
	end = p + strcspn(p, ";");
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if ((size_t)(end - p) == strlen(known[i]) &&
		    strncasecmp(p, known[i], (size_t)(end - p)) == 0)
			goto params;
	goto refuse;
params:
	/* Only charset=...: nothing else is meant for these types. */
	for (p = strchr(p, ';'); p != NULL; p = strchr(p + 1, ';')) {
		const char *q = p + 1 + strspn(p + 1, " \t");

		if (strncasecmp(q, "charset=", 8) != 0)
			goto refuse;
	}
	return 0;
refuse:
	snprintf(why, n, "Content-Type '%.64s': a POST is "
	    "application/x-www-form-urlencoded or application/json",
	    type ? type : "");
	return -1;
}

/* ---- what the workers answered ---- */

int
admin_gather_whole(unsigned answered, unsigned nw, char *why, size_t n)
{
	if (answered >= nw)
		return 0;
	snprintf(why, n, "only %u of %u workers answered in time: the sums "
	    "would go backwards, ask again", answered, nw);
	return -1;
}

int
admin_proc_start(const char *self_stat, const char *stat, long hz,
    double *start)
{
	const char *p = strrchr(self_stat, ')'), *bt;
	unsigned long long ticks, btime;
	char *end;

	if (p == NULL || hz <= 0)
		return -1;
	/* After "pid (comm)": field 3 (state) on; starttime is field 22. */
	p++;
	for (int field = 3; field < 22; field++) {
		p += strspn(p, " ");
		p += strcspn(p, " ");
		if (*p == '\0')
			return -1;
	}
	p += strspn(p, " ");
	if (*p < '0' || *p > '9')
		return -1;
	ticks = strtoull(p, &end, 10);
	if (*end != ' ' && *end != '\0' && *end != '\n')
		return -1;
	if (strncmp(stat, "btime ", 6) == 0)
		bt = stat + 6;
	else if ((bt = strstr(stat, "\nbtime ")) != NULL)
		bt += 7;
	else
		return -1;
	if (*bt < '0' || *bt > '9')
		return -1;
	btime = strtoull(bt, NULL, 10);
	*start = (double)btime + (double)ticks / (double)hz;
	return 0;
}

/* ---- routes ---- */

/* One path segment into out, if it is a config name that fits. */
static bool
route_name(const char *seg, size_t len, char *out, size_t n)
{
	if (len == 0 || len >= n)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)seg[i]) && strchr("_.-", seg[i]) == NULL)
			return false;
	memcpy(out, seg, len);
	out[len] = '\0';
	return true;
}

enum admin_route
admin_route(const char *path, char *b, char *s, size_t n)
{
	static const struct { const char *path; enum admin_route r; } fixed[] = {
		{ "/", ADMIN_ROUTE_PAGE },
		{ "/metrics", ADMIN_ROUTE_METRICS },
		{ "/status", ADMIN_ROUTE_STATUS },
		{ "/connections", ADMIN_ROUTE_CONNECTIONS },
		{ "/healthz", ADMIN_ROUTE_HEALTHZ },
	};
	const char *rest, *slash;

	if (path == NULL)
		return ADMIN_ROUTE_NONE;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strcmp(path, fixed[i].path) == 0)
			return fixed[i].r;
	if (strncmp(path, "/servers/", 9) != 0)
		return ADMIN_ROUTE_NONE;
	rest = path + 9;
	if ((slash = strchr(rest, '/')) == NULL ||
	    !route_name(rest, (size_t)(slash - rest), b, n) ||
	    !route_name(slash + 1, strlen(slash + 1), s, n))
		return ADMIN_ROUTE_NONE;
	return ADMIN_ROUTE_SERVER;
}

bool
admin_route_posts(enum admin_route r)
{
	return r == ADMIN_ROUTE_SERVER || r == ADMIN_ROUTE_HEALTHZ;
}

/* ---- the query ---- */

/* A decimal number of at most 9 digits, whole string. */
static int
req_number(const char *s, unsigned long *v)
{
	size_t len = strspn(s, "0123456789");

	if (len == 0 || len > 9 || s[len] != '\0')
		return -1;
	*v = strtoul(s, NULL, 10);
	return 0;
}

int
admin_limit_parse(const char *query, size_t *limit, char *why, size_t n)
{
	struct evkeyvalq q;
	struct evkeyval *kv;
	unsigned long v;
	int rc = 0;

	*limit = ADMIN_CONN_LIMIT_DEFAULT;
	if (query == NULL || *query == '\0')
		return 0;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) == -1) {
		snprintf(why, n, "bad query string");
		return -1;
	}
	TAILQ_FOREACH(kv, &q, next) {
		if (strcmp(kv->key, "limit") != 0) {
			snprintf(why, n, "unknown parameter '%.32s' (only limit=N)",
			    kv->key);
			rc = -1;
			break;
		}
		if (req_number(kv->value, &v) == -1 || v < 1 ||
		    v > ADMIN_CONN_LIMIT_MAX) {
			snprintf(why, n, "limit '%.32s' is not a number in 1..%d",
			    kv->value, ADMIN_CONN_LIMIT_MAX);
			rc = -1;
			break;
		}
		*limit = v;
	}
	evhttp_clear_headers(&q);
	return rc;
}

int
admin_format_parse(const char *query, bool *text, char *why, size_t n)
{
	*text = false;
	if (query == NULL || *query == '\0' || strcmp(query, "format=json") == 0)
		return 0;
	if (strcmp(query, "format=text") == 0) {
		*text = true;
		return 0;
	}
	snprintf(why, n, "bad query '%.64s' (format=json or format=text)", query);
	return -1;
}

/* ---- the body ---- */

/* One more parameter. 0, or -1 with why. */
static int
params_add(struct admin_params *ps, const char *name, size_t nlen,
    const char *value, size_t vlen, char *why, size_t n)
{
	if (nlen == 0) {
		snprintf(why, n, "an empty parameter name");
		return -1;
	}
	if (nlen >= ADMIN_PARAM_LEN || vlen >= ADMIN_PARAM_LEN) {
		snprintf(why, n, "a parameter name or value longer than %d bytes",
		    ADMIN_PARAM_LEN - 1);
		return -1;
	}
	if (memchr(name, '\0', nlen) != NULL || memchr(value, '\0', vlen) != NULL) {
		snprintf(why, n, "a NUL byte in a parameter");
		return -1;
	}
	for (size_t i = 0; i < ps->n; i++)
		if (strlen(ps->p[i].name) == nlen &&
		    memcmp(ps->p[i].name, name, nlen) == 0) {
			snprintf(why, n, "parameter '%.*s' given twice", (int)nlen,
			    name);
			return -1;
		}
	if (ps->n == ADMIN_PARAMS_MAX) {
		snprintf(why, n, "more than %d parameters", ADMIN_PARAMS_MAX);
		return -1;
	}
	memcpy(ps->p[ps->n].name, name, nlen);
	ps->p[ps->n].name[nlen] = '\0';
	memcpy(ps->p[ps->n].value, value, vlen);
	ps->p[ps->n].value[vlen] = '\0';
	ps->n++;
	return 0;
}

/* A form: name=value&..., %XX and '+' decoded. */
static int
params_form(const char *body, size_t len, struct admin_params *ps, char *why,
    size_t n)
{
	struct evkeyvalq q;
	struct evkeyval *kv;
	char *text;
	int rc = 0;

	if (memchr(body, '\0', len) != NULL) {
		snprintf(why, n, "a NUL byte in the body");
		return -1;
	}
	if ((text = malloc(len + 1)) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	memcpy(text, body, len);
	text[len] = '\0';
	/* A trailing newline (curl -d @file, echo) is not part of a value. */
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	TAILQ_INIT(&q);
	if (strchr(text, '=') == NULL || evhttp_parse_query_str(text, &q) == -1) {
		snprintf(why, n, "the body is neither a form (name=value&...) "
		    "nor a JSON object");
		free(text);
		return -1;
	}
	TAILQ_FOREACH(kv, &q, next)
		if ((rc = params_add(ps, kv->key, strlen(kv->key), kv->value,
		    strlen(kv->value), why, n)) == -1)
			break;
	evhttp_clear_headers(&q);
	free(text);
	return rc;
}

struct json_in {
	const char *p, *end;
};

static void
json_ws(struct json_in *in)
{
	while (in->p < in->end && strchr(" \t\r\n", *in->p) != NULL && *in->p)
		in->p++;
}

/* A string into out (at most ADMIN_PARAM_LEN - 1 bytes). 0 or -1. */
static int
json_string(struct json_in *in, char *out, size_t *olen, char *why, size_t n)
{
	static const char esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
	size_t k = 0;

	if (in->p >= in->end || *in->p != '"') {
		snprintf(why, n, "JSON: a string expected");
		return -1;
	}
	for (in->p++; in->p < in->end && *in->p != '"'; in->p++) {
		unsigned char c = (unsigned char)*in->p;
		const char *e;

		if (c < 0x20) {
			snprintf(why, n, "JSON: a control character in a string");
			return -1;
		}
		if (c == '\\') {
			if (++in->p >= in->end)
				break;
			if (*in->p == 'u') {
				unsigned v = 0;

				for (int i = 0; i < 4; i++) {
					char h = ++in->p < in->end ? *in->p : 'x';

					if (!isxdigit((unsigned char)h)) {
						snprintf(why, n, "JSON: a bad \\u escape");
						return -1;
					}
					v = v * 16 + (unsigned)(isdigit((unsigned char)h) ?
					    h - '0' : (tolower((unsigned char)h) - 'a' + 10));
				}
				if (v == 0 || v >= 0x80) {
					snprintf(why, n, "JSON: \\u%04x: only ASCII "
					    "characters other than NUL are taken", v);
					return -1;
				}
				c = (unsigned char)v;
			} else {
				for (e = esc; *e != '\0' && *e != *in->p; e += 2)
					;
				if (*e == '\0') {
					snprintf(why, n, "JSON: a bad escape");
					return -1;
				}
				c = (unsigned char)e[1];
			}
		}
		if (k + 1 >= ADMIN_PARAM_LEN) {
			snprintf(why, n, "a parameter name or value longer than "
			    "%d bytes", ADMIN_PARAM_LEN - 1);
			return -1;
		}
		out[k++] = (char)c;
	}
	if (in->p >= in->end) {
		snprintf(why, n, "JSON: an unterminated string");
		return -1;
	}
	in->p++;
	out[k] = '\0';
	*olen = k;
	return 0;
}

/* {"name": "value" | 123, ...}: nothing nested, nothing else. */
static int
params_json(const char *body, size_t len, struct admin_params *ps, char *why,
    size_t n)
{
	struct json_in in = { body, body + len };
	char name[ADMIN_PARAM_LEN], value[ADMIN_PARAM_LEN];
	size_t nlen, vlen;

	json_ws(&in);
	in.p++;                     /* the '{' the caller saw */
	json_ws(&in);
	if (in.p < in.end && *in.p == '}')
		goto end;
	for (;;) {
		json_ws(&in);
		if (json_string(&in, name, &nlen, why, n) == -1)
			return -1;
		json_ws(&in);
		if (in.p >= in.end || *in.p++ != ':') {
			snprintf(why, n, "JSON: ':' expected after \"%s\"", name);
			return -1;
		}
		json_ws(&in);
		if (in.p < in.end && *in.p == '"') {
			if (json_string(&in, value, &vlen, why, n) == -1)
				return -1;
		} else {
			for (vlen = 0; in.p < in.end && isdigit((unsigned char)*in.p);
			    in.p++) {
				if (vlen + 1 >= ADMIN_PARAM_LEN) {
					snprintf(why, n, "JSON: a number too long");
					return -1;
				}
				value[vlen++] = *in.p;
			}
			value[vlen] = '\0';
			if (vlen == 0) {
				snprintf(why, n, "JSON: \"%s\" must be a string or a "
				    "non-negative integer (nothing nested)", name);
				return -1;
			}
		}
		if (params_add(ps, name, nlen, value, vlen, why, n) == -1)
			return -1;
		json_ws(&in);
		if (in.p < in.end && *in.p == ',') {
			in.p++;
			continue;
		}
		if (in.p < in.end && *in.p == '}')
			break;
		snprintf(why, n, "JSON: ',' or '}' expected");
		return -1;
	}
end:
	in.p++;
	json_ws(&in);
	if (in.p != in.end) {
		snprintf(why, n, "JSON: something after the object");
		return -1;
	}
	return 0;
}

int
admin_params_parse(const char *body, size_t len, struct admin_params *ps,
    char *why, size_t n)
{
	size_t i = 0;

	ps->n = 0;
	if (len > ADMIN_MAX_BODY) {
		snprintf(why, n, "the body is larger than %d bytes", ADMIN_MAX_BODY);
		return -1;
	}
	while (i < len && strchr(" \t\r\n", body[i]) != NULL && body[i] != '\0')
		i++;
	if (i == len) {
		snprintf(why, n, "an empty body (send state=... or {\"state\": ...})");
		return -1;
	}
	if (body[i] == '{')
		return params_json(body, len, ps, why, n);
	return params_form(body, len, ps, why, n);
}

const char *
admin_params_get(const struct admin_params *ps, const char *name)
{
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->p[i].name, name) == 0)
			return ps->p[i].value;
	return NULL;
}

/* Every parameter is one of known[] (NULL-terminated). */
static int
params_only(const struct admin_params *ps, const char *const *known, char *why,
    size_t n)
{
	for (size_t i = 0; i < ps->n; i++) {
		const char *const *k;

		for (k = known; *k != NULL && strcmp(*k, ps->p[i].name) != 0; k++)
			;
		if (*k == NULL) {
			snprintf(why, n, "unknown parameter '%s'", ps->p[i].name);
			return -1;
		}
	}
	return 0;
}

int
admin_server_request(const struct admin_params *ps, int *state,
    unsigned *weight, char *why, size_t n)
{
	static const char *const known[] = { "state", "weight", NULL };
	const char *st = admin_params_get(ps, "state");
	const char *w = admin_params_get(ps, "weight");
	unsigned long v;

	*state = -1;
	*weight = 0;
	if (params_only(ps, known, why, n) == -1)
		return -1;
	if (st == NULL && w == NULL) {
		snprintf(why, n, "nothing to set (state=ready|drain|maint, "
		    "weight=1..%u)", CONFIG_WEIGHT_MAX);
		return -1;
	}
	if (st != NULL) {
		enum backend_admin a;

		if (backend_admin_parse(st, &a) == 0)
			*state = (int)a;
		if (*state < 0) {
			snprintf(why, n, "bad state '%s' (ready, drain or maint)", st);
			return -1;
		}
	}
	if (w != NULL) {
		if (req_number(w, &v) == -1 || v < 1 || v > CONFIG_WEIGHT_MAX) {
			snprintf(why, n, "bad weight '%s' (1..%u)", w,
			    CONFIG_WEIGHT_MAX);
			return -1;
		}
		*weight = (unsigned)v;
	}
	return 0;
}

int
admin_health_request(const struct admin_params *ps, bool *up, char *why,
    size_t n)
{
	static const char *const known[] = { "state", NULL };
	const char *st = admin_params_get(ps, "state");

	if (params_only(ps, known, why, n) == -1)
		return -1;
	if (st == NULL || (strcmp(st, "up") != 0 && strcmp(st, "down") != 0)) {
		snprintf(why, n, "bad state '%s' (up or down)", st ? st : "");
		return -1;
	}
	*up = strcmp(st, "up") == 0;
	return 0;
}
