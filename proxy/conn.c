/* proxy/conn.c: a client/backend pair, its timers and how it ends.
 *
 *   conn_start -> CONNECTING --connected--> RELAYING --both done / failure /
 *                   |  ^ refused or timeout:          idle / shutdown--> conn_close
 *                   |  +- next server (retries)
 *                   +-- no server left --> conn_close(CONNECT_FAILED)
 *
 * One timer serves both phases: timeout_connect while connecting, then
 * timeout_idle. The idle timer is not re-armed per byte: it compares the
 * directions' last-I/O stamps when it fires and sleeps for the remainder. */
#include "spliced/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/fdreserve.h"
#include "spliced/keepalive.h"
#include "spliced/log.h"
#include "spliced/relay.h"
#include "spliced/stats.h"
#include "spliced/worker.h"  /* struct worker_snap: data only */
#include "conn_int.h"

const char *
conn_reason_name(enum conn_reason r)
{
	static const char *const names[CONN_REASON_MAX_] = {
		[CONN_CLIENT_EOF] = "client_eof",
		[CONN_SERVER_EOF] = "server_eof",
		[CONN_CLIENT_RESET] = "client_reset",
		[CONN_SERVER_RESET] = "server_reset",
		[CONN_CLIENT_ERROR] = "client_error",
		[CONN_SERVER_ERROR] = "server_error",
		[CONN_CONNECT_FAILED] = "connect_failed",
		[CONN_SERVERS_FULL] = "servers_full",
		[CONN_IDLE_TIMEOUT] = "idle_timeout",
		[CONN_SHUTDOWN] = "shutdown",
		[CONN_CLIENT_TIMEOUT] = "client_timeout",
		[CONN_SERVER_TIMEOUT] = "server_timeout",
		[CONN_LOCAL_ERROR] = "local_error",
		[CONN_REFUSED] = "refused",
	};

	return names[r];
}

void
conn_stats_add(struct conn_stats *to, const struct conn_stats *from)
{
	to->connections += from->connections;
	to->connect_failures += from->connect_failures;
	to->handed += from->handed;
	to->adopted += from->adopted;
	for (int r = 0; r < CONN_REASON_MAX_; r++)
		to->reasons[r] += from->reasons[r];
}

/* Arm c's timer. A timer that cannot be armed (out of memory) would leave
 * the connection unwatched for good: it ends instead. False then (c is
 * closed). */
static bool
timer_add(struct conn *c, uint64_t ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	if (evtimer_add(&c->timer, &tv) == 0)
		return true;
	log_warn("listener %s: cannot arm a connection's timer; closing it",
	    c->l->cfg->name);
	conn_close(c, CONN_LOCAL_ERROR);
	return false;
}

/* Abortive close: the peer sees an RST, never a clean end of a stream that
 * was cut short. */
