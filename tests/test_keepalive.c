/* tests/test_keepalive.c: keepalive_apply() on real sockets over 127.0.0.1,
 * read back with getsockopt: off leaves a socket alone, on sets only
 * SO_KEEPALIVE, numbers set the three TCP options, 0 keeps the kernel's,
 * and a failing setsockopt returns -1 with its errno. Also what the config
 * turns "tcp_keepalive = ..." into, end to end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/config.h"
#include "spliced/keepalive.h"

/* Both ends of one connection over 127.0.0.1 (the listener is closed). */
struct fx {
	int cfd;                    /* the connecting end */
	int afd;                    /* the accepted end */
};

static int
fx_setup(void **state)
{
	static struct fx f;

	tcp_connected_pair(&f.cfd, &f.afd, 0);
	*state = &f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	close(f->cfd);
	close(f->afd);
	return 0;
}

static int
opt_get(int fd, int level, int opt)
{
	socklen_t len = sizeof(int);
	int v = -1;

	assert_int_equal(getsockopt(fd, level, opt, &v, &len), 0);
	return v;
}

struct kopts { int on, idle, interval, count; };

static struct kopts
kopts_get(int fd)
{
	return (struct kopts){
	    .on = opt_get(fd, SOL_SOCKET, SO_KEEPALIVE),
	    .idle = opt_get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	    .interval = opt_get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
	    .count = opt_get(fd, IPPROTO_TCP, TCP_KEEPCNT) };
}

static void
test_off(void **state)
{
	struct fx *f = *state;
	struct config_keepalive ka = { .on = false, .idle_s = 5 };
	struct kopts before = kopts_get(f->afd), after;

	assert_int_equal(before.on, 0);
	assert_int_equal(keepalive_apply(f->afd, &ka), 0);
	after = kopts_get(f->afd);
	assert_memory_equal(&after, &before, sizeof(after));
}

/* on alone: probes with the kernel's timing (the sysctls, untouched). */
static void
test_on(void **state)
{
	struct fx *f = *state;
	struct config_keepalive ka = { .on = true };
	struct kopts before = kopts_get(f->afd), after;

	assert_int_equal(keepalive_apply(f->afd, &ka), 0);
	after = kopts_get(f->afd);
	assert_int_equal(after.on, 1);
	assert_int_equal(after.idle, before.idle);
	assert_int_equal(after.interval, before.interval);
	assert_int_equal(after.count, before.count);
}

/* Both ends of the pair, as conn.c does with client and backend. */
static void
test_all_three(void **state)
{
	struct fx *f = *state;
	struct config_keepalive ka = { .on = true, .idle_s = 1,
	    .interval_s = 2, .count = 3 };
	int fds[] = { f->afd, f->cfd };

	for (size_t i = 0; i < 2; i++) {
		struct kopts k;

		assert_int_equal(keepalive_apply(fds[i], &ka), 0);
		k = kopts_get(fds[i]);
		assert_int_equal(k.on, 1);
		assert_int_equal(k.idle, 1);
		assert_int_equal(k.interval, 2);
		assert_int_equal(k.count, 3);
	}
}

/* 0 keeps the kernel's: "600s,,4" sets the idle time and the count only. */
static void
test_some(void **state)
{
	struct fx *f = *state;
	struct config_keepalive ka = { .on = true, .idle_s = 600, .count = 4 };
	struct kopts before = kopts_get(f->afd), after;

	assert_int_equal(keepalive_apply(f->afd, &ka), 0);
	after = kopts_get(f->afd);
	assert_int_equal(after.on, 1);
	assert_int_equal(after.idle, 600);
	assert_int_equal(after.interval, before.interval);
	assert_int_equal(after.count, 4);
}

/* A socket whose connect has not started yet takes them too (the backend's
 * fd is set right after its non-blocking connect began). */
static void
test_unconnected(void **state)
{
	struct config_keepalive ka = { .on = true, .idle_s = 7,
	    .interval_s = 8, .count = 9 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct kopts k;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(keepalive_apply(fd, &ka), 0);
	k = kopts_get(fd);
	assert_int_equal(k.on, 1);
	assert_int_equal(k.idle, 7);
	assert_int_equal(k.interval, 8);
	assert_int_equal(k.count, 9);
	close(fd);
}

/* -1 with the errno of the failing call: the caller logs it and goes on. */
static void
test_errors(void **state)
{
	struct fx *f = *state;
	struct config_keepalive ka = { .on = true, .idle_s = 1 };
	struct config_keepalive too_many = { .on = true, .count = 128 };
	int fds[2];

	errno = 0;
	assert_int_equal(keepalive_apply(-1, &ka), -1);
	assert_int_equal(errno, EBADF);
	/* Not a socket. */
	assert_int_equal(pipe(fds), 0);
	errno = 0;
	assert_int_equal(keepalive_apply(fds[0], &ka), -1);
	assert_int_equal(errno, ENOTSOCK);
	close(fds[0]);
	close(fds[1]);
	/* Past MAX_TCP_KEEPCNT: the config never lets it through, the
	 * kernel refuses it. SO_KEEPALIVE, set first, stays set. */
	errno = 0;
	assert_int_equal(keepalive_apply(f->afd, &too_many), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(opt_get(f->afd, SOL_SOCKET, SO_KEEPALIVE), 1);
	/* Off touches nothing, so it cannot fail. */
	ka.on = false;
	assert_int_equal(keepalive_apply(-1, &ka), 0);
}

/* The config's value, from a listener, onto a socket. */
static void
test_from_config(void **state)
{
	struct fx *f = *state;
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string("[global]\n"
	    "tcp_keepalive = 2m,15s,5\n"
	    "[listener web]\nbind = 127.0.0.1:8080\nbackend = app\n"
	    "[backend app]\nserver = a 127.0.0.1:9001\n", "t.ini", err,
	    sizeof(err));
	struct kopts k;

	if (cfg == NULL)
		fail_msg("%s", err);
	assert_int_equal(keepalive_apply(f->cfd,
	    &cfg->listeners[0].tcp_keepalive), 0);
	k = kopts_get(f->cfd);
	assert_int_equal(k.on, 1);
	assert_int_equal(k.idle, 120);
	assert_int_equal(k.interval, 15);
	assert_int_equal(k.count, 5);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_off, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_on, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_all_three, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_some, fx_setup, fx_teardown),
		cmocka_unit_test(test_unconnected),
		cmocka_unit_test_setup_teardown(test_errors, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_from_config, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
