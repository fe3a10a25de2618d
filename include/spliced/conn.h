/* include/spliced/conn.h: one client/backend pair, from accept to close.
 *
 * A connection connects to a server of its listener's backend (bounded by
 * timeout_connect, retrying other servers up to `retries` times; a server
 * is never tried twice in a row while another is up; each attempt picks
 * among the servers the worker balances over now, so a server a reload or
 * DNS took away gets no retry), then runs
 * two relay directions until both are done, one fails, or timeout_idle
 * passes with no byte either way. A connection whose backend socket finds
 * no fd (EMFILE, ENFILE, ENOBUFS, ENOMEM), even after one is taken from
 * the home's reserve, is not dropped: it waits, holding its slot, like a
 * client in the backlog, and is served first when fds free up
 * (conn_home_fds_ready). When no server is up, or every server up
 * is full, the client is closed at once (CONN_CONNECT_FAILED,
 * CONN_SERVERS_FULL): it is not queued. Every end goes through conn_close() with
 * its reason, which writes the access-log line and frees everything.
 *
 * How a connection ends is what each peer sees: an RST from one peer (or
 * its loss: ETIMEDOUT) is passed on as an RST (SO_LINGER 0) to the other,
 * also after that peer had half-closed (a half-closed socket is checked
 * for a pending error every CONN_HALF_CLOSED_CHECK_MS, since nothing reads
 * it any more); when spliced ends a connection on its own (idle timeout,
 * shutdown), a peer whose incoming stream had not ended gets an RST, so a
 * cut stream never looks complete, and one that received its whole stream
 * gets a FIN. */
#ifndef SPLICED_CONN_H
#define SPLICED_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum conn_reason {
	CONN_CLIENT_EOF,            /* normal end, client finished first */
	CONN_SERVER_EOF,            /* normal end, server finished first */
	CONN_CLIENT_RESET,
	CONN_SERVER_RESET,
	CONN_CLIENT_ERROR,
	CONN_SERVER_ERROR,
	CONN_CONNECT_FAILED,        /* no server could be reached, or none is up */
	CONN_SERVERS_FULL,          /* every server up is at its max_connections */
	CONN_IDLE_TIMEOUT,
	CONN_SHUTDOWN,              /* still open when shutdown_timeout passed */
	/* The kernel gave up on a peer (ETIMEDOUT: keepalive probes or
	 * retransmissions went unanswered). */
	CONN_CLIENT_TIMEOUT,
	CONN_SERVER_TIMEOUT,
	/* spliced itself failed (an event it could not set up): the peers
	 * get an RST. */
	CONN_LOCAL_ERROR,
	/* Refused before a server was picked (allow/deny, a per-source
	 * limit, no valid PROXY header): an RST, and no access line. */
	CONN_REFUSED,
	CONN_REASON_MAX_,
};

/* How often a half-closed connection's finished side is checked for an
 * RST (or ETIMEDOUT) that nobody would otherwise read. */
#define CONN_HALF_CLOSED_CHECK_MS 1000

struct conn_stats {
	uint64_t connections;
	uint64_t reasons[CONN_REASON_MAX_];
	uint64_t connect_failures;  /* attempts, including retried ones */
	/* A binary upgrade: handed over to the new process (counted there
	 * when they end), or taken over from the old one. */
	uint64_t handed, adopted;
};

/* How a home's connections report to whoever runs them (the worker). The
 * hooks run inside conn.c's own calls: they must not start or close
 * connections. */
struct conn_hooks {
	/* A connection ended, its slot given back; wake: a limit had been
	 * reached, so clients elsewhere may be waiting for that slot. */
	void (*ended)(void *arg, bool wake);
	/* Short of fds (err) opening `what`: stop taking clients for now. */
	void (*fd_short)(void *arg, int err, const char *what);
};

struct conn;
struct conn_home;
struct event_base;
struct listener;
struct log_batch;
struct relay_ctx;
struct stats_sample;
struct stats_worker;
struct worker_snap;

