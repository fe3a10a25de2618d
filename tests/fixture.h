/* tests/fixture.h: what test_listener, test_conn and test_accept share.
 *
 * A worker's pieces built by hand on the test's own event base: configs
 * bound on 127.0.0.1 (one struct fx_gen per config, each bound with the
 * previous one as prev, as a reload does), a struct worker_snap per config,
 * the relay context, the log batch and a conn_home whose hooks are
 * recorded. Peers (clients, and servers of the backends) are non-blocking
 * sockets the fixture pumps on every turn of the loop: each sends a byte
 * pattern that opens with its seed and checks every byte it receives.
 *
 * Waiting: FX_WAIT(f, cond) turns the base (at most FX_TURN_MS a turn,
 * pumping the peers) until cond holds, and fails the test after FX_WAIT_MS
 * or FX_TURNS turns. Cleanup: fx_free() frees everything in one place and
 * checks that the process has as many fds open as before fx_new().
 *
 * Out of fds: FX_WRAP_SOCKET, below. Include after <cmocka.h>. */
#ifndef SPLICED_FIXTURE_H
#define SPLICED_FIXTURE_H

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/conn.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/pipepool.h"
#include "spliced/relay.h"
#include "spliced/worker.h"
#include "spliced/zerocopy.h"

#define FX_WAIT_MS 10000        /* one FX_WAIT, on a loaded machine too */
#define FX_TURN_MS 5            /* the longest a turn of the loop blocks */
#define FX_TURNS 200000         /* turns one FX_WAIT may take */
#define FX_GENS 3
#define FX_PEERS 16
#define FX_SERVERS 2
#define FX_PORTS 3

/* Config sections for fx_gen_add: listener NAME bound on 127.0.0.1:%u,
 * with backend app and %s (more of its lines, or ""); app with one server
 * on 127.0.0.1:%u. */
#define FX_LISTENER(name) \
	"[listener " name "]\nbind = 127.0.0.1:%u\nbackend = app\n%s"
#define FX_APP "[backend app]\nserver = a 127.0.0.1:%u\n"

#ifdef FX_WRAP_SOCKET
/* A program linked with -Wl,--wrap=socket defines FX_WRAP_SOCKET before
 * including this: the code under test's socket(2) calls then fail with
 * EMFILE while fx_fail_sockets is above 0 (each failure counted in
 * fx_failed_sockets); the test's own sockets (FX_SOCKET) always work.
 * fx_new() and fx_free() set both to 0. */
static unsigned fx_fail_sockets, fx_failed_sockets;

int __real_socket(int, int, int);
int __wrap_socket(int, int, int);

int
__wrap_socket(int domain, int type, int proto)
{
	if (fx_fail_sockets > 0) {
		fx_fail_sockets--;
		fx_failed_sockets++;
		errno = EMFILE;
		return -1;
	}
	return __real_socket(domain, type, proto);
}
#define FX_SOCKET __real_socket
#else
#define FX_SOCKET socket
#endif

struct fx_peer {
	int fd;                     /* -1: a free slot */
	int tx_seed;                /* byte 0 of what it sends */
	size_t tx_len, tx_off;
	bool tx_shut, shut;         /* shut down writing once all is sent */
	int tx_err;
	int rx_seed;                /* byte 0 of what came: its sender; -1 before */
	size_t rx_n;
	bool rx_bad;                /* a byte differed from the pattern */
	bool rx_eof;
	int rx_err;                 /* what recv failed with (ECONNRESET) */
};

struct fx_gen {                 /* one config, bound, as a worker sees it */
	struct config *cfg;
	struct listener_set *ls;
	struct backend_set *bs;
	struct worker_conf *conf;
	struct worker_snap snap;    /* made by hand, as worker.c does */
};

