/* include/spliced/config.h: the configuration snapshot.
 *
 * A config is parsed whole (from an INI file with inih, or from the one-off
 * command line), validated, and then never changed: workers and connections
 * share it read-only and hold a reference for as long as they use it.
 *
 * Errors: every function that can fail writes one line into err, naming the
 * file, the line and the key ("spliced.ini:12: [listener web] timeout_idle:
 * '5x' is not a duration (use ms, s, m or h)"), and returns -1 / NULL.
 * Unknown keys and sections are errors too, never ignored. Without a line
 * (config_set) the message starts at the section: "[listener cli] bind:
 * ...".
 *
 * Every struct config comes from config_new() or config_load*(): config.c
 * keeps private state behind it, so never make one yourself. */
#ifndef SPLICED_CONFIG_H
#define SPLICED_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/addr.h"
#include "spliced/cidr.h"

#define CONFIG_ERR_MAX 512

enum config_splice {
	CONFIG_SPLICE_AUTO,
	CONFIG_SPLICE_ALWAYS,
	CONFIG_SPLICE_NEVER,
};

enum config_log_level {
	CONFIG_LOG_ERROR,
	CONFIG_LOG_WARN,
	CONFIG_LOG_INFO,
	CONFIG_LOG_DEBUG,
};

/* access_log: where the access lines (one per connection) go. */
enum config_access_log {
	CONFIG_ACCESS_LOG_OFF,
	CONFIG_ACCESS_LOG_ON,       /* stderr, with the event lines */
	CONFIG_ACCESS_LOG_FILE,     /* the file access_log_path, and not stderr */
};

/* log_format: of access lines and event lines alike (log.h). */
enum config_log_format {
	CONFIG_LOG_FORMAT_TEXT,
	CONFIG_LOG_FORMAT_JSON,     /* one object per line */
};

enum config_balance {
	CONFIG_BALANCE_ROUNDROBIN,  /* smooth weighted round robin (default) */
	CONFIG_BALANCE_LEASTCONN,   /* fewest active connections per weight */
	CONFIG_BALANCE_SOURCE,      /* weighted rendezvous hash of the client address */
	CONFIG_BALANCE_RANDOM,      /* two weighted random choices, the less loaded wins */
};

/* proxy_protocol: the PROXY header a listener sends its backend first. */
enum config_proxy_protocol {
	CONFIG_PROXY_OFF,
	CONFIG_PROXY_V1,
	CONFIG_PROXY_V2,
};

enum config_health {
	CONFIG_HEALTH_OFF,          /* default: only connect failures of traffic count */
	CONFIG_HEALTH_TCP,          /* a TCP connect every health_interval */
};

/* tcp_keepalive: keepalive probes on both sockets of a connection, so a
 * peer gone without an RST (host down, state dropped by a NAT or a
 * firewall) is found before timeout_idle. keepalive.h applies it. */
struct config_keepalive {
	bool on;                    /* false (default): no probes */
	/* The kernel takes whole seconds; 0: its own default (the sysctls
	 * net.ipv4.tcp_keepalive_time, _intvl and _probes). */
	unsigned idle_s;            /* TCP_KEEPIDLE, 1..32767 */
	unsigned interval_s;        /* TCP_KEEPINTVL, 1..32767 */
	unsigned count;             /* TCP_KEEPCNT, 1..127 */
};

/* A server's weight, in the config and set at run time: 1..this. */
#define CONFIG_WEIGHT_MAX 256u

struct config_server {
	char *name;
	char *host;                 /* "ADDRESS:PORT" as written, for logs */
	/* A host name to resolve (resolve.c), or NULL: addr is the server's
	 * one address. With a name, addr holds only the port. */
	char *dnsname;
	struct addr addr;
	unsigned weight;            /* 1..256, default 1 */
	unsigned max_connections;   /* 0 (default) = no limit of its own */
	int line;                   /* 0: from config_set() */
};