void
conn_reset_fd(int fd)
{
	struct linger lg = { 1, 0 };

	if (fd >= 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* The address of the server picked (c->lb still holds its slot). */
static const char *
picked_addr(const struct conn *c, char *buf, size_t n)
{
	return addr_format((const struct sockaddr *)
	    &c->lb->shared[c->server]->addr.ss, buf, n);
}

/* Microseconds since t (CLOCK_MONOTONIC). */
static uint64_t
since_us(const struct timespec *t)
{
	struct timespec now;
	int64_t us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (int64_t)(now.tv_sec - t->tv_sec) * 1000000 +
	    (now.tv_nsec - t->tv_nsec) / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

/* "NAME/ADDRESS" of the server c reached into buf; false (buf untouched)
 * while it has reached none. */
static bool
server_text(const struct conn *c, char *buf, size_t n)
{
	char addr[ADDR_TEXT_MAX];

	if (!c->relaying)
		return false;
	if (c->srvtext != NULL) {
		snprintf(buf, n, "%s", c->srvtext);
		return true;
	}
	snprintf(buf, n, "%s/%s", c->lb->entry[c->server]->name,
	    picked_addr(c, addr, sizeof(addr)));
	return true;
}

/* age_us: the connection's life, as its close counts it. */
static void
access_log(struct conn *c, enum conn_reason why, uint64_t age_us)
{
	char client[ADDR_TEXT_MAX], server[ADDR_TEXT_MAX + 64];
	struct log_access a = { .id = c->id, .listener = c->l->cfg->name,
	    .client = client, .reason = conn_reason_name(why),
	    .up_splice = c->up.bytes[RELAY_MODE_SPLICE],
	    .up_copy = c->up.bytes[RELAY_MODE_COPY],
	    .down_splice = c->down.bytes[RELAY_MODE_SPLICE],
	    .down_copy = c->down.bytes[RELAY_MODE_COPY],
	    .duration_ms = (int64_t)(age_us / 1000) };

	addr_format((struct sockaddr *)&c->peer, client, sizeof(client));
	if (server_text(c, server, sizeof(server)))
		a.server = server;
	a.routed = c->l->cfg->nroutes > 0;
	a.sni = c->sni;
	log_batch_access(c->h->log, &a);
}

/* What c moved so far, by direction and mover. */
static void
conn_bytes(const struct conn *c, uint64_t b[STATS_DIR_MAX_][RELAY_MODE_MAX_])
{
	memset(b, 0, sizeof(uint64_t) * STATS_DIR_MAX_ * RELAY_MODE_MAX_);
	if (!c->relaying)
		return;
	for (int m = 0; m < RELAY_MODE_MAX_; m++) {
		b[STATS_UP][m] = c->up.bytes[m];
		b[STATS_DOWN][m] = c->down.bytes[m];
	}
}

void
conn_free(struct conn *c)
{
	free(c->srvtext);
	free(c);
}

void
conn_close(struct conn *c, enum conn_reason why)
{
	struct conn_home *h = c->h;
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_], age_us;
	bool wake;

	if (c->closed)
		return;
	c->closed = true;
	age_us = since_us(&c->started);
	/* A refused client is counted and its refusal logged (rate-limited:
	 * a flood of them must not become a flood of lines), not given an
	 * access line. */
	if (c->snap->conf->cfg->access_log != CONFIG_ACCESS_LOG_OFF &&
	    why != CONN_REFUSED)
		access_log(c, why, age_us);
	conn_bytes(c, bytes);
	stats_conn_closed(c->sl, why, bytes, age_us);
	if (c->relaying) {
		/* A peer whose incoming stream had not ended (idle timeout,
		 * shutdown, or the other peer failed) must see a reset, not
		 * the end of a complete stream: whether bytes were still held
		 * for it or its sender had merely gone quiet, the stream was
		 * cut. A direction that is DONE delivered its FIN already. */
		if (c->down.state != RELAY_DONE)
			conn_reset_fd(c->cfd);
		if (c->up.state != RELAY_DONE)
			conn_reset_fd(c->bfd);
		relay_cleanup(&c->up);
		relay_cleanup(&c->down);
	} else if (why == CONN_SHUTDOWN || why == CONN_LOCAL_ERROR ||
	    why == CONN_REFUSED) {
		conn_reset_fd(c->cfd);       /* its server was never reached */
		if (why == CONN_LOCAL_ERROR)
			conn_reset_fd(c->bfd);
	}
	event_del(&c->cev);
	event_del(&c->timer);
	conn_ident_cleanup(c);
	close(c->cfd);
	if (c->bfd >= 0)
		close(c->bfd);
	if (c->reserved)
		backend_lb_release(c->lb, (size_t)c->server);
	TAILQ_REMOVE(&h->conns, c, link);
	if (c->fdwait)
		TAILQ_REMOVE(&h->fdwait, c, fdlink);
	h->n--;
	h->st.reasons[why]++;
	wake = listener_release(c->snap->conf->ls, c->l);
	c->snap->conns--;
	if (c->pins == 0)
		conn_free(c);
	h->hooks.ended(h->arg, wake);
}

static void
unpin(struct conn *c)
{
	if (--c->pins == 0 && c->closed)
		conn_free(c);
}

/* A socket of client_side's peer failed with err: close with the reason
 * that names it, cutting the other peer off with an RST. */
static void
peer_failed(struct conn *c, bool client_side, int err)
{
	enum conn_reason why;

	if (err == ECONNRESET || err == EPIPE)
		why = client_side ? CONN_CLIENT_RESET : CONN_SERVER_RESET;
	else if (err == ETIMEDOUT)
		why = client_side ? CONN_CLIENT_TIMEOUT : CONN_SERVER_TIMEOUT;
	else {
		why = client_side ? CONN_CLIENT_ERROR : CONN_SERVER_ERROR;
		log_info("listener %s: %s error: %s", c->l->cfg->name,
		    client_side ? "client" : "server", strerror(err));
	}
	conn_reset_fd(client_side ? c->bfd : c->cfd);
	conn_close(c, why);
}

/* Map a failed direction to the peer that failed. */
static void
dir_failed(struct conn *c, struct relay_dir *d)
{
	peer_failed(c, (d == &c->up) == (d->fail_side == RELAY_SIDE_IN), d->err);
}

/* Once a direction is DONE nothing reads its `in` socket: an RST its peer
 * sends after its FIN (or keepalive giving up on it) would sit there
 * unseen until timeout_idle. Checked from the connection's timer: an
 * edge-triggered read event cannot share the fd with the other
 * direction's level-triggered write event in libevent, and a level one
 * fires at once, forever, on a socket at EOF. The check is a send of no
 * bytes: on a socket still open for sending (the other direction still
 * writes to it) it does nothing, on one the kernel closed it returns the
 * error that closed it (EPIPE for an RST after the peer's FIN, ETIMEDOUT
 * from keepalive). SO_ERROR would also report, and clear, transient ICMP
 * errors (sk_err_soft) that do not end a connection. One syscall a second
 * per half-closed connection, none for one that ends within the second.
 * True when it failed (and c is closed). */
static bool
half_closed_failed(struct conn *c)
{
	bool client_side = c->up.state == RELAY_DONE;

	if (send(client_side ? c->cfd : c->bfd, "", 0, MSG_NOSIGNAL |
	    MSG_DONTWAIT) == 0 || errno == EAGAIN || errno == EINTR)
		return false;
	peer_failed(c, client_side, errno);
	return true;
}

void
conn_dir_cb(struct relay_dir *d, void *arg)
{
	struct conn *c = arg;

	if (d->state == RELAY_FAILED) {
		dir_failed(c, d);
		return;
	}
	if (!c->one_done) {
		c->one_done = true;
		c->first_end = d == &c->up ? CONN_CLIENT_EOF : CONN_SERVER_EOF;
		/* conn_idle_cb checks the finished side from now on. */
		event_del(&c->timer);
		(void)timer_add(c, CONN_HALF_CLOSED_CHECK_MS);
		return;
	}
	conn_close(c, c->first_end);
}

void
conn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t last, now = clock_coarse_ms();
	unsigned limit = c->l->cfg->timeout_idle_ms;
	uint64_t left;

	(void)fd, (void)what;
	if (c->one_done && half_closed_failed(c))
		return;
	last = c->up.last_io_ms > c->down.last_io_ms ? c->up.last_io_ms : c->down.last_io_ms;
	if (now - last >= limit) {
		conn_close(c, CONN_IDLE_TIMEOUT);
		return;
	}
	left = limit - (now - last);
	if (c->one_done && left > CONN_HALF_CLOSED_CHECK_MS)
		left = CONN_HALF_CLOSED_CHECK_MS;
	(void)timer_add(c, left);
}

static void
conn_relay(struct conn *c)
{
	const struct config_listener *lc = c->l->cfg;
	struct relay_ctx *ctx = c->h->relay;

	if (relay_init(&c->up, ctx, c->cfd, c->bfd, lc->splice,
	    lc->splice_threshold, conn_dir_cb, c) == -1 ||
	    relay_init(&c->down, ctx, c->bfd, c->cfd, lc->splice,
	    lc->splice_threshold, conn_dir_cb, c) == -1) {
		conn_close(c, CONN_LOCAL_ERROR);
		return;
	}
	relay_pair(&c->up, &c->down);
	relay_count_copied(&c->up, c->held_sent);
	c->relaying = true;
	event_assign(&c->timer, c->h->base, -1, 0, conn_idle_cb, c);
	if (!timer_add(c, lc->timeout_idle_ms))
		return;
	/* The client may have spoken already; the server, only just
	 * connected, has not (a banner comes later: the poll sees it).
	 * Starting may end the connection (an RST already queued): the pin
	 * keeps c valid until the calls are done. */
	c->pins++;
	relay_start(&c->up);
	if (!c->closed)
		relay_watch(&c->down);
	unpin(c);
}

static void try_connect(struct conn *, const struct server_state *avoid,
    bool waited);

/* Where an attempt picks its server: the home's newest balancer of the
 * connection's backend, for a reload or a host name resolving elsewhere
 * may have changed the servers since the client came (one gone gets no
 * new attempt); the one it started with if a reload removed the backend.
 * A slot is given back where it was taken (c->lb); a retired snap lives
 * while any of its balancers holds one (worker.c). */
static struct backend_lb *
balancer(const struct conn *c, struct worker_snap **of)
{
	struct worker_snap *cur = c->h->cur;

	if (cur != c->snap)
		for (size_t i = 0; i < cur->conf->bs->n; i++)
			if (strcmp(cur->lb[i].cfg->name, c->bc->name) == 0) {
				*of = cur;
				return &cur->lb[i];
			}
	*of = c->snap;
	return &c->snap->lb[c->bc - c->snap->conf->cfg->backends];
}

/* The counters of the server just picked (a server line: all of its
 * addresses count together). */
static struct stats_server *
picked_stats(const struct conn *c)
{
	return c->lbsnap->ss[c->lb - c->lbsnap->lb][c->server];
}

/* The server just tried could not be reached: log and count it, give its
 * slot back, and say so once if that took it down. c->lb stays valid for
 * the rest of this callback (worker.c frees a retired one in its tick). */
static void
server_failed(struct conn *c, const char *why)
{
	const struct config_server *s = c->lb->entry[c->server];
	char a[ADDR_TEXT_MAX];

	picked_addr(c, a, sizeof(a));
	if (s->dnsname != NULL)
		log_info("listener %s: server %s/%s (%s at %s): connect failed: "
		    "%s", c->l->cfg->name, c->bc->name, s->name, s->host, a, why);
	else
		log_info("listener %s: server %s/%s (%s): connect failed: %s",
		    c->l->cfg->name, c->bc->name, s->name, s->host, why);
	c->h->st.connect_failures++;
	picked_stats(c)->connect_failures++;
	c->reserved = false;
	if (!backend_lb_failed(c->lb, (size_t)c->server, c->trial,
	    clock_coarse_ms()))
		return;
	if (c->bc->health_check != CONFIG_HEALTH_OFF)
		log_warn("server %s/%s %s is down: %u connects failed in a row: "
		    "%s; health checks will bring it back", c->bc->name,
		    s->name, a, c->bc->fall, why);
	else
		log_warn("server %s/%s %s is down: %u connects failed in a row: "
		    "%s; next try in %u ms", c->bc->name, s->name, a,
		    c->bc->fall, why, BACKEND_BACKOFF_MIN_MS);
}

/* The connect succeeded; with checks off that may end a server's time out. */
static void
server_connected(struct conn *c)
{
	const struct config_server *s = c->lb->entry[c->server];
	char a[ADDR_TEXT_MAX];

	if (!backend_lb_connected(c->lb, (size_t)c->server))
		return;
	log_info("server %s/%s %s is up: a connect succeeded", c->bc->name,
	    s->name, picked_addr(c, a, sizeof(a)));
}

void
conn_connect_failed(struct conn *c, const char *why)
{
	const struct server_state *st = c->lb->shared[c->server];

	server_failed(c, why);
	event_del(&c->cev);
	event_del(&c->timer);
	close(c->bfd);
	c->bfd = -1;
	try_connect(c, st, false);
}

static void
connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err;

	if (what & EV_TIMEOUT) {
		conn_connect_failed(c, "timed out");
		return;
	}
	if ((err = backend_connect_error(fd)) != 0) {
		conn_connect_failed(c, strerror(err));
		return;
	}
	event_del(&c->timer);
	/* With a prelude (the PROXY header, the bytes read to route the
	 * client) the server is reached once it has it: until then a
	 * failure is the attempt's, and the next server gets a try. */
	conn_ident_send(c);
}

