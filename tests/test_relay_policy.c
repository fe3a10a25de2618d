/* tests/test_relay_policy.c: the auto policy's decisions, without sockets.
 *
 * relay_policy() decides from the counters; struct relay_policy_state and
 * its functions keep them, as relay.c calls them: a read, a wait for `in`,
 * a burst that could not have a pipe. The state's tests run once per
 * splice setting (never, always, auto) and check each decision at the
 * edges: T - 1, T and T + 1 bytes of a burst, a buffer's worth of a
 * wake-up, what the burst after the end of one starts from, and what the
 * bytes queued in the kernel change. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "spliced/relay_policy.h"

#define T (64 * 1024u)                  /* the default splice_threshold */
#define B (16 * 1024u)                  /* a copy buffer, less than T */
#define BIG (1024 * 1024u)              /* a holder no read here fills */

static void
test_policy(void **state)
{
	static const enum config_splice all[] = { CONFIG_SPLICE_AUTO,
	    CONFIG_SPLICE_ALWAYS, CONFIG_SPLICE_NEVER };
	const size_t t = T;
	const unsigned s = RELAY_STREAMER_READS;

	(void)state;
	assert_int_equal(relay_policy(CONFIG_SPLICE_NEVER, t, 0, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_NEVER, t, 10 * t, 10 * s, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_ALWAYS, t, 0, 0, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_ALWAYS, t, 10 * t, 10 * s, true), RELAY_MODE_SPLICE);
	/* Without a pipe to try, every policy copies. */
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(relay_policy(all[i], t, 0, 0, false), RELAY_MODE_COPY);
		assert_int_equal(relay_policy(all[i], t, 10 * t, 10 * s, false), RELAY_MODE_COPY);
	}
	/* auto: by the bytes of the burst ... */
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t - 1, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t, 0, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t + 1, 0, true), RELAY_MODE_SPLICE);
	/* ... or by consecutive full reads. */
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s - 1, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s + 1, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t - 1, s - 1, true), RELAY_MODE_COPY);
}

/* ---- the state, per splice setting ---------------------------------------- */

#define SPLICE_MATRIX(f) \
	{ .name = #f "_never", .test_func = f, \
	    .initial_state = &(enum config_splice){ CONFIG_SPLICE_NEVER } }, \
	{ .name = #f "_always", .test_func = f, \
	    .initial_state = &(enum config_splice){ CONFIG_SPLICE_ALWAYS } }, \
	{ .name = #f "_auto", .test_func = f, \
	    .initial_state = &(enum config_splice){ CONFIG_SPLICE_AUTO } }

/* never copies and always splices, whatever the counters say; auto
 * decides. */
static enum relay_mode
want(enum config_splice splice, enum relay_mode under_auto)
{
	if (splice == CONFIG_SPLICE_NEVER)
		return RELAY_MODE_COPY;
	if (splice == CONFIG_SPLICE_ALWAYS)
		return RELAY_MODE_SPLICE;
	return under_auto;
}

/* A fresh direction that has read n bytes in one short read. */
static struct relay_policy_state
after_read(enum config_splice splice, size_t n)
{
	struct relay_policy_state s;

	relay_policy_init(&s, splice, T);
	if (n > 0)
		assert_true(relay_policy_read(&s, n, BIG));
	return s;
}

/* Bytes of the burst: T - 1 copies, T and T + 1 splice. */
static void
test_threshold(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	struct relay_policy_state s;

	s = after_read(sp, 0);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	s = after_read(sp, T - 1);
	assert_int_equal(s.burst, T - 1);
	assert_int_equal(s.full_reads, 0);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	s = after_read(sp, T);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	s = after_read(sp, T + 1);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	/* Without a pipe to try, every setting copies. */
	assert_int_equal(relay_policy_next(&s, false), RELAY_MODE_COPY);

	/* The reads of a burst add up, across wake-ups that each carried a
	 * buffer or more: T - 1, then one byte more. */
	s = after_read(sp, T / 2);
	relay_policy_wait(&s, B);
	assert_true(relay_policy_read(&s, T / 2 - 1, BIG));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	assert_true(relay_policy_read(&s, 1, BIG));
	assert_int_equal(s.burst, T);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
}

/* Reads that fill the holder: RELAY_STREAMER_READS of them in a row make a
 * stream before the threshold; a short one starts the count again. */
static void
test_full_reads(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	struct relay_policy_state s;

	relay_policy_init(&s, sp, T);
	for (unsigned i = 1; i < RELAY_STREAMER_READS; i++) {
		assert_false(relay_policy_read(&s, B, B));      /* full, not short */
		assert_int_equal(s.full_reads, i);
		assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	}
	assert_false(relay_policy_read(&s, B, B));
	assert_true(s.burst < T);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	/* One byte short of full is short. */
	assert_true(relay_policy_read(&s, B - 1, B));
	assert_int_equal(s.full_reads, 0);
	assert_true(s.burst < T);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
}

