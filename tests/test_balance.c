/* tests/test_balance.c: the four balancing algorithms: shares by weight,
 * smooth round robin, leastconn under uneven connection lengths, random's
 * two choices, source's stickiness and its hash of the client, retries
 * that avoid the server that just failed, and runtime weights (set by an
 * operator) taking effect at the next pick. Full and down servers, slots and
 * passive health are test_backend.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backend_fixture.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "spliced/balance.h"

#define PICKS 10000

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

/* PICKS connections by algo over servers of weights w, each over at
 * once: their shares follow the weights. */
static void
expect_picks_shared(struct fx_backend *fb, enum config_balance algo,
    const unsigned *w, size_t n, const char *what)
{
	unsigned count[MAX_SERVERS] = { 0 };

	fx_make(fb, algo, w, n);
	for (int i = 0; i < PICKS; i++)
		count[pick(fb, -1)]++;
	expect_shares(what, count, w, n);
}

/* ---- round robin ---- */

static void
test_rr_weighted_smooth(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };
	size_t prev = SIZE_MAX;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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

	expect_picks_shared(*state, CONFIG_BALANCE_ROUNDROBIN, w, 4,
	    "roundrobin 5,3,2,1");
}

/* Every window of five picks holds the heavy server three times: its picks
 * are spread out, not bunched at the start of a round. */
static void
test_rr_weighted_every_round(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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
		fx_make(fb, all_algos[a], w, 1);
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

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 3);
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

	fx_make(fb, CONFIG_BALANCE_LEASTCONN, w, 3);
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

	fx_make(fb, CONFIG_BALANCE_LEASTCONN, w, 3);
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

	expect_picks_shared(*state, CONFIG_BALANCE_RANDOM, w, 3, "random 3,1,1");
	expect_picks_shared(*state, CONFIG_BALANCE_RANDOM, w2, 4,
	    "random 5,3,2,1");
}

/* Under load, two choices keep the servers' loads per weight close: with
 * every connection held, the active counts end near the weights. */
static void
test_random_balances_load(void **state)
{
	static const unsigned w[] = { 3, 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[3] = { 0 };

	fx_make(fb, CONFIG_BALANCE_RANDOM, w, 3);
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

static void
test_source_sticky(void **state)
{
	static const unsigned w[] = { 1, 1, 1 };
	struct fx_backend *fb = *state;
	size_t first[1000];

	fx_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
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

	fx_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
	for (unsigned c = 0; c < 1000; c++) {
		struct sockaddr_in sin = client4(c, 1);

		release(fb, before[c] = hold(fb, (struct sockaddr *)&sin, -1));
	}
	fx_make(fb, CONFIG_BALANCE_SOURCE, w, 4);
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

	fx_make(fb, CONFIG_BALANCE_SOURCE, w, 3);
	for (unsigned c = 0; c < PICKS; c++) {
		struct sockaddr_in sin = client4(c, 1);
		size_t s = hold(fb, (struct sockaddr *)&sin, -1);

		release(fb, s);
		count[s]++;
	}
	expect_shares("source 3,1,1 (10000 clients)", count, w, 3);
}

/* ---- runtime weights ---- */

/* n picks over two servers that take strict turns. */
static void
expect_turns(struct fx_backend *fb, int n)
{
	size_t prev = pick(fb, -1);

	for (int i = 0; i < n; i++) {
		size_t s = pick(fb, -1);

		assert_int_not_equal(s, prev);
		prev = s;
	}
}

/* Weights 1:1, then server 1's runtime weight set to 3 half-way through a
 * cycle: the next 300 picks are exactly 75/225, spread out (server 0 never
 * twice in a row, server 1 never four times), with no new balancer. */
static void
test_rr_weight_change(void **state)
{
	static const unsigned w[] = { 1, 1 };
	struct fx_backend *fb = *state;
	unsigned count[2] = { 0 }, run = 0;
	size_t prev = SIZE_MAX;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 2);
	for (int i = 0; i < 5; i++)
		(void)pick(fb, -1);
	atomic_store(&fb->st[1].weight, 3);
	for (int i = 0; i < 300; i++) {
		size_t s = pick(fb, -1);

		count[s]++;
		run = s == prev ? run + 1 : 1;
		assert_true(run <= (s == 0 ? 1u : 3u));
		prev = s;
	}
	assert_int_equal(count[0], 75);
	assert_int_equal(count[1], 225);
	/* And back to the config's (0), mid-cycle again: strict turns. */
	(void)pick(fb, -1);
	atomic_store(&fb->st[1].weight, 0);
	expect_turns(fb, 200);
}

/* A large change leaves no run behind: server 0 at 256 against 1 earns
 * credits of hundreds; set to 1, the two take turns at once, where the
 * old credits would have given one of them a run of ~128 picks. */
static void
test_rr_weight_change_no_run(void **state)
{
	static const unsigned w[] = { 256, 1 };
	struct fx_backend *fb = *state;

	fx_make(fb, CONFIG_BALANCE_ROUNDROBIN, w, 2);
	for (int i = 0; i < 200; i++)
		(void)pick(fb, -1);
	atomic_store(&fb->st[0].weight, 1);
	expect_turns(fb, 100);
}

/* The other algorithms follow a runtime weight from the next pick on:
 * random and source by their shares, leastconn by the connections held. */
static void
test_weight_change_others(void **state)
{
	static const unsigned w[] = { 1, 1 };
	static const unsigned want[] = { 3, 1 };
	struct fx_backend *fb = *state;
	unsigned count[2] = { 0 };

	fx_make(fb, CONFIG_BALANCE_RANDOM, w, 2);
	(void)pick(fb, -1);
	atomic_store(&fb->st[0].weight, 3);
	for (int i = 0; i < PICKS; i++)
		count[pick(fb, -1)]++;
	expect_shares("random 1,1 set to 3,1", count, want, 2);

	fx_make(fb, CONFIG_BALANCE_SOURCE, w, 2);
	atomic_store(&fb->st[0].weight, 3);
	count[0] = count[1] = 0;
	for (unsigned c = 0; c < PICKS; c++) {
		struct sockaddr_in sin = client4(c, 1);
		size_t s = hold(fb, (struct sockaddr *)&sin, -1);

		release(fb, s);
		count[s]++;
	}
	expect_shares("source 1,1 set to 3,1", count, want, 2);

	fx_make(fb, CONFIG_BALANCE_LEASTCONN, w, 2);
	for (int i = 0; i < 10; i++)
		(void)hold(fb, NULL, -1);
	atomic_store(&fb->st[0].weight, 3);
	for (int i = 0; i < 390; i++)
		(void)hold(fb, NULL, -1);
	assert_int_equal(active(fb, 0), 300);
	assert_int_equal(active(fb, 1), 100);
	for (size_t i = 0; i < 2; i++)
		while (active(fb, i) > 0)
			release(fb, i);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
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
		LB_TEST(test_rr_weight_change),
		LB_TEST(test_rr_weight_change_no_run),
		LB_TEST(test_weight_change_others),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
