/* tests/test_worker.c: one real worker thread over 127.0.0.1 (listener,
 * connection, relay), with the worker's socket(2) wrapped so that it runs
 * out of fds when a test says so.
 *
 * Out of fds, a client the worker accepted is never dropped: a backend
 * socket comes from the worker's fd reserve, and when even that fails the
 * client waits, and is connected before any client accepted after it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/listener.h"
#include "spliced/metrics.h"
#include "spliced/worker.h"

#define WAIT_MS 5000

/* socket(2) calls of threads other than the test's that fail with EMFILE. */
static atomic_int fail_sockets;
static pthread_t test_thread;

int __real_socket(int, int, int);
int __wrap_socket(int, int, int);

int
__wrap_socket(int domain, int type, int proto)
{
	if (!pthread_equal(pthread_self(), test_thread) &&
	    atomic_load(&fail_sockets) > 0) {
		atomic_fetch_sub(&fail_sockets, 1);
		errno = EMFILE;
		return -1;
	}
	return __real_socket(domain, type, proto);
}

struct fx {
	int backend;                /* listening: the server's side */
	unsigned port;              /* the listener's */
	struct config *cfg;
	struct listener_proc *lp;
	struct listener_set *ls;
	struct backend_set *bs;
	struct worker_conf *conf;
	struct worker *w;
	struct worker *peers[1];
	int fds;                    /* before the setup */
};

static int
listen_any(unsigned *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* *state: the splice setting (the prestate) the test runs with. */
static int
setup(void **state)
{
	const char *splice = *state;
	struct fx *f = calloc(1, sizeof(*f));
	char text[512], err[CONFIG_ERR_MAX];
	unsigned bport;
	int probe;

	assert_non_null(f);
	*state = f;
	f->fds = count_fds();
	f->backend = listen_any(&bport);
	probe = listen_any(&f->port);   /* a free port for the listener */
	close(probe);
	snprintf(text, sizeof(text),
	    "[global]\nworkers = 1\nlog_level = error\naccess_log = off\n"
	    "splice = %s\n[listener web]\nbind = 127.0.0.1:%u\nbackend = app\n"
	    "[backend app]\nserver = a 127.0.0.1:%u\n", splice, f->port, bport);
	f->cfg = config_load_string(text, "test.ini", err, sizeof(err));
	if (f->cfg == NULL)
		fail_msg("%s", err);
	assert_non_null(f->lp = listener_proc_new(1, NULL, 0));
	f->ls = listener_set_bind(f->lp, f->cfg, NULL, err, sizeof(err));
	if (f->ls == NULL)
		fail_msg("%s", err);
	assert_non_null(f->bs = backend_set_new(f->cfg, NULL));
	assert_non_null(f->conf = worker_conf_new(f->ls, f->bs));
	f->w = worker_new(0, f->conf, 8, 0, err, sizeof(err));
	if (f->w == NULL)
		fail_msg("%s", err);
	f->peers[0] = f->w;
	worker_link(f->w, f->peers, 1, NULL);
	assert_int_equal(worker_start(f->w), 0);
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	atomic_store(&fail_sockets, 0);
	if (f->w != NULL) {
		worker_stop(f->w);
		worker_join(f->w);
		worker_free(f->w);
	}
	worker_conf_unref(f->conf);
	backend_set_unref(f->bs);
	listener_set_unref(f->ls);
	listener_proc_free(f->lp);
	config_unref(f->cfg);
	close(f->backend);
	assert_int_equal(count_fds(), f->fds);
	free(f);
	return 0;
}

static int
dial(unsigned port, char id)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, &id, 1), 1);
	return fd;
}

/* Read one byte within WAIT_MS: the byte, or -1 (timeout, EOF, error). */
static int
read_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;

	if (poll(&p, 1, WAIT_MS) != 1 || read(fd, &b, 1) != 1)
		return -1;
	return (unsigned char)b;
}

/* The next connection to the backend: the id byte its client sent, echoed
 * back; the connection is closed. -1 when none came within WAIT_MS. */