/* The end of a burst: RELAY_IDLE_WAKES wake-ups in a row under a buffer
 * (B - 1 bytes is under, B is not). The next burst starts from nothing:
 * T - 1 bytes of it copy again, T splice. */
static void
test_burst_end(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	struct relay_policy_state s = after_read(sp, T + 1);

	/* A wake-up of a buffer or more is part of a stream: between short
	 * ones it keeps the burst going. */
	relay_policy_wait(&s, B);               /* the T + 1 bytes */
	for (int i = 0; i < 2 * RELAY_IDLE_WAKES; i++) {
		assert_true(relay_policy_read(&s, B - 1, BIG));
		relay_policy_wait(&s, B);
		assert_int_equal(s.short_wakes, 1);
		assert_true(relay_policy_read(&s, B, BIG));
		relay_policy_wait(&s, B);
		assert_int_equal(s.short_wakes, 0);
	}
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));

	/* Short wake-ups: the burst ends at the RELAY_IDLE_WAKES-th, however
	 * its reads went (the last one: full reads into a one-byte holder). */
	for (int i = 1; i < RELAY_IDLE_WAKES; i++) {
		assert_true(relay_policy_read(&s, B - 1, BIG));
		relay_policy_wait(&s, B);
		assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	}
	for (unsigned i = 0; i < RELAY_STREAMER_READS; i++)
		assert_false(relay_policy_read(&s, 1, 1));
	relay_policy_wait(&s, B);
	assert_int_equal(s.burst, 0);
	assert_int_equal(s.full_reads, 0);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));

	/* The next burst: T - 1, then one more byte. */
	assert_true(relay_policy_read(&s, T - 1, BIG));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	assert_true(relay_policy_read(&s, 1, BIG));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
}

/* A burst that could not have a pipe copies until it ends, whatever it
 * carries; the next one may splice again. */
static void
test_copy_for_burst(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	struct relay_policy_state s = after_read(sp, T);

	relay_policy_copy_for_burst(&s);
	assert_int_equal(relay_policy_next(&s, true), RELAY_MODE_COPY);
	assert_true(relay_policy_read(&s, T, BIG));
	relay_policy_wait(&s, B);
	assert_int_equal(relay_policy_next(&s, true), RELAY_MODE_COPY);
	for (int i = 1; i < RELAY_IDLE_WAKES; i++) {
		relay_policy_wait(&s, B);
		assert_int_equal(relay_policy_next(&s, true), RELAY_MODE_COPY);
	}
	relay_policy_wait(&s, B);               /* the burst is over */
	assert_false(s.no_splice);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	assert_true(relay_policy_read(&s, T, BIG));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
}

/* The kernel's queue: asked only by auto, only before the first read and
 * after a copy read that filled the buffer, and never while the burst is
 * already a stream or a pipe could not be had. */