struct fx {
	int fds;                    /* open before fx_new */
	unsigned nworkers;
	struct event_base *base;
	struct event *tick;         /* bounds one turn of the loop */
	struct listener_proc *lp;   /* made by the first fx_gen_add, if NULL */
	struct fx_gen gen[FX_GENS];
	unsigned ngen;
	int srv[FX_SERVERS];        /* listening: the backends' servers */
	unsigned sport[FX_SERVERS];
	/* Ports for bind lines, each held by a socket bound with
	 * SO_REUSEPORT and not listening: a bind to port 0 elsewhere never
	 * picks it, the listeners can bind it too, and with no listener left
	 * a connect to it is refused. dead: the same, for a server nobody
	 * runs. */
	int hold[FX_PORTS + 1];
	unsigned port[FX_PORTS], dead;
	int own[4];                 /* other fds of the test's (fx_keep) */
	size_t nown;
	struct pipepool *pipes;
	struct relay_ctx relay;
	bool relay_on;
	struct log_batch log;
	bool log_on;
	struct conn_home *home;
	struct stats_worker *stats; /* the snaps' counters, as a worker's */
	/* conn_hooks, as called */
	unsigned ended, ended_wake, fd_short;
	int short_err;
	char short_what[128];
	void (*on_fd_short)(void *arg, int err, const char *what);
	void *on_arg;
	struct fx_peer peer[FX_PEERS];
};

static inline int64_t
fx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Byte i of a stream whose sender's seed is seed: the seed first, then a
 * multiplicative hash of the offset, so a byte lost, repeated or moved
 * shows, and so does a stream of another sender. */
static inline uint8_t
fx_byte(size_t i, int seed)
{
	if (i == 0)
		return (uint8_t)seed;
	return (uint8_t)(((uint32_t)i * 2654435761u ^ (uint32_t)seed * 40503u) >> 24);
}

static inline unsigned
fx_sock_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

/* A non-blocking TCP socket bound on 127.0.0.1 (port 0: any); listening
 * when backlog is > 0, else held with SO_REUSEPORT (see struct fx). */
static inline int
fx_bound(unsigned port, int backlog)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	int fd = FX_SOCKET(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;

	assert_true(fd >= 0);
	if (backlog == 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		    sizeof(one)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (backlog > 0)
		assert_int_equal(listen(fd, backlog), 0);
	return fd;
}

/* A blocking connect to 127.0.0.1:port, given up after FX_WAIT_MS
 * (SO_SNDTIMEO bounds connect(2) on Linux): the socket, connected, or -1
 * with *err. */
static inline int
fx_connect(unsigned port, int *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	struct timeval tv = { FX_WAIT_MS / 1000, 0 };
	int fd = FX_SOCKET(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	*err = errno;
	close(fd);
	return -1;
}

/* 0 when a connect to 127.0.0.1:port succeeds (closed again), else its
 * errno (ECONNREFUSED: nothing listens). */
static inline int
fx_connect_errno(unsigned port)
{
	int err = 0, fd = fx_connect(port, &err);

	if (fd >= 0)
		close(fd);
	return err;
}

static inline void
fx_noop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
}

static inline struct fx *
fx_new(unsigned nworkers)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct event_config *ec;

	assert_non_null(f);
#ifdef FX_WRAP_SOCKET
	fx_fail_sockets = fx_failed_sockets = 0;
#endif
	f->fds = count_fds();
	f->nworkers = nworkers;
	for (size_t i = 0; i < FX_PEERS; i++)
		f->peer[i].fd = -1;
	for (size_t i = 0; i < FX_SERVERS; i++) {
		f->srv[i] = fx_bound(0, 64);
		f->sport[i] = fx_sock_port(f->srv[i]);
	}
	for (size_t i = 0; i <= FX_PORTS; i++) {
		f->hold[i] = fx_bound(0, 0);
		if (i < FX_PORTS)
			f->port[i] = fx_sock_port(f->hold[i]);
		else
			f->dead = fx_sock_port(f->hold[i]);
	}
	/* As worker.c makes its base: epoll's changelist folds the flips of
	 * a turn, and lets closed fds linger in it. */
	assert_non_null(ec = event_config_new());
	assert_int_equal(event_config_set_flag(ec,
	    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST), 0);
	f->base = event_base_new_with_config(ec);
	event_config_free(ec);
	assert_non_null(f->base);
	assert_non_null(f->tick = evtimer_new(f->base, fx_noop_cb, NULL));
	return f;
}

