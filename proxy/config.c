/* proxy/config.c: the INI file into a struct config, with file:line errors.
 *
 * inih splits "key = value"; the rest is ours. Debian's inih (r55) tells the
 * handler neither the line nor the start of a section, so parse_read_cb()
 * feeds inih one physical line at a time and counts them: inih calls the
 * handler right after the reader returned the line, so ps->line is the line
 * of the key being handled. The reader also takes the section headers itself
 * (an empty [listener x] must still be seen, and its line named) and hands
 * inih only key = value lines, stripped of their indentation: inih therefore
 * never sees a continuation line, and an indented key is just a key.
 *
 * What each key accepts is in config_keys.c. Here: sections, where each key
 * was set (a private list of marks: it gives the line of errors found only
 * at the end, and tells a listener's own splice from the inherited one),
 * and the checks across keys in config_finish(). */
#include "spliced/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_keys.h"

#define FILE_MAX	(16u << 20)	/* no config is near this */
#define WHY_MAX		384
#define LABEL_MAX	256

struct sect {
	enum config_sect kind;
	size_t idx;                 /* into listeners[] or backends[] */
};

/* Where a key was set: line 0 for config_set(). sub: which bind or server. */
struct mark {
	struct sect sect;
	const struct config_key *key;
	size_t sub;
	int line;
};

/* What every config carries beyond its public fields. Every struct config
 * comes from config_new(), so this is what its pointer points to. */
struct config_priv {
	struct config pub;          /* first */
	struct mark *marks;
	size_t nmarks;
	bool global_seen;
	int global_line;
	int last_line;              /* of the text read; 0: built by config_set() */
};

/* The state of one config_load_string(). */
struct parse {
	struct config *cfg;
	const char *next;           /* the text not read yet */
	int line;                   /* handed to inih last */
	struct sect sect;           /* that line is in */
	char last_key[64];          /* of the section, to name a continuation */
	bool failed;
	char *err;
	size_t errlen;
};

static struct config_priv *
priv(struct config *cfg)
{
	return (struct config_priv *)cfg;
}

/* "FILE:LINE: [SECTION] KEY: why", leaving out what is not known. The file
 * is left out too when there is a section but no line: such a key came
 * from config_set(), the command line. */
