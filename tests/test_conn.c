/* tests/test_conn.c: connections of a conn_home on the test's own event
 * base, with hooks that record: relaying, how a connection ends and what
 * its peers see then, and running short of fds.
 *
 * A client is dialled to the listener's socket, accepted there by the
 * test, admitted and handed to conn_start(), as accept.c does. socket(2)
 * is wrapped (-Wl,--wrap=socket) to fail with EMFILE for the code under
 * test; the test's own sockets bypass it (fixture.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define FX_WRAP_SOCKET
#include "fixture.h"

#define KiB 1024u
#define FAIL_ALL 1000000u

static int
setup(void **state)
{
	*state = fx_new(1);
	return 0;
}

/* A config of one listener, web (extra: more of its keys), whose backend
 * app has one server on port sport, and the home under it. */
static struct fx_gen *
gen(struct fx *f, const char *splice, const char *extra, unsigned sport)
{
	struct fx_gen *g = fx_gen_add(f, "[global]\naccess_log = on\n"
	    "splice = %s\n" FX_LISTENER("web") FX_APP, splice, f->port[0],
	    extra, sport);

	fx_home(f, g);
	return g;
}

/* A client of web (sending with seed), accepted, admitted and started
 * with socket(2) failing fail times. */
static struct fx_peer *
start(struct fx *f, struct fx_gen *g, int seed, unsigned fail)
{
	struct listener *l = &g->ls->l[0];
	int lfd = listener_sock_fd(l->socks[0], 0, 0), fd;
	struct fx_peer *c = fx_dial(f, f->port[0], seed);
	struct sockaddr_storage ss;
	socklen_t len;
	bool wake;

	FX_WAIT(f, (len = sizeof(ss), fd = accept4(lfd, (struct sockaddr *)&ss,
	    &len, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0);
	assert_true(listener_admit(g->ls, l, &wake));
	fx_fail_sockets = fail;
	conn_start(f->home, l, fd, (struct sockaddr *)&ss, len);
	return c;
}

static uint64_t
ends(const struct conn_stats *st)
{
	uint64_t n = 0;

	for (int r = 0; r < CONN_REASON_MAX_; r++)
		n += st->reasons[r];
	return n;
}

/* Bytes both ways, exact; both peers end their streams: the connection
 * ends once, with its slot given back and nobody to wake. Per splice
 * policy. */
static void
relay(struct fx *f, const char *splice)
{
	struct fx_gen *g = gen(f, splice, "", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', 0), *s;
	const struct conn_stats *st = conn_home_stats(f->home);
	const struct relay_stats *rs = &f->relay.stats;
	size_t n = 1024 * KiB;

	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	assert_int_equal(conn_home_count(f->home), 1);
	assert_int_equal(listener_proc_active(f->lp), 1);
	fx_exchange(f, c, s, n);
	FX_WAIT(f, conn_home_count(f->home) == 0);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->ended_wake, 0);
	assert_int_equal(f->fd_short, 0);
	assert_int_equal(st->connections, 1);
	assert_int_equal(st->reasons[CONN_CLIENT_EOF] + st->reasons[CONN_SERVER_EOF], 1);
	assert_int_equal(ends(st), 1);
	assert_int_equal(st->connect_failures, 0);
	assert_int_equal(listener_proc_active(f->lp), 0);
	assert_int_equal(rs->bytes[RELAY_MODE_COPY] + rs->bytes[RELAY_MODE_SPLICE], 2 * n);
	if (strcmp(splice, "never") == 0)
		assert_int_equal(rs->bytes[RELAY_MODE_SPLICE], 0);
	else if (strcmp(splice, "always") == 0 && f->pipes != NULL)
		assert_true(rs->bytes[RELAY_MODE_SPLICE] > 0);
}

static void test_relay_never(void **state) { relay(*state, "never"); }
static void test_relay_always(void **state) { relay(*state, "always"); }
static void test_relay_auto(void **state) { relay(*state, "auto"); }

/* A listener at its max_connections: the end of its connection may let a
 * waiting client in, so the hook is asked to wake. */
static void
test_listener_full(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "max_connections = 1\n", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', 0), *s;

	assert_false(listener_room(g->ls, &g->ls->l[0]));
	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_exchange(f, c, s, 10 * KiB);
	FX_WAIT(f, conn_home_count(f->home) == 0);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->ended_wake, 1);
	assert_true(listener_room(g->ls, &g->ls->l[0]));
}

/* The only server refuses: every attempt fails, the client is closed. */
static void
test_connect_failed(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "", f->dead);
	struct fx_peer *c = start(f, g, 'C', 0);
	const struct conn_stats *st = conn_home_stats(f->home);

	FX_WAIT(f, fx_closed(c));
	assert_true(c->rx_eof);
	assert_int_equal(c->rx_n, 0);
	assert_int_equal(conn_home_count(f->home), 0);
	assert_int_equal(st->reasons[CONN_CONNECT_FAILED], 1);
	assert_int_equal(ends(st), 1);
	assert_true(st->connect_failures >= 1);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->ended_wake, 0);
	assert_int_equal(listener_proc_active(f->lp), 0);
}