void
conn_reached(struct conn *c)
{
	picked_stats(c)->connections++;
	stats_hist_add(&c->lbsnap->sb[c->lb - c->lbsnap->lb]->connect,
	    stats_connect_le, since_us(&c->attempted));
	server_connected(c);
	conn_relay(c);
}

/* A connecting socket to c's server. Short of fds, one is taken from the
 * home's reserve, and accepting pauses until the reserve is whole. */
static int
open_backend(struct conn *c)
{
	const struct addr *a = &c->lb->shared[c->server]->addr;
	int fd, err;

	if ((fd = backend_connect(a)) >= 0 || !fdreserve_shortage(errno) ||
	    !fdreserve_take(&c->h->reserve))
		return fd;
	err = errno;
	if ((fd = backend_connect(a)) >= 0)
		c->h->hooks.fd_short(c->h->arg, err, "backend socket, served "
		    "from the fd reserve");
	return fd;
}

/* No fd for c's backend socket: c waits for one, holding its slot, and
 * accepting pauses, rather than drop a client the kernel already
 * accepted. A client that waited before keeps its place at the head. */
static void
wait_fd(struct conn *c, int err, bool again)
{
	struct conn_home *h = c->h;
	char what[96];
	unsigned n = 1;
	struct conn *o;

	if (again)
		TAILQ_INSERT_HEAD(&h->fdwait, c, fdlink);
	else
		TAILQ_INSERT_TAIL(&h->fdwait, c, fdlink);
	c->fdwait = true;
	TAILQ_FOREACH(o, &h->fdwait, fdlink)
		n += o != c;
	snprintf(what, sizeof(what), "backend socket, %u client%s waiting "
	    "for an fd", n, n == 1 ? "" : "s");
	h->hooks.fd_short(h->arg, err, what);
}

