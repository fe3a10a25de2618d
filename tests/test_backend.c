/* tests/test_backend.c: what every algorithm must respect (full, down,
 * drained and maint servers, a retry avoiding the server that failed),
 * passive health and its back-off, the shared state's carry-over across
 * reloads and re-resolution, runtime server state (setting it, and keeping
 * it by name over generations), a balancer over generations, and the
 * non-blocking connect (over 127.0.0.1 only). The algorithms themselves
 * are test_balance.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"
#include "backend_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"

/* ---- what every algorithm must respect ---- */

/* Server 0 takes at most two connections (max_connections, counted over
 * every worker: the shared active count); when every server is full the
 * pick says so. */
static void
test_full_servers_skipped(void **state)
{
	static const unsigned w[] = { 4, 1 };
	struct fx_backend *fb = *state;

	for (size_t a = 0; a < 4; a++) {
		enum backend_none why;
		bool trial;
		size_t held[12], n = 0;

		fx_make(fb, all_algos[a], w, 2);
		fb->servers[0].max_connections = 2;
		fb->servers[1].max_connections = 3;
		/* Another worker holds one slot of server 0. */
		atomic_store(&fb->st[0].active, 1);
		for (int i = 0; i < 4; i++) {
			struct sockaddr_in sin = client4((unsigned)i, 1);

			held[n++] = hold(fb, (struct sockaddr *)&sin, -1);
		}
		assert_int_equal(active(fb, 0), 2);
		assert_int_equal(active(fb, 1), 3);
		assert_int_equal(backend_lb_pick(&fb->lb, NULL, -1, fb->now,
		    &why, &trial), -1);
		assert_int_equal(why, BACKEND_NONE_FREE);
		/* A slot frees: the next pick takes it. */
		{
			size_t freed = held[--n];

			release(fb, freed);
			held[n] = hold(fb, NULL, -1);
			assert_int_equal(held[n], freed);
			n++;
		}
		while (n > 0)
			release(fb, held[--n]);
		assert_int_equal(active(fb, 0), 1);
		assert_int_equal(active(fb, 1), 0);
	}
}

static void
test_down_servers_skipped(void **state)
{
	static const unsigned w[] = { 1, 5, 1 };
	struct fx_backend *fb = *state;

	for (size_t a = 0; a < 4; a++) {
		enum backend_none why;
		bool trial;

		fx_make(fb, all_algos[a], w, 3);
		fb->b.health_check = CONFIG_HEALTH_TCP;     /* no trials */
		assert_true(backend_server_set_up(&fb->st[1], false));
		assert_false(backend_server_set_up(&fb->st[1], false));
		for (unsigned c = 0; c < 1000; c++) {
			struct sockaddr_in sin = client4(c, 1);
			size_t s = hold(fb, (struct sockaddr *)&sin, -1);

			assert_int_not_equal(s, 1);
			release(fb, s);
		}
		backend_server_set_up(&fb->st[0], false);
		backend_server_set_up(&fb->st[2], false);
		assert_int_equal(backend_lb_pick(&fb->lb, NULL, -1, fb->now,
		    &why, &trial), -1);
		assert_int_equal(why, BACKEND_NONE_UP);
		/* Back up: picked again. */
		assert_true(backend_server_set_up(&fb->st[1], true));
		assert_int_equal(pick(fb, -1), 1);
	}
}

/* A retry never goes back to the server that just failed while another
 * is eligible; when it is the only one left, it is tried again. */
static void
test_retry_avoids_last(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;

	for (size_t a = 0; a < 4; a++) {
		fx_make(fb, all_algos[a], w, 3);
		for (unsigned c = 0; c < 3000; c++) {
			struct sockaddr_in sin = client4(c, 1);
			size_t first = hold(fb, (struct sockaddr *)&sin, -1);
			size_t again;

			/* Say the connect failed: retry avoiding it. */
			release(fb, first);
			again = hold(fb, (struct sockaddr *)&sin, (ssize_t)first);
			assert_int_not_equal(again, first);
			release(fb, again);
		}
		/* The others down: the one that failed is all there is. */
		fb->b.health_check = CONFIG_HEALTH_TCP;
		backend_server_set_up(&fb->st[1], false);
		backend_server_set_up(&fb->st[2], false);
		assert_int_equal(pick(fb, 0), 0);
	}
}

/* ---- runtime state: drain and maint ---- */

/* Hold connections until one is on server s (bounded); returns how many
 * were held in all, their servers in held[]. */
static size_t
hold_until(struct fx_backend *fb, size_t s, size_t *held, size_t max)
{
	size_t n = 0;

	while (n < max) {
		struct sockaddr_in sin = client4((unsigned)n, 1);

		held[n] = hold(fb, (struct sockaddr *)&sin, -1);
		if (held[n++] == s)
			return n;
	}
	fail_msg("server %zu never picked in %zu picks", s, max);
	return n;
}

/* A server in drain or maint gets no new connection under any algorithm,
 * from any client; the connections it has keep their slots and give them
 * back as usual; with every server out, the pick says none is up; ready
 * again, it is picked again. */
