/* proxy/config_int.h: what the config files share, private to them.
 *
 * The config module is five files: config.c (the snapshot: its sections,
 * where each key was set, errors naming file:line, the builder and the
 * references), config_read.c (the INI reader), config_finish.c (the checks
 * across keys), config_keys.c (what each key accepts) and config_acl.c
 * (the lists of client identity and admission). Nothing outside
 * proxy/config*.c includes this. */
#ifndef SPLICED_CONFIG_INT_H
#define SPLICED_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "spliced/config.h"
#include "config_keys.h"

#define CONFIG_WHY_MAX		384	/* why: no file, line or key */
#define CONFIG_LABEL_MAX	256	/* "listener NAME" */

/* A section of a config: its kind, and which listener or backend. */
struct sect {
	enum config_sect kind;
	size_t idx;                 /* into listeners[] or backends[] */
};

/* Where a key was set: line 0 for config_set(). sub: which element of its
 * list a repeating key added (a bind, a server, an accept_proxy_from, or
 * the index into rules of an allow or a deny). */
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

static inline struct config_priv *
config_priv(struct config *cfg)
{
	return (struct config_priv *)cfg;
}

/* "FILE:LINE: [SECTION] KEY: why", leaving out what is not known (label,
 * key NULL; line 0). The file is left out too when there is a section but
 * no line: such a key came from config_set(), the command line. */
void config_err_put(char *err, size_t errlen, const char *file, int line,
    const char *label, const char *key, const char *why);

/* " on line N" into buf, or "" for line 0; returns buf. */
const char *config_at_line(int line, char *buf, size_t n);

/* "global", or "listener NAME" / "backend NAME" in buf; NULL for a kind
 * without a name in messages (none, skip). */
const char *config_sect_label(const struct config *, struct sect, char *buf,
    size_t n);

/* Whether a listener or backend of that name exists; *idx: which. */
bool config_sect_find(const struct config *, enum config_sect,
    const char *name, size_t *idx);

/* text: "global", "listener NAME" or "backend NAME", created on first use.
 * A file may open a section once; config_set() (reuse) comes back to it for
 * every key. 0 with *out, or -1 with the problem in why. */
int config_sect_open(struct config *, const char *text, int line,
    bool reuse, struct sect *out, char *why, size_t n);

/* Set key name of section s from value, read on line (0: config_set()),
 * and mark where: a key unknown in s, or set twice (only bind, server,
 * accept_proxy_from, allow and deny repeat), is refused. 0, or -1 with the
 * problem in why. */
int config_sect_set(struct config *, struct sect s, const char *name,
    const char *value, int line, char *why, size_t n);

/* The line key was set on in s (its sub-th for a repeating key; for allow
 * and deny, sub indexes rules, so only a rule of that key has a line),
 * 0 for config_set(), or -1 if it was not set. */
int config_mark_line(const struct config *, struct sect s, const char *key,
    size_t sub);

#endif
