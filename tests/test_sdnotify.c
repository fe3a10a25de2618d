/* tests/test_sdnotify.c: systemd's protocols as sdnotify.c speaks them.
 *
 * A test-owned NOTIFY_SOCKET (a unix datagram socket in a temp dir, or an
 * abstract "@..." one) receives exactly what each call sends. The watchdog
 * and LISTEN_FDS variables are set by the test; the passed sockets are real
 * listening sockets dup'd to fds 3 and 4 (whatever was there is saved and
 * put back). The tests that need libsystemd skip in a build without it; the
 * ones that check the no-op behaviour run in both. Every test ends with the
 * process's fd count back where it started: the fixtures below check it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spliced/sdnotify.h"

static const char *const vars[] = {
	"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
	"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
};

static void
clear_env(void)
{
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void
skip_unless_built_in(void)
{
	if (!sdnotify_built_in()) {
		print_message("built without libsystemd: skipped\n");
		skip();
	}
}

/* fds 3 and 4 as the test found them, moved out of the way. */
struct saved_fds {
	int copy[2];                    /* -1: the fd was not open */
};

static void
save_fds(struct saved_fds *s)
{
	int i;

	for (i = 0; i < 2; i++) {
		s->copy[i] = -1;
		if (fcntl(3 + i, F_GETFD) >= 0) {
			s->copy[i] = fcntl(3 + i, F_DUPFD_CLOEXEC, 10);
			assert_true(s->copy[i] >= 0);
			close(3 + i);
		}
	}
}

static void
restore_fds(struct saved_fds *s)
{
	int i;

	for (i = 0; i < 2; i++) {
		close(3 + i);
		if (s->copy[i] >= 0) {
			assert_int_equal(dup2(s->copy[i], 3 + i), 3 + i);
			close(s->copy[i]);
		}
	}
}

/* ---- fixtures ------------------------------------------------------------ */

/* cmocka runs the teardown after a test that failed or skipped too, so the
 * next test still finds fds 3 and 4 and a clean environment, and a leak is
 * caught by the test that made it. One test runs at a time: a static
 * fixture will do. */
struct fixture {
	int fds;                        /* count_fds() before the test */
	bool moved;                     /* saved holds fds 3 and 4 */
	struct saved_fds saved;
};

static int
env_setup(void **state)
{
	static struct fixture fx;

	memset(&fx, 0, sizeof(fx));
	fx.fds = count_fds();
	clear_env();
	*state = &fx;
	return 0;
}

/* For the LISTEN_FDS tests, which put their sockets at fds 3 and 4. */
static int
fds_setup(void **state)
{
	struct fixture *fx;

	env_setup(state);
	fx = *state;
	save_fds(&fx->saved);
	fx->moved = true;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->moved)
		restore_fds(&fx->saved);
	clear_env();
	assert_int_equal(count_fds(), fx->fds);
	return 0;
}

/* ---- a notify socket ----------------------------------------------------- */

struct receiver {
	int fd;
	char dir[64];                   /* "" for an abstract socket */
	char path[108];
};

