/* include/spliced/backend.h: servers, picking one, connecting, and whether
 * a server is up. The algorithms that choose are balance.h's.
 *
 * Two kinds of state, so that the data path takes no lock:
 *
 *  - struct backend_set, shared by every worker and the health checks (main
 *    thread): per server address, atomics saying whether it is up and how
 *    many connections it has in all workers. It lives beside the config,
 *    not in it (a config stays immutable), and a new set carries a
 *    server's state over from a previous one by backend name, server name
 *    and address (what a reload does, and what re-resolving a host name
 *    does). A set never changes once built: a change of addresses is
 *    a new set (a generation), handed to the workers (worker.h).
 *
 *    What balancing picks is an address: a server given by address is
 *    one, a server given by host name is one per address it resolves to,
 *    each with the server's weight and max_connections (none while the
 *    name has not resolved). A new address starts up and idle, as a new
 *    server does.
 *
 *  - struct backend_lb, one per backend per worker: the algorithm's own
 *    state (struct balance: round-robin credit, leastconn's turn, the
 *    random generator) and the worker's per-server counters, over one
 *    generation's addresses. Not thread-safe.
 *
 * A server is picked among those that are eligible: ready (see below), up
 * (or, with checks off, down by traffic but due for its trial connect),
 * below its own max_connections, and not the server that just failed
 * unless it is the only one left. Picking reserves a connection slot on the server; every
 * pick is followed by exactly one backend_lb_connected() or
 * backend_lb_failed(), and every connected server by one
 * backend_lb_release().
 *
 * Runtime state, set by an operator (the admin endpoint) per server line,
 * so for every address of a host-name server at once:
 *  - admin: ready (the default), drain (no new connections: not eligible
 *    for picks; connections already on it go on, and so do its health
 *    checks), or maint (drain, and no health checks: its up/down state
 *    stays what it was until it is ready or drained again).
 *  - weight: 1..256 instead of the config line's, for every algorithm,
 *    from the next pick on (balance.c reads it at pick time: no new
 *    generation is needed).
 * Both live in every address's server_state (what picks read) and in the
 * backend_shared's per-line record (what a new address takes). A new
 * generation keeps them by backend name and server name, whatever the
 * server's address or host name became: an address carried over keeps
 * its state, a new one takes the line's. */
#ifndef SPLICED_BACKEND_H
#define SPLICED_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "spliced/balance.h"
#include "spliced/config.h"

/* Passive back-off with health checks off: a server taken down by failed
 * connects of traffic gets a trial connect after BACKEND_BACKOFF_MIN_MS,
 * doubling while trials keep failing, up to BACKEND_BACKOFF_MAX_MS. */
#define BACKEND_BACKOFF_MIN_MS 1000u
#define BACKEND_BACKOFF_MAX_MS 60000u

/* One server, shared by every worker and the health checks. */
struct server_state {
	atomic_uint refs;
	atomic_uint active;         /* connections to it (connecting or relaying) */
	atomic_bool up;
	atomic_uint fails;          /* connect failures of traffic in a row */
	/* Checks off, down by traffic: clock_coarse_ms() of the next trial,
	 * and the back-off after that one. */
	_Atomic uint64_t trial_ms;
	atomic_uint backoff_ms;
	/* The record of its server line (a reference): what is counted per
	 * server rather than per address lives there. */
	struct server_line *line;
	/* Runtime state (top of this file), as its line's record says. */
	atomic_uint admin;          /* enum backend_admin */
	atomic_uint weight;         /* 1..256; 0: the config line's */
	_Atomic uint64_t check_failures;   /* health checks failed, ever */
	struct addr addr;           /* what the state was about (carry-over) */
};

enum backend_admin {
	BACKEND_ADMIN_READY,
	BACKEND_ADMIN_DRAIN,
	BACKEND_ADMIN_MAINT,
	BACKEND_ADMIN_MAX_
};

/* The runtime state of one server line, shared by the generations that
 * have the line (by backend and server name). */