/* fd, closed by fx_free. */
static inline int
fx_keep(struct fx *f, int fd)
{
	assert_true(f->nown < sizeof(f->own) / sizeof(f->own[0]));
	f->own[f->nown++] = fd;
	return fd;
}

/* A config from the format, bound with the newest one's sockets and
 * counts (as a reload binds), with its backend set, worker_conf and a
 * snap made by hand. */
__attribute__((format(printf, 2, 3)))
static inline struct fx_gen *
fx_gen_add(struct fx *f, const char *fmt, ...)
{
	struct fx_gen *g, *prev = f->ngen > 0 ? &f->gen[f->ngen - 1] : NULL;
	char text[2048], err[CONFIG_ERR_MAX];
	va_list ap;

	assert_true(f->ngen < FX_GENS);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (f->lp == NULL)
		assert_non_null(f->lp = listener_proc_new(f->nworkers, NULL, 0));
	g = &f->gen[f->ngen++];
	if ((g->cfg = config_load_string(text, "test.ini", err, sizeof(err))) == NULL)
		fail_msg("%s", err);
	g->ls = listener_set_bind(f->lp, g->cfg, prev ? prev->ls : NULL, err,
	    sizeof(err));
	if (g->ls == NULL)
		fail_msg("%s", err);
	assert_non_null(g->bs = backend_set_new(g->cfg, prev ? prev->bs : NULL));
	assert_non_null(g->conf = worker_conf_new(g->ls, g->bs));
	g->snap.conf = g->conf;
	assert_non_null(g->snap.lb = calloc(g->bs->n, sizeof(*g->snap.lb)));
	for (size_t i = 0; i < g->bs->n; i++)
		assert_int_equal(backend_lb_init(&g->snap.lb[i], &g->bs->b[i], i + 1), 0);
	if (f->stats == NULL)
		assert_non_null(f->stats = stats_worker_new());
	assert_int_equal(worker_snap_stats(&g->snap, f->stats), 0);
	return g;
}

static inline void
fx_ended_cb(void *arg, bool wake)
{
	struct fx *f = arg;

	f->ended++;
	f->ended_wake += wake;
}

static inline void
fx_fd_short_cb(void *arg, int err, const char *what)
{
	struct fx *f = arg;

	f->fd_short++;
	f->short_err = err;
	snprintf(f->short_what, sizeof(f->short_what), "%s", what);
	if (f->on_fd_short != NULL)
		f->on_fd_short(f->on_arg, err, what);
}

/* The connections, on the test's base, under g's snap: pipes when the
 * platform splices, g's buffer size, hooks that record. */
static inline void
fx_home(struct fx *f, struct fx_gen *g)
{
	static const struct conn_hooks hooks = { fx_ended_cb, fx_fd_short_cb };
	const struct config *cfg = g->cfg;

	if (zc_splice_supported())
		assert_non_null(f->pipes = pipepool_new(8, cfg->pipe_size,
		    cfg->pipe_size < RELAY_MIN_PIPE ? cfg->pipe_size :
		    RELAY_MIN_PIPE, 0));
	assert_int_equal(relay_ctx_init(&f->relay, f->base, f->pipes,
	    cfg->buffer_size), 0);
	f->relay_on = true;
	assert_int_equal(log_batch_init(&f->log, f->base), 0);
	f->log_on = true;
	assert_non_null(f->home = conn_home_new(f->base, &f->relay, &f->log,
	    f->stats, 0, &g->snap, &hooks, f));
}

