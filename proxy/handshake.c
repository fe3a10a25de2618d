/* proxy/handshake.c: a PROXY header off a client's socket, byte-exact.
 *
 * A level-triggered read event peeks at most what the parser may still
 * take (proxyproto_want()), so a peek never reaches further into the
 * payload than a header could, and recv() then removes exactly the bytes
 * the parser used. A peek that returns only bytes already fed cannot
 * happen: each one the parser did not end on it took whole. */
#include "spliced/handshake.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spliced/clock.h"

/* The most peeked at once: a v1 line whole, a v2 header in a few reads
 * (TLVs stream through the parser). */
#define HANDSHAKE_PEEK 512

struct handshake {
	int fd;
	handshake_cb cb;
	void *arg;
	struct event *rd, *timer;
	struct proxyproto_parser p;
};

static void
finish(struct handshake *h, struct handshake_done *d)
{
	event_del(h->rd);
	event_del(h->timer);
	h->cb(d, h->arg);
}

/* Take the bytes the parser used off the socket. They were peeked at, so
 * they are there: a short read is a socket gone wrong. */
static int
take(struct handshake *h, size_t used)
{
	uint8_t sink[HANDSHAKE_PEEK];
	ssize_t n;

	do
		n = recv(h->fd, sink, used, 0);
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)used)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct handshake *h = arg;
	struct handshake_done d = { .result = STATS_HS_INVALID };
	uint8_t buf[HANDSHAKE_PEEK];
	size_t want = proxyproto_want(&h->p), used = 0;
	enum proxyproto_status st;
	ssize_t n;

	(void)what;
	if (want > sizeof(buf))
		want = sizeof(buf);
	n = recv(fd, buf, want, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		d.err = n == 0 ? 0 : errno;
		d.why = n == 0 ? "the client closed before its PROXY header "
		    "was complete" : "the client's socket failed during its "
		    "PROXY header";
		finish(h, &d);
		return;
	}
	st = proxyproto_feed(&h->p, buf, (size_t)n, &used, &d.pp, &d.why);
	if (st == PROXYPROTO_INVALID || st == PROXYPROTO_TOO_LARGE) {
		d.result = st == PROXYPROTO_TOO_LARGE ? STATS_HS_TOO_LARGE :
		    STATS_HS_INVALID;
		finish(h, &d);
		return;
	}
	if (take(h, used) == -1) {
		d.err = errno;
		d.why = "cannot read the PROXY header it peeked at";
		finish(h, &d);
		return;
	}
	if (st == PROXYPROTO_DONE) {
		d.result = STATS_HS_OK;
		d.why = NULL;
		finish(h, &d);
	}
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct handshake *h = arg;
	struct handshake_done d = { .result = STATS_HS_TIMEOUT,
	    .why = "no complete PROXY header within timeout_handshake" };

	(void)fd, (void)what;
	finish(h, &d);
}

struct handshake *
handshake_start(struct event_base *base, int fd, unsigned timeout_ms,
    handshake_cb cb, void *arg)
{
	struct timeval tv = clock_timeval_ms(timeout_ms);
	struct handshake *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->fd = fd;
	h->cb = cb;
	h->arg = arg;
	proxyproto_init(&h->p);
	if ((h->rd = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, h)) ==
	    NULL || (h->timer = evtimer_new(base, timeout_cb, h)) == NULL ||
	    event_add(h->rd, NULL) == -1 || evtimer_add(h->timer, &tv) == -1) {
		handshake_free(h);
		errno = ENOMEM;
		return NULL;
	}
	return h;
}

void
handshake_free(struct handshake *h)
{
	if (h == NULL)
		return;
	if (h->rd != NULL)
		event_free(h->rd);
	if (h->timer != NULL)
		event_free(h->timer);
	free(h);
}