static void
test_drain_excludes(void **state)
{
	static const unsigned w[] = { 1, 3, 1 };
	static const enum backend_admin out[] = { BACKEND_ADMIN_DRAIN,
	    BACKEND_ADMIN_MAINT };
	struct fx_backend *fb = *state;

	for (size_t a = 0; a < 4; a++)
		for (size_t o = 0; o < 2; o++) {
			size_t held[64], n, before;
			enum backend_none why;
			bool trial;

			fx_make(fb, all_algos[a], w, 3);
			n = hold_until(fb, 1, held, 64);
			before = active(fb, 1);
			assert_true(before >= 1);
			atomic_store(&fb->st[1].admin, out[o]);
			for (unsigned c = 0; c < 1000; c++) {
				struct sockaddr_in sin = client4(c, 2);
				size_t s = hold(fb, (struct sockaddr *)&sin, -1);

				assert_int_not_equal(s, 1);
				release(fb, s);
			}
			/* A retry avoiding the other eligible one still
			 * does not fall back on it. */
			assert_int_equal(pick(fb, 0), 2);
			assert_int_equal(active(fb, 1), before);
			while (n > 0)
				release(fb, held[--n]);
			assert_int_equal(active(fb, 1), 0);
			assert_int_equal(fb->lb.users, 0);
			atomic_store(&fb->st[0].admin, out[o]);
			atomic_store(&fb->st[2].admin, BACKEND_ADMIN_DRAIN);
			assert_int_equal(backend_lb_pick(&fb->lb, NULL, -1,
			    fb->now, &why, &trial), -1);
			assert_int_equal(why, BACKEND_NONE_UP);
			atomic_store(&fb->st[1].admin, BACKEND_ADMIN_READY);
			assert_int_equal(pick(fb, -1), 1);
		}
}

/* Drained, a server down by traffic gets no trial connect either (checks
 * off): it waits until it is ready. */
static void
test_drain_no_trial(void **state)
{
	static const unsigned w[] = { 1, 1 };
	struct fx_backend *fb = *state;
	enum backend_none why;
	bool trial;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 2);
	fb->b.fall = 1;
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, 1, fb->now, &why,
	    &trial), 0);
	assert_true(backend_lb_failed(&fb->lb, 0, trial, fb->now));
	atomic_store(&fb->st[0].admin, BACKEND_ADMIN_DRAIN);
	fb->now += BACKEND_BACKOFF_MAX_MS;
	for (int i = 0; i < 10; i++)
		assert_int_equal(pick(fb, -1), 1);
	atomic_store(&fb->st[0].admin, BACKEND_ADMIN_READY);
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, 1, fb->now, &why,
	    &trial), 0);
	assert_true(trial);
	assert_true(backend_lb_connected(&fb->lb, 0));
	release(fb, 0);
}

/* ---- passive health ---- */

static bool
fail_connect(struct fx_backend *fb, size_t want)
{
	enum backend_none why;
	bool trial;
	ssize_t i = backend_lb_pick(&fb->lb, NULL, -1, fb->now, &why, &trial);

	assert_int_equal(i, want);
	return backend_lb_failed(&fb->lb, (size_t)i, trial, fb->now);
}

/* Checks on: fall failures in a row take a server down, once; it stays
 * down (only the checks bring it back). A success in between starts the
 * count over. */
static void
test_passive_fall_with_checks(void **state)
{
	static const unsigned w[] = { 1 };
	static const unsigned w2[] = { 1, 1 };
	struct fx_backend *fb = *state;
	enum backend_none why;
	bool trial;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 1);
	fb->b.health_check = CONFIG_HEALTH_TCP;
	assert_false(fail_connect(fb, 0));
	assert_false(fail_connect(fb, 0));
	(void)pick(fb, -1);             /* a success: the count starts over */
	assert_false(fail_connect(fb, 0));
	assert_false(fail_connect(fb, 0));
	assert_true(fail_connect(fb, 0));
	assert_false(atomic_load(&fb->st[0].up));
	fb->now += 3600 * 1000;
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, -1, fb->now, &why, &trial), -1);
	assert_int_equal(why, BACKEND_NONE_UP);
	assert_int_equal(fb->lb.stats[0].connect_failures, 5);
	assert_int_equal(fb->lb.stats[0].connections, 1);
	assert_int_equal(fb->lb.stats[0].active, 0);
	assert_int_equal(active(fb, 0), 0);

	/* Two workers' failures count together: the shared count. */
	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w2, 2);
	fb->b.health_check = CONFIG_HEALTH_TCP;
	{
		struct backend_lb other;

		assert_int_equal(backend_lb_init(&other, &fb->sh, 7), 0);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(backend_lb_pick(&other, NULL, 1,
			    fb->now, &why, &trial), 0);
			assert_false(backend_lb_failed(&other, 0, trial, fb->now));
		}
		backend_lb_cleanup(&other);
	}
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, 1, fb->now, &why, &trial), 0);
	assert_true(backend_lb_failed(&fb->lb, 0, trial, fb->now));
	assert_false(atomic_load(&fb->st[0].up));
	assert_int_equal(pick(fb, -1), 1);
}