static inline void
fx_free(struct fx *f)
{
	int fds = f->fds;

#ifdef FX_WRAP_SOCKET
	fx_fail_sockets = 0;
#endif
	conn_home_free(f->home);
	stats_worker_free(f->stats);
	if (f->log_on)
		log_batch_cleanup(&f->log);
	if (f->relay_on)
		relay_ctx_cleanup(&f->relay);
	pipepool_free(f->pipes);
	while (f->ngen > 0) {
		struct fx_gen *g = &f->gen[--f->ngen];

		for (size_t i = 0; g->snap.lb != NULL && i < g->bs->n; i++)
			backend_lb_cleanup(&g->snap.lb[i]);
		free(g->snap.lb);
		worker_snap_stats_cleanup(&g->snap);
		worker_conf_unref(g->conf);
		backend_set_unref(g->bs);
		listener_set_unref(g->ls);
		config_unref(g->cfg);
	}
	listener_proc_free(f->lp);
	for (size_t i = 0; i < FX_PEERS; i++)
		if (f->peer[i].fd >= 0)
			close(f->peer[i].fd);
	for (size_t i = 0; i < FX_SERVERS; i++)
		close(f->srv[i]);
	for (size_t i = 0; i <= FX_PORTS; i++)
		close(f->hold[i]);
	for (size_t i = 0; i < f->nown; i++)
		close(f->own[i]);
	event_free(f->tick);
	event_base_free(f->base);
	free(f);
	assert_int_equal(count_fds(), fds);
}

/* cmocka's teardown for a fixture in *state. */
static inline int
fx_teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- peers ---------------------------------------------------------- */

static inline struct fx_peer *
fx_peer_add(struct fx *f, int fd, int seed)
{
	for (size_t i = 0; i < FX_PEERS; i++) {
		struct fx_peer *p = &f->peer[i];

		if (p->fd >= 0)
			continue;
		*p = (struct fx_peer){ .fd = fd, .tx_seed = seed, .rx_seed = -1 };
		assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
		return p;
	}
	close(fd);
	fail_msg("more than %d peers", FX_PEERS);
	return NULL;
}

/* A client connected to 127.0.0.1:port (the handshake done: it may wait in
 * a backlog), sending with seed. */
static inline struct fx_peer *
fx_dial(struct fx *f, unsigned port, int seed)
{
	int err = 0, fd = fx_connect(port, &err);

	if (fd < 0)
		fail_msg("connect to port %u: %s", port, strerror(err));
	return fx_peer_add(f, fd, seed);
}

/* The next connection server i took, or NULL for none yet. It sends with
 * seed 'S' + i. */