/* avoid: the server that just failed (its state: the index may differ
 * in the worker's current balancer), or NULL. waited: c comes from the
 * head of h->fdwait. */
static void
try_connect(struct conn *c, const struct server_state *avoid, bool waited)
{
	const struct config_listener *lc = c->l->cfg;
	enum backend_none none;

	while (c->attempts <= c->bc->retries) {
		c->attempts++;
		c->lb = balancer(c, &c->lbsnap);
		c->server = backend_lb_pick(c->lb, (struct sockaddr *)&c->peer,
		    avoid != NULL ? backend_lb_index(c->lb, avoid) : -1,
		    clock_coarse_ms(), &none, &c->trial);
		if (c->server < 0) {
			conn_close(c, none == BACKEND_NONE_FREE ?
			    CONN_SERVERS_FULL : CONN_CONNECT_FAILED);
			return;
		}
		c->reserved = true;
		clock_gettime(CLOCK_MONOTONIC, &c->attempted);
		if ((c->bfd = open_backend(c)) >= 0) {
			if (keepalive_apply(c->bfd, &lc->tcp_keepalive) < 0)
				log_debug("listener %s: tcp_keepalive on the "
				    "backend socket: %s", lc->name, strerror(errno));
			event_assign(&c->cev, c->h->base, c->bfd, EV_WRITE,
			    connect_cb, c);
			event_assign(&c->timer, c->h->base, -1, 0, connect_cb, c);
			if (event_add(&c->cev, NULL) == -1) {
				log_warn("listener %s: cannot watch a backend "
				    "connect; closing the client", lc->name);
				conn_close(c, CONN_LOCAL_ERROR);
				return;
			}
			(void)timer_add(c, lc->timeout_connect_ms);
			return;
		}
		/* Our shortage, not the server's: no other server would do
		 * better, and more clients would only share it. */
		if (fdreserve_shortage(errno)) {
			int err = errno;

			backend_lb_release(c->lb, (size_t)c->server);
			c->reserved = false;
			c->attempts--;      /* the server was never tried */
			wait_fd(c, err, waited);
			return;
		}
		avoid = c->lb->shared[c->server];
		server_failed(c, strerror(errno));
	}
	conn_close(c, CONN_CONNECT_FAILED);
}

