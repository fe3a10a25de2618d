/* proxy/conn_ident.c: who a connection's client is, whether it may go
 * on, and where.
 *
 *   conn_ident_start --accept_proxy--> handshake (PROXY header) --+
 *          |                                                        |
 *          +------------------------> admission <-------------------+
 *                                      |      | admitted
 *                              refused |      +--routes--> ClientHello
 *                                      |      |                |   |
 *                                      |      v      a backend |   | none
 *                                      |  conn_connect <-------+   |
 *                                      v                           |
 *                        conn_close(CONN_REFUSED): RST <-----------+
 *
 * From the header on, its source is the client (c->peer) for everything:
 * admission, `source` balancing, the access log, /connections, and the
 * header sent on; a LOCAL header keeps the peer. Admission comes before
 * the hello, so a refused source costs no buffer. With routes, the
 * hello's server name picks the backend (route.h), and the listener's
 * backend takes the rest. The prelude for the servers (the PROXY header
 * with proxy_protocol, made once when the client is admitted, then the
 * bytes the hello's read took off the socket) is sent to each server
 * reached before the relay starts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "conn_int.h"
#include "spliced/cidr.h"
#include "spliced/clock.h"
#include "spliced/handshake.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/route.h"
#include "spliced/worker.h"  /* struct worker_snap: data only */

static void
refuse(struct conn *c, enum stats_deny why, const char *detail)
{
	c->sl->denied[why]++;
	admission_log_refused(&c->h->refusals, clock_coarse_ms(),
	    c->l->cfg->name, (const struct sockaddr *)&c->peer, why, detail);
	conn_close(c, CONN_REFUSED);
}

/* The header for the servers: the client, and the address it reached
 * (dst: from its own PROXY header; NULL: the client socket's). */
static int
header_make(struct conn *c, const struct sockaddr_storage *dst)
{
	enum config_proxy_protocol v = c->l->cfg->proxy_protocol;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	ssize_t n;

	if (dst == NULL) {
		if (getsockname(c->cfd, (struct sockaddr *)&local, &len) == -1)
			return -1;
		addr_unmap(&local, &len);
		dst = &local;
	}
	if ((c->pre = calloc(1, sizeof(*c->pre))) == NULL)
		return -1;
	if (v == CONFIG_PROXY_V1)
		n = proxyproto_encode_v1((char *)c->pre->hdr,
		    sizeof(c->pre->hdr), (const struct sockaddr *)&c->peer,
		    (const struct sockaddr *)dst);
	else
		n = proxyproto_encode_v2(c->pre->hdr, sizeof(c->pre->hdr),
		    (const struct sockaddr *)&c->peer,
		    (const struct sockaddr *)dst, false);
	if (n < 0)
		return -1;
	c->pre->hdrlen = (uint16_t)n;
	return 0;
}

static const char *
hello_detail(enum stats_hs_result r)
{
	switch (r) {
	case STATS_HS_DEFAULT: return "its server name matches no route";
	case STATS_HS_NO_SNI: return "its ClientHello names no server";
	case STATS_HS_NOT_TLS: return "it did not start with a TLS ClientHello";
	case STATS_HS_TIMEOUT: return "no complete ClientHello within "
	    "timeout_handshake";
	case STATS_HS_TOO_LARGE: return "its ClientHello is longer than "
	    "sni_max_bytes";
	default: return "its ClientHello is not valid TLS";
	}
}

/* The bytes read off the client join its prelude, after any PROXY
 * header. -1 (ENOMEM), the bytes freed. */
static int
prelude_hold(struct conn *c, uint8_t *held, size_t n)
{
	if (held == NULL)
		return 0;
	if (c->pre == NULL && (c->pre = calloc(1, sizeof(*c->pre))) == NULL) {
		free(held);
		return -1;
	}
	c->pre->held = held;
	c->pre->nheld = n;
	return 0;
}

