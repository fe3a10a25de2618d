/* tests/test_listener.c: binding, reloads, socket activation and the
 * connection limits of listener.c, over real sockets on 127.0.0.1, for two
 * workers (two SO_REUSEPORT sockets per address). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include "spliced/sdnotify.h"

#define NWORKERS 2
#define GLOBAL "[global]\nworkers = 2\naccess_log = off\n"
#define WEB FX_LISTENER("web")
#define API FX_LISTENER("api")
#define MAX1 "max_connections = 1\n"

static int
setup(void **state)
{
	*state = fx_new(NWORKERS);
	return 0;
}

static bool
is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static bool
listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* Whether fd has a client to accept (taken and closed). */
static bool
took(int fd)
{
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

	if (c >= 0)
		close(c);
	return c >= 0;
}

/* Every worker's socket of k: its own, listening on port. */
static void
check_sock(const struct listener_sock *k, unsigned port, int *fds)
{
	for (unsigned w = 0; w < NWORKERS; w++) {
		fds[w] = listener_sock_fd(k, w, 0);
		assert_true(fds[w] >= 0);
		assert_true(listening(fds[w]));
		assert_int_equal(fx_sock_port(fds[w]), port);
	}
}

/* nworkers sockets for every bind line, each its own, each accepting the
 * clients the kernel gives it. */
static void
test_bind(void **state)
{
	struct fx *f = *state;
	char bind2[64];
	struct fx_gen *g;
	const struct listener *web, *api;
	int fds[3][NWORKERS];

	snprintf(bind2, sizeof(bind2), "bind = 127.0.0.1:%u\n", f->port[1]);
	g = fx_gen_add(f, GLOBAL WEB API FX_APP, f->port[0], bind2, f->port[2],
	    "", f->sport[0]);
	web = &g->ls->l[0];
	api = &g->ls->l[1];
	assert_int_equal(g->ls->n, 2);
	assert_string_equal(web->cfg->name, "web");
	assert_int_equal(web->cfg->nbinds, 2);
	check_sock(web->socks[0], f->port[0], fds[0]);
	check_sock(web->socks[1], f->port[1], fds[1]);
	check_sock(api->socks[0], f->port[2], fds[2]);
	for (int i = 0; i < 3 * NWORKERS; i++)
		for (int k = 0; k < i; k++)
			assert_int_not_equal(fds[i / NWORKERS][i % NWORKERS],
			    fds[k / NWORKERS][k % NWORKERS]);
	for (int i = 0; i < 3; i++) {
		(void)fx_dial(f, f->port[i], 'C');
		FX_WAIT(f, took(fds[i][0]) || took(fds[i][1]));
	}
	assert_int_equal(listener_proc_active(f->lp), 0);
}

/* A reload keeps the sockets of the addresses it keeps (same fds, so the
 * backlog too), whatever the listener is called now, and a listener's
 * count by its name. */
static void
test_reload_keeps(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g1 = fx_gen_add(f, GLOBAL WEB API FX_APP, f->port[0],
	    MAX1, f->port[1], "", f->sport[0]);
	struct fx_gen *g2 = fx_gen_add(f, GLOBAL WEB FX_LISTENER("front")
	    FX_LISTENER("db") FX_APP, f->port[0], MAX1, f->port[1], "",
	    f->port[2], "", f->sport[0]);
	struct listener *web1 = &g1->ls->l[0], *web2 = &g2->ls->l[0];
	struct listener *api = &g1->ls->l[1], *front = &g2->ls->l[1];
	size_t added, removed;
	bool wake;
	int db[NWORKERS];

	for (unsigned w = 0; w < NWORKERS; w++) {
		assert_int_equal(listener_sock_fd(web2->socks[0], w, 0),
		    listener_sock_fd(web1->socks[0], w, 0));
		assert_int_equal(listener_sock_fd(front->socks[0], w, 0),
		    listener_sock_fd(api->socks[0], w, 0));
	}
	assert_ptr_equal(web2->socks[0], web1->socks[0]);
	check_sock(g2->ls->l[2].socks[0], f->port[2], db);

	/* web's one slot, taken under the old set, is full under the new. */
	assert_true(listener_room(g2->ls, web2));
	assert_true(listener_admit(g1->ls, web1, &wake));
	assert_false(listener_room(g2->ls, web2));
	assert_false(listener_admit(g2->ls, web2, &wake));
	assert_int_equal(listener_proc_active(f->lp), 1);
	assert_true(listener_release(g1->ls, web1));
	assert_true(listener_room(g2->ls, web2));
	/* front has api's socket, not its count. */
	assert_ptr_not_equal(front->count, api->count);
	assert_ptr_equal(web2->count, web1->count);

	listener_set_diff(g2->ls, g1->ls, &added, &removed);
	assert_int_equal(added, 2);         /* front, db */
	assert_int_equal(removed, 1);       /* api */
	listener_set_diff(g1->ls, g2->ls, &added, &removed);
	assert_int_equal(added, 1);
	assert_int_equal(removed, 2);
	listener_set_diff(g2->ls, g2->ls, &added, &removed);
	assert_int_equal(added + removed, 0);
}