void
conn_start(struct conn_home *h, struct listener *l, int fd,
    const struct sockaddr *peer, socklen_t peerlen)
{
	const struct config_backend *bc = l->cfg->backend;
	struct worker_snap *snap = h->cur;
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("listener %s: out of memory, closing a client", l->cfg->name);
		close(fd);
		h->hooks.ended(h->arg, listener_release(snap->conf->ls, l));
		return;
	}
	c->h = h;
	c->id = h->id_base | ++h->seq;
	c->snap = snap;
	c->snap->conns++;
	c->l = l;
	c->sl = snap->sl[l - snap->conf->ls->l];
	c->sl->connections++;
	c->sl->active++;
	c->bc = bc;
	c->cfd = fd;
	if (keepalive_apply(fd, &l->cfg->tcp_keepalive) < 0)
		log_debug("listener %s: tcp_keepalive on the client socket: %s",
		    l->cfg->name, strerror(errno));
	c->bfd = -1;
	c->server = -1;
	if (peerlen > sizeof(c->peer))
		peerlen = sizeof(c->peer);
	memcpy(&c->peer, peer, peerlen);
	c->peerlen = peerlen;
	/* An IPv4 client of a dual-stack listener, logged as IPv4. */
	addr_unmap(&c->peer, &c->peerlen);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	/* Assigned up front so conn_close may always event_del them. */
	event_assign(&c->cev, h->base, -1, 0, connect_cb, c);
	event_assign(&c->timer, h->base, -1, 0, connect_cb, c);
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	h->n++;
	h->st.connections++;
	conn_ident_start(c);
}

