/* tests/test_backend.c: smooth weighted round robin and the non-blocking
 * connect, over 127.0.0.1 only. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"

#define MAX_SERVERS 8

/* A backend of n servers with the given weights; only weights matter to
 * the balancer. */
struct fx_backend {
	struct config_server servers[MAX_SERVERS];
	struct config_backend b;
	struct backend_rr rr;
};

/* The fixture owns the balancer state, so that it is freed even when an
 * assertion fails half-way. */
static int
rr_setup(void **state)
{
	struct fx_backend *fb = calloc(1, sizeof(*fb));

	assert_non_null(fb);
	*state = fb;
	return 0;
}

static int
rr_teardown(void **state)
{
	struct fx_backend *fb = *state;

	backend_rr_cleanup(&fb->rr);
	free(fb);
	return 0;
}

static void
backend_make(struct fx_backend *fb, const unsigned *weights, size_t n)
{
	assert_true(n <= MAX_SERVERS);
	backend_rr_cleanup(&fb->rr);
	memset(fb, 0, sizeof(*fb));
	for (size_t i = 0; i < n; i++)
		fb->servers[i].weight = weights[i];
	fb->b.servers = fb->servers;
	fb->b.nservers = n;
	assert_int_equal(backend_rr_init(&fb->rr, &fb->b), 0);
}

static size_t
pick(struct fx_backend *fb, ssize_t avoid)
{
	size_t i = backend_rr_pick(&fb->rr, &fb->b, avoid);

	assert_true(i < fb->b.nservers);
	return i;
}

static void
test_rr_weighted_smooth(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };
	size_t prev = SIZE_MAX;

	backend_make(fb, w, 3);
	for (int i = 0; i < 10000; i++) {
		size_t s = pick(fb, -1);

		count[s]++;
		/* Smooth: a light server is never picked twice in a row. */
		if (s != 0)
			assert_true(s != prev);
		prev = s;
	}
	assert_int_equal(count[0], 6000);
	assert_int_equal(count[1], 2000);
	assert_int_equal(count[2], 2000);
}

/* Every window of five picks holds the heavy server three times: its picks
 * are spread out, not bunched at the start of a round. */
static void
test_rr_weighted_every_round(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, w, 3);
	for (int round = 0; round < 100; round++) {
		unsigned count[3] = { 0 };
		size_t seq[5];

		for (int i = 0; i < 5; i++)
			count[seq[i] = pick(fb, -1)]++;
		assert_int_equal(count[0], 3);
		assert_int_equal(count[1], 1);
		assert_int_equal(count[2], 1);
		/* Never three of the heavy one in a row within a round. */
		for (int i = 0; i + 2 < 5; i++)
			assert_false(seq[i] == 0 && seq[i + 1] == 0 && seq[i + 2] == 0);
	}
}

static void
test_rr_equal_rotate(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	size_t first[3];

	backend_make(fb, w, 3);
	for (int i = 0; i < 3; i++)
		first[i] = pick(fb, -1);
	/* The first round visits each server once ... */
	assert_true(first[0] != first[1] && first[1] != first[2] &&
	    first[0] != first[2]);
	/* ... and every later round repeats it in the same order. */
	for (int i = 0; i < 300; i++)
		assert_int_equal(pick(fb, -1), first[i % 3]);
}

static void
test_rr_single(void **state)
{
	static const unsigned w[] = { 5 };
	struct fx_backend *fb = *state;

	backend_make(fb, w, 1);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pick(fb, -1), 0);
		/* The one server that just failed is still the only one. */
		assert_int_equal(pick(fb, 0), 0);
	}
}

static void
test_rr_avoid(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	static const unsigned w2[] = { 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, w, 3);
	for (int i = 0; i < 3000; i++) {
		ssize_t avoid = i % 3;

		assert_int_not_equal(pick(fb, avoid), avoid);
	}

	/* Two servers: avoiding one always gives the other. */
	backend_make(fb, w2, 2);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pick(fb, 0), 1);
		assert_int_equal(pick(fb, 1), 0);
	}
}

