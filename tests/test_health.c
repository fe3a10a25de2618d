/* tests/test_health.c: active TCP checks on a real event loop, over
 * 127.0.0.1: fall failed checks take a server down, rise passed ones bring
 * it back, a server taken down by traffic needs rise passed checks from
 * then on, failed checks are counted, a server in maint is not checked
 * (a drained one is), and a backend with checks off is never probed. event_add() is
 * wrapped to try its failure: checks that cannot be armed fail
 * health_new(); a check whose socket cannot be watched is not run, and
 * leaks nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/health.h"

int __real_event_add(struct event *, const struct timeval *);
int __wrap_event_add(struct event *, const struct timeval *);

static bool refuse_timers;      /* event_add() of a timer fails */
static bool refuse_io;          /* event_add() of a check's socket fails */

int
__wrap_event_add(struct event *ev, const struct timeval *tv)
{
	bool io = (event_get_events(ev) & EV_WRITE) != 0;

	if (io ? refuse_io : refuse_timers)
		return -1;
	return __real_event_add(ev, tv);
}

struct fx {
	struct event_base *base;
	struct config *cfg;
	struct backend_set *bs;
	struct health *h;
	int lfd;                    /* the server: listening, or bound only */
	struct sockaddr_in sin;
};

/* A socket on 127.0.0.1 that listens (checks pass) or is only bound
 * (connects are refused, checks fail), on the same port each time. */
static void
server_set(struct fx *f, bool listening)
{
	int one = 1;

	if (f->lfd >= 0)
		close(f->lfd);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)), 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&f->sin,
	    sizeof(f->sin)), 0);
	if (listening)
		assert_int_equal(listen(f->lfd, 64), 0);
	if (f->sin.sin_port == 0) {
		socklen_t len = sizeof(f->sin);

		assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&f->sin,
		    &len), 0);
	}
}

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	refuse_timers = refuse_io = false;
	f->lfd = -1;
	f->sin.sin_family = AF_INET;
	f->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	health_free(f->h);
	backend_set_unref(f->bs);
	config_unref(f->cfg);
	if (f->lfd >= 0)
		close(f->lfd);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* The server listening, its config and its set; no checks yet. */
static void
load(struct fx *f, const char *checks)
{
	char text[512], err[CONFIG_ERR_MAX];

	server_set(f, true);
	snprintf(text, sizeof(text), "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:%u\n"
	    "health_check = %s\nhealth_interval = 20ms\n"
	    "health_timeout = 500ms\nrise = 2\nfall = 3\n",
	    ntohs(f->sin.sin_port), checks);
	f->cfg = config_load_string(text, "t.ini", err, sizeof(err));
	assert_non_null(f->cfg);
	f->bs = backend_set_new(f->cfg, NULL);
	assert_non_null(f->bs);
}

static void
start(struct fx *f, const char *checks)
{
	load(f, checks);
	f->h = health_new(f->base, f->bs);
	assert_non_null(f->h);
}

static bool
up(struct fx *f)
{
	return atomic_load(&f->bs->b[0].servers[0]->up);
}

/* Run the loop until n more checks are done. */
static void
run_checks(struct fx *f, unsigned long n)
{
	unsigned long until = health_checks_done(f->h) + n;

	for (int i = 0; i < 2000 && health_checks_done(f->h) < until; i++)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_true(health_checks_done(f->h) >= until);
}

static void
test_fall_and_rise(void **state)
{
	struct fx *f = *state;

	start(f, "tcp");
	run_checks(f, 3);
	assert_true(up(f));
	server_set(f, false);               /* refused from now on */
	run_checks(f, 2);
	assert_true(up(f));                 /* two failures: not yet */
	run_checks(f, 1);
	assert_false(up(f));                /* the third: down */
	run_checks(f, 5);
	assert_false(up(f));
	server_set(f, true);
	run_checks(f, 1);
	assert_false(up(f));                /* one pass: not yet */
	run_checks(f, 1);
	assert_true(up(f));                 /* the second: up */
}

/* Traffic took it down while checks pass: it takes rise passes from then
 * on, not the streak counted while it was up. */
static void
test_down_by_traffic(void **state)
{
	struct fx *f = *state;

	start(f, "tcp");
	run_checks(f, 4);
	assert_true(up(f));
	assert_true(backend_server_set_up(f->bs->b[0].servers[0], false));
	run_checks(f, 1);
	assert_false(up(f));
	run_checks(f, 1);
	assert_true(up(f));
}

static uint64_t
check_failures(struct fx *f)
{
	uint64_t n = atomic_load(&f->bs->b[0].servers[0]->check_failures);

	/* The server's line counts them too (what the metrics report). */
	assert_int_equal(atomic_load(&f->bs->b[0].lines[0]->check_failures), n);
	return n;
}

static void
set_admin(struct fx *f, enum backend_admin a)
{
	assert_int_equal(backend_server_set_admin(f->bs, "app", "a", (int)a, 0), 0);
}

/* n turns of the loop, each waiting for the next timer (20 ms apart): a
 * server checked would see about n checks. */
