/* tests/test_backend.c: the four balancing algorithms, full and down
 * servers, retries, passive health, the shared state's carry-over, and the
 * non-blocking connect (over 127.0.0.1 only). */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"

#define MAX_SERVERS 8
#define PICKS 10000

/* A backend of n servers with the given weights, their shared state, and
 * one worker's balancer over them. */
struct fx_backend {
	struct config_server servers[MAX_SERVERS];
	char names[MAX_SERVERS][24];
	struct server_state st[MAX_SERVERS];
	struct server_state *stp[MAX_SERVERS];
	const struct config_server *ent[MAX_SERVERS];
	struct config_backend b;
	struct backend_shared sh;
	struct backend_lb lb;
	uint64_t now;               /* the clock the picks see */
};

/* The fixture owns the balancer state, so that it is freed even when an
 * assertion fails half-way. */
static int
lb_setup(void **state)
{
	struct fx_backend *fb = calloc(1, sizeof(*fb));

	assert_non_null(fb);
	*state = fb;
	return 0;
}

static int
lb_teardown(void **state)
{
	struct fx_backend *fb = *state;

	backend_lb_cleanup(&fb->lb);
	free(fb);
	return 0;
}

/* Servers named s0, s1, ... (source hashes the name: a server keeps its
 * name when others are added). */
static void
backend_make(struct fx_backend *fb, enum config_balance balance,
    const unsigned *weights, size_t n)
{
	assert_true(n <= MAX_SERVERS);
	backend_lb_cleanup(&fb->lb);
	memset(fb, 0, sizeof(*fb));
	for (size_t i = 0; i < n; i++) {
		snprintf(fb->names[i], sizeof(fb->names[i]), "s%zu", i);
		fb->servers[i].name = fb->names[i];
		fb->servers[i].weight = weights[i];
		atomic_init(&fb->st[i].up, true);
		atomic_init(&fb->st[i].backoff_ms, BACKEND_BACKOFF_MIN_MS);
		fb->stp[i] = &fb->st[i];
		fb->ent[i] = &fb->servers[i];
	}
	fb->b.name = "app";
	fb->b.servers = fb->servers;
	fb->b.nservers = n;
	fb->b.balance = balance;
	fb->b.fall = 3;
	fb->b.rise = 2;
	fb->sh.cfg = &fb->b;
	fb->sh.servers = fb->stp;
	fb->sh.entry = fb->ent;
	fb->sh.n = n;
	fb->now = 1000000;
	assert_int_equal(backend_lb_init(&fb->lb, &fb->sh, 42), 0);
}

/* A pick that connects: the slot stays taken until release(). */
static size_t
hold(struct fx_backend *fb, const struct sockaddr *peer, ssize_t avoid)
{
	enum backend_none why;
	bool trial;
	ssize_t i = backend_lb_pick(&fb->lb, peer, avoid, fb->now, &why, &trial);

	assert_true(i >= 0 && (size_t)i < fb->b.nservers);
	(void)backend_lb_connected(&fb->lb, (size_t)i);
	return (size_t)i;
}

static void
release(struct fx_backend *fb, size_t i)
{
	backend_lb_release(&fb->lb, i);
}

/* A connection that is over at once: nothing stays active. */
static size_t
pick(struct fx_backend *fb, ssize_t avoid)
{
	size_t i = hold(fb, NULL, avoid);

	release(fb, i);
	return i;
}

static unsigned
active(struct fx_backend *fb, size_t i)
{
	return atomic_load(&fb->st[i].active);
}

/* Every share within two percentage points of its weight's. Prints what it
 * measured, for the record. */
static void
expect_shares(const char *what, const unsigned *count, const unsigned *w,
    size_t n)
{
	unsigned total = 0, wsum = 0;

	for (size_t i = 0; i < n; i++) {
		total += count[i];
		wsum += w[i];
	}
	for (size_t i = 0; i < n; i++) {
		double got = 100.0 * count[i] / total, want = 100.0 * w[i] / wsum;

		print_message("  %s: server %zu weight %u: %.2f%% (want %.2f%%, "
		    "off by %+.2f)\n", what, i, w[i], got, want, got - want);
		assert_true(got > want - 2.0 && got < want + 2.0);
	}
}

static const enum config_balance all_algos[] = { CONFIG_BALANCE_ROUNDROBIN,
    CONFIG_BALANCE_LEASTCONN, CONFIG_BALANCE_SOURCE, CONFIG_BALANCE_RANDOM };

/* ---- round robin ---- */

static void
test_rr_weighted_smooth(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };
	size_t prev = SIZE_MAX;

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
	for (int i = 0; i < PICKS; i++) {
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
	expect_shares("roundrobin 3,1,1", count, w, 3);
}

static void
test_rr_shares(void **state)
{
	static const unsigned w[] = { 5, 3, 2, 1 };
	struct fx_backend *fb = *state;
	unsigned count[4] = { 0 };

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 4);
	for (int i = 0; i < PICKS; i++)
		count[pick(fb, -1)]++;
	expect_shares("roundrobin 5,3,2,1", count, w, 4);
}