static void
test_rr_avoid_spreads_over_the_rest(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };

	backend_make(fb, w, 3);
	for (int i = 0; i < 1000; i++)
		count[pick(fb, 0)]++;
	assert_int_equal(count[0], 0);
	assert_int_equal(count[1], 500);
	assert_int_equal(count[2], 500);
}

/* A server that is down: every connection that lands on it fails and is
 * retried with avoid set to it (what conn.c does). In nginx's smooth WRR a
 * server skipped in a pick neither earns its weight nor adds it to the
 * total, so the dead server keeps receiving its share of first attempts
 * (1/3 here) and no more. */
static void
test_rr_dead_server_keeps_its_share(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned first[3] = { 0 };
	size_t s;

	backend_make(fb, w, 3);
	for (int conn = 0; conn < 999; conn++) {
		first[s = pick(fb, -1)]++;
		if (s == 0)
			assert_int_not_equal(pick(fb, 0), 0);
	}
	assert_int_equal(first[0], 333);
}

/* Skipped for a long while (say, the only server that failed for a run of
 * connections), a server is not then picked many times in a row. */
static void
test_rr_avoided_server_not_bunched(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, w, 3);
	for (int i = 0; i < 100; i++)
		(void)pick(fb, 0);
	for (int round = 0; round < 30; round++) {
		unsigned count[3] = { 0 };

		for (int j = 0; j < 3; j++)
			count[pick(fb, -1)]++;
		assert_int_equal(count[0], 1);
	}
}

/* ---- connect ------------------------------------------------------------ */

/* A TCP socket bound to 127.0.0.1 on a port of the kernel's choice, its
 * address in *a; listening if asked (a bound socket that does not listen
 * keeps the port taken, so a connect to it is refused). */
static int
bound_socket(struct addr *a, int listening)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (listening)
		assert_int_equal(listen(fd, 8), 0);
	memset(a, 0, sizeof(*a));
	a->len = sizeof(a->ss);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a->ss, &a->len), 0);
	return fd;
}

static void
wait_writable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	assert_int_equal(poll(&pfd, 1, 5000), 1);
}

static void
test_connect_ok(void **state)
{
	struct addr a;
	int lfd, fd, cfd, one = 0, fds;
	socklen_t len = sizeof(one);
	char buf[2];

	(void)state;
	fds = count_fds();
	lfd = bound_socket(&a, 1);
	fd = backend_connect(&a);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &len), 0);
	assert_int_not_equal(one, 0);
	wait_writable(fd);
	assert_int_equal(backend_connect_error(fd), 0);
	/* Really connected: the listener has it, and bytes go through. */
	cfd = accept(lfd, NULL, NULL);
	assert_true(cfd >= 0);
	assert_int_equal(send(fd, "hi", 2, MSG_NOSIGNAL), 2);
	assert_int_equal(recv(cfd, buf, 2, MSG_WAITALL), 2);
	assert_memory_equal(buf, "hi", 2);
	close(cfd);
	close(fd);
	close(lfd);
	assert_int_equal(count_fds(), fds);
}

static void
test_connect_refused(void **state)
{
	struct addr a;
	int taken, fd, fds;

	(void)state;
	fds = count_fds();
	taken = bound_socket(&a, 0);
	errno = 0;
	fd = backend_connect(&a);
	if (fd == -1) {
		assert_int_equal(errno, ECONNREFUSED);
	} else {
		wait_writable(fd);
		assert_int_equal(backend_connect_error(fd), ECONNREFUSED);
		close(fd);
	}
	close(taken);
	assert_int_equal(count_fds(), fds);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rr_weighted_smooth, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_weighted_every_round, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_equal_rotate, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_single, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_avoid, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_avoid_spreads_over_the_rest, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_dead_server_keeps_its_share, rr_setup, rr_teardown),
		cmocka_unit_test_setup_teardown(test_rr_avoided_server_not_bunched, rr_setup, rr_teardown),
		cmocka_unit_test(test_connect_ok),
		cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