/* Checks off: down for a back-off that doubles while trials fail, up to
 * BACKEND_BACKOFF_MAX_MS; one trial connect at a time; a passed trial
 * brings it back up. */
static void
test_passive_backoff(void **state)
{
	static const unsigned w[] = { 1, 1 };
	struct fx_backend *fb = *state;
	unsigned backoff = BACKEND_BACKOFF_MIN_MS;
	enum backend_none why;
	bool trial;
	ssize_t s;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 2);
	fb->b.fall = 1;
	/* Two connects begun while it was up; the second fails after the
	 * first took it down: no trial, so the back-off stays. */
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, -1, fb->now, &why,
	    &trial), 0);
	assert_false(trial);
	assert_int_equal(backend_lb_pick(&fb->lb, NULL, 1, fb->now, &why,
	    &trial), 0);
	assert_true(backend_lb_failed(&fb->lb, 0, false, fb->now));
	assert_false(backend_lb_failed(&fb->lb, 0, false, fb->now));
	assert_int_equal(atomic_load(&fb->st[0].backoff_ms),
	    BACKEND_BACKOFF_MIN_MS);
	for (int round = 0; round < 10; round++) {
		/* Not before its time ... */
		fb->now += backoff - 1;
		for (int i = 0; i < 10; i++)
			assert_int_equal(pick(fb, -1), 1);
		/* ... then once, and not twice at the same time. */
		fb->now += 1;
		assert_int_equal(backend_lb_pick(&fb->lb, NULL, 1, fb->now,
		    &why, &trial), 0);
		assert_true(trial);
		for (int i = 0; i < 10; i++)
			assert_int_equal(pick(fb, -1), 1);
		assert_false(backend_lb_failed(&fb->lb, 0, trial, fb->now));
		backoff = backoff * 2 > BACKEND_BACKOFF_MAX_MS ?
		    BACKEND_BACKOFF_MAX_MS : backoff * 2;
		assert_int_equal(atomic_load(&fb->st[0].backoff_ms), backoff);
	}
	assert_int_equal(backoff, BACKEND_BACKOFF_MAX_MS);
	fb->now += backoff;
	/* The trial passes: up again, the back-off starts over. */
	s = backend_lb_pick(&fb->lb, NULL, 1, fb->now, &why, &trial);
	assert_int_equal(s, 0);
	assert_true(backend_lb_connected(&fb->lb, 0));
	release(fb, 0);
	assert_true(atomic_load(&fb->st[0].up));
	assert_int_equal(atomic_load(&fb->st[0].backoff_ms),
	    BACKEND_BACKOFF_MIN_MS);
	assert_int_equal(pick(fb, 1), 0);
}

/* ---- the shared set ---- */