struct config_backend {
	char *name;
	struct config_server *servers;
	size_t nservers;
	enum config_balance balance;       /* default roundrobin */
	unsigned retries;           /* default 2 */
	enum config_health health_check;   /* default off */
	unsigned health_interval_ms;       /* default 2s */
	unsigned health_timeout_ms;        /* default 1s */
	unsigned rise;              /* checks passed in a row to come up; default 2 */
	unsigned fall;              /* failures in a row to go down; default 3 */
	unsigned resolve_interval_ms;      /* host-name servers; default 30s */
	/* What its health checks send first (v2 LOCAL, v1 "PROXY UNKNOWN"):
	 * set by config_finish() from the listeners that use the backend,
	 * the first of them in file order that sends a header. */
	enum config_proxy_protocol check_proxy;
	int line;                   /* of the section header; 0: config_set() */
};

/* A listener's route by TLS server name (DESIGN section 8): clients whose
 * ClientHello names `name` go to `backend`. */
struct config_route {
	/* Lower-case. A wildcard "*.b.example" is kept as ".b.example": it
	 * matches any name ending so, with at least one label before. */
	char *name;
	bool wildcard;
	char *backend_name;
	struct config_backend *backend;   /* resolved by validation */
	int line;
};

/* admin: where the admin endpoint (admin.h) listens, if anywhere. */
struct config_admin {
	char *unix_path;            /* unix:PATH; NULL: addr, or no endpoint */
	struct addr addr;           /* ADDR:PORT; len 0 with no unix_path: off */
};

struct config_listener {
	char *name;
	struct addr *binds;
	size_t nbinds;
	/* The backend; with routes, the default one (no route matched, no
	 * server name, not TLS, ...), and optional: NULL refuses those. */
	char *backend_name;
	struct config_backend *backend;   /* resolved by validation */
	unsigned timeout_connect_ms;      /* default 5s */
	unsigned timeout_idle_ms;         /* default 5m */
	unsigned max_connections;         /* 0 = only the global limit */
	enum config_splice splice;        /* default: [global] splice */
	size_t splice_threshold;          /* default: [global] splice_threshold */
	struct config_keepalive tcp_keepalive;  /* default: [global] tcp_keepalive */
	/* Client identity and admission (DESIGN section 7). */
	enum config_proxy_protocol proxy_protocol;  /* default off */
	bool accept_proxy;                /* default off */
	struct cidr *accept_proxy_from;   /* may repeat; none: any peer */
	size_t naccept_proxy_from;
	unsigned timeout_handshake_ms;    /* default 5s */
	struct cidr_rule *rules;          /* allow/deny, in file order */
	size_t nrules;
	unsigned max_connections_per_source;   /* 0 (default): none */
	unsigned connection_rate_per_source;   /* a second; 0 (default): none */
	unsigned source_prefix_v6;        /* default 64; 1..128 */
	/* Routing by TLS server name (DESIGN section 8): with routes, the
	 * ClientHello is read first (at most sni_max_bytes of it). */
	struct config_route *routes;      /* in file order; may repeat */
	size_t nroutes;
	size_t sni_max_bytes;             /* default 16k; 4k..1m */
	int line;                         /* of the section header */
};

struct config {
	atomic_uint refs;
	char *path;                 /* file, or "command line" */

	unsigned workers;           /* 0 = auto: one per CPU */
	unsigned max_connections;   /* default 10000 */
	enum config_log_level log_level;   /* default info */
	enum config_access_log access_log;  /* default on */
	/* With CONFIG_ACCESS_LOG_FILE: the file, an absolute path as written;
	 * NULL otherwise. Opened by log.h (log_access_open()), not here. */
	char *access_log_path;
	enum config_log_format log_format;  /* default text */
	enum config_splice splice;  /* default auto */
	size_t splice_threshold;    /* default 64k */
	struct config_keepalive tcp_keepalive;  /* default off */
	size_t pipe_size;           /* default 1m; 4k..1g */
	size_t buffer_size;         /* default 64k; 1k..64m */
	unsigned max_pipes;         /* 0 = derived */
	unsigned shutdown_timeout_ms;      /* default 30s */
	unsigned upgrade_timeout_ms;       /* SIGUSR2: the whole handover; 30s */
	unsigned source_table_size;        /* default 100000; 1..10000000 */
	/* The user to run as after binding (privs.h), as written: a name
	 * from the password database (digits are looked up as a name too,
	 * never taken as a uid). NULL (default): stay who started spliced.
	 * Whether it exists is checked at start and by spliced -t, not while
	 * parsing: a file may be checked on another machine. */
	char *user;
	/* The name server for host-name servers; len 0 (default): the
	 * system's, from /etc/resolv.conf. */
	struct addr resolver;
	/* The admin endpoint: off unless admin is set. admin_token_file is
	 * read at start and by spliced -t (admin_token_load()), not while
	 * parsing; without it, admin must be loopback or a unix socket. */
	struct config_admin admin;
	char *admin_token_file;     /* NULL: no token */

