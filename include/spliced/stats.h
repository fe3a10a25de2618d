/* include/spliced/stats.h: what one worker counts, and the sums of them.
 *
 * Each worker owns a struct stats_worker and is the only thread that
 * writes it: plain 64-bit counters, no atomics and no locks on the data
 * path. Figures are kept per listener name and per backend name (a reload
 * that keeps a name keeps counting on; one that drops it leaves its
 * counters, as Prometheus expects of a counter) and, for servers, per
 * backend/server name.
 *
 * Other threads never read a stats_worker: the worker copies it into a
 * struct stats_sample on its own thread when asked (worker_query(),
 * metrics.h), adding the bytes of its connections still open, so that a
 * connection that lives for hours shows its traffic in every sample, not
 * when it closes. Samples of several workers are summed with
 * stats_sample_add*(). */
#ifndef SPLICED_STATS_H
#define SPLICED_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "spliced/addr.h"
#include "spliced/conn.h"
#include "spliced/pipepool.h"
#include "spliced/relay.h"

enum stats_dir { STATS_UP, STATS_DOWN, STATS_DIR_MAX_ };  /* up: client -> backend */

/* Histogram buckets: upper bounds in seconds; a last, implicit bucket
 * holds the rest (+Inf). */
#define STATS_HIST_MAX 14
extern const double stats_connect_le[STATS_HIST_MAX];     /* connect time */
extern const double stats_duration_le[STATS_HIST_MAX];    /* connection life */

struct stats_hist {
	uint64_t bucket[STATS_HIST_MAX + 1];   /* not cumulative; [MAX]: +Inf */
	uint64_t count;
	uint64_t sum_us;
};

/* Why a client was refused before a server was picked (the reason label
 * of spliced_denied_connections_total). */
enum stats_deny {
	STATS_DENY_ACL,             /* allow/deny */
	STATS_DENY_RATE,            /* connection_rate_per_source */
	STATS_DENY_PER_SOURCE,      /* max_connections_per_source */
	STATS_DENY_PROXY_HEADER,    /* no valid PROXY header, or a peer not allowed to send one */
	STATS_DENY_NO_ROUTE,        /* TLS server-name routing found no backend */
	STATS_DENY_LIMIT,           /* a limit that refuses rather than queues */
	STATS_DENY_MAX_,
};

/* Handshakes read before a server is picked, by kind and result (the
 * labels of spliced_handshake_total). */
enum stats_hs_kind { STATS_HS_PROXY, STATS_HS_SNI, STATS_HS_KIND_MAX_ };
enum stats_hs_result {
	STATS_HS_OK,
	STATS_HS_DEFAULT,           /* sni: no route matched, the default backend */
	STATS_HS_NO_SNI,
	STATS_HS_NOT_TLS,
	STATS_HS_TIMEOUT,           /* not complete within timeout_handshake */
	STATS_HS_TOO_LARGE,
	STATS_HS_INVALID,           /* malformed, or the peer closed first */
	STATS_HS_RESULT_MAX_,
};

const char *stats_deny_name(enum stats_deny);
const char *stats_hs_kind_name(enum stats_hs_kind);
const char *stats_hs_result_name(enum stats_hs_result);

struct stats_listener {
	char *name;
	uint64_t connections;       /* accepted */
	uint64_t active;            /* open now */
	uint64_t closed[CONN_REASON_MAX_];
	uint64_t denied[STATS_DENY_MAX_];
	uint64_t handshake[STATS_HS_KIND_MAX_][STATS_HS_RESULT_MAX_];
	/* Moved so far: of the connections closed, plus (in a sample) of
	 * those still open. */
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_];
	struct stats_hist duration;
};

struct stats_backend {
	char *name;
	struct stats_hist connect;  /* successful connects */
};

struct stats_server {           /* one server line, all its addresses */
	char *backend, *name;
	uint64_t connections;       /* connects that succeeded */
	uint64_t connect_failures;
};

