/* include/spliced/handshake.h: reading a client's PROXY header off its
 * socket, before the connection goes on (accept_proxy = on).
 *
 * The bytes are peeked at and fed to the parser (proxyproto.h); only
 * those the parser took are then read off the socket, so the payload
 * behind the header stays queued for the relay, whatever the client sent
 * in the same segment. The header may arrive a byte at a time; the whole
 * of it must within timeout_ms, or the handshake ends with
 * STATS_HS_TIMEOUT. The client closing or resetting first ends it as
 * STATS_HS_INVALID.
 *
 * Memory: the parser and two events, allocated for the handshake and
 * freed with it (a few hundred bytes); nothing of it is kept afterwards.
 * Not thread-safe: on the connection's worker. */
#ifndef SPLICED_HANDSHAKE_H
#define SPLICED_HANDSHAKE_H

#include "spliced/proxyproto.h"
#include "spliced/stats.h"

struct event_base;
struct handshake;

struct handshake_done {
	/* STATS_HS_OK, STATS_HS_TIMEOUT, STATS_HS_TOO_LARGE or
	 * STATS_HS_INVALID. */
	enum stats_hs_result result;
	struct proxyproto_result pp;    /* with STATS_HS_OK */
	const char *why;            /* otherwise: one line, static */
	int err;                    /* a socket error that ended it, or 0 */
};

/* Called once, from the loop (never from handshake_start()), when the
 * header is complete or can no longer be. The handshake is then over:
 * free it, in the callback or later. */
typedef void (*handshake_cb)(const struct handshake_done *, void *arg);

/* Read the header of fd (a connected, non-blocking socket). NULL with
 * errno (ENOMEM, or event_add failing). */
struct handshake *handshake_start(struct event_base *, int fd,
    unsigned timeout_ms, handshake_cb, void *arg);
void handshake_free(struct handshake *);    /* NULL is fine */

#endif