/* The connections of one thread and what they share: its event base,
 * relay context (buffers, pipes), access-log batch and counters (stats.h:
 * each connection counts in the blocks of its snap), all the caller's and
 * outliving the home, and an fd reserve (fdreserve.h), which the home
 * owns. id: the worker's, the top 16 bits of its connections' ids.
 * cur: the worker's current snap (conn_home_switch). NULL with errno
 * (ENOMEM). A reserve it could not fill is not an error (errno tells why;
 * conn_home_fds_wanted() is true): conn_home_fds_ready() refills it. */
struct conn_home *conn_home_new(struct event_base *, struct relay_ctx *,
    struct log_batch *, struct stats_worker *, unsigned id,
    struct worker_snap *cur, const struct conn_hooks *, void *arg);
/* Closes what is left (CONN_SHUTDOWN, hooks called) first. NULL is fine. */
void conn_home_free(struct conn_home *);
/* The worker's current snap from now on (a reload, new addresses): new
 * connections start under it, and every connect attempt picks its server
 * from its balancers; a connection keeps the snap it started under for
 * everything else. */
void conn_home_switch(struct conn_home *, struct worker_snap *cur);
unsigned conn_home_count(const struct conn_home *);     /* open now */
const struct conn_stats *conn_home_stats(const struct conn_home *);
/* Whether fds freed now are wanted: a connection waits for one, or the
 * reserve is short. */
bool conn_home_fds_wanted(const struct conn_home *);
/* Connect the connections that wait for an fd, in arrival order, until
 * one still finds none (it keeps its place at the head), then refill the
 * reserve: true when none waits and the reserve is whole, i.e. accepting
 * may take fds again. */
bool conn_home_fds_ready(struct conn_home *);

/* Take over client fd, accepted on l, a listener of the set of the home's
 * current snap, whose slot is already reserved. The connection keeps that
 * snap for its whole life. On failure the fd is closed and the slot
 * released: the client is never left hanging. */
void conn_start(struct conn_home *, struct listener *, int fd,
    const struct sockaddr *peer, socklen_t peerlen);
/* Add the bytes its open connections moved so far to their listeners in
 * s, and the connections themselves (stats_sample_add_conn()) when s keeps
 * any. 0, or -1 with ENOMEM. */
int conn_home_sample(const struct conn_home *, struct stats_sample *);
/* Close every connection of the home with reason CONN_SHUTDOWN. */
void conn_close_all(struct conn_home *);

/* A binary upgrade (upgrade.h), on the home's thread. A connection is
 * handed over whole once it relays; until then (its handshakes, its
 * connect, a wait for an fd) it is "unsettled" and finishes here first. */
struct handover_conn;
struct handover_items;
unsigned conn_home_unsettled(const struct conn_home *);
/* The old process's totals, continued here. */
void conn_home_add_stats(struct conn_home *, const struct conn_stats *);
/* Freeze every connection (none unsettled: the caller checked) and
 * describe it at the end of *items, worker: this home's index. 0, or -1
 * with ENOMEM: then none is frozen. */
int conn_home_export(struct conn_home *, unsigned worker,
    struct handover_items *);
/* The new process committed, then failed: every frozen connection is
 * closed with an RST to both peers (CONN_LOCAL_ERROR). */
void conn_home_abort_frozen(struct conn_home *);
/* The upgrade failed: every frozen connection runs again as it was. */
void conn_home_thaw(struct conn_home *);
/* The new process holds the frozen connections: close this process's
 * copies of their fds (their peers see nothing), give their slots back
 * and free them, counted as handed over (no access line, no close).
 * Returns how many. */
unsigned conn_home_release(struct conn_home *);
/* Whether rec can be taken over under snap's config (its listener
 * exists, its directions make sense); false with err naming why. */
bool conn_adopt_check(const struct worker_snap *, const struct handover_conn *,
    char *err, size_t errlen);
/* Take over the connection rec describes, with its fds (rec->nfds: the
 * client's and backend's sockets, then each direction's pipe, up's
 * first) and copy-buffer bytes (data[0] up's, data[1] down's), under
 * the home's current snap, and run it. The fds are the connection's
 * either way: on failure (logged) they are closed, the client's and
 * server's with an RST. */
void conn_adopt(struct conn_home *, const struct handover_conn *rec,
    const int *fds, const void *const data[2]);

/* Add every counter of from to to. */
void conn_stats_add(struct conn_stats *to, const struct conn_stats *from);

const char *conn_reason_name(enum conn_reason);

#endif