/* [global] max_connections = 3 and web's max_connections = 1: admit,
 * release, room and full at each limit, and the wake-ups they owe. */
static void
test_limits(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g = fx_gen_add(f, "[global]\nmax_connections = 3\n"
	    WEB API FX_APP, f->port[0], MAX1, f->port[1], "", f->sport[0]);
	struct listener_set *ls = g->ls;
	struct listener *web = &ls->l[0], *api = &ls->l[1];
	bool wake = true;

	assert_true(listener_room(ls, web));
	assert_true(listener_admit(ls, web, &wake));
	assert_false(wake);
	/* web is full, the global limit is not reached when it gives the
	 * slot back: nobody else can have paused for it. */
	assert_false(listener_room(ls, web));
	assert_false(listener_admit(ls, web, &wake));
	assert_false(wake);
	assert_int_equal(listener_proc_active(f->lp), 1);
	assert_true(listener_admit(ls, api, &wake));
	assert_true(listener_admit(ls, api, &wake));
	assert_false(wake);
	assert_true(listener_set_full(ls));
	assert_false(listener_room(ls, api));
	/* The global limit refuses first: nothing taken, nothing owed. */
	assert_false(listener_admit(ls, api, &wake));
	assert_false(wake);
	assert_int_equal(listener_proc_active(f->lp), 3);

	/* At the global limit a release says someone may wait for it. */
	assert_true(listener_release(ls, api));
	assert_false(listener_set_full(ls));
	assert_true(listener_room(ls, api));
	assert_false(listener_room(ls, web));
	/* web took the last global slot and gave it back: another worker may
	 * have seen the limit reached meanwhile, and paused. */
	assert_false(listener_admit(ls, web, &wake));
	assert_true(wake);
	assert_int_equal(listener_proc_active(f->lp), 2);
	/* web was at its own limit. */
	assert_true(listener_release(ls, web));
	assert_true(listener_room(ls, web));
	/* Below both limits nobody waits. */
	assert_false(listener_release(ls, api));
	assert_int_equal(listener_proc_active(f->lp), 0);
}

/* A worker closes its own socket of an address the set it now uses no
 * longer binds (not one bound after that set), or with keep NULL all of
 * its own; never another worker's. */