static void
err_put(char *err, size_t errlen, const char *file, int line,
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

/* Room for one more element at the end of arr. */
static void *
grow(void *arr, size_t n, size_t size)
{
	if (n >= SIZE_MAX / size - 1)
		return NULL;
	return realloc(arr, (n + 1) * size);
}

static const char *
at_line(int line, char *buf, size_t n)
{
	if (line > 0)
		snprintf(buf, n, " on line %d", line);
	else
		buf[0] = '\0';
	return buf;
}

/* ---- sections and keys ---- */

static void *
sect_base(struct config *cfg, struct sect s)
{
	return s.kind == CONFIG_SECT_GLOBAL ? (void *)cfg :
	    s.kind == CONFIG_SECT_LISTENER ? (void *)&cfg->listeners[s.idx] :
	    (void *)&cfg->backends[s.idx];
}

static const char *
sect_label(const struct config *cfg, struct sect s, char *buf, size_t n)
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

/* The line key was set on in s, 0 for config_set(), or -1 if it was not. */
static int
mark_line(const struct config_priv *p, struct sect s, const char *key,
    size_t sub)
{
	const struct mark *m = mark_find(p, s, config_key_find(s.kind, key),
	    sub);

	return m != NULL ? m->line : -1;
}

static bool
sect_find(const struct config *cfg, enum config_sect kind, const char *name,
    size_t *idx)
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
		if ((l = grow(cfg->listeners, cfg->nlisteners, sizeof(*l))) == NULL)
			goto fail;
		cfg->listeners = l;
		/* splice, splice_threshold and tcp_keepalive come in
		 * config_finish() */
		cfg->listeners[cfg->nlisteners++] = (struct config_listener){
		    .name = copy, .line = line,
		    .timeout_connect_ms = 5 * 1000,
		    .timeout_idle_ms = 5 * 60 * 1000 };
	} else {
		if ((b = grow(cfg->backends, cfg->nbackends, sizeof(*b))) == NULL)
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

/* text: "global", "listener NAME" or "backend NAME". A file may open a
 * section once; config_set() (reuse) comes back to it for every key. */
static int
sect_open(struct config *cfg, const char *text, int line, bool reuse,
    struct sect *out, char *why, size_t n)
{
	struct config_priv *p = priv(cfg);
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
			    at_line(p->global_line, lbuf, sizeof(lbuf)));
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
	if (sect_find(cfg, kind, name, &out->idx)) {
		if (reuse)
			return 0;
		snprintf(why, n, "duplicate section (first%s)", at_line(
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

static int
key_set(struct config *cfg, struct sect s, const char *name,
    const char *value, int line, char *why, size_t n)
{
	struct config_priv *p = priv(cfg);
	const struct config_key *key;
	const struct mark *m;
	struct mark *marks;
	const char *home;
	size_t sub = 0;
	char lbuf[32];

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
	/* Only bind and server repeat; a key given twice is more likely a
	 * pasting mistake than an override. */
	if (key->type != CONFIG_KEY_BIND && key->type != CONFIG_KEY_SERVER &&
	    (m = mark_find(p, s, key, 0)) != NULL) {
		snprintf(why, n, "set twice (first%s)",
		    at_line(m->line, lbuf, sizeof(lbuf)));
		return -1;
	}
	if (config_key_set(key, sect_base(cfg, s), value, line, why, n) < 0)
		return -1;
	if (key->type == CONFIG_KEY_BIND)
		sub = cfg->listeners[s.idx].nbinds - 1;
	else if (key->type == CONFIG_KEY_SERVER)
		sub = cfg->backends[s.idx].nservers - 1;
	if ((marks = grow(p->marks, p->nmarks, sizeof(*marks))) == NULL) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	p->marks = marks;
	p->marks[p->nmarks++] = (struct mark){ s, key, sub, line };
	return 0;
}

/* ---- reading a file ---- */

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* inih's find_chars_or_comment(): the first of chars, or a ';' that follows
 * whitespace (an inline comment), or the end. */
static char *
find_sep(char *s, const char *chars)
{
	bool was_space = false;

	while (*s != '\0' && strchr(chars, *s) == NULL &&
	    !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static void
parse_fail(struct parse *ps, const char *label, const char *key,
    const char *why)
{
	if (ps->failed)
		return;         /* the first error is the one reported */
	ps->failed = true;
	err_put(ps->err, ps->errlen, ps->cfg->path, ps->line, label, key, why);
}

static void
parse_section(struct parse *ps, char *s)
{
	char *end = find_sep(s + 1, "]"), *rest, why[WHY_MAX];

	/* Until the header proves good, its keys are skipped rather than
	 * reported once more as being outside any section. */
	ps->sect.kind = CONFIG_SECT_SKIP;
	ps->last_key[0] = '\0';
	if (*end != ']') {
		parse_fail(ps, NULL, NULL, "section header without ']'");
		return;
	}
	*end = '\0';
	rest = trim(end + 1);
	s = trim(s + 1);
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		parse_fail(ps, s, NULL, "unexpected text after ']'");
		return;
	}
	if (sect_open(ps->cfg, s, ps->line, false, &ps->sect, why,
	    sizeof(why)) < 0) {
		ps->sect.kind = CONFIG_SECT_SKIP;
		parse_fail(ps, s, NULL, why);
	}
}

/* Takes what inih would not tell: section headers, and lines that are
 * neither comment nor key = value. Leaves in buf what inih should see: a
 * key = value line without its indentation, or nothing. */
static void
parse_line(struct parse *ps, char *buf)
{
	bool indented = isspace((unsigned char)buf[0]), key_like;
	char *s = trim(buf), *sep, label[LABEL_MAX];

	if (*s == '[') {
		parse_section(ps, s);
		buf[0] = '\0';
		return;
	}
	if (*s == '\0' || *s == ';' || *s == '#') {
		buf[0] = '\0';
		return;
	}
	sep = find_sep(s, "=:");
	/* "  b.example:80" after a key: a continuation, not a key. */
	key_like = sep > s && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t") == (size_t)(sep - s);
	if ((*sep != '=' && *sep != ':') || (indented && !key_like)) {
		if (indented && ps->last_key[0] != '\0')
			parse_fail(ps, sect_label(ps->cfg, ps->sect, label,
			    sizeof(label)), ps->last_key, "continuation lines "
			    "are not supported; put the value on one line");
		else
			parse_fail(ps, NULL, NULL, "expected 'key = value', "
			    "'[section]' or a comment");
		buf[0] = '\0';
		return;
	}
	memmove(buf, s, strlen(s) + 1);
}

/* inih's fgets: one physical line per call, however long it is. */
static char *
parse_read_cb(char *buf, int size, void *stream)
{
	struct parse *ps = stream;
	const char *line = ps->next, *nl;
	char why[64];
	size_t len;

	if (*line == '\0' || size < 1)
		return NULL;
	nl = strchr(line, '\n');
	len = nl != NULL ? (size_t)(nl - line) : strlen(line);
	ps->next = line + len + (nl != NULL);
	ps->line++;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	/* A UTF-8 byte order mark: inih would skip it, but only after we
	 * looked for a section header. */
	if (ps->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		line += 3;
		len -= 3;
	}
	buf[0] = '\0';
	if (len > (size_t)size - 1) {
		/* inih would cut the line and parse the pieces as lines of
		 * their own; we skip all of it and say so. inih sees an empty
		 * line, so its count stays in step with ours. */
		snprintf(why, sizeof(why), "line too long (max %d characters)",
		    size - 1);
		parse_fail(ps, NULL, NULL, why);
		return buf;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	parse_line(ps, buf);
	return buf;
}

static int
parse_key_cb(void *user, const char *section, const char *key,
    const char *value)
{
	struct parse *ps = user;
	char why[WHY_MAX], label[LABEL_MAX];

	(void)section;          /* inih's; ours came with its line */
	snprintf(ps->last_key, sizeof(ps->last_key), "%s", key);
	if (ps->sect.kind == CONFIG_SECT_SKIP)
		return 1;
	if (key_set(ps->cfg, ps->sect, key, value, ps->line, why,
	    sizeof(why)) == 0)
		return 1;
	parse_fail(ps, sect_label(ps->cfg, ps->sect, label, sizeof(label)),
	    key, why);
	return 0;
}

/* The whole file, or NULL with why, and *line when a line is to blame. */
static char *
file_read(const char *path, int *line, char *why, size_t n)
{
	FILE *f;
	char *buf = NULL, *nbuf, *nul;
	size_t len = 0, cap = 0, got;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(why, n, "cannot open: %s", strerror(errno));
		return NULL;
	}
	do {
		if (cap - len < 4096) {
			if (cap >= FILE_MAX) {
				snprintf(why, n, "too large for a config file");
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			if ((nbuf = realloc(buf, cap)) == NULL) {
				snprintf(why, n, "out of memory");
				goto fail;
			}
			buf = nbuf;
		}
		len += (got = fread(buf + len, 1, cap - len - 1, f));
	} while (got > 0);
	if (ferror(f)) {
		snprintf(why, n, "cannot read: %s", strerror(errno));
		goto fail;
	}
	buf[len] = '\0';
	if ((nul = memchr(buf, '\0', len)) != NULL) {
		*line = 1;
		for (const char *c = buf; c < nul; c++)
			*line += *c == '\n';
		snprintf(why, n, "contains a NUL byte (not a text file?)");
		goto fail;
	}
	fclose(f);
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

/* ---- checks across keys ---- */

/* "*" is [::] and 0.0.0.0 at once: listener.c binds it dual-stack. */
static bool
binds_clash(const struct addr *a, const struct addr *b)
{
	const struct addr *other = a->wildcard ? b : a;
	const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;

	if (addr_equal(a, b))
		return true;
	if (a->wildcard == b->wildcard || other->ss.ss_family != AF_INET)
		return false;
	/* sin_port and sin6_port sit at the same offset */
	return x->sin_port == y->sin_port &&
	    ((const struct sockaddr_in *)&other->ss)->sin_addr.s_addr ==
	    htonl(INADDR_ANY);
}

/* Whether bind k of listener li clashes with a bind before it: which. */
static bool
bind_taken(const struct config *cfg, size_t li, size_t k, size_t *oi,
    size_t *q)
{
	const struct addr *a = &cfg->listeners[li].binds[k];

	for (*oi = 0; *oi <= li; (*oi)++) {
		const struct config_listener *o = &cfg->listeners[*oi];
		size_t end = *oi == li ? k : o->nbinds;

		for (*q = 0; *q < end; (*q)++)
			if (binds_clash(a, &o->binds[*q]))
				return true;
	}
	return false;
}

/* The same address bound twice, by one listener or two. A wildcard and a
 * specific address on one port are fine: the kernel takes the specific
 * one for its address. */
static int
finish_binds(struct config *cfg, char *err, size_t errlen)
{
	char label[LABEL_MAX], why[WHY_MAX], text[ADDR_TEXT_MAX], lbuf[32];
	struct sect s = { CONFIG_SECT_LISTENER, 0 }, o = s;
	size_t q;

	for (s.idx = 0; s.idx < cfg->nlisteners; s.idx++) {
		const struct config_listener *l = &cfg->listeners[s.idx];

		for (size_t k = 0; k < l->nbinds; k++) {
			if (!bind_taken(cfg, s.idx, k, &o.idx, &q))
				continue;
			snprintf(why, sizeof(why), "%s is already bound by "
			    "[listener %s]%s", addr_written(&l->binds[k], text,
			    sizeof(text)), cfg->listeners[o.idx].name,
			    at_line(mark_line(priv(cfg), o, "bind", q), lbuf,
			    sizeof(lbuf)));
			err_put(err, errlen, cfg->path,
			    mark_line(priv(cfg), s, "bind", k),
			    sect_label(cfg, s, label, sizeof(label)), "bind", why);
			return -1;
		}
	}
	return 0;
}

/* Every value was range-checked when it was set, on its line; what is left
 * needs all the sections. The first problem found is reported. */
int
config_finish(struct config *cfg, char *err, size_t errlen)
{
	struct config_priv *p = priv(cfg);
	char label[LABEL_MAX], why[WHY_MAX];
	struct sect s;
	size_t bi;

	if (cfg->nlisteners == 0) {
		/* No line holds the problem: name the last, where a listener
		 * would go (line 1 of an empty file). */
		err_put(err, errlen, cfg->path, p->last_line, NULL, NULL,
		    p->last_line > 0 ? "end of the file, and no [listener "
		    "NAME] section: nothing to relay" : "no [listener NAME] "
		    "section: nothing to relay");
		return -1;
	}
	s.kind = CONFIG_SECT_LISTENER;
	for (s.idx = 0; s.idx < cfg->nlisteners; s.idx++) {
		struct config_listener *l = &cfg->listeners[s.idx];

		sect_label(cfg, s, label, sizeof(label));
		if (l->nbinds == 0) {
			err_put(err, errlen, cfg->path, l->line, label, "bind",
			    "missing (a listener needs at least one "
			    "'bind = ADDRESS:PORT')");
			return -1;
		}
		if (l->backend_name == NULL) {
			err_put(err, errlen, cfg->path, l->line, label,
			    "backend", "missing (name the [backend NAME] "
			    "to relay to)");
			return -1;
		}
		if (!sect_find(cfg, CONFIG_SECT_BACKEND, l->backend_name, &bi)) {
			snprintf(why, sizeof(why), "no [backend %s] section",
			    l->backend_name);
			err_put(err, errlen, cfg->path,
			    mark_line(p, s, "backend", 0), label, "backend", why);
			return -1;
		}
		l->backend = &cfg->backends[bi];
		/* Inherited only now: [global] may come after the listener. */
		if (mark_line(p, s, "splice", 0) < 0)
			l->splice = cfg->splice;
		if (mark_line(p, s, "splice_threshold", 0) < 0)
			l->splice_threshold = cfg->splice_threshold;
		if (mark_line(p, s, "tcp_keepalive", 0) < 0)
			l->tcp_keepalive = cfg->tcp_keepalive;
	}
	s.kind = CONFIG_SECT_BACKEND;
	for (s.idx = 0; s.idx < cfg->nbackends; s.idx++) {
		if (cfg->backends[s.idx].nservers > 0)
			continue;
		err_put(err, errlen, cfg->path, cfg->backends[s.idx].line,
		    sect_label(cfg, s, label, sizeof(label)), "server",
		    "missing (a backend needs at least one "
		    "'server = NAME ADDRESS:PORT')");
		return -1;
	}
	return finish_binds(cfg, err, errlen);
}

/* ---- the rest of the public side ---- */

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
	cfg->access_log = true;
	cfg->splice = CONFIG_SPLICE_AUTO;
	cfg->splice_threshold = 64 << 10;
	cfg->pipe_size = 1 << 20;
	cfg->buffer_size = 64 << 10;    /* by benchmark: see README */
	cfg->shutdown_timeout_ms = 30 * 1000;
	return cfg;
}

int
config_set(struct config *cfg, const char *section, const char *key,
    const char *value, char *err, size_t errlen)
{
	char why[WHY_MAX], label[LABEL_MAX];
	struct sect s;

	if (section == NULL || key == NULL) {
		err_put(err, errlen, cfg->path, 0, NULL, NULL,
		    "no section or key");
		return -1;
	}
	if (sect_open(cfg, section, 0, true, &s, why, sizeof(why)) < 0) {
		err_put(err, errlen, cfg->path, 0, section, NULL, why);
		return -1;
	}
	if (key_set(cfg, s, key, value != NULL ? value : "", 0, why,
	    sizeof(why)) < 0) {
		err_put(err, errlen, cfg->path, 0,
		    sect_label(cfg, s, label, sizeof(label)), key, why);
		return -1;
	}
	return 0;
}

struct config *
config_load_string(const char *text, const char *name, char *err,
    size_t errlen)
{
	struct parse ps = { .next = text, .err = err, .errlen = errlen };
	int rc;

	if (name == NULL)
		name = "config";
	if ((ps.cfg = config_new(name)) == NULL) {
		err_put(err, errlen, name, 0, NULL, NULL, "out of memory");
		return NULL;
	}
	rc = ini_parse_stream(parse_read_cb, &ps, parse_key_cb, &ps);
	if (rc != 0 && !ps.failed) {
		/* The reader hands inih only lines it can split, and handler
		 * errors are already reported: this one is inih's own. */
		ps.line = rc > 0 ? rc : 0;
		parse_fail(&ps, NULL, NULL, rc > 0 ? "syntax error" :
		    "out of memory");
	}
	priv(ps.cfg)->last_line = ps.line > 0 ? ps.line : 1;
	if (ps.failed || config_finish(ps.cfg, err, errlen) < 0) {
		config_unref(ps.cfg);
		return NULL;
	}
	return ps.cfg;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *cfg;
	char *text, why[WHY_MAX];
	int line = 0;

	if ((text = file_read(path, &line, why, sizeof(why))) == NULL) {
		err_put(err, errlen, path, line, NULL, NULL, why);
		return NULL;
	}
	cfg = config_load_string(text, path, err, errlen);
	free(text);
	return cfg;
}

void
config_server_error(const struct config *cfg, const struct config_backend *b,
    const struct config_server *s, const char *why, char *err, size_t errlen)
{
	char label[LABEL_MAX];

	snprintf(label, sizeof(label), "backend %s", b->name);
	err_put(err, errlen, cfg->path, s->line, label, "server", why);
}

void
config_global_error(const struct config *cfg, const char *key,
    const char *why, char *err, size_t errlen)
{
	struct sect s = { CONFIG_SECT_GLOBAL, 0 };
	int line = mark_line((const struct config_priv *)cfg, s, key, 0);

	err_put(err, errlen, cfg->path, line > 0 ? line : 0, "global", key,
	    why);
}

void
config_bind_error(const struct config *cfg, const struct config_listener *l,
    size_t k, const char *why, char *err, size_t errlen)
{
	char label[LABEL_MAX];
	struct sect s = { CONFIG_SECT_LISTENER, (size_t)(l - cfg->listeners) };
	int line = mark_line((const struct config_priv *)cfg, s, "bind", k);

	snprintf(label, sizeof(label), "listener %s", l->name);
	err_put(err, errlen, cfg->path, line > 0 ? line : 0, label, "bind", why);
}

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
	free(cfg->path);
	free(priv(cfg)->marks);
	free(priv(cfg));
}