static void
run_turns(struct fx *f, int n)
{
	for (int i = 0; i < n; i++)
		event_base_loop(f->base, EVLOOP_ONCE);
}

/* Every failed check counts, passed ones do not; a check that fails at
 * once (refused) counts as much as one that waits. */
static void
test_check_failures_count(void **state)
{
	struct fx *f = *state;

	start(f, "tcp");
	run_checks(f, 3);
	assert_int_equal(check_failures(f), 0);
	server_set(f, false);
	run_checks(f, 5);
	assert_false(up(f));
	assert_int_equal(check_failures(f), 5);
	server_set(f, true);
	run_checks(f, 2);
	assert_true(up(f));
	assert_int_equal(check_failures(f), 5);
}

/* maint: no checks at all (none done, none failed) while the server stops
 * answering, so it stays up; ready again, its checks resume and take it
 * down. The other way round too: down, in maint while it comes back, it
 * stays down until it is ready and passes rise checks. */
static void
test_maint_stops_checks(void **state)
{
	struct fx *f = *state;
	struct pollfd pfd = { .events = POLLIN };
	unsigned long done;

	start(f, "tcp");
	run_checks(f, 2);
	set_admin(f, BACKEND_ADMIN_MAINT);
	done = health_checks_done(f->h);
	server_set(f, false);
	run_turns(f, 20);
	assert_int_equal(health_checks_done(f->h), done);
	assert_int_equal(check_failures(f), 0);
	assert_true(up(f));
	set_admin(f, BACKEND_ADMIN_READY);
	run_checks(f, 3);
	assert_false(up(f));
	assert_int_equal(check_failures(f), 3);

	set_admin(f, BACKEND_ADMIN_MAINT);
	done = health_checks_done(f->h);
	server_set(f, true);                /* a new socket: an empty backlog */
	run_turns(f, 20);
	assert_int_equal(health_checks_done(f->h), done);
	assert_false(up(f));
	/* Not made and dropped: not made. No connect reached the server. */
	pfd.fd = f->lfd;
	assert_int_equal(poll(&pfd, 1, 0), 0);
	set_admin(f, BACKEND_ADMIN_READY);
	run_checks(f, 1);
	assert_false(up(f));
	run_checks(f, 1);
	assert_true(up(f));
	assert_int_equal(check_failures(f), 3);
}

/* drain keeps the checks: a drained server that stops answering goes down,
 * and comes back up, as a ready one would. */
static void
test_drain_keeps_checks(void **state)
{
	struct fx *f = *state;

	start(f, "tcp");
	set_admin(f, BACKEND_ADMIN_DRAIN);
	run_checks(f, 2);
	server_set(f, false);
	run_checks(f, 3);
	assert_false(up(f));
	assert_int_equal(check_failures(f), 3);
	server_set(f, true);
	run_checks(f, 2);
	assert_true(up(f));
}

/* Nothing more happens: a few turns of the loop finish no check, and the
 * descriptors open are fds, as before. */
static void
expect_idle(struct fx *f, int fds)
{
	unsigned long done = health_checks_done(f->h);

	for (int i = 0; i < 20; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(health_checks_done(f->h), done);
	assert_int_equal(count_fds(), fds);
}

static void
test_checks_off(void **state)
{
	struct fx *f = *state;

	start(f, "off");
	expect_idle(f, count_fds());
	assert_int_equal(health_checks_done(f->h), 0);
}

/* A check that cannot be armed is an error of health_new(), not a server
 * that is silently never checked. */
static void
test_timer_refused(void **state)
{
	struct fx *f = *state;
	int fds;

	load(f, "tcp");
	fds = count_fds();
	refuse_timers = true;
	errno = 0;
	assert_null(health_new(f->base, f->bs));
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(count_fds(), fds);
	refuse_timers = false;
	f->h = health_new(f->base, f->bs);
	assert_non_null(f->h);
	run_checks(f, 1);
}

/* A check whose socket cannot be watched is not run (its socket is closed
 * at once) and counts neither way; the next ones are, once it can be. */
static void
test_io_refused(void **state)
{
	struct fx *f = *state;
	int fds;

	start(f, "tcp");
	fds = count_fds();
	refuse_io = true;
	run_turns(f, 20);
	assert_int_equal(health_checks_done(f->h), 0);
	assert_true(up(f));
	assert_int_equal(count_fds(), fds);
	refuse_io = false;
	server_set(f, false);
	run_checks(f, 3);
	assert_false(up(f));
}

/* A check that ends and cannot arm the next one stops there (with an
 * error in the log), holding no socket. */
static void
test_timer_refused_later(void **state)
{
	struct fx *f = *state;
	int fds;

	start(f, "tcp");
	fds = count_fds();
	refuse_timers = true;
	run_checks(f, 1);
	expect_idle(f, fds);
	assert_int_equal(health_checks_done(f->h), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fall_and_rise, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_down_by_traffic, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_check_failures_count, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_maint_stops_checks, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_drain_keeps_checks, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_checks_off, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_refused, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_refused, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_refused_later, fx_setup,
		    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
