/* proxy/config_keys.h: the keys of each section and the values they take.
 *
 * Private to the config module: config_keys.c knows what a key accepts
 * (config_acl.c, for the keys of client identity and admission);
 * config.c knows sections and lines, config_read.c the INI file and
 * config_finish.c the checks across keys (config_int.h). Dependence is one
 * way, they on this. */
#ifndef SPLICED_CONFIG_KEYS_H
#define SPLICED_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "spliced/config.h"

enum config_sect {
	CONFIG_SECT_NONE,           /* before the first header */
	CONFIG_SECT_GLOBAL,
	CONFIG_SECT_LISTENER,
	CONFIG_SECT_BACKEND,
	CONFIG_SECT_SKIP,           /* under a header already reported bad */
};

enum config_key_type {
	CONFIG_KEY_UINT,
	CONFIG_KEY_WORKERS,         /* a number, or auto (0) */
	CONFIG_KEY_SIZE,
	CONFIG_KEY_DURATION,
	CONFIG_KEY_BOOL,
	CONFIG_KEY_SPLICE,
	CONFIG_KEY_LOG_LEVEL,
	CONFIG_KEY_NAME,            /* a section's name (listener backend) */
	CONFIG_KEY_BIND,            /* repeats */
	CONFIG_KEY_SERVER,          /* repeats */
	CONFIG_KEY_BALANCE,
	CONFIG_KEY_HEALTH,
	CONFIG_KEY_RESOLVER,        /* a name server: IP address and port */
	CONFIG_KEY_USER,            /* a user name (char *) */
	CONFIG_KEY_KEEPALIVE,       /* struct config_keepalive */
	CONFIG_KEY_ACCESS_LOG,      /* on | off | PATH: struct config's two fields */
	CONFIG_KEY_LOG_FORMAT,
	CONFIG_KEY_ADMIN,           /* ADDR:PORT or unix:PATH (struct config_admin) */
	CONFIG_KEY_PATH,            /* a file's path (char *) */
	/* Client identity and admission: config_acl.c parses these. */
	CONFIG_KEY_PROXY_PROTOCOL,  /* off | v1 | v2 */
	CONFIG_KEY_PROXY_FROM,      /* accept_proxy_from: a CIDR; repeats */
	CONFIG_KEY_ALLOW,           /* a CIDR or all, into rules; repeats */
	CONFIG_KEY_DENY,            /* the same, denying */
	/* Routing by server name: config_route.c parses this. */
	CONFIG_KEY_ROUTE,           /* NAME BACKEND, into routes; repeats */
};

struct config_key {
	const char *name;
	enum config_key_type type;
	size_t off;                 /* of the field in the section's struct */
	unsigned long long min, max;
	const char *range;          /* min..max as an operator writes it */
};

/* The key of that kind of section (case-insensitive), or NULL. */
const struct config_key *config_key_find(enum config_sect, const char *name);

/* For a key unknown in its section: the section it belongs in
 * ("[global]"), or NULL. */
const char *config_key_home(enum config_sect, const char *name);

/* Parse value into the field of the section's struct at base (struct
 * config, config_listener or config_backend). A bind or a server is
 * appended. 0, or -1 with the problem in why ("'5x' is not a duration (use
 * ms, s, m or h)"). line: kept by servers. A bind given by host name is
 * resolved here (getaddrinfo, which blocks); a server's host name is only
 * kept, for resolve.c. */
int config_key_set(const struct config_key *, void *base, const char *value,
    int line, char *why, size_t whylen);

/* config_key_set() for the keys of client identity and admission
 * (config_acl.c): proxy_protocol, accept_proxy_from, allow and deny, into
 * the struct config_listener at base; an allow or deny keeps line. */
int config_acl_set(const struct config_key *, void *base, const char *value,
    int line, char *why, size_t whylen);

/* config_key_set() for route (config_route.c): NAME BACKEND appended to
 * the struct config_listener at base, with line. */
int config_route_set(void *base, const char *value, int line, char *why,
    size_t whylen);

/* Room for one more element at the end of arr (of n, each size bytes):
 * the lists of the config grow one line at a time. NULL: out of memory
 * (arr is left as it was). */
void *config_grow(void *arr, size_t n, size_t size);

/* A listener, backend or server name: [A-Za-z0-9_.-]+, for logs and
 * metric labels. */
bool config_name_ok(const char *);

#endif