void
conn_connect(struct conn *c)
{
	try_connect(c, NULL, false);
}

void
conn_close_all(struct conn_home *h)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&h->conns)) != NULL)
		conn_close(c, CONN_SHUTDOWN);
}

struct conn_home *
conn_home_new(struct event_base *base, struct relay_ctx *relay,
    struct log_batch *log, struct stats_worker *stats, unsigned id,
    struct worker_snap *cur, const struct conn_hooks *hooks, void *arg)
{
	struct conn_home *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->base = base;
	h->stats = stats;
	h->id_base = (uint64_t)(id & 0xffff) << 48;
	h->relay = relay;
	h->log = log;
	h->cur = cur;
	h->hooks = *hooks;
	h->arg = arg;
	TAILQ_INIT(&h->conns);
	TAILQ_INIT(&h->fdwait);
	fdreserve_init(&h->reserve);
	(void)fdreserve_fill(&h->reserve);     /* the caller may log errno */
	return h;
}

void
conn_home_free(struct conn_home *h)
{
	if (h == NULL)
		return;
	conn_close_all(h);
	fdreserve_cleanup(&h->reserve);
	free(h);
}

void
conn_home_switch(struct conn_home *h, struct worker_snap *cur)
{
	h->cur = cur;
}

unsigned
conn_home_count(const struct conn_home *h)
{
	return h->n;
}

const struct conn_stats *
conn_home_stats(const struct conn_home *h)
{
	return &h->st;
}

bool
conn_home_fds_wanted(const struct conn_home *h)
{
	return !TAILQ_EMPTY(&h->fdwait) || !fdreserve_full(&h->reserve);
}

bool
conn_home_fds_ready(struct conn_home *h)
{
	struct conn *c;
	bool waits;

	while ((c = TAILQ_FIRST(&h->fdwait)) != NULL) {
		TAILQ_REMOVE(&h->fdwait, c, fdlink);
		c->fdwait = false;
		c->pins++;              /* try_connect may close it */
		try_connect(c, NULL, true);
		waits = !c->closed && c->fdwait;
		unpin(c);
		if (waits)
			return false;
	}
	return fdreserve_fill(&h->reserve);
}

int
conn_home_sample(const struct conn_home *h, struct stats_sample *s)
{
	const struct conn *c;

	/* Newest first: the connections kept are the newest. */
	TAILQ_FOREACH_REVERSE(c, &h->conns, conn_list, link) {
		struct stats_conn sc = { .id = c->id };

		conn_bytes(c, sc.bytes);
		if (c->relaying && stats_sample_add_bytes(s, c->l->cfg->name,
		    sc.bytes) == -1)
			return -1;
		if (s->nc >= s->conn_limit)
			continue;
		snprintf(sc.listener, sizeof(sc.listener), "%s", c->l->cfg->name);
		addr_format((const struct sockaddr *)&c->peer, sc.client,
		    sizeof(sc.client));
		sc.connecting = !c->relaying;
		if (c->sni != NULL)
			snprintf(sc.sni, sizeof(sc.sni), "%s", c->sni);
		if (server_text(c, sc.server, sizeof(sc.server))) {
			sc.state[STATS_UP] = c->up.state;
			sc.state[STATS_DOWN] = c->down.state;
			sc.mode[STATS_UP] = c->up.mover->mode;
			sc.mode[STATS_DOWN] = c->down.mover->mode;
		} else
			snprintf(sc.server, sizeof(sc.server), "-");
		sc.age_ms = since_us(&c->started) / 1000;
		stats_sample_add_conn(s, &sc);
	}
	return 0;
}