static void
test_close_own(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g1 = fx_gen_add(f, GLOBAL WEB API FX_APP, f->port[0], "",
	    f->port[1], "", f->sport[0]);
	struct fx_gen *g2 = fx_gen_add(f, GLOBAL WEB FX_APP, f->port[0], "",
	    f->sport[0]);
	struct fx_gen *g3 = fx_gen_add(f, GLOBAL WEB FX_LISTENER("db") FX_APP,
	    f->port[0], "", f->port[2], "", f->sport[0]);
	const struct listener_sock *web = g1->ls->l[0].socks[0];
	const struct listener_sock *api = g1->ls->l[1].socks[0];
	const struct listener_sock *db = g3->ls->l[1].socks[0];
	int webfd[NWORKERS], apifd[NWORKERS], dbfd[NWORKERS];

	check_sock(web, f->port[0], webfd);
	check_sock(api, f->port[1], apifd);
	check_sock(db, f->port[2], dbfd);

	/* Worker 0 moves to g2: api is gone there, db is newer than g2. */
	listener_close_own(f->lp, 0, g2->ls);
	assert_int_equal(listener_sock_fd(api, 0, 0), -1);
	assert_false(is_open(apifd[0]));
	assert_int_equal(listener_sock_fd(api, 1, 0), apifd[1]);
	assert_true(listening(apifd[1]));
	assert_int_equal(listener_sock_fd(web, 0, 0), webfd[0]);
	assert_int_equal(listener_sock_fd(db, 0, 0), dbfd[0]);
	assert_true(listening(webfd[0]) && listening(dbfd[0]));
	/* api's clients now all go to worker 1. */
	(void)fx_dial(f, f->port[1], 'C');
	FX_WAIT(f, took(apifd[1]));

	/* Worker 0 drains. */
	listener_close_own(f->lp, 0, NULL);
	assert_int_equal(listener_sock_fd(web, 0, 0), -1);
	assert_int_equal(listener_sock_fd(db, 0, 0), -1);
	assert_false(is_open(webfd[0]) || is_open(dbfd[0]));
	for (unsigned i = 0; i < 3; i++) {
		int *fds = i == 0 ? webfd : i == 1 ? apifd : dbfd;

		assert_true(listening(fds[1]));
	}
	/* Worker 1 moves to g3: api was its last socket of port[1]. */
	listener_close_own(f->lp, 1, g3->ls);
	assert_int_equal(listener_sock_fd(api, 1, 0), -1);
	assert_false(is_open(apifd[1]));
	assert_int_equal(fx_connect_errno(f->port[1]), ECONNREFUSED);
	assert_int_equal(listener_sock_fd(web, 1, 0), webfd[1]);
}

/* An address that cannot be bound fails the whole set, naming the line
 * and the address, and leaves the set before it as it was. */
static void
test_bind_error(void **state)
{
	struct fx *f = *state;
	struct fx_gen *g1 = fx_gen_add(f, GLOBAL WEB FX_APP, f->port[0], "",
	    f->sport[0]);
	int busy = fx_keep(f, fx_bound(0, 4));      /* no SO_REUSEPORT */
	char text[512], err[CONFIG_ERR_MAX], want[64];
	struct config *cfg;
	int webfd[NWORKERS];

	snprintf(text, sizeof(text), GLOBAL WEB API FX_APP, f->port[0], "",
	    fx_sock_port(busy), "", f->sport[0]);
	assert_non_null(cfg = config_load_string(text, "test.ini", err, sizeof(err)));
	err[0] = '\0';
	assert_null(listener_set_bind(f->lp, cfg, g1->ls, err, sizeof(err)));
	config_unref(cfg);
	snprintf(want, sizeof(want), "cannot bind 127.0.0.1:%u: ",
	    fx_sock_port(busy));
	if (strstr(err, want) == NULL || strstr(err, "test.ini:") == NULL)
		fail_msg("unexpected error: %s", err);
	check_sock(g1->ls->l[0].socks[0], f->port[0], webfd);
	(void)fx_dial(f, f->port[0], 'C');
	FX_WAIT(f, took(webfd[0]) || took(webfd[1]));
}

/* A socket systemd passed serves the bind line of its address: every
 * worker accepts on it, and neither a reload that drops it nor a drain
 * closes it (the process does, at the end: fx_free counts the fds). */
static void
test_passed(void **state)
{
	struct fx *f = *state;
	int fd = fx_bound(0, 16);
	unsigned port = fx_sock_port(fd);
	char name[] = "web";
	struct sdnotify_fd passed = { fd, name };
	struct fx_gen *g1, *g2;
	const struct listener_sock *k;

	assert_non_null(f->lp = listener_proc_new(NWORKERS, &passed, 1));
	g1 = fx_gen_add(f, GLOBAL WEB FX_APP, port, "", f->sport[0]);
	k = g1->ls->l[0].socks[0];
	assert_int_equal(listener_sock_fd(k, 0, 0), fd);
	assert_int_equal(listener_sock_fd(k, 1, 0), fd);
	g2 = fx_gen_add(f, GLOBAL API FX_APP, f->port[0], "", f->sport[0]);
	listener_close_own(f->lp, 0, g2->ls);
	listener_close_own(f->lp, 1, NULL);
	assert_int_equal(listener_sock_fd(k, 0, 0), fd);
	assert_true(listening(fd));
	(void)fx_dial(f, port, 'C');
	FX_WAIT(f, took(fd));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bind, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_reload_keeps, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_own, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bind_error, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_passed, setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