struct server_line {
	atomic_uint refs;
	atomic_uint admin;          /* enum backend_admin */
	atomic_uint weight;         /* 1..256; 0: the config line's */
	/* Counted over every address the line ever had, so that they hold
	 * across generations: connections to it now (an address a reload or
	 * DNS dropped still holds its open ones), checks failed ever. */
	atomic_uint active;
	_Atomic uint64_t check_failures;
};

struct backend_shared {         /* one per config backend */
	const struct config_backend *cfg;
	/* One per address, in config order, a host-name server's addresses
	 * in the order resolve.c gave them (sorted). */
	struct server_state **servers;     /* [n] */
	const struct config_server **entry; /* [n]: the server line of each */
	size_t n;
	struct server_line **lines; /* [cfg->nservers]: of cfg->servers[j] */
};

struct backend_set {
	atomic_uint refs;
	struct config *cfg;         /* a reference */
	struct backend_shared *b;   /* [cfg->nbackends] */
	size_t n;
};

/* The shared state of every server of cfg. A server given by address keeps
 * the state it had in prev (same backend name, server name and address);
 * a server given by host name keeps the addresses (and their state) it had
 * in prev under the same backend name, server name, host and port, or has
 * none. Others start up, idle. Every server line keeps its runtime state
 * (admin, weight) by backend name and server name alone, and a new address
 * takes it. prev may be NULL. refs is 1. NULL with errno (ENOMEM). */
struct backend_set *backend_set_new(struct config *, const struct backend_set *prev);
/* A new generation of bs in which server s of backend b has the addresses
 * a[0..n) (n may be 0), in that order: one it had keeps its state (up or
 * down, connections), a new one starts up and idle, with the server's
 * runtime state (admin, weight). Every other server keeps its addresses
 * and state. refs is 1; NULL with errno (ENOMEM). */
struct backend_set *backend_set_update(const struct backend_set *bs, size_t b,
    size_t s, const struct addr *a, size_t n);
struct backend_set *backend_set_ref(struct backend_set *);
void backend_set_unref(struct backend_set *);   /* NULL is fine */

/* Set server state up or down; true when this call changed it (the caller
 * then logs the change, once). A change clears the failure count; going
 * up also resets the back-off. Thread-safe. */
bool backend_server_set_up(struct server_state *, bool up);

const char *backend_admin_name(enum backend_admin);  /* "ready" "drain" "maint" */
/* One of those names: 0 and *out set, or -1. */
int backend_admin_parse(const char *, enum backend_admin *out);

/* Set the runtime state (admin < 0: keep) and/or weight (0: keep; else
 * 1..256) of server `server` of backend `backend` in bs: its line's record
 * and every address it has in bs (none, for a host name not resolved yet:
 * its addresses will take it). The change is logged (info) when it is one.
 * Thread-safe against picks and checks. A new generation built from bs at
 * the same time on another thread may miss it for its new addresses: call
 * it on the thread that builds generations (the main thread). 0, or -1
 * with errno ENOENT (no such backend, or no such server in it) or EINVAL
 * (admin or weight out of range; nothing set). */
int backend_server_set_admin(struct backend_set *, const char *backend,
    const char *server, int admin, unsigned weight);

/* The weight balancing uses for an address of server line e: its runtime
 * weight, or else the line's. A relaxed load: cheap enough per candidate. */
static inline unsigned
backend_weight_of(const struct server_state *st, const struct config_server *e)
{
	unsigned w = atomic_load_explicit(&st->weight, memory_order_relaxed);

	return w != 0 ? w : e->weight;
}

/* The effective weight of address i of sh. */
unsigned backend_weight(const struct backend_shared *, size_t i);
/* The effective weight of server line j of sh (cfg->servers[j]). */
unsigned backend_line_weight(const struct backend_shared *, size_t j);

/* What a server shows as its state (metrics, /status): maint if in maint,
 * else drain if draining, else up or down by health. */