static void
test_set_carries_state_by_name(void **state)
{
	static const char one[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001\n"
	    "server = b 127.0.0.1:9002\n[backend other]\n"
	    "server = a 127.0.0.1:9003\n";
	static const char two[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend other]\nserver = a 127.0.0.1:9003\n"
	    "[backend app]\nserver = c 127.0.0.1:9004\n"
	    "server = b 127.0.0.1:9002\nserver = a 127.0.0.1:9005\n";
	char err[CONFIG_ERR_MAX];
	struct config *c1 = config_load_string(one, "one", err, sizeof(err));
	struct config *c2 = config_load_string(two, "two", err, sizeof(err));
	struct backend_set *s1, *s2;

	(void)state;
	assert_non_null(c1);
	assert_non_null(c2);
	s1 = backend_set_new(c1, NULL);
	assert_non_null(s1);
	assert_int_equal(s1->n, 2);
	assert_true(atomic_load(&s1->b[0].servers[0]->up));
	backend_server_set_up(s1->b[0].servers[1], false);     /* app/b */
	atomic_store(&s1->b[0].servers[1]->active, 7);
	s2 = backend_set_new(c2, s1);
	assert_non_null(s2);
	/* other/a: same name and address, the same state. */
	assert_ptr_equal(s2->b[0].servers[0], s1->b[1].servers[0]);
	/* app/b moved in the list: its state follows it. */
	assert_ptr_equal(s2->b[1].servers[1], s1->b[0].servers[1]);
	assert_false(atomic_load(&s2->b[1].servers[1]->up));
	assert_int_equal(atomic_load(&s2->b[1].servers[1]->active), 7);
	/* app/c is new; app/a changed address: both start afresh. */
	assert_true(atomic_load(&s2->b[1].servers[0]->up));
	assert_ptr_not_equal(s2->b[1].servers[2], s1->b[0].servers[0]);
	backend_set_unref(s1);
	config_unref(c1);
	/* What was carried over outlives the old set. */
	assert_int_equal(atomic_load(&s2->b[1].servers[1]->active), 7);
	backend_set_unref(s2);
	config_unref(c2);
}

/* ---- generations: host-name servers ---- */

static struct addr
v4(const char *ip, unsigned port)
{
	struct addr a;
	char err[128], text[64];

	snprintf(text, sizeof(text), "%s:%u", ip, port);
	assert_int_equal(addr_parse(&a, text, false, err, sizeof(err)), 0);
	return a;
}

static const char dns_text[] = "[listener l]\nbind = 127.0.0.1:1\n"
    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001\n"
    "server = b app.example.test:9002 weight=3 max_connections=5\n"
    "[backend other]\nserver = c 127.0.0.1:9003\n";

/* The index of address a among backend b's, or -1. */
static ssize_t
member(const struct backend_set *bs, size_t b, const struct addr *a)
{
	for (size_t i = 0; i < bs->b[b].n; i++)
		if (addr_equal(&bs->b[b].servers[i]->addr, a))
			return (ssize_t)i;
	return -1;
}

static void
test_set_update_carries_by_address(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string(dns_text, "t", err, sizeof(err));
	struct addr x = v4("127.0.0.2", 9002), y = v4("127.0.0.3", 9002),
	    z = v4("127.0.0.4", 9002), xy[2], yz[2];
	struct backend_set *s0, *s1, *s2, *s3;
	struct server_state *sy;
	ssize_t i;

	(void)state;
	assert_non_null(cfg);
	xy[0] = x, xy[1] = y, yz[0] = y, yz[1] = z;
	/* Not resolved yet: b has no address, a and c have theirs. */
	s0 = backend_set_new(cfg, NULL);
	assert_non_null(s0);
	assert_int_equal(s0->b[0].n, 1);
	assert_ptr_equal(s0->b[0].entry[0], &cfg->backends[0].servers[0]);
	assert_int_equal(s0->b[1].n, 1);

	s1 = backend_set_update(s0, 0, 1, xy, 2);
	assert_non_null(s1);
	assert_int_equal(s1->b[0].n, 3);
	assert_ptr_equal(s1->b[0].servers[0], s0->b[0].servers[0]);
	assert_ptr_equal(s1->b[1].servers[0], s0->b[1].servers[0]);
	assert_ptr_equal(s1->b[0].entry[1], &cfg->backends[0].servers[1]);
	assert_ptr_equal(s1->b[0].entry[2], &cfg->backends[0].servers[1]);
	assert_true(addr_equal(&s1->b[0].servers[1]->addr, &x));
	assert_true(addr_equal(&s1->b[0].servers[2]->addr, &y));
	assert_true(atomic_load(&s1->b[0].servers[1]->up));
	/* y is down with connections; x has some too. */
	backend_server_set_up(s1->b[0].servers[2], false);
	atomic_store(&s1->b[0].servers[2]->active, 4);
	atomic_store(&s1->b[0].servers[1]->active, 2);
	sy = s1->b[0].servers[2];

	/* x goes, z comes: y keeps its state, z starts up and idle. */
	s2 = backend_set_update(s1, 0, 1, yz, 2);
	assert_non_null(s2);
	assert_int_equal(s2->b[0].n, 3);
	assert_int_equal(member(s2, 0, &x), -1);
	assert_true((i = member(s2, 0, &y)) >= 0);
	assert_ptr_equal(s2->b[0].servers[i], sy);
	assert_false(atomic_load(&sy->up));
	assert_true((i = member(s2, 0, &z)) >= 0);
	assert_true(atomic_load(&s2->b[0].servers[i]->up));
	assert_int_equal(atomic_load(&s2->b[0].servers[i]->active), 0);
	assert_ptr_equal(s2->b[0].servers[0], s0->b[0].servers[0]);

	/* Nothing resolves any more (an empty answer is the caller's to
	 * refuse; the set takes what it is given). */
	s3 = backend_set_update(s2, 0, 1, NULL, 0);
	assert_non_null(s3);
	assert_int_equal(s3->b[0].n, 1);
	backend_set_unref(s3);

	/* Older generations go; what the newest holds lives on. */
	backend_set_unref(s0);
	backend_set_unref(s1);
	assert_int_equal(atomic_load(&sy->active), 4);
	backend_set_unref(s2);
	config_unref(cfg);
}

/* A reload keeps what a host name resolved to while its host and port
 * stay the same. */
static void
test_set_new_keeps_resolved(void **state)
{
	static const char moved[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001\n"
	    "server = b app2.example.test:9002\n"
	    "[backend other]\nserver = c 127.0.0.1:9003\n";
	char err[CONFIG_ERR_MAX];
	struct config *c1 = config_load_string(dns_text, "t", err, sizeof(err));
	struct config *c2 = config_load_string(dns_text, "t", err, sizeof(err));
	struct config *c3 = config_load_string(moved, "t", err, sizeof(err));
	struct addr x = v4("127.0.0.2", 9002);
	struct backend_set *s0, *s1, *s2, *s3;

	(void)state;
	assert_non_null(c1);
	assert_non_null(c2);
	assert_non_null(c3);
	s0 = backend_set_new(c1, NULL);
	s1 = backend_set_update(s0, 0, 1, &x, 1);
	assert_non_null(s1);
	s2 = backend_set_new(c2, s1);
	assert_non_null(s2);
	assert_int_equal(s2->b[0].n, 2);
	assert_ptr_equal(s2->b[0].servers[1], s1->b[0].servers[1]);
	assert_ptr_equal(s2->b[0].entry[1], &c2->backends[0].servers[1]);
	s3 = backend_set_new(c3, s1);
	assert_non_null(s3);
	assert_int_equal(s3->b[0].n, 1);
	backend_set_unref(s0);
	backend_set_unref(s1);
	backend_set_unref(s2);
	backend_set_unref(s3);
	config_unref(c1);
	config_unref(c2);
	config_unref(c3);
}

/* Each address of a name is a server of its own: the line's weight and
 * max_connections apply per address; none resolved means none up. A new
 * generation's balancer takes over the counters by state, and slots taken
 * in the old one are given back there. */
static void
test_lb_over_generations(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string(dns_text, "t", err, sizeof(err));
	struct addr xy[2] = { v4("127.0.0.2", 9002), v4("127.0.0.3", 9002) };
	struct addr y = xy[1];
	struct backend_set *s0, *s1, *s2;
	struct backend_lb lb0, lb1, lb2;
	unsigned count[3] = { 0 };
	enum backend_none why;
	bool trial;
	ssize_t i, held;

	(void)state;
	assert_non_null(cfg);
	s0 = backend_set_new(cfg, NULL);
	s1 = backend_set_update(s0, 0, 1, xy, 2);
	assert_non_null(s1);
	/* b's name unresolved, a down: nothing to pick. */
	assert_int_equal(backend_lb_init(&lb0, &s0->b[0], 1), 0);
	backend_server_set_up(s0->b[0].servers[0], false);
	s0->b[0].servers[0]->trial_ms = UINT64_MAX;
	assert_int_equal(backend_lb_pick(&lb0, NULL, -1, 1000, &why, &trial), -1);
	assert_int_equal(why, BACKEND_NONE_UP);
	backend_server_set_up(s0->b[0].servers[0], true);

	assert_int_equal(backend_lb_init(&lb1, &s1->b[0], 1), 0);
	assert_int_equal(lb1.n, 3);
	/* Weights 1, 3, 3: a gets 1 in 7. */
	for (int k = 0; k < 700; k++) {
		i = backend_lb_pick(&lb1, NULL, -1, 1000, &why, &trial);
		assert_true(i >= 0);
		backend_lb_connected(&lb1, (size_t)i);
		backend_lb_release(&lb1, (size_t)i);
		count[i]++;
	}
	assert_int_equal(count[0], 100);
	assert_int_equal(count[1], 300);
	assert_int_equal(count[2], 300);
	/* source tells the addresses of one name apart. */
	assert_true(lb1.bal.name_hash[1] != lb1.bal.name_hash[2]);
	held = backend_lb_pick(&lb1, NULL, -1, 1000, &why, &trial);
	assert_true(held >= 0);
	assert_int_equal(lb1.users, 1);

	s2 = backend_set_update(s1, 0, 1, &y, 1);
	assert_non_null(s2);
	assert_int_equal(backend_lb_init(&lb2, &s2->b[0], 2), 0);
	backend_lb_carry(&lb2, &lb1);
	assert_int_equal(lb2.n, 2);
	assert_ptr_equal(lb2.shared[1], lb1.shared[2]);
	assert_int_equal(lb2.stats[0].connections, 100);
	assert_int_equal(lb2.stats[1].connections, 300);
	assert_int_equal(lb2.stats[1].active, 0);
	assert_int_equal(lb2.bal.rng, lb1.bal.rng);
	assert_int_equal(backend_lb_index(&lb2, lb1.shared[1]), -1);
	assert_int_equal(backend_lb_index(&lb2, lb1.shared[2]), 1);
	/* The connection picked before keeps its slot in lb1. */
	backend_lb_release(&lb1, (size_t)held);
	assert_int_equal(lb1.users, 0);
	assert_int_equal(lb2.users, 0);
	backend_lb_cleanup(&lb0);
	backend_lb_cleanup(&lb1);
	backend_lb_cleanup(&lb2);
	backend_set_unref(s0);
	backend_set_unref(s1);
	backend_set_unref(s2);
	config_unref(cfg);
}

/* ---- runtime state: setting it, and keeping it ---- */

static const char admin_text[] = "[listener l]\nbind = 127.0.0.1:1\n"
    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001 weight=2\n"
    "server = b 127.0.0.1:9002\n[backend other]\n"
    "server = c 127.0.0.1:9003\n";

static void
test_admin_names(void **state)
{
	enum backend_admin a = BACKEND_ADMIN_MAX_;

	(void)state;
	for (unsigned i = 0; i < BACKEND_ADMIN_MAX_; i++) {
		assert_int_equal(backend_admin_parse(backend_admin_name(i), &a), 0);
		assert_int_equal(a, i);
	}
	assert_string_equal(backend_admin_name(BACKEND_ADMIN_READY), "ready");
	assert_string_equal(backend_admin_name(BACKEND_ADMIN_DRAIN), "drain");
	assert_string_equal(backend_admin_name(BACKEND_ADMIN_MAINT), "maint");
	assert_int_equal(backend_admin_parse("up", &a), -1);
	assert_int_equal(backend_admin_parse("", &a), -1);
	assert_int_equal(backend_admin_parse("drain ", &a), -1);
	assert_string_equal(backend_status_name(BACKEND_STATUS_UP), "up");
	assert_string_equal(backend_status_name(BACKEND_STATUS_DOWN), "down");
	assert_string_equal(backend_status_name(BACKEND_STATUS_DRAIN), "drain");
	assert_string_equal(backend_status_name(BACKEND_STATUS_MAINT), "maint");
}

static void
set_fails(struct backend_set *bs, const char *backend, const char *server,
    int admin, unsigned weight, int err)
{
	errno = 0;
	assert_int_equal(backend_server_set_admin(bs, backend, server, admin,
	    weight), -1);
	assert_int_equal(errno, err);
}

static void
test_set_admin(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string(admin_text, "t", err, sizeof(err));
	struct backend_set *bs;
	struct server_state *a, *b;
	const struct backend_shared *app;

	(void)state;
	assert_non_null(cfg);
	bs = backend_set_new(cfg, NULL);
	assert_non_null(bs);
	app = &bs->b[0];
	a = app->servers[0];
	b = app->servers[1];
	assert_int_equal(atomic_load(&a->admin), BACKEND_ADMIN_READY);
	assert_int_equal(backend_weight(app, 0), 2);
	assert_int_equal(backend_status(app, 0), BACKEND_STATUS_UP);

	/* Unknown names: ENOENT, whatever else is asked. */
	set_fails(bs, "nope", "a", BACKEND_ADMIN_DRAIN, 0, ENOENT);
	set_fails(bs, "app", "c", BACKEND_ADMIN_DRAIN, 0, ENOENT);
	/* Out of range: EINVAL, and nothing changes. */
	set_fails(bs, "app", "a", BACKEND_ADMIN_DRAIN, 257, EINVAL);
	set_fails(bs, "app", "a", BACKEND_ADMIN_MAX_, 3, EINVAL);
	assert_int_equal(atomic_load(&a->admin), BACKEND_ADMIN_READY);
	assert_int_equal(backend_weight(app, 0), 2);

	/* Weight alone (admin < 0 keeps it), then state alone (0 keeps). */
	assert_int_equal(backend_server_set_admin(bs, "app", "a", -1, 256), 0);
	assert_int_equal(backend_weight(app, 0), 256);
	assert_int_equal(backend_line_weight(app, 0), 256);
	assert_int_equal(atomic_load(&a->admin), BACKEND_ADMIN_READY);
	assert_int_equal(backend_server_set_admin(bs, "app", "a",
	    BACKEND_ADMIN_DRAIN, 0), 0);
	assert_int_equal(backend_weight(app, 0), 256);
	assert_int_equal(atomic_load(&a->admin), BACKEND_ADMIN_DRAIN);
	assert_int_equal(backend_status(app, 0), BACKEND_STATUS_DRAIN);
	assert_int_equal(backend_line_status(app, 0), BACKEND_STATUS_DRAIN);
	/* The other server is left alone. */
	assert_int_equal(atomic_load(&b->admin), BACKEND_ADMIN_READY);
	assert_int_equal(backend_weight(app, 1), 1);
	/* maint shows over down, down shows when ready. */
	assert_int_equal(backend_server_set_admin(bs, "app", "b",
	    BACKEND_ADMIN_MAINT, 1), 0);
	backend_server_set_up(b, false);
	assert_int_equal(backend_status(app, 1), BACKEND_STATUS_MAINT);
	assert_int_equal(backend_server_set_admin(bs, "app", "b",
	    BACKEND_ADMIN_READY, 0), 0);
	assert_int_equal(backend_status(app, 1), BACKEND_STATUS_DOWN);
	assert_int_equal(backend_line_status(app, 1), BACKEND_STATUS_DOWN);
	/* weight=1 was set: the runtime weight, even equal to the line's. */
	assert_int_equal(atomic_load(&b->weight), 1);
	/* A server named like one of another backend is that backend's. */
	assert_int_equal(backend_server_set_admin(bs, "other", "c",
	    BACKEND_ADMIN_MAINT, 0), 0);
	assert_int_equal(backend_status(&bs->b[1], 0), BACKEND_STATUS_MAINT);
	backend_set_unref(bs);
	config_unref(cfg);
}

/* A reload keeps each server's runtime state by name: a has a new address
 * (a new state, up and idle, but still drained with its weight), b moved
 * in the list and keeps its state object; a server gone and back starts
 * ready. */
static void
test_admin_survives_reload(void **state)
{
	static const char moved[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend other]\nserver = c 127.0.0.1:9003\n"
	    "[backend app]\nserver = b 127.0.0.1:9002\n"
	    "server = a 127.0.0.1:9005 weight=3\n";
	static const char gone[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = b 127.0.0.1:9002\n"
	    "[backend other]\nserver = c 127.0.0.1:9003\n";
	char err[CONFIG_ERR_MAX];
	struct config *c1 = config_load_string(admin_text, "t", err, sizeof(err));
	struct config *c2 = config_load_string(moved, "t", err, sizeof(err));
	struct config *c3 = config_load_string(gone, "t", err, sizeof(err));
	struct config *c4 = config_load_string(admin_text, "t", err, sizeof(err));
	struct backend_set *s1, *s2, *s3, *s4;
	const struct backend_shared *app;

	(void)state;
	assert_non_null(c1);
	assert_non_null(c2);
	assert_non_null(c3);
	assert_non_null(c4);
	s1 = backend_set_new(c1, NULL);
	assert_non_null(s1);
	assert_int_equal(backend_server_set_admin(s1, "app", "a",
	    BACKEND_ADMIN_DRAIN, 5), 0);
	assert_int_equal(backend_server_set_admin(s1, "app", "b",
	    BACKEND_ADMIN_MAINT, 0), 0);
	s2 = backend_set_new(c2, s1);
	assert_non_null(s2);
	app = &s2->b[1];
	assert_string_equal(app->cfg->name, "app");
	/* b: the same state, moved. */
	assert_ptr_equal(app->servers[0], s1->b[0].servers[1]);
	assert_int_equal(backend_status(app, 0), BACKEND_STATUS_MAINT);
	/* a: another address, so a new state, with a's runtime state. */
	assert_ptr_not_equal(app->servers[1], s1->b[0].servers[0]);
	assert_int_equal(atomic_load(&app->servers[1]->admin),
	    BACKEND_ADMIN_DRAIN);
	assert_int_equal(backend_weight(app, 1), 5);
	assert_int_equal(backend_line_weight(app, 1), 5);
	assert_int_equal(backend_line_status(app, 1), BACKEND_STATUS_DRAIN);
	/* A runtime weight outlives a change of the config's. */
	assert_int_equal(app->cfg->servers[1].weight, 3);
	/* other/c untouched. */
	assert_int_equal(backend_status(&s2->b[0], 0), BACKEND_STATUS_UP);

	/* a leaves the config, then comes back: it starts over, ready. */
	s3 = backend_set_new(c3, s2);
	assert_non_null(s3);
	s4 = backend_set_new(c4, s3);
	assert_non_null(s4);
	assert_int_equal(backend_status(&s4->b[0], 0), BACKEND_STATUS_UP);
	assert_int_equal(backend_weight(&s4->b[0], 0), 2);
	assert_int_equal(backend_status(&s4->b[0], 1), BACKEND_STATUS_MAINT);
	backend_set_unref(s1);
	backend_set_unref(s2);
	backend_set_unref(s3);
	backend_set_unref(s4);
	config_unref(c1);
	config_unref(c2);
	config_unref(c3);
	config_unref(c4);
}

/* A connection to a's old address outlives a reload that moved a: the
 * line (what /servers and the metrics report) still counts it, and gives
 * it back when it ends; a failed check counts on the line too. */
static void
test_line_counts_over_reload(void **state)
{
	static const char moved[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:9005\n"
	    "server = b 127.0.0.1:9002\n";
	char err[CONFIG_ERR_MAX];
	struct config *c1 = config_load_string(admin_text, "t", err, sizeof(err));
	struct config *c2 = config_load_string(moved, "t", err, sizeof(err));
	struct backend_set *s1, *s2;
	struct backend_lb lb;
	enum backend_none why;
	bool trial;
	ssize_t i;
	size_t k;

	(void)state;
	assert_non_null(c1);
	assert_non_null(c2);
	assert_non_null(s1 = backend_set_new(c1, NULL));
	assert_int_equal(backend_lb_init(&lb, &s1->b[0], 1), 0);
	/* b drained: the pick goes to a. */
	assert_int_equal(backend_server_set_admin(s1, "app", "b",
	    BACKEND_ADMIN_DRAIN, 0), 0);
	i = backend_lb_pick(&lb, NULL, -1, 1000, &why, &trial);
	assert_int_equal(i, 0);
	assert_true(backend_lb_connected(&lb, 0) == false);
	assert_int_equal(atomic_load(&s1->b[0].lines[0]->active), 1);

	assert_non_null(s2 = backend_set_new(c2, s1));
	for (k = 0; k < s2->b[0].cfg->nservers; k++)
		if (strcmp(s2->b[0].cfg->servers[k].name, "a") == 0)
			break;
	assert_true(k < s2->b[0].cfg->nservers);
	assert_int_equal(atomic_load(&s2->b[0].servers[k]->active), 0);
	assert_int_equal(atomic_load(&s2->b[0].lines[k]->active), 1);
	backend_lb_release(&lb, 0);
	assert_int_equal(atomic_load(&s2->b[0].lines[k]->active), 0);

	backend_lb_cleanup(&lb);
	backend_set_unref(s1);
	backend_set_unref(s2);
	config_unref(c1);
	config_unref(c2);
}

/* A host-name server set before it resolves, or between two answers: every
 * address it gets takes its state and weight. A reload that changes its
 * host (no address kept) keeps its state too. A change made on an older
 * generation is the server's in the newer ones: they share its line. */
static void
test_admin_survives_resolve(void **state)
{
	static const char rehost[] = "[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001\n"
	    "server = b app2.example.test:9002\n"
	    "[backend other]\nserver = c 127.0.0.1:9003\n";
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string(dns_text, "t", err, sizeof(err));
	struct config *c2 = config_load_string(rehost, "t", err, sizeof(err));
	struct addr x = v4("127.0.0.2", 9002), y = v4("127.0.0.3", 9002),
	    z = v4("127.0.0.4", 9002), xy[2], yz[2];
	struct backend_set *s0, *s1, *s2, *s3, *s4;
	ssize_t i;

	(void)state;
	assert_non_null(cfg);
	assert_non_null(c2);
	xy[0] = x, xy[1] = y, yz[0] = y, yz[1] = z;
	s0 = backend_set_new(cfg, NULL);
	assert_non_null(s0);
	assert_int_equal(s0->b[0].n, 1);
	/* Not resolved: the server is there, with no address. */
	assert_int_equal(backend_server_set_admin(s0, "app", "b",
	    BACKEND_ADMIN_MAINT, 7), 0);
	assert_int_equal(backend_line_status(&s0->b[0], 1), BACKEND_STATUS_MAINT);
	assert_int_equal(backend_line_weight(&s0->b[0], 1), 7);
	s1 = backend_set_update(s0, 0, 1, xy, 2);
	assert_non_null(s1);
	assert_int_equal(s1->b[0].n, 3);
	for (size_t k = 1; k < 3; k++) {
		assert_int_equal(atomic_load(&s1->b[0].servers[k]->admin),
		    BACKEND_ADMIN_MAINT);
		assert_int_equal(backend_weight(&s1->b[0], k), 7);
		assert_int_equal(backend_status(&s1->b[0], k),
		    BACKEND_STATUS_MAINT);
	}
	assert_int_equal(backend_status(&s1->b[0], 0), BACKEND_STATUS_UP);

	/* Ready again, its weight kept; then a new answer brings z. */
	assert_int_equal(backend_server_set_admin(s1, "app", "b",
	    BACKEND_ADMIN_READY, 0), 0);
	s2 = backend_set_update(s1, 0, 1, yz, 2);
	assert_non_null(s2);
	assert_true((i = member(s2, 0, &z)) >= 0);
	assert_int_equal(backend_status(&s2->b[0], (size_t)i), BACKEND_STATUS_UP);
	assert_int_equal(backend_weight(&s2->b[0], (size_t)i), 7);
	assert_int_equal(backend_line_status(&s2->b[0], 1), BACKEND_STATUS_UP);

	/* Drained through the older generation: y (shared) shows it, and so
	 * does the line that the newest generation's new addresses take. */
	assert_int_equal(backend_server_set_admin(s1, "app", "b",
	    BACKEND_ADMIN_DRAIN, 0), 0);
	assert_true((i = member(s2, 0, &y)) >= 0);
	assert_int_equal(backend_status(&s2->b[0], (size_t)i),
	    BACKEND_STATUS_DRAIN);
	s3 = backend_set_update(s2, 0, 1, &x, 1);
	assert_non_null(s3);
	assert_int_equal(backend_status(&s3->b[0], 1), BACKEND_STATUS_DRAIN);
	assert_int_equal(backend_weight(&s3->b[0], 1), 7);

	/* A reload to another host name: no address kept, the state is. */
	s4 = backend_set_new(c2, s3);
	assert_non_null(s4);
	assert_int_equal(s4->b[0].n, 1);
	assert_int_equal(backend_line_status(&s4->b[0], 1), BACKEND_STATUS_DRAIN);
	assert_int_equal(backend_line_weight(&s4->b[0], 1), 7);
	backend_set_unref(s0);
	backend_set_unref(s1);
	backend_set_unref(s2);
	backend_set_unref(s3);
	s0 = backend_set_update(s4, 0, 1, &z, 1);
	assert_non_null(s0);
	assert_int_equal(backend_status(&s0->b[0], 1), BACKEND_STATUS_DRAIN);
	assert_int_equal(backend_weight(&s0->b[0], 1), 7);
	backend_set_unref(s0);
	backend_set_unref(s4);
	config_unref(cfg);
	config_unref(c2);
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
		LB_TEST(test_full_servers_skipped),
		LB_TEST(test_down_servers_skipped),
		LB_TEST(test_retry_avoids_last),
		LB_TEST(test_drain_excludes),
		LB_TEST(test_drain_no_trial),
		LB_TEST(test_passive_fall_with_checks),
		LB_TEST(test_passive_backoff),
		cmocka_unit_test(test_set_carries_state_by_name),
		cmocka_unit_test(test_set_update_carries_by_address),
		cmocka_unit_test(test_set_new_keeps_resolved),
		cmocka_unit_test(test_lb_over_generations),
		cmocka_unit_test(test_admin_names),
		cmocka_unit_test(test_set_admin),
		cmocka_unit_test(test_admin_survives_reload),
		cmocka_unit_test(test_line_counts_over_reload),
		cmocka_unit_test(test_admin_survives_resolve),
		cmocka_unit_test(test_connect_ok),
		cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
