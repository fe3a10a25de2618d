/* proxy/conn_ident.c: who a connection's client is, and whether it may
 * go on.
 *
 *   conn_ident_start --accept_proxy--> handshake (PROXY header) --+
 *          |                                                        v
 *          +---------------------------------------------> admission --> conn_connect
 *                                                               | refused
 *                                                               v
 *                                                  conn_close(CONN_REFUSED): RST
 *
 * From the header on, its source is the client (c->peer) for everything:
 * admission, `source` balancing, the access log, /connections, and the
 * header sent on; a LOCAL header keeps the peer. With proxy_protocol,
 * the header for the servers is made once, when the client is admitted,
 * and sent to each server reached before the relay starts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn_int.h"
#include "spliced/cidr.h"
#include "spliced/clock.h"
#include "spliced/handshake.h"
#include "spliced/listener.h"
#include "spliced/log.h"
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
	if ((c->hdr = calloc(1, sizeof(*c->hdr))) == NULL)
		return -1;
	if (v == CONFIG_PROXY_V1)
		n = proxyproto_encode_v1((char *)c->hdr->buf,
		    sizeof(c->hdr->buf), (const struct sockaddr *)&c->peer,
		    (const struct sockaddr *)dst);
	else
		n = proxyproto_encode_v2(c->hdr->buf, sizeof(c->hdr->buf),
		    (const struct sockaddr *)&c->peer,
		    (const struct sockaddr *)dst, false);
	if (n < 0)
		return -1;
	c->hdr->len = (uint16_t)n;
	return 0;
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
	conn_connect(c);
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

static void header_cb(evutil_socket_t, short, void *);

/* The rest of the header, then the relay. A fresh socket's send buffer
 * takes a header whole; a short send waits for room, within
 * timeout_connect. */
static void
send_rest(struct conn *c)
{
	struct conn_header *hd = c->hdr;
	unsigned ms = c->l->cfg->timeout_connect_ms;
	struct timeval tv = clock_timeval_ms(ms);
	char why[128];
	ssize_t n;

	while (hd->off < hd->len) {
		n = send(c->bfd, hd->buf + hd->off, hd->len - hd->off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			hd->off += (uint16_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			event_assign(&c->cev, c->h->base, c->bfd, EV_WRITE,
			    header_cb, c);
			if (event_add(&c->cev, &tv) == 0)
				return;
		}
		snprintf(why, sizeof(why), "sending the PROXY header: %s",
		    n == -1 ? strerror(errno) : "nothing taken");
		conn_connect_failed(c, why);
		return;
	}
	/* No retry after this: the header is done with. */
	free(c->hdr);
	c->hdr = NULL;
	conn_reached(c);
}

static void
header_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	if (what & EV_TIMEOUT)
		conn_connect_failed(arg, "timed out sending the PROXY header");
	else
		send_rest(arg);
}

void
conn_ident_send(struct conn *c)
{
	if (c->hdr == NULL) {
		conn_reached(c);
		return;
	}
	c->hdr->off = 0;            /* each server reached gets all of it */
	send_rest(c);
}

void
conn_ident_cleanup(struct conn *c)
{
	handshake_free(c->hs);
	c->hs = NULL;
	if (srctable_ticket_held(&c->ticket))
		srctable_release(listener_proc_sources(c->snap->conf->ls->proc),
		    &c->ticket);
	free(c->hdr);
	c->hdr = NULL;
}