/* Shutdown cuts a stream in the middle: both peers get an RST, not a FIN
 * that would make a cut stream look complete. */
static void
test_close_all_resets(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', 0), *s;
	const struct conn_stats *st = conn_home_stats(f->home);

	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_send(c, 64 * KiB, false);
	fx_send(s, 64 * KiB, false);
	FX_WAIT(f, c->rx_n == 64 * KiB && s->rx_n == 64 * KiB);
	conn_close_all(f->home);
	assert_int_equal(conn_home_count(f->home), 0);
	FX_WAIT(f, fx_closed(c) && fx_closed(s));
	assert_int_equal(c->rx_err, ECONNRESET);
	assert_int_equal(s->rx_err, ECONNRESET);
	assert_false(c->rx_bad || s->rx_bad);
	assert_int_equal(st->reasons[CONN_SHUTDOWN], 1);
	assert_int_equal(ends(st), 1);
	assert_int_equal(f->ended, 1);
	assert_int_equal(listener_proc_active(f->lp), 0);
}

/* Shutdown after the server's whole stream reached the client: the
 * client gets its FIN (nothing was cut), the server, whose incoming
 * stream was cut, an RST. */
static void
test_close_all_after_fin(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', 0), *s;

	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_send(c, 16 * KiB, false);
	fx_send(s, 16 * KiB, true);
	FX_WAIT(f, c->rx_eof && s->rx_n == 16 * KiB);
	conn_close_all(f->home);
	FX_WAIT(f, fx_closed(s));
	assert_int_equal(s->rx_err, ECONNRESET);
	assert_true(fx_got(c, 16 * KiB, 'S'));
	assert_int_equal(conn_home_stats(f->home)->reasons[CONN_SHUTDOWN], 1);
}

/* socket(2) fails once: the reserve gives the backend socket, the client
 * is served at once, and the hook hears of the shortage. */
static void
test_fd_reserve(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "", f->sport[0]);
	struct fx_peer *c, *s;

	assert_false(conn_home_fds_wanted(f->home));
	c = start(f, g, 'C', 1);
	assert_int_equal(fx_failed_sockets, 1);
	assert_int_equal(fx_fail_sockets, 0);
	assert_int_equal(f->fd_short, 1);
	assert_int_equal(f->short_err, EMFILE);
	if (strstr(f->short_what, "served from the fd reserve") == NULL)
		fail_msg("fd_short said: %s", f->short_what);
	assert_true(conn_home_fds_wanted(f->home));     /* the reserve is short */
	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_exchange(f, c, s, 64 * KiB);
	FX_WAIT(f, conn_home_count(f->home) == 0);
	assert_true(conn_home_fds_ready(f->home));
	assert_false(conn_home_fds_wanted(f->home));
	assert_int_equal(f->fd_short, 1);
}

/* No fd even from the reserve: the client waits, holding its slot, and
 * is connected once sockets can be had again. */