/* A datagram socket the calls will send to, named in NOTIFY_SOCKET. */
static void
receiver_open(struct receiver *r, bool abstract)
{
	struct sockaddr_un sun;
	socklen_t len;
	char name[64];

	memset(r, 0, sizeof(*r));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(r->fd >= 0);
	if (abstract) {
		static unsigned seq;

		/* "@name" in NOTIFY_SOCKET; a leading NUL in sun_path, and
		 * the address length counts exactly the name's bytes. */
		snprintf(name, sizeof(name), "spliced-test-%ld-%u",
		    (long)getpid(), seq++);
		memcpy(sun.sun_path + 1, name, strlen(name));
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
		snprintf(r->path, sizeof(r->path), "@%s", name);
	} else {
		snprintf(r->dir, sizeof(r->dir), "/tmp/spliced-sdnotify-XXXXXX");
		assert_non_null(mkdtemp(r->dir));
		snprintf(r->path, sizeof(r->path), "%s/notify", r->dir);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", r->path);
		len = sizeof(sun);
	}
	assert_int_equal(bind(r->fd, (struct sockaddr *)&sun, len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", r->path, 1), 0);
}

static void
receiver_close(struct receiver *r)
{
	unsetenv("NOTIFY_SOCKET");
	close(r->fd);
	if (r->dir[0] != '\0') {
		unlink(r->path);
		rmdir(r->dir);
	}
}

/* The next datagram, NUL-terminated; fails after 2 s without one. */
static void
receiver_next(struct receiver *r, char *buf, size_t cap)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	ssize_t n;

	assert_int_equal(poll(&pfd, 1, 2000), 1);
	n = recv(r->fd, buf, cap - 1, MSG_DONTWAIT);
	assert_true(n >= 0);
	buf[n] = '\0';
}

/* Nothing more was sent. */
static void
receiver_empty(struct receiver *r)
{
	char c;

	assert_int_equal(recv(r->fd, &c, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void
expect_msg(struct receiver *r, const char *want)
{
	char buf[4096];

	receiver_next(r, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- without NOTIFY_SOCKET: nothing, in every build --------------------- */

static void
test_no_socket(void **state)
{
	(void)state;
	assert_int_equal(sdnotify_ready("serving"), 0);
	assert_int_equal(sdnotify_ready(NULL), 0);
	assert_int_equal(sdnotify_reloading("reloading"), 0);
	assert_int_equal(sdnotify_stopping("draining"), 0);
	assert_int_equal(sdnotify_status("%d connections", 3), 0);
	assert_int_equal(sdnotify_watchdog(), 0);
	assert_int_equal(sdnotify_watchdog_usec(), 0);
}

/* ---- what each call sends ------------------------------------------------ */

static void
sends_states(bool abstract)
{
	struct receiver r;
	char buf[4096], *end;
	const char *p;
	uint64_t t0, t1, stamp;

	skip_unless_built_in();
	receiver_open(&r, abstract);

	assert_int_equal(sdnotify_ready("1 listener, 0 connections"), 0);
	expect_msg(&r, "READY=1\nSTATUS=1 listener, 0 connections");
	assert_int_equal(sdnotify_ready(NULL), 0);
	expect_msg(&r, "READY=1");

	/* MONOTONIC_USEC is CLOCK_MONOTONIC at the call, in µs. */
	t0 = mono_usec();
	assert_int_equal(sdnotify_reloading("reloading /etc/spliced.ini"), 0);
	t1 = mono_usec();
	receiver_next(&r, buf, sizeof(buf));
	p = "RELOADING=1\nMONOTONIC_USEC=";
	assert_memory_equal(buf, p, strlen(p));
	errno = 0;
	stamp = strtoull(buf + strlen(p), &end, 10);
	assert_int_equal(errno, 0);
	assert_true(end > buf + strlen(p));
	assert_string_equal(end, "\nSTATUS=reloading /etc/spliced.ini");
	assert_true(stamp >= t0);
	assert_true(stamp <= t1);
	assert_int_equal(sdnotify_reloading(NULL), 0);
	receiver_next(&r, buf, sizeof(buf));
	assert_memory_equal(buf, p, strlen(p));
	assert_null(strchr(buf + strlen(p), '\n'));     /* no STATUS */

	assert_int_equal(sdnotify_stopping("draining 2 connections"), 0);
	expect_msg(&r, "STOPPING=1\nSTATUS=draining 2 connections");

	assert_int_equal(sdnotify_status("%u connections, %s", 12u, "2 listeners"), 0);
	expect_msg(&r, "STATUS=12 connections, 2 listeners");
	assert_int_equal(sdnotify_status("%s", ""), 0);
	expect_msg(&r, "STATUS=");

	assert_int_equal(sdnotify_watchdog(), 0);
	expect_msg(&r, "WATCHDOG=1");

	receiver_empty(&r);
	receiver_close(&r);
}

static void
test_sends_path(void **state)
{
	(void)state;
	sends_states(false);
}

static void
test_sends_abstract(void **state)
{
	(void)state;
	sends_states(true);
}

/* A newline in a status would start an assignment of its own (a file name
 * could say READY=1): it arrives as a space. */
static void
test_status_newline(void **state)
{
	struct receiver r;

	(void)state;
	skip_unless_built_in();
	receiver_open(&r, false);
	assert_int_equal(sdnotify_status("bad\nREADY=1"), 0);
	expect_msg(&r, "STATUS=bad READY=1");
	assert_int_equal(sdnotify_stopping("x\ny"), 0);
	expect_msg(&r, "STOPPING=1\nSTATUS=x y");
	receiver_empty(&r);
	receiver_close(&r);
}

/* A status longer than a datagram we send is cut, not dropped. */
static void
test_status_long(void **state)
{
	struct receiver r;
	char big[3000], buf[4096];

	(void)state;
	skip_unless_built_in();
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	receiver_open(&r, false);
	assert_int_equal(sdnotify_ready(big), 0);
	receiver_next(&r, buf, sizeof(buf));
	assert_memory_equal(buf, "READY=1\nSTATUS=xxx", 18);
	assert_true(strlen(buf) < 1024);
	assert_int_equal(buf[strlen(buf) - 1], 'x');
	receiver_close(&r);
}

/* Errors are -1 with errno, never fatal: no one listens at the path, or the
 * variable is neither absolute nor abstract. */
static void
test_send_errors(void **state)
{
	(void)state;
	skip_unless_built_in();
	setenv("NOTIFY_SOCKET", "/nonexistent-spliced-test/notify", 1);
	errno = 0;
	assert_int_equal(sdnotify_ready("x"), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(sdnotify_watchdog(), -1);
	assert_int_equal(errno, ENOENT);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	errno = 0;
	assert_int_equal(sdnotify_status("x"), -1);
	assert_int_equal(errno, EINVAL);
}

/* ---- the watchdog ---------------------------------------------------------- */

static void
test_watchdog_usec(void **state)
{
	char pid[32];

	(void)state;
	if (!sdnotify_built_in()) {
		setenv("WATCHDOG_USEC", "400000", 1);
		assert_int_equal(sdnotify_watchdog_usec(), 0);
		return;
	}
	assert_int_equal(sdnotify_watchdog_usec(), 0);

	/* No WATCHDOG_PID: meant for whoever reads it. */
	setenv("WATCHDOG_USEC", "400000", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 400000);
	/* Asking does not consume the variables: a reload asks again. */
	assert_int_equal(sdnotify_watchdog_usec(), 400000);
	assert_non_null(getenv("WATCHDOG_USEC"));

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_watchdog_usec(), 400000);

	/* Another process's watchdog. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_watchdog_usec(), 0);

	/* Malformed: as if unset. */
	setenv("WATCHDOG_PID", "not-a-pid", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "0", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 0);
}

/* ---- socket activation ----------------------------------------------------- */

/* A listening TCP socket on 127.0.0.1 placed at fd `at` (not close-on-exec,
 * as systemd passes it); its port. */
static unsigned
listener_at(int at)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (fd != at) {
		assert_int_equal(dup2(fd, at), at);
		close(fd);
	}
	return ntohs(sin.sin_port);
}

static unsigned
port_of(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

static void
set_listen_env(const char *fds, const char *names)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", fds, 1);
	if (names != NULL)
		setenv("LISTEN_FDNAMES", names, 1);
	else
		unsetenv("LISTEN_FDNAMES");
}

static void
assert_listen_env_gone(void)
{
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
}

static void
test_listen_fds_named(void **state)
{
	struct sdnotify_fd *fds;
	unsigned pa, pb;
	char err[256] = "";
	size_t n = 99;

	(void)state;
	skip_unless_built_in();
	pa = listener_at(3);
	pb = listener_at(4);
	set_listen_env("2", "a:b");
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_non_null(fds);
	assert_int_equal(fds[0].fd, 3);
	assert_string_equal(fds[0].name, "a");
	assert_int_equal(fds[1].fd, 4);
	assert_string_equal(fds[1].name, "b");
	assert_int_equal(port_of(fds[0].fd), pa);
	assert_int_equal(port_of(fds[1].fd), pb);
	/* Ours now: nothing we run later inherits them. */
	assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(4, F_GETFD) & FD_CLOEXEC);
	assert_listen_env_gone();
	sdnotify_fds_free(fds, n);

	/* Taken once: asked again, there is nothing. */
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_null(fds);
}

static void
test_listen_fds_unnamed(void **state)
{
	struct sdnotify_fd *fds;
	char err[256] = "";
	size_t n = 99;

	(void)state;
	skip_unless_built_in();
	listener_at(3);
	set_listen_env("1", NULL);
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fds[0].fd, 3);
	assert_string_equal(fds[0].name, "unknown");
	assert_listen_env_gone();
	sdnotify_fds_free(fds, n);
	sdnotify_fds_free(NULL, 0);
}

/* Not for us, or nothing passed: 0 sockets, and the variables are gone all
 * the same (a child must not take them for its own). */
static void
test_listen_fds_not_ours(void **state)
{
	struct sdnotify_fd *fds;
	char err[256] = "", pid[32];
	size_t n = 99;

	(void)state;
	listener_at(3);

	/* Nothing set (the fixture cleared the environment). */
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_null(fds);

	/* Another pid. */
	set_listen_env("1", "web");
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("LISTEN_PID", pid, 1);
	n = 99;
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_null(fds);
	assert_listen_env_gone();

	/* No LISTEN_PID: libsystemd takes nothing without it. */
	setenv("LISTEN_FDS", "1", 1);
	n = 99;
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_listen_env_gone();

	/* Our pid, but a build without libsystemd takes nothing (it logs one
	 * warning instead). */
	if (!sdnotify_built_in()) {
		set_listen_env("1", "web");
		n = 99;
		assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 0);
		assert_null(fds);
		assert_listen_env_gone();
	}
}

/* Malformed variables, as libsystemd (252) judges them: LISTEN_FDS not a
 * number, 0 or negative, a name count that differs from LISTEN_FDS, a
 * passed fd that is not open: -1 with EINVAL (EBADF for the closed fd) and
 * a message naming LISTEN_FDS; nothing is returned, the variables are
 * gone. A LISTEN_PID that is not a pid is EINVAL too. */
static void
expect_malformed(const char *nfds, const char *names, int want_errno)
{
	struct sdnotify_fd dummy, *fds = &dummy;     /* must come back NULL */
	char err[256] = "";
	size_t n = 99;

	set_listen_env(nfds, names);
	errno = 0;
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), -1);
	assert_int_equal(errno, want_errno);
	assert_int_equal(n, 0);
	assert_null(fds);
	assert_non_null(strstr(err, "LISTEN_FDS"));
	print_message("LISTEN_FDS=%s LISTEN_FDNAMES=%s: %s\n", nfds,
	    names != NULL ? names : "(unset)", err);
	assert_listen_env_gone();
}