static int
serve_one(struct fx *f)
{
	struct pollfd p = { .fd = f->backend, .events = POLLIN };
	int fd, id;

	if (poll(&p, 1, WAIT_MS) != 1)
		return -1;
	if ((fd = accept(f->backend, NULL, NULL)) < 0)
		return -1;
	if ((id = read_byte(fd)) >= 0 && write(fd, &(char){ (char)id }, 1) != 1)
		id = -1;
	close(fd);
	return id;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Until the worker has made every socket call it was to fail. */
static void
wait_failed(void)
{
	int64_t end = now_ms() + WAIT_MS;

	while (atomic_load(&fail_sockets) > 0 && now_ms() < end)
		poll(NULL, 0, 5);
	assert_int_equal(atomic_load(&fail_sockets), 0);
}

/* One socket call fails: the fd reserve gives the backend socket, and the
 * client is served without waiting. */
static void
test_reserve(void **state)
{
	struct fx *f = *state;
	int c;

	atomic_store(&fail_sockets, 1);
	c = dial(f->port, 'A');
	assert_int_equal(serve_one(f), 'A');
	assert_int_equal(read_byte(c), 'A');
	assert_int_equal(atomic_load(&fail_sockets), 0);
	close(c);
}

/* No fd even after the reserve: client A waits, B and C come after it
 * (in the backlog: accepting paused), and A is connected first once
 * sockets can be had again; nobody is reset. */
static void
test_wait_for_fd(void **state)
{
	struct fx *f = *state;
	int c[3];

	atomic_store(&fail_sockets, 2);
	c[0] = dial(f->port, 'A');
	wait_failed();
	c[1] = dial(f->port, 'B');
	c[2] = dial(f->port, 'C');
	assert_int_equal(serve_one(f), 'A');
	assert_int_equal(serve_one(f), 'B');
	assert_int_equal(serve_one(f), 'C');
	for (int i = 0; i < 3; i++) {
		assert_int_equal(read_byte(c[i]), 'A' + i);
		close(c[i]);
	}
}

/* The connection that waits holds its slot and is closed cleanly when the
 * worker stops while it waits (teardown checks every fd is closed). */
static void
test_stop_while_waiting(void **state)
{
	struct fx *f = *state;
	int c;
	int64_t end = now_ms() + WAIT_MS;

	atomic_store(&fail_sockets, 1000000);
	c = dial(f->port, 'A');
	while (atomic_load(&fail_sockets) > 1000000 - 2 && now_ms() < end)
		poll(NULL, 0, 5);
	assert_true(atomic_load(&fail_sockets) <= 1000000 - 2);
	worker_stop(f->w);
	worker_join(f->w);
	worker_free(f->w);
	f->w = NULL;
	atomic_store(&fail_sockets, 0);
	assert_int_equal(read_byte(c), -1);     /* closed, not echoed */
	close(c);
}

struct gathered {
	bool done;
	unsigned workers;
	uint64_t connections, active, up, nc;
};

static void
gathered_cb(struct stats_sample *s, void *arg)
{
	struct gathered *g = arg;
	const struct stats_listener *l = stats_sample_listener(s, "web");

	g->done = true;
	g->workers = s->workers;
	g->nc = s->nc;
	if (l != NULL) {
		g->connections = l->connections;
		g->active = l->active;
		g->up = l->bytes[STATS_UP][RELAY_MODE_COPY] +
		    l->bytes[STATS_UP][RELAY_MODE_SPLICE];
	}
}

/* Gather the worker's figures on a base of the test's thread. */
static struct gathered
gather(struct fx *f)
{
	struct event_base *base = event_base_new();
	struct timeval limit = { WAIT_MS / 1000, 0 };
	struct gathered g = { 0 };

	assert_non_null(base);
	assert_non_null(metrics_gather(&f->w, 1, base, 10, gathered_cb, &g));
	event_base_loopexit(base, &limit);
	while (!g.done && event_base_loop(base, EVLOOP_ONCE) == 0 &&
	    !event_base_got_exit(base))
		;
	event_base_free(base);
	assert_true(g.done);
	return g;
}

/* A connection held open in the middle of its stream: its bytes show in
 * a gather from another thread before it closes; a worker whose loop
 * returned is read directly, its figures final. */
static void
test_gather(void **state)
{
	struct fx *f = *state;
	struct pollfd p = { .fd = f->backend, .events = POLLIN };
	char buf[4096] = { 0 };
	size_t got = 0;
	struct gathered g;
	int c, s;

	c = dial(f->port, 'A');         /* its first byte */
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_true((s = accept(f->backend, NULL, NULL)) >= 0);
	assert_int_equal(write(c, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	p.fd = s;
	while (got < 1 + sizeof(buf) && poll(&p, 1, WAIT_MS) == 1) {
		ssize_t n = read(s, buf, sizeof(buf));

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	assert_int_equal(got, 1 + sizeof(buf));
	g = gather(f);
	assert_int_equal(g.workers, 1);
	assert_int_equal(g.connections, 1);
	assert_int_equal(g.active, 1);
	assert_int_equal(g.up, 1 + sizeof(buf));
	assert_int_equal(g.nc, 1);

	worker_stop(f->w);
	worker_join(f->w);
	g = gather(f);
	assert_int_equal(g.workers, 1);
	assert_int_equal(g.active, 0);
	assert_int_equal(g.up, 1 + sizeof(buf));
	assert_int_equal(g.nc, 0);
	close(c);
	close(s);
}

int
main(void)
{
#define IN_EACH_MODE(t) \
	cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, "never"), \
	cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, "always"), \
	cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, "auto")
	const struct CMUnitTest tests[] = {
		IN_EACH_MODE(test_reserve),
		IN_EACH_MODE(test_wait_for_fd),
		IN_EACH_MODE(test_stop_while_waiting),
		IN_EACH_MODE(test_gather),
	};

	test_thread = pthread_self();
	if (evthread_use_pthreads() == -1)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