enum backend_status {
	BACKEND_STATUS_UP,
	BACKEND_STATUS_DOWN,
	BACKEND_STATUS_DRAIN,
	BACKEND_STATUS_MAINT,
	BACKEND_STATUS_MAX_
};
const char *backend_status_name(enum backend_status); /* "up" "down" "drain" "maint" */
/* Of address i of sh. */
enum backend_status backend_status(const struct backend_shared *, size_t i);
/* Of server line j of sh: up when one of its addresses is up (down with
 * none, a host name not resolved yet). */
enum backend_status backend_line_status(const struct backend_shared *, size_t j);

enum backend_none {             /* why backend_lb_pick() found no server */
	BACKEND_NONE_UP,            /* every server is down, drained or in maint */
	BACKEND_NONE_FREE,          /* every server up is at its max_connections */
};

struct server_stats {           /* one worker's counters of one server */
	uint64_t connections;       /* connects that succeeded */
	uint64_t connect_failures;  /* connects that failed (retried or not) */
	unsigned active;            /* this worker's connections to it now */
};

/* Indexes below (i, avoid, what pick returns) are into the addresses of
 * the backend_shared the balancer was made for: shared[i], entry[i]. */
struct backend_lb {
	const struct config_backend *cfg;
	struct server_state **shared;      /* [n] */
	const struct config_server **entry; /* [n] */
	size_t n;
	struct server_stats *stats; /* [n] */
	bool *skip;                 /* scratch: not eligible for this pick */
	struct balance bal;         /* the backend's algorithm, over these n */
	unsigned users;             /* slots reserved here, not yet given back */
};

/* 0, or -1 with errno (ENOMEM). seed: the worker's, for random. The
 * backend_shared (its set) must outlive the balancer. */
int backend_lb_init(struct backend_lb *, const struct backend_shared *,
    uint64_t seed);
void backend_lb_cleanup(struct backend_lb *);
/* A balancer for a new generation takes over what this worker knew of
 * the same addresses (by state): the counters, the round-robin credit,
 * the leastconn turn and the generator. Connections picked from `from`
 * keep their slots there (from->users). */
void backend_lb_carry(struct backend_lb *to, const struct backend_lb *from);
/* The index of st among lb's addresses, or -1. */
ssize_t backend_lb_index(const struct backend_lb *, const struct server_state *);

/* The server for a client (peer: its address, for source; may be NULL),
 * with a connection slot reserved on it. avoid: a server not to pick (the
 * one that just failed) unless no other is eligible; -1 for none. now_ms:
 * clock_coarse_ms(). Returns the server's index, or -1 with *why. *trial
 * is set when this is the trial connect of a server down by traffic: pass
 * it on to backend_lb_failed(). */
ssize_t backend_lb_pick(struct backend_lb *, const struct sockaddr *peer,
    ssize_t avoid, uint64_t now_ms, enum backend_none *why, bool *trial);

/* The connect to server i succeeded. Returns true when that brought a
 * server down by traffic back up (checks off: its trial passed); the
 * caller logs it. */
bool backend_lb_connected(struct backend_lb *, size_t i);
/* The connect to server i failed: its slot is given back. Returns true
 * when this failure took the server down (fall failures in a row); the
 * caller logs it, once. A failed trial connect (trial: as the pick said)
 * doubles the back-off of the server it was for; other connects to a
 * server already down, begun before it went down, change nothing. */
bool backend_lb_failed(struct backend_lb *, size_t i, bool trial,
    uint64_t now_ms);
/* A binary upgrade: a connection the old process made to server line
 * `server` at addr takes a slot on that address of lb (even past its
 * max_connections). Its index, or -1 when lb has no such address. */
ssize_t backend_lb_adopt(struct backend_lb *, const char *server,
    const struct sockaddr *addr, socklen_t len);
/* A connection to server i (connected) ended: its slot is given back. */
void backend_lb_release(struct backend_lb *, size_t i);

/* A non-blocking connect to addr, TCP_NODELAY set. Returns the socket (the
 * connect may still be in progress: wait for it to be writable, then ask
 * backend_connect_error()), or -1 with errno. */
int backend_connect(const struct addr *);
/* 0 once connected, else the errno the connect failed with. */
int backend_connect_error(int fd);

#endif