/* Every window of five picks holds the heavy server three times: its picks
 * are spread out, not bunched at the start of a round. */
static void
test_rr_weighted_every_round(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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
test_single(void **state)
{
	static const unsigned w[] = { 5 };
	struct fx_backend *fb = *state;

	for (size_t a = 0; a < 4; a++) {
		backend_make(fb, all_algos[a], w, 1);
		for (int i = 0; i < 100; i++) {
			assert_int_equal(pick(fb, -1), 0);
			/* The one server that just failed is still the only one. */
			assert_int_equal(pick(fb, 0), 0);
		}
	}
}

static void
test_rr_avoid_spreads_over_the_rest(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
	for (int i = 0; i < 1000; i++)
		count[pick(fb, 0)]++;
	assert_int_equal(count[0], 0);
	assert_int_equal(count[1], 500);
	assert_int_equal(count[2], 500);
}

/* Skipped for a long while (say, the only server that failed for a run of
 * connections), a server is not then picked many times in a row. */
static void
test_rr_avoided_server_not_bunched(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
	for (int i = 0; i < 100; i++)
		(void)pick(fb, 0);
	for (int round = 0; round < 30; round++) {
		unsigned count[3] = { 0 };

		for (int j = 0; j < 3; j++)
			count[pick(fb, -1)]++;
		assert_int_equal(count[0], 1);
	}
}

/* ---- leastconn ---- */

/* Idle servers: ties, taken in turn. */
static void
test_leastconn_ties_in_turn(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;

	backend_make(fb, CONFIG_BALANCE_LEASTCONN, w, 3);
	for (int i = 0; i < 300; i++)
		assert_int_equal(pick(fb, -1), (size_t)i % 3);
}

/* Connections to server 0 last ten times longer than to the others. Every
 * new connection goes to a server with the fewest per weight, so server 0,
 * holding its connections longest, gets the fewest new ones. */
static void
test_leastconn_skewed_lengths(void **state)
{
	static const unsigned w[] = { 1, 1, 2 };
	static const unsigned length[] = { 50, 5, 5 };
	struct fx_backend *fb = *state;
	struct { size_t server; unsigned ends; } live[4096];
	size_t nlive = 0;
	unsigned count[3] = { 0 };

	backend_make(fb, CONFIG_BALANCE_LEASTCONN, w, 3);
	for (unsigned tick = 0; tick < PICKS; tick++) {
		double least = 1e9;
		size_t s;

		for (size_t k = 0; k < nlive;) {
			if (live[k].ends == tick) {
				release(fb, live[k].server);
				live[k] = live[--nlive];
			} else
				k++;
		}
		for (size_t i = 0; i < 3; i++)
			if ((double)active(fb, i) / w[i] < least)
				least = (double)active(fb, i) / w[i];
		s = hold(fb, NULL, -1);
		/* The one picked had the fewest per weight before the pick. */
		assert_true((double)(active(fb, s) - 1) / w[s] <= least);
		count[s]++;
		assert_true(nlive < 4096);
		live[nlive].server = s;
		live[nlive++].ends = tick + length[s];
	}
	print_message("  leastconn, lengths 50/5/5, weights 1/1/2: %u %u %u\n",
	    count[0], count[1], count[2]);
	assert_true(count[0] < count[1] && count[1] < count[2]);
	while (nlive > 0)
		release(fb, live[--nlive].server);
}

/* ---- random ---- */

static void
test_random_shares(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	static const unsigned w2[] = { 5, 3, 2, 1 };
	struct fx_backend *fb = *state;
	unsigned count[4] = { 0 };

	backend_make(fb, CONFIG_BALANCE_RANDOM, w, 3);
	for (int i = 0; i < PICKS; i++)
		count[pick(fb, -1)]++;
	expect_shares("random 3,1,1", count, w, 3);

	memset(count, 0, sizeof(count));
	backend_make(fb, CONFIG_BALANCE_RANDOM, w2, 4);
	for (int i = 0; i < PICKS; i++)
		count[pick(fb, -1)]++;
	expect_shares("random 5,3,2,1", count, w2, 4);
}

/* Under load, two choices keep the servers' loads per weight close: with
 * every connection held, the active counts end near the weights. */
static void
test_random_balances_load(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };

	backend_make(fb, CONFIG_BALANCE_RANDOM, w, 3);
	for (int i = 0; i < 1000; i++)
		(void)hold(fb, NULL, -1);
	for (size_t i = 0; i < 3; i++) {
		count[i] = active(fb, i);
		print_message("  random, 1000 held: server %zu weight %u: %u\n",
		    i, w[i], count[i]);
	}
	assert_in_range(count[0], 590, 610);
	assert_in_range(count[1], 190, 210);
	assert_in_range(count[2], 190, 210);
	for (size_t i = 0; i < 3; i++)
		while (active(fb, i) > 0)
			release(fb, i);
}