	struct config_listener *listeners;
	size_t nlisteners;
	struct config_backend *backends;
	size_t nbackends;
};

/* Parse and validate a file. NULL with err set on any problem (parsing goes on
 * to the end of the file; err holds the first problem). refs is 1. */
struct config *config_load(const char *path, char *err, size_t errlen);

/* The same from a string; name stands for the file in messages. For tests. */
struct config *config_load_string(const char *text, const char *name,
    char *err, size_t errlen);

/* A builder for configs that do not come from a file (the one-off command
 * line): start from defaults, set keys as if they were in a file, finish.
 * name stands for the file in messages; NULL means "command line". refs is 1. */
struct config *config_new(const char *name);
/* section: "global", "listener NAME" or "backend NAME", created on first use.
 * As in a file, bind, server, accept_proxy_from, allow and deny may repeat
 * and other keys may be set once.
 * 0, or -1 with err naming section and key (no line). */
int config_set(struct config *, const char *section, const char *key,
    const char *value, char *err, size_t errlen);
/* Validation after all keys are set: there is a listener, listeners have
 * binds and an existing backend, backends have servers, no address is
 * bound twice; listeners without their own splice / splice_threshold /
 * tcp_keepalive take [global]'s. Values were range-checked when set. Call
 * it last: it points listeners at their backends, so no key may be set
 * after it. 0 or -1 with err. */
int config_finish(struct config *, char *err, size_t errlen);

/* "FILE:LINE: [backend NAME] server: why" for server s of backend b, as
 * the config's own errors name a key (for problems found later, such as
 * a name that does not resolve). */
void config_server_error(const struct config *, const struct config_backend *b,
    const struct config_server *s, const char *why, char *err, size_t errlen);
/* "FILE:LINE: [global] KEY: why", the line being where KEY was set (for
 * problems found later, such as a user that does not exist). Without a
 * line (config_set(), or KEY not set): "[global] KEY: why". */
void config_global_error(const struct config *, const char *key,
    const char *why, char *err, size_t errlen);
/* The same for bind line k of listener l (l is one of cfg's). */
void config_bind_error(const struct config *, const struct config_listener *l,
    size_t k, const char *why, char *err, size_t errlen);
/* The number of worker threads: workers, or with auto (0) one per online
 * CPU (at least 1). */
unsigned config_workers(const struct config *);
/* How many servers are given by host name, in every backend. */
size_t config_dns_servers(const struct config *);

struct config *config_ref(struct config *);
void config_unref(struct config *);     /* frees on the last reference; NULL is fine */

/* Value syntax, exposed for tests and tools/. 0 or -1; size and
 * duration set errno to EINVAL (not the syntax) or ERANGE (too large).
 * Digits only (no sign, no fraction); units and keywords in any case. */
int config_parse_size(const char *, size_t *);          /* 64k, 1m, 1g, 4096 (k = 1024) */
int config_parse_duration_ms(const char *, unsigned *); /* 500ms, 5s, 5m, 1h; "0" alone; a unit is required */
int config_parse_bool(const char *, bool *);            /* on/off yes/no true/false 1/0 */
int config_parse_splice(const char *, enum config_splice *);
/* off | on | IDLE[,INTERVAL[,COUNT]]: IDLE and INTERVAL durations in whole
 * seconds (1s..32767s), COUNT 1..127; a part left out or empty is the
 * kernel's. 0, or -1 with the problem in why (no file, line or key). */
int config_parse_keepalive(const char *, struct config_keepalive *,
    char *why, size_t whylen);
const char *config_splice_name(enum config_splice);
const char *config_balance_name(enum config_balance);
const char *config_proxy_protocol_name(enum config_proxy_protocol);  /* off, v1, v2 */

#endif
