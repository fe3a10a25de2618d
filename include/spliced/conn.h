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
 * the worker's reserve, is not dropped: it waits, holding its slot, like a
 * client in the backlog, and is served first when fds free up
 * (conn_serve_fdwait). When no server is up, or every server up
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
	CONN_REASON_MAX_,
};

/* How often a half-closed connection's finished side is checked for an
 * RST (or ETIMEDOUT) that nobody would otherwise read. */
#define CONN_HALF_CLOSED_CHECK_MS 1000

struct conn;
struct worker;
struct listener;

/* Take over client fd, accepted on l, whose slot is already reserved.
 * On failure the fd is closed and the slot released: the client is never
 * left hanging. */
void conn_start(struct worker *, struct listener *, int fd,
    const struct sockaddr *peer, socklen_t peerlen);
/* Close every connection of the worker with reason CONN_SHUTDOWN. */
void conn_close_all(struct worker *);
/* Connect the connections that wait for an fd (worker->fdwait), in
 * arrival order, until one still finds none: false then (it keeps its
 * place at the head), true when none waits. */
bool conn_serve_fdwait(struct worker *);

const char *conn_reason_name(enum conn_reason);

#endif
