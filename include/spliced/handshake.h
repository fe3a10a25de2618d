/* include/spliced/handshake.h: what a client must send before its
 * connection goes on: a PROXY header (accept_proxy = on), and a TLS
 * ClientHello on a listener that routes by server name.
 *
 * The PROXY header's bytes are peeked at and fed to the parser (proxyproto.h); only
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The ClientHello (DESIGN section 8). Its bytes are read off the socket
 * and held, since a backend must have them first once the name has chosen
 * it: at most max_bytes of them (sni_max_bytes), in a buffer that grows
 * with what arrives (4 KiB first: a hello with a post-quantum key share
 * is about 1.8 KiB). The parser (tlshello.h) sees each byte once. The
 * whole hello must come within timeout_ms.
 *
 * Memory: the parser (about 400 bytes), two events and the held bytes,
 * for the handshake only. */
struct handshake_hello;

struct handshake_hello_done {
	/* STATS_HS_OK (a server name: name), STATS_HS_NO_SNI,
	 * STATS_HS_NOT_TLS, STATS_HS_TIMEOUT, STATS_HS_TOO_LARGE or
	 * STATS_HS_INVALID. */
	enum stats_hs_result result;
	const char *name;           /* with OK: lower-case, the hello's */
	/* The client closed (err 0) or its socket failed (err) before the
	 * hello was complete: there is nothing to route (result INVALID).
	 * err ENOMEM: the buffer could not grow, a failure of ours. */
	bool gone;
	int err;
	const char *why;            /* unless OK or NO_SNI: one line, static */
	/* Every byte read, hello and any after it, in order: malloc'd, and
	 * the callback's to keep (it must be sent on) or free; NULL when
	 * nothing was read. */
	uint8_t *held;
	size_t nheld;
};

/* Called once, from the loop, when the hello is read or cannot be. name
 * lives until handshake_hello_free(). */
typedef void (*handshake_hello_cb)(struct handshake_hello_done *, void *arg);

/* Read the ClientHello of fd (connected, non-blocking). NULL with errno
 * (ENOMEM). */
struct handshake_hello *handshake_hello_start(struct event_base *, int fd,
    unsigned timeout_ms, size_t max_bytes, handshake_hello_cb, void *arg);
void handshake_hello_free(struct handshake_hello *);    /* NULL is fine */

#endif