static void
test_ask_queued(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	const bool a = sp == CONFIG_SPLICE_AUTO;
	struct relay_policy_state s;

	relay_policy_init(&s, sp, T);
	assert_int_equal(relay_policy_ask_queued(&s, true, true), a);
	assert_false(relay_policy_ask_queued(&s, false, true));   /* no pipes */
	/* The first read asks whatever the mover. */
	assert_int_equal(relay_policy_ask_queued(&s, true, false), a);
	/* threshold 0 splices every byte under auto: nothing to ask. */
	relay_policy_init(&s, sp, 0);
	assert_false(relay_policy_ask_queued(&s, true, true));
	relay_policy_init(&s, sp, T);
	/* A short read: an exchange, not asked again ... */
	assert_true(relay_policy_read(&s, B - 1, B));
	assert_false(relay_policy_ask_queued(&s, true, true));
	relay_policy_wait(&s, B);
	assert_false(relay_policy_ask_queued(&s, true, true));
	/* ... until a copy read fills the buffer (a splice read that fills
	 * the pipe is already a stream's). */
	assert_false(relay_policy_read(&s, B, B));
	assert_int_equal(relay_policy_ask_queued(&s, true, true), a);
	assert_false(relay_policy_ask_queued(&s, true, false));
	relay_policy_copy_for_burst(&s);
	assert_false(relay_policy_ask_queued(&s, true, true));

	/* The end of a burst of exchanges: not asked; of one that reached the
	 * threshold: asked before the next burst's first read. */
	relay_policy_init(&s, sp, T);
	assert_true(relay_policy_read(&s, T - 1, BIG));
	for (int i = 0; i < RELAY_IDLE_WAKES; i++)
		relay_policy_wait(&s, 2 * T);
	assert_int_equal(s.burst, 0);
	assert_false(relay_policy_ask_queued(&s, true, true));
	assert_true(relay_policy_read(&s, T, BIG));
	relay_policy_wait(&s, T);               /* a buffer's worth */
	for (int i = 1; i < RELAY_IDLE_WAKES; i++) {
		relay_policy_wait(&s, 2 * T);
		assert_false(relay_policy_ask_queued(&s, true, true));
	}
	relay_policy_wait(&s, 2 * T);
	assert_int_equal(s.burst, 0);
	assert_int_equal(relay_policy_ask_queued(&s, true, true), a);
	/* relay.c still has the splice mover then: asked all the same. */
	assert_int_equal(relay_policy_ask_queued(&s, true, false), a);

	/* A stream that the queue made, ended with few bytes: asked next. */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, T, B);
	assert_true(relay_policy_read(&s, 10, BIG));
	for (int i = 0; i < RELAY_IDLE_WAKES; i++)
		relay_policy_wait(&s, B);
	assert_int_equal(relay_policy_ask_queued(&s, true, false), a);

	/* A question not asked yet (no pipes to splice with then) outlives
	 * the end of a burst; a tail answer does not. */
	relay_policy_init(&s, sp, T);
	for (int i = 0; i < RELAY_IDLE_WAKES; i++)
		relay_policy_wait(&s, B);
	assert_int_equal(relay_policy_ask_queued(&s, true, true), a);
	relay_policy_queued(&s, 10, B);
	for (int i = 0; i < RELAY_IDLE_WAKES; i++)
		relay_policy_wait(&s, B);
	assert_int_equal(s.queue, RELAY_QUEUE_UNKNOWN);

	/* Nothing queued is no answer: the counters decide, and only a read
	 * that fills the buffer asks again. */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, 0, B);
	assert_int_equal(s.queue, RELAY_QUEUE_UNKNOWN);
	assert_false(relay_policy_ask_queued(&s, true, true));
	assert_true(relay_policy_read(&s, 10, B));
	assert_false(relay_policy_ask_queued(&s, true, true));
	assert_false(relay_policy_read(&s, B, B));
	assert_int_equal(relay_policy_ask_queued(&s, true, true), a);

	/* Once the answer is in, not again before the next read. */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, 10, B);
	assert_false(relay_policy_ask_queued(&s, true, true));
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, T, B);
	assert_false(relay_policy_ask_queued(&s, true, true));
}

/* auto with the queue: a buffer or more queued, reaching the threshold, is
 * a stream from the first byte to the end of the burst; less is a tail
 * copied whole, even past the threshold; never and always ignore it. */
static void
test_queued(void **state)
{
	const enum config_splice sp = *(enum config_splice *)*state;
	struct relay_policy_state s;

	/* The first read: T queued splices at once, T - 1 copies. */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, T, B);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	assert_int_equal(relay_policy_next(&s, false), RELAY_MODE_COPY);
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, T - 1, B);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));

	/* The stream lasts the burst, through short wake-ups ... */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, 4 * T, B);
	assert_true(relay_policy_read(&s, 10, BIG));
	for (int i = 1; i < RELAY_IDLE_WAKES; i++) {
		relay_policy_wait(&s, B);
		assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	}
	/* ... and ends with it. */
	relay_policy_wait(&s, B);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));

	/* A full copy read past the threshold, then less than a buffer
	 * queued: that tail is copied; the read after it splices again. */
	relay_policy_init(&s, sp, T);
	assert_false(relay_policy_read(&s, T, T));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));
	relay_policy_queued(&s, T - 1, T);
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_COPY));
	assert_true(relay_policy_read(&s, T - 1, T));
	assert_int_equal(relay_policy_next(&s, true), want(sp, RELAY_MODE_SPLICE));

	/* A pipe that could not be had wins over the queue. */
	relay_policy_init(&s, sp, T);
	relay_policy_queued(&s, 4 * T, B);
	relay_policy_copy_for_burst(&s);
	assert_int_equal(relay_policy_next(&s, true), RELAY_MODE_COPY);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy),
		SPLICE_MATRIX(test_threshold),
		SPLICE_MATRIX(test_full_reads),
		SPLICE_MATRIX(test_burst_end),
		SPLICE_MATRIX(test_copy_for_burst),
		SPLICE_MATRIX(test_ask_queued),
		SPLICE_MATRIX(test_queued),
	};

	return cmocka_run_group_tests_name("test_relay_policy", tests, NULL, NULL);
}