/* ---- source ---- */

static struct sockaddr_in
client4(unsigned n, unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	sin.sin_addr.s_addr = htonl(0x0a000000u + n * 7919u);
	sin.sin_port = htons((uint16_t)port);
	return sin;
}

static void
test_source_sticky(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	size_t first[1000];

	backend_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
	for (unsigned c = 0; c < 1000; c++) {
		struct sockaddr_in sin = client4(c, 1000);

		first[c] = hold(fb, (struct sockaddr *)&sin, -1);
		release(fb, first[c]);
	}
	/* Again, from other ports, and with other clients in between. */
	for (unsigned round = 0; round < 3; round++)
		for (unsigned c = 0; c < 1000; c++) {
			struct sockaddr_in sin = client4(c, 2000 + round);
			size_t s = hold(fb, (struct sockaddr *)&sin, -1);

			assert_int_equal(s, first[c]);
			release(fb, s);
		}
}

static void
test_source_mapped_is_ipv4(void **state)
{
	struct sockaddr_in sin = client4(5, 80);
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

	(void)state;
	sin6.sin6_addr.s6_addr[10] = 0xff;
	sin6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6.sin6_addr.s6_addr[12], &sin.sin_addr, 4);
	sin6.sin6_port = htons(9);
	assert_true(balance_hash_peer((struct sockaddr *)&sin) ==
	    balance_hash_peer((struct sockaddr *)&sin6));
	sin6.sin6_addr.s6_addr[10] = 0;
	assert_true(balance_hash_peer((struct sockaddr *)&sin) !=
	    balance_hash_peer((struct sockaddr *)&sin6));
}

/* Adding a fourth server to three moves a quarter of the clients, all of
 * them to the newcomer. */
static void
test_source_add_server(void **state)
{
	static const unsigned w[] = { 1, 1, 1, 1 };
	struct fx_backend *fb = *state;
	size_t before[1000];
	unsigned moved = 0;

	backend_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
	for (unsigned c = 0; c < 1000; c++) {
		struct sockaddr_in sin = client4(c, 1);

		release(fb, before[c] = hold(fb, (struct sockaddr *)&sin, -1));
	}
	backend_make(fb, CONFIG_BALANCE_SOURCE, w, 4);
	for (unsigned c = 0; c < 1000; c++) {
		struct sockaddr_in sin = client4(c, 1);
		size_t s = hold(fb, (struct sockaddr *)&sin, -1);

		release(fb, s);
		if (s != before[c]) {
			assert_int_equal(s, 3);
			moved++;
		}
	}
	print_message("  source: adding a 4th server moved %u of 1000 clients "
	    "(%.1f%%)\n", moved, moved / 10.0);
	assert_true(moved <= 300);
	assert_true(moved >= 200);
}

static void
test_source_shares(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };

	backend_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
	for (unsigned c = 0; c < PICKS; c++) {
		struct sockaddr_in sin = client4(c, 1);
		size_t s = hold(fb, (struct sockaddr *)&sin, -1);

		release(fb, s);
		count[s]++;
	}
	expect_shares("source 3,1,1 (10000 clients)", count, w, 3);
}

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

		backend_make(fb, all_algos[a], w, 2);
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

		backend_make(fb, all_algos[a], w, 3);
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
		backend_make(fb, all_algos[a], w, 3);
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

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 1);
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
	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w2, 2);
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

	backend_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 2);
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
#define LB_TEST(t) cmocka_unit_test_setup_teardown(t, lb_setup, lb_teardown)
		LB_TEST(test_rr_weighted_smooth),
		LB_TEST(test_rr_shares),
		LB_TEST(test_rr_weighted_every_round),
		LB_TEST(test_rr_equal_rotate),
		LB_TEST(test_single),
		LB_TEST(test_rr_avoid_spreads_over_the_rest),
		LB_TEST(test_rr_avoided_server_not_bunched),
		LB_TEST(test_leastconn_ties_in_turn),
		LB_TEST(test_leastconn_skewed_lengths),
		LB_TEST(test_random_shares),
		LB_TEST(test_random_balances_load),
		LB_TEST(test_source_sticky),
		cmocka_unit_test(test_source_mapped_is_ipv4),
		LB_TEST(test_source_add_server),
		LB_TEST(test_source_shares),
		LB_TEST(test_full_servers_skipped),
		LB_TEST(test_down_servers_skipped),
		LB_TEST(test_retry_avoids_last),
		LB_TEST(test_passive_fall_with_checks),
		LB_TEST(test_passive_backoff),
		cmocka_unit_test(test_set_carries_state_by_name),
		cmocka_unit_test(test_set_update_carries_by_address),
		cmocka_unit_test(test_set_new_keeps_resolved),
		cmocka_unit_test(test_lb_over_generations),
		cmocka_unit_test(test_connect_ok),
		cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