static void
test_listen_fds_malformed(void **state)
{
	struct sdnotify_fd *fds;
	char err[256] = "";
	size_t n = 99;

	(void)state;
	skip_unless_built_in();
	listener_at(3);
	listener_at(4);
	expect_malformed("abc", NULL, EINVAL);
	expect_malformed("2x", NULL, EINVAL);
	expect_malformed("0", NULL, EINVAL);
	expect_malformed("-1", NULL, EINVAL);
	expect_malformed("", NULL, EINVAL);
	expect_malformed("2", "a", EINVAL);          /* 1 name for 2 fds */
	expect_malformed("1", "a:b", EINVAL);
	close(4);
	expect_malformed("2", "a:b", EBADF);         /* fd 4 was never passed */

	set_listen_env("1", "a");
	setenv("LISTEN_PID", "me", 1);
	errno = 0;
	assert_int_equal(sdnotify_listen_fds(&fds, &n, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(n, 0);
	assert_listen_env_gone();
}

#define ENV_TEST(t) cmocka_unit_test_setup_teardown(t, env_setup, teardown)
#define FDS_TEST(t) cmocka_unit_test_setup_teardown(t, fds_setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		ENV_TEST(test_no_socket),
		ENV_TEST(test_sends_path),
		ENV_TEST(test_sends_abstract),
		ENV_TEST(test_status_newline),
		ENV_TEST(test_status_long),
		ENV_TEST(test_send_errors),
		ENV_TEST(test_watchdog_usec),
		FDS_TEST(test_listen_fds_named),
		FDS_TEST(test_listen_fds_unnamed),
		FDS_TEST(test_listen_fds_not_ours),
		FDS_TEST(test_listen_fds_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