static void
test_fd_wait(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = gen(f, "auto", "", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', FAIL_ALL), *s;
	const struct conn_stats *st = conn_home_stats(f->home);

	assert_int_equal(fx_failed_sockets, 2);    /* before and after the reserve */
	assert_int_equal(f->fd_short, 1);
	if (strstr(f->short_what, "1 client waiting for an fd") == NULL)
		fail_msg("fd_short said: %s", f->short_what);
	assert_int_equal(conn_home_count(f->home), 1);
	assert_true(conn_home_fds_wanted(f->home));
	assert_int_equal(listener_proc_active(f->lp), 1);
	assert_int_equal(st->connect_failures, 0);      /* not the server's */

	/* Still none: it keeps waiting, and says so again. */
	assert_false(conn_home_fds_ready(f->home));
	assert_int_equal(conn_home_count(f->home), 1);
	assert_int_equal(f->fd_short, 2);
	assert_null(fx_served(f, 0));
	assert_false(fx_closed(c));

	fx_fail_sockets = 0;
	assert_true(conn_home_fds_ready(f->home));
	assert_false(conn_home_fds_wanted(f->home));
	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_exchange(f, c, s, 64 * KiB);
	FX_WAIT(f, conn_home_count(f->home) == 0);
	assert_int_equal(f->ended, 1);
	assert_int_equal(st->reasons[CONN_CLIENT_EOF] + st->reasons[CONN_SERVER_EOF], 1);
	assert_int_equal(listener_proc_active(f->lp), 0);
}

/* The listener's figures in a sample: while a connection is open its
 * bytes so far are there (by direction; by mover as the policy chose),
 * and after it closed they are there once, with its end and its life in
 * the histogram; the server's connect is counted by its name. */
static void
sample_bytes(struct fx *f, const char *splice)
{
	struct fx_gen *g = gen(f, splice, "", f->sport[0]);
	struct fx_peer *c = start(f, g, 'C', 0), *s;
	const struct stats_listener *l;
	const struct stats_server *sv;
	struct stats_sample sm;
	uint64_t up, down;

	FX_WAIT(f, (s = fx_served(f, 0)) != NULL);
	fx_send(c, 300 * KiB, false);
	fx_send(s, 200 * KiB, false);
	FX_WAIT(f, s->rx_n == 300 * KiB && c->rx_n == 200 * KiB);

	assert_int_equal(stats_sample_init(&sm, 10), 0);
	assert_int_equal(stats_sample_add_worker(&sm, f->stats), 0);
	assert_int_equal(conn_home_sample(f->home, &sm), 0);
	assert_non_null(l = stats_sample_listener(&sm, "web"));
	up = l->bytes[STATS_UP][RELAY_MODE_COPY] + l->bytes[STATS_UP][RELAY_MODE_SPLICE];
	down = l->bytes[STATS_DOWN][RELAY_MODE_COPY] + l->bytes[STATS_DOWN][RELAY_MODE_SPLICE];
	assert_int_equal(up, 300 * KiB);
	assert_int_equal(down, 200 * KiB);
	if (strcmp(splice, "never") == 0 || f->pipes == NULL)
		assert_int_equal(l->bytes[STATS_UP][RELAY_MODE_SPLICE], 0);
	else
		assert_true(l->bytes[STATS_UP][RELAY_MODE_SPLICE] > 0);
	assert_int_equal(l->connections, 1);
	assert_int_equal(l->active, 1);
	assert_int_equal(l->duration.count, 0);
	assert_int_equal(sm.nc, 1);
	assert_string_equal(sm.c[0].listener, "web");
	assert_int_equal(strncmp(sm.c[0].server, "a/127.0.0.1:", 12), 0);
	assert_int_equal(strncmp(sm.c[0].client, "127.0.0.1:", 10), 0);
	assert_int_equal(sm.c[0].bytes[STATS_UP][RELAY_MODE_COPY] +
	    sm.c[0].bytes[STATS_UP][RELAY_MODE_SPLICE], 300 * KiB);
	assert_false(sm.c[0].connecting);
	assert_non_null(sv = stats_sample_server(&sm, "app", "a"));
	assert_int_equal(sv->connections, 1);
	assert_non_null(stats_sample_backend(&sm, "app"));
	assert_int_equal(stats_sample_backend(&sm, "app")->connect.count, 1);
	stats_sample_cleanup(&sm);

	fx_send(c, 300 * KiB, true);
	fx_send(s, 200 * KiB, true);
	FX_WAIT(f, conn_home_count(f->home) == 0);
	assert_int_equal(stats_sample_init(&sm, 10), 0);
	assert_int_equal(stats_sample_add_worker(&sm, f->stats), 0);
	assert_int_equal(conn_home_sample(f->home, &sm), 0);
	assert_non_null(l = stats_sample_listener(&sm, "web"));
	assert_int_equal(l->bytes[STATS_UP][RELAY_MODE_COPY] +
	    l->bytes[STATS_UP][RELAY_MODE_SPLICE], 300 * KiB);
	assert_int_equal(l->bytes[STATS_DOWN][RELAY_MODE_COPY] +
	    l->bytes[STATS_DOWN][RELAY_MODE_SPLICE], 200 * KiB);
	assert_int_equal(l->active, 0);
	assert_int_equal(l->closed[CONN_CLIENT_EOF] + l->closed[CONN_SERVER_EOF], 1);
	assert_int_equal(l->duration.count, 1);
	assert_int_equal(sm.nc, 0);
	stats_sample_cleanup(&sm);
}

static void test_sample_never(void **state) { sample_bytes(*state, "never"); }
static void test_sample_always(void **state) { sample_bytes(*state, "always"); }
static void test_sample_auto(void **state) { sample_bytes(*state, "auto"); }

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_relay_never, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_relay_always, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_relay_auto, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_listener_full, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_connect_failed, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_all_resets, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_all_after_fin, setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_fd_reserve, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fd_wait, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sample_never, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sample_always, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sample_auto, setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