/* The hello is read, or cannot be: route the client by it. */
static void
hello_done_cb(struct handshake_hello_done *d, void *arg)
{
	struct conn *c = arg;
	const struct config_listener *lc = c->l->cfg;
	const struct config_route *r = NULL;
	enum stats_hs_result result = d->result;
	char detail[CONFIG_ERR_MAX];
	/* The parser's own words add to the result's (not a timeout's). */
	const char *why = d->why != NULL && d->result != STATS_HS_TIMEOUT ?
	    d->why : "";
	bool ours = d->gone && d->err == ENOMEM;

	if (d->name != NULL) {
		r = route_match(lc->routes, lc->nroutes, d->name);
		if (r == NULL)
			result = STATS_HS_DEFAULT;
		c->sni = strdup(d->name);   /* only shown: NULL is no harm */
	}
	if (prelude_hold(c, d->held, d->nheld) == -1)
		ours = true;
	/* d->name lives in it: c->sni is the name from here on. */
	handshake_hello_free(c->hello);
	c->hello = NULL;
	if (ours) {
		log_warn("listener %s: out of memory holding a ClientHello; "
		    "closing the client", lc->name);
		conn_close(c, CONN_LOCAL_ERROR);
		return;
	}
	c->sl->handshake[STATS_HS_SNI][result]++;
	if (d->gone) {
		/* Nothing to route, and no stream cut: it ended its own. */
		conn_close(c, d->err == 0 ? CONN_CLIENT_EOF : d->err ==
		    ECONNRESET ? CONN_CLIENT_RESET : CONN_CLIENT_ERROR);
		return;
	}
	c->bc = r != NULL ? r->backend : lc->backend;
	if (c->bc == NULL) {
		snprintf(detail, sizeof(detail), "%s%s%s%s%s%s, and the listener "
		    "has no default backend", hello_detail(result), c->sni ?
		    " (" : "", c->sni ? c->sni : "", c->sni ? ")" : "",
		    why[0] != '\0' ? ": " : "", why);
		refuse(c, STATS_DENY_NO_ROUTE, detail);
		return;
	}
	if (result != STATS_HS_OK)
		log_debug("listener %s: %s%s%s; to the default backend %s",
		    lc->name, hello_detail(result), why[0] != '\0' ? ": " : "",
		    why, c->bc->name);
	conn_connect(c);
}

/* What is left of timeout_handshake, which a PROXY header may have used:
 * it bounds both. At least 1 ms, so the hello is still read at once. */
static unsigned
handshake_left_ms(const struct conn *c)
{
	struct timespec now;
	int64_t used;

	clock_gettime(CLOCK_MONOTONIC, &now);
	used = (int64_t)(now.tv_sec - c->started.tv_sec) * 1000 +
	    (now.tv_nsec - c->started.tv_nsec) / 1000000;
	if (used < 0)
		used = 0;
	if ((uint64_t)used >= c->l->cfg->timeout_handshake_ms)
		return 1;
	return c->l->cfg->timeout_handshake_ms - (unsigned)used;
}

/* Admitted: route by the hello, or connect at once. */
static void
read_hello(struct conn *c)
{
	const struct config_listener *lc = c->l->cfg;

	if (lc->nroutes == 0) {
		conn_connect(c);
		return;
	}
	if ((c->hello = handshake_hello_start(c->h->base, c->cfd,
	    handshake_left_ms(c), lc->sni_max_bytes, hello_done_cb,
	    c)) == NULL) {
		log_warn("listener %s: cannot wait for a ClientHello: %s; "
		    "closing the client", lc->name, strerror(errno));
		conn_close(c, CONN_LOCAL_ERROR);
	}
}

/* The client is known: admit it or refuse it, before any server. */
static void
admit(struct conn *c, const struct sockaddr_storage *dst)
{
	const struct config_listener *lc = c->l->cfg;
	struct listener_set *ls = c->snap->conf->ls;
	enum stats_deny why;
	char detail[CONFIG_ERR_MAX];

	if (admission_check(ls->cfg, lc, listener_proc_sources(ls->proc),
	    listener_scope(c->l), (const struct sockaddr *)&c->peer,
	    clock_coarse_ms(), &c->ticket, &why, detail,
	    sizeof(detail)) == -1) {
		refuse(c, why, detail);
		return;
	}
	if (lc->proxy_protocol != CONFIG_PROXY_OFF && header_make(c, dst) == -1) {
		log_warn("listener %s: cannot make the PROXY header: %s; "
		    "closing the client", lc->name, strerror(errno));
		conn_close(c, CONN_LOCAL_ERROR);
		return;
	}
	read_hello(c);
}

