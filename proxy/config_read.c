/* proxy/config_read.c: the INI file into a struct config, with file:line
 * errors.
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
 * Each key then goes to config_sect_set() (config.c), and the whole to
 * config_finish() (config_finish.c). */
#include "spliced/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define FILE_MAX	(16u << 20)	/* no config is near this */

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
	config_err_put(ps->err, ps->errlen, ps->cfg->path, ps->line, label,
	    key, why);
}

static void
parse_section(struct parse *ps, char *s)
{
	char *end = find_sep(s + 1, "]"), *rest, why[CONFIG_WHY_MAX];

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
	if (config_sect_open(ps->cfg, s, ps->line, false, &ps->sect, why,
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
	char *s = trim(buf), *sep, label[CONFIG_LABEL_MAX];

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
			parse_fail(ps, config_sect_label(ps->cfg, ps->sect,
			    label, sizeof(label)), ps->last_key, "continuation "
			    "lines are not supported; put the value on one line");
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
	char why[CONFIG_WHY_MAX], label[CONFIG_LABEL_MAX];

	(void)section;          /* inih's; ours came with its line */
	snprintf(ps->last_key, sizeof(ps->last_key), "%s", key);
	if (ps->sect.kind == CONFIG_SECT_SKIP)
		return 1;
	if (config_sect_set(ps->cfg, ps->sect, key, value, ps->line, why,
	    sizeof(why)) == 0)
		return 1;
	parse_fail(ps, config_sect_label(ps->cfg, ps->sect, label,
	    sizeof(label)), key, why);
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

struct config *
config_load_string(const char *text, const char *name, char *err,
    size_t errlen)
{
	struct parse ps = { .next = text, .err = err, .errlen = errlen };
	int rc;

	if (name == NULL)
		name = "config";
	if ((ps.cfg = config_new(name)) == NULL) {
		config_err_put(err, errlen, name, 0, NULL, NULL,
		    "out of memory");
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
	config_priv(ps.cfg)->last_line = ps.line > 0 ? ps.line : 1;
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
	char *text, why[CONFIG_WHY_MAX];
	int line = 0;

	if ((text = file_read(path, &line, why, sizeof(why))) == NULL) {
		config_err_put(err, errlen, path, line, NULL, NULL, why);
		return NULL;
	}
	cfg = config_load_string(text, path, err, errlen);
	free(text);
	return cfg;
}
