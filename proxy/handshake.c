/* proxy/handshake.c: a PROXY header, or a ClientHello, off a client's
 * socket.
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
#include "spliced/tlshello.h"

/* The most peeked at once: a v1 line whole, a v2 header in a few reads
 * (TLVs stream through the parser). */
#define HANDSHAKE_PEEK 512

/* What both handshakes wait with: the socket readable, and the time. */
struct watch {
	struct event *rd, *timer;
};

static int
watch_start(struct watch *w, struct event_base *base, int fd,
    unsigned timeout_ms, event_callback_fn read_cb,
    event_callback_fn timeout_cb, void *arg)
{
	struct timeval tv = clock_timeval_ms(timeout_ms);

	if ((w->rd = event_new(base, fd, EV_READ | EV_PERSIST, read_cb,
	    arg)) == NULL || (w->timer = evtimer_new(base, timeout_cb,
	    arg)) == NULL || event_add(w->rd, NULL) == -1 ||
	    evtimer_add(w->timer, &tv) == -1) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static void
watch_stop(struct watch *w)
{
	event_del(w->rd);
	event_del(w->timer);
}

static void
watch_free(struct watch *w)
{
	if (w->rd != NULL)
		event_free(w->rd);
	if (w->timer != NULL)
		event_free(w->timer);
}

struct handshake {
	int fd;
	handshake_cb cb;
	void *arg;
	struct watch w;
	struct proxyproto_parser p;
};

static void
finish(struct handshake *h, struct handshake_done *d)
{
	watch_stop(&h->w);
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
	struct handshake *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->fd = fd;
	h->cb = cb;
	h->arg = arg;
	proxyproto_init(&h->p);
	if (watch_start(&h->w, base, fd, timeout_ms, read_cb, timeout_cb,
	    h) == -1) {
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
	watch_free(&h->w);
	free(h);
}

/* ---- the ClientHello ----
 *
 * Unlike a PROXY header, the hello is the payload's start: it is read,
 * not peeked at, so each byte is seen once however it is dribbled (a
 * peek sees the whole queue again at every segment), and the caller
 * sends what was read on. */

#define HELLO_FIRST 4096            /* the buffer's first size */

struct handshake_hello {
	int fd;
	handshake_hello_cb cb;
	void *arg;
	struct watch w;
	uint8_t *buf;
	size_t len, cap, max;
	struct tlshello_parser p;
};

static void
hello_finish(struct handshake_hello *h, struct handshake_hello_done *d)
{
	watch_stop(&h->w);
	if (h->len > 0) {
		d->held = h->buf;
		d->nheld = h->len;
		h->buf = NULL;
	}
	h->cb(d, h->arg);
}

static const enum stats_hs_result hello_results[] = {
	[TLSHELLO_NOT_TLS] = STATS_HS_NOT_TLS,
	[TLSHELLO_TOO_LARGE] = STATS_HS_TOO_LARGE,
	[TLSHELLO_INVALID] = STATS_HS_INVALID,
};

static void
hello_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct handshake_hello *h = arg;
	struct handshake_hello_done d = { .result = STATS_HS_INVALID };
	enum tlshello_status st;
	size_t used, cap;
	uint8_t *grown;
	ssize_t n;

	(void)what;
	if (h->len == h->cap) {
		cap = h->cap * 2 < h->max ? h->cap * 2 : h->max;
		if ((grown = realloc(h->buf, cap)) == NULL) {
			d.gone = true;
			d.err = ENOMEM;
			d.why = "out of memory for the ClientHello";
			hello_finish(h, &d);
			return;
		}
		h->buf = grown;
		h->cap = cap;
	}
	n = recv(fd, h->buf + h->len, h->cap - h->len, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		d.gone = true;
		d.err = n == 0 ? 0 : errno;
		d.why = n == 0 ? "the client closed before its ClientHello was "
		    "complete" : "the client's socket failed during its "
		    "ClientHello";
		hello_finish(h, &d);
		return;
	}
	st = tlshello_feed(&h->p, h->buf + h->len, (size_t)n, &used, &d.why);
	h->len += (size_t)n;
	if (st == TLSHELLO_MORE && h->len < h->max)
		return;
	if (st == TLSHELLO_DONE) {
		d.name = tlshello_name(&h->p);
		d.result = d.name != NULL ? STATS_HS_OK : STATS_HS_NO_SNI;
		d.why = NULL;
	} else if (st == TLSHELLO_MORE) {
		/* The parser answers by max; this is a second guard. */
		d.result = STATS_HS_TOO_LARGE;
		d.why = "the ClientHello is longer than sni_max_bytes";
	} else
		d.result = hello_results[st];
	hello_finish(h, &d);
}

static void
hello_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct handshake_hello *h = arg;
	struct handshake_hello_done d = { .result = STATS_HS_TIMEOUT,
	    .why = "no complete ClientHello within timeout_handshake" };

	(void)fd, (void)what;
	hello_finish(h, &d);
}

struct handshake_hello *
handshake_hello_start(struct event_base *base, int fd, unsigned timeout_ms,
    size_t max_bytes, handshake_hello_cb cb, void *arg)
{
	struct handshake_hello *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->fd = fd;
	h->cb = cb;
	h->arg = arg;
	h->max = max_bytes;
	h->cap = HELLO_FIRST < max_bytes ? HELLO_FIRST : max_bytes;
	tlshello_init(&h->p, max_bytes);
	if ((h->buf = malloc(h->cap)) == NULL || watch_start(&h->w, base, fd,
	    timeout_ms, hello_read_cb, hello_timeout_cb, h) == -1) {
		handshake_hello_free(h);
		errno = ENOMEM;
		return NULL;
	}
	return h;
}

void
handshake_hello_free(struct handshake_hello *h)
{
	if (h == NULL)
		return;
	watch_free(&h->w);
	free(h->buf);
	free(h);
}