static inline struct fx_peer *
fx_served(struct fx *f, size_t i)
{
	int fd = accept4(f->srv[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	return fd < 0 ? NULL : fx_peer_add(f, fd, 'S' + (int)i);
}

/* Send n bytes of p's pattern, then (shut) end its stream. */
static inline void
fx_send(struct fx_peer *p, size_t n, bool shut)
{
	p->tx_len = n;
	p->tx_shut = shut;
}

static inline void
fx_pump(struct fx_peer *p)
{
	uint8_t buf[65536];
	ssize_t n;

	while (p->tx_off < p->tx_len && p->tx_err == 0) {
		size_t k = p->tx_len - p->tx_off;

		if (k > sizeof(buf))
			k = sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = fx_byte(p->tx_off + i, p->tx_seed);
		if ((n = send(p->fd, buf, k, MSG_NOSIGNAL | MSG_DONTWAIT)) > 0)
			p->tx_off += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			p->tx_err = errno;
		else
			break;
	}
	if (p->tx_off == p->tx_len && p->tx_shut && !p->shut) {
		(void)shutdown(p->fd, SHUT_WR);
		p->shut = true;
	}
	while (!p->rx_eof && p->rx_err == 0) {
		if ((n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
			if (p->rx_n == 0)
				p->rx_seed = buf[0];
			for (ssize_t i = 0; i < n; i++)
				p->rx_bad |= buf[i] != fx_byte(p->rx_n + (size_t)i,
				    p->rx_seed);
			p->rx_n += (size_t)n;
		} else if (n == 0)
			p->rx_eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			p->rx_err = errno;
		else
			break;
	}
}

/* Whether p saw its stream end: a FIN or an error. */
static inline bool
fx_closed(const struct fx_peer *p)
{
	return p->rx_eof || p->rx_err != 0;
}

/* Whether p received n bytes, exactly the pattern of sender seed, and
 * then the end of the stream. */
static inline bool
fx_got(const struct fx_peer *p, size_t n, int seed)
{
	return p->rx_eof && p->rx_err == 0 && p->rx_n == n && !p->rx_bad &&
	    p->rx_seed == seed;
}

/* Whether this process holds the accepted end of client p (its peer is p's
 * local address): the code under test took it from the backlog. */
static inline bool
fx_held(const struct fx_peer *p)
{
	struct sockaddr_in me, a;
	socklen_t len = sizeof(me);

	assert_int_equal(getsockname(p->fd, (struct sockaddr *)&me, &len), 0);
	for (int fd = 0; fd < 1024; fd++) {
		len = sizeof(a);
		if (fd != p->fd && getpeername(fd, (struct sockaddr *)&a, &len) == 0 &&
		    a.sin_family == AF_INET && a.sin_port == me.sin_port &&
		    a.sin_addr.s_addr == me.sin_addr.s_addr)
			return true;
	}
	return false;
}

/* Clients in listening socket fd's accept queue (Linux: tcpi_unacked of
 * a socket in LISTEN). */
static inline unsigned
fx_backlog(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	return ti.tcpi_unacked;
}

/* ---- the loop ------------------------------------------------------- */

struct fx_deadline {
	int64_t end;
	unsigned turns;
};

/* One turn: pump the peers, run what is due on the base (blocking at most
 * FX_TURN_MS), pump again. False once the deadline passed. */
static inline bool
fx_turn(struct fx *f, struct fx_deadline *d)
{
	struct timeval tv = { 0, FX_TURN_MS * 1000 };

	if (fx_now_ms() >= d->end || ++d->turns > FX_TURNS)
		return false;
	for (size_t i = 0; i < FX_PEERS; i++)
		if (f->peer[i].fd >= 0)
			fx_pump(&f->peer[i]);
	assert_int_equal(evtimer_add(f->tick, &tv), 0);
	assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	event_del(f->tick);
	for (size_t i = 0; i < FX_PEERS; i++)
		if (f->peer[i].fd >= 0)
			fx_pump(&f->peer[i]);
	return true;
}

/* n turns, whatever happens (to give code that should not act a chance
 * to). */
static inline void
fx_turns(struct fx *f, unsigned n)
{
	struct fx_deadline d = { fx_now_ms() + FX_WAIT_MS, 0 };

	while (n-- > 0)
		assert_true(fx_turn(f, &d));
}

#define FX_WAIT(f, cond) do {						\
	struct fx_deadline fx_d_ = { fx_now_ms() + FX_WAIT_MS, 0 };	\
									\
	while (!(cond))							\
		if (!fx_turn((f), &fx_d_))				\
			fail_msg("%s:%d: no '%s' within %d ms",		\
			    __FILE__, __LINE__, #cond, FX_WAIT_MS);	\
} while (0)

/* n bytes each way between client c and server s, both streams ended,
 * every byte checked. */
static inline void
fx_exchange(struct fx *f, struct fx_peer *c, struct fx_peer *s, size_t n)
{
	fx_send(c, n, true);
	fx_send(s, n, true);
	FX_WAIT(f, fx_closed(c) && fx_closed(s));
	assert_true(fx_got(s, n, c->tx_seed));
	assert_true(fx_got(c, n, s->tx_seed));
}

#endif
