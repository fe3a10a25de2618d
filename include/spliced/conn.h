/* include/spliced/conn.h: one client/backend pair, from accept to close.
 *
 * A connection connects to a server of its listener's backend (bounded by
 * timeout_connect, retrying other servers up to `retries` times; a server
 * is never tried twice in a row while another is up; each attempt picks
 * among the servers the worker balances over now, so a server a reload or
 * DNS took away gets no retry), then runs
 * two relay directions until both are done, one fails, or timeout_idle
 * passes with no byte either way. When no server is up, or every server up
 * is full, the client is closed at once (CONN_CONNECT_FAILED,
 * CONN_SERVERS_FULL): it is not queued. Every end goes through conn_close() with
 * its reason, which writes the access-log line and frees everything.
 * An RST from one peer is passed on as an RST (SO_LINGER 0) to the other. */
#ifndef SPLICED_CONN_H
#define SPLICED_CONN_H

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
	CONN_REASON_MAX_,
};

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

const char *conn_reason_name(enum conn_reason);

#endif