/* One open connection, for GET /connections. */
struct stats_conn {
	uint64_t id;
	char listener[64];
	char client[ADDR_TEXT_MAX];
	char server[ADDR_TEXT_MAX + 64];   /* "NAME/ADDRESS", or "-" while connecting */
	char sni[256];              /* its TLS server name (routes), or "" */
	uint64_t age_ms;
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_];
	enum relay_state state[STATS_DIR_MAX_];
	enum relay_mode mode[STATS_DIR_MAX_];   /* the mover in use now */
	int connecting;             /* no server reached yet */
};

/* The figures of one or more workers. Owns its memory: stats_sample_cleanup(). */
struct stats_sample {
	struct stats_listener *l;
	size_t nl;
	struct stats_backend *b;
	size_t nb;
	struct stats_server *s;
	size_t ns;
	uint64_t fallbacks[RELAY_FALLBACK_MAX_];
	struct pipepool_stats pipes;
	/* Open connections, newest first, at most conn_limit of them. */
	struct stats_conn *c;
	size_t nc, conn_limit;
	size_t conn_room;           /* allocated in c */
	unsigned workers;           /* how many workers' figures are in */
};

struct stats_worker;

struct stats_worker *stats_worker_new(void);   /* NULL with errno */
void stats_worker_free(struct stats_worker *); /* NULL is fine */

/* The block of listener or backend `name`, made on first use and kept
 * until stats_worker_free(): a worker looks them up when it makes a snap,
 * so the data path holds the pointers. NULL when out of memory. */
struct stats_listener *stats_worker_listener(struct stats_worker *, const char *name);
struct stats_backend *stats_worker_backend(struct stats_worker *, const char *name);
struct stats_server *stats_worker_server(struct stats_worker *,
    const char *backend, const char *server);

/* Recording, on the worker's thread. */
void stats_hist_add(struct stats_hist *, const double *le, uint64_t us);
void stats_conn_closed(struct stats_listener *, enum conn_reason,
    const uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_], uint64_t age_us);

/* Add the worker's counters into s (blocks matched by name, new ones
 * appended). 0, or -1 with ENOMEM (s is then partly added: still valid). */
int stats_sample_add_worker(struct stats_sample *, const struct stats_worker *);
/* Add bytes moved by a connection still open, to listener `name`. */
int stats_sample_add_bytes(struct stats_sample *, const char *listener,
    const uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_]);
/* Keep c while fewer than conn_limit are kept: add the newest first. */
void stats_sample_add_conn(struct stats_sample *, const struct stats_conn *);
/* Add every figure of `from` (another worker's sample) into `to`, its
 * connections appended (to may then hold more than conn_limit of them
 * until stats_sample_sort_conns()). 0, or -1 with ENOMEM. */
int stats_sample_merge(struct stats_sample *to, const struct stats_sample *from);
/* Sort the connections newest first and keep the conn_limit newest
 * (after every worker's sample was merged). */
void stats_sample_sort_conns(struct stats_sample *);
/* A zeroed sample that keeps at most conn_limit connections. 0 / -1 ENOMEM. */
int stats_sample_init(struct stats_sample *, size_t conn_limit);
void stats_sample_cleanup(struct stats_sample *);

/* A binary upgrade: the counters of s (another process's, its open
 * connections left out) added to w's, blocks matched by name (made as
 * needed); gauges (`active`) are not. 0, or -1 with ENOMEM. */
int stats_worker_adopt(struct stats_worker *w, const struct stats_sample *s);

/* Lookups in a sample by name; NULL when absent. */
const struct stats_listener *stats_sample_listener(const struct stats_sample *,
    const char *name);
const struct stats_backend *stats_sample_backend(const struct stats_sample *,
    const char *name);
const struct stats_server *stats_sample_server(const struct stats_sample *,
    const char *backend, const char *server);

#endif