static void
header_read_cb(const struct handshake_done *d, void *arg)
{
	struct conn *c = arg;
	struct sockaddr_storage dst;
	socklen_t dstlen;

	handshake_free(c->hs);
	c->hs = NULL;
	c->sl->handshake[STATS_HS_PROXY][d->result]++;
	if (d->result != STATS_HS_OK) {
		refuse(c, STATS_DENY_PROXY_HEADER, d->why);
		return;
	}
	if (d->pp.local) {
		admit(c, NULL);
		return;
	}
	memcpy(&c->peer, &d->pp.src, d->pp.srclen);
	c->peerlen = d->pp.srclen;
	addr_unmap(&c->peer, &c->peerlen);
	dst = d->pp.dst;
	dstlen = d->pp.dstlen;
	addr_unmap(&dst, &dstlen);
	admit(c, &dst);
}

void
conn_ident_start(struct conn *c)
{
	const struct config_listener *lc = c->l->cfg;

	if (!lc->accept_proxy) {
		admit(c, NULL);
		return;
	}
	/* Only a trusted peer may say who the client is. */
	if (lc->naccept_proxy_from > 0 && !cidr_match_any(lc->accept_proxy_from,
	    lc->naccept_proxy_from, (const struct sockaddr *)&c->peer)) {
		refuse(c, STATS_DENY_PROXY_HEADER, "the peer is not in "
		    "accept_proxy_from");
		return;
	}
	if ((c->hs = handshake_start(c->h->base, c->cfd,
	    lc->timeout_handshake_ms, header_read_cb, c)) == NULL) {
		log_warn("listener %s: cannot wait for a PROXY header: %s; "
		    "closing the client", lc->name, strerror(errno));
		conn_close(c, CONN_LOCAL_ERROR);
	}
}

static void prelude_cb(evutil_socket_t, short, void *);

/* The part of the prelude a failure stopped in. */
static const char *
prelude_part(const struct conn_prelude *p)
{
	return p->off < p->hdrlen ? "PROXY header" : "ClientHello";
}

/* The rest of the prelude, then the relay. A fresh socket's send buffer
 * usually takes a header and a hello whole; a short send waits for room,
 * within timeout_connect. */
static void
send_rest(struct conn *c)
{
	struct conn_prelude *p = c->pre;
	size_t total = p->hdrlen + p->nheld;
	unsigned ms = c->l->cfg->timeout_connect_ms;
	struct timeval tv = clock_timeval_ms(ms);
	struct iovec iov[2];
	struct msghdr msg = { .msg_iov = iov };
	char why[128];
	ssize_t n;
	int err;

	while (p->off < total) {
		msg.msg_iovlen = 0;
		if (p->off < p->hdrlen)
			iov[msg.msg_iovlen++] = (struct iovec){ p->hdr + p->off,
			    p->hdrlen - p->off };
		if (p->nheld > 0) {
			size_t at = p->off > p->hdrlen ? p->off - p->hdrlen : 0;

			iov[msg.msg_iovlen++] = (struct iovec){ p->held + at,
			    p->nheld - at };
		}
		n = sendmsg(c->bfd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p->off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		err = n == -1 ? errno : 0;
		if (n == -1 && errno == EAGAIN) {
			event_assign(&c->cev, c->h->base, c->bfd, EV_WRITE,
			    prelude_cb, c);
			if (event_add(&c->cev, &tv) == 0)
				return;
		}
		snprintf(why, sizeof(why), "sending the %s: %s", prelude_part(p),
		    err == EAGAIN ? "cannot wait for room" : err != 0 ?
		    strerror(err) : "nothing taken");
		conn_connect_failed(c, why);
		return;
	}
	/* No retry after this: the prelude is done with. */
	c->held_sent = p->nheld;
	free(p->held);
	free(p);
	c->pre = NULL;
	conn_reached(c);
}

static void
prelude_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char why[64];

	(void)fd;
	if (what & EV_TIMEOUT) {
		snprintf(why, sizeof(why), "timed out sending the %s",
		    prelude_part(c->pre));
		conn_connect_failed(c, why);
	} else
		send_rest(c);
}

void
conn_ident_send(struct conn *c)
{
	if (c->pre == NULL) {
		conn_reached(c);
		return;
	}
	c->pre->off = 0;            /* each server reached gets all of it */
	send_rest(c);
}

void
conn_ident_cleanup(struct conn *c)
{
	handshake_free(c->hs);
	c->hs = NULL;
	handshake_hello_free(c->hello);
	c->hello = NULL;
	if (srctable_ticket_held(&c->ticket))
		srctable_release(listener_proc_sources(c->snap->conf->ls->proc),
		    &c->ticket);
	if (c->pre != NULL)
		free(c->pre->held);
	free(c->pre);
	c->pre = NULL;
	free(c->sni);
	c->sni = NULL;
}
