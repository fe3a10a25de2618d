/* tests/test_relay_mover.c: which mover carries a direction's bytes, for
 * every splice setting. never copies, always splices, auto copies
 * exchanges and splices streams; when no pipe can be had, the bytes are
 * copied and the fallback counted, and the connection goes on. auto asks
 * the kernel how much is queued: a stream queued before the first read
 * splices from its first byte, a tail one copy takes is copied.
 *
 * The fixture is relay_harness.c's; the policy's decisions alone, without
 * sockets, are test_relay_policy.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay_harness.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* ---- exchanges copy, streams splice, and back ----------------------------- */

/* Many small exchanges on one connection add up to more than the
 * threshold, but each is a burst of its own: under auto none pays for a
 * pipe. */
static void
test_exchanges(void **state)
{
	struct fx *f = *state;
	const size_t msg = KiB, count = 2 * THRESHOLD / KiB;
	const bool splices = f->splice == CONFIG_SPLICE_ALWAYS;
	const enum relay_mode want = splices ? RELAY_MODE_SPLICE : RELAY_MODE_COPY;

	fx_need_splice(f);
	fx_start_reader(f, false);
	fx_start_relay(f);
	for (size_t i = 0; i < count; i++)
		fx_feed(f, i * msg, msg);
	assert_int_equal(f->d.bytes[splices ? RELAY_MODE_COPY : RELAY_MODE_SPLICE], 0);
	assert_int_equal(fx_pool_stats(f).created, splices ? 1 : 0);
	fx_end_stream(f, count * msg);
	assert_int_equal(f->d.bytes[want], count * msg);
}

/* Under auto a stream switches to splicing; once it is over and the
 * connection goes back to small exchanges, those are copied again. never
 * and always carry both with their one mover. */
static void
test_stream_then_exchanges(void **state)
{
	struct fx *f = *state;
	const size_t stream = 4 * MiB, msg = KiB;
	uint64_t copied, spliced;
	size_t off;

	if (f->splice != CONFIG_SPLICE_NEVER)
		need_splice();
	fx_start_reader(f, false);
	fx_start_relay(f);
	fx_feed(f, 0, stream);
	if (f->splice == CONFIG_SPLICE_AUTO)
		assert_true(f->d.bytes[RELAY_MODE_SPLICE] > stream / 2);
	/* The first exchanges may still ride the stream's burst. */
	off = stream;
	for (int i = 0; i < RELAY_IDLE_WAKES; i++, off += msg)
		fx_feed(f, off, msg);
	copied = f->d.bytes[RELAY_MODE_COPY];
	spliced = f->d.bytes[RELAY_MODE_SPLICE];
	for (int i = 0; i < 10; i++, off += msg)
		fx_feed(f, off, msg);
	if (f->splice == CONFIG_SPLICE_ALWAYS) {
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], 0);
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE] - spliced, 10 * msg);
	} else {
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY] - copied, 10 * msg);
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], spliced);
	}
	if (f->splice == CONFIG_SPLICE_NEVER)
		assert_int_equal(spliced, 0);
	assert_int_equal(fx_pool_stats(f).in_use, 0);  /* the pipe went back */
	fx_end_stream(f, off);
}

/* ---- auto asks the kernel what it holds --------------------------------- */

/* len pattern bytes from off, all in X's receive queue before the relay
 * runs again: what the kernel holds when the direction next reads. */
static void
queue(struct fx *f, size_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	size_t sent = 0;
	int q = -1;

	assert_non_null(buf);
	pattern_fill(buf, off, len);
	for (int i = 0; i < 2000 && sent < len; i++) {
		struct pollfd p = { .fd = f->a, .events = POLLOUT };
		ssize_t k = send(f->a, buf + sent, len - sent,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (k > 0)
			sent += (size_t)k;
		else
			assert_int_equal(errno, EAGAIN);
		if (sent < len)
			(void)poll(&p, 1, 10);
	}
	free(buf);
	assert_int_equal(sent, len);
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(ioctl(f->x, FIONREAD, &q), 0);
		if ((size_t)q == len)
			break;
		(void)poll(NULL, 0, 1);
	}
	assert_int_equal(q, len);
}

/* A stream already queued when the direction first reads is spliced from
 * its first byte under auto, not copied a buffer or two first. (A
 * threshold of one buffer: a buffer queued is a stream, and the first
 * window of a loopback connection surely holds it.) */
static void
test_queued_stream(void **state)
{
	struct fx *f = *state;
	const size_t n = 3 * BUFFER_SIZE;

	if (f->splice != CONFIG_SPLICE_NEVER)
		need_splice();
	fx_start_reader(f, false);
	fx_init_relay_threshold(f, BUFFER_SIZE);
	queue(f, 0, n);
	relay_start(&f->d);
	for (int i = 0; i < 2000 && moved(&f->d) < n && !f->fired; i++)
		fx_loop(f, 2);
	assert_int_equal(moved(&f->d), n);
	assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE],
	    f->splice == CONFIG_SPLICE_NEVER ? 0 : n);
	fx_end_stream(f, n);
}

/* A stream that paused long enough to end its burst asks again at the
 * next one, though the direction still has its splice mover: a stream
 * queued then is spliced from its first byte too. */
static void
test_queued_after_stream(void **state)
{
	struct fx *f = *state;
	const size_t n = 3 * BUFFER_SIZE, msg = 100;
	size_t off = 0;

	if (f->splice != CONFIG_SPLICE_NEVER)
		need_splice();
	fx_start_reader(f, false);
	fx_init_relay_threshold(f, BUFFER_SIZE);
	for (int round = 0; round < 2; round++) {
		queue(f, off, n);
		off += n;
		if (round == 0)
			relay_start(&f->d);
		for (int i = 0; i < 2000 && moved(&f->d) < off && !f->fired; i++)
			fx_loop(f, 2);
		assert_int_equal(moved(&f->d), off);
		/* Wake-ups under a buffer: the burst ends. */
		for (int i = 0; i < RELAY_IDLE_WAKES; i++, off += msg)
			fx_feed(f, off, msg);
	}
	/* Under auto the short wake-ups ride each stream's burst too. */
	if (f->splice != CONFIG_SPLICE_NEVER)
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], 0);
	fx_end_stream(f, off);
}

/* Past the threshold after a full copy read, a tail that one more copy
 * read takes whole is copied: auto takes no pipe for it. */
static void
test_queued_tail(void **state)
{
	struct fx *f = *state;
	const size_t tail = 100, n = KiB + BUFFER_SIZE + tail;

	fx_need_splice(f);
	fx_start_reader(f, false);
	fx_init_relay_threshold(f, BUFFER_SIZE);
	relay_start(&f->d);
	fx_feed(f, 0, KiB);                     /* the first read: short */
	queue(f, KiB, BUFFER_SIZE + tail);
	for (int i = 0; i < 2000 && moved(&f->d) < n && !f->fired; i++)
		fx_loop(f, 2);
	assert_int_equal(moved(&f->d), n);
	if (f->splice == CONFIG_SPLICE_ALWAYS) {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], n);
	} else {
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], n);
		assert_int_equal(fx_pool_stats(f).created, 0);
	}
	fx_end_stream(f, n);
}

/* ---- fallbacks: no pipe to be had, the bytes are copied ------------------- */

/* A stream that would splice (always from its first byte, auto past the
 * threshold) copies instead and counts why; never does not ask. */
static void
fallback(struct fx *f, enum relay_fallback why)
{
	const size_t n = MiB;

	fx_start_reader(f, false);
	fx_start_writer(f, n);
	fx_start_relay(f);
	fx_loop(f, LOOP_MS);
	fx_check_transfer(f, n);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], n);
	if (f->splice == CONFIG_SPLICE_NEVER)
		assert_int_equal(f->ctx.stats.fallbacks[why], 0);
	else
		assert_true(f->ctx.stats.fallbacks[why] >= 1);
	for (int i = 0; i < RELAY_FALLBACK_MAX_; i++)
		if (i != (int)why)
			assert_int_equal(f->ctx.stats.fallbacks[i], 0);
}

static void
test_fallback_pool_full(void **state)
{
	struct fx *f = *state;

	if (f->splice != CONFIG_SPLICE_NEVER)
		need_splice();
	fx_use_pool(f, 0, PIPE_SIZE, MIN_PIPE);
	fallback(f, RELAY_FALLBACK_POOL_FULL);
}

/* A one-page pipe (what the kernel grants past the per-user budget) is
 * refused by the pool: the direction copies. */
static void
test_fallback_pipe_budget(void **state)
{
	struct fx *f = *state;

	if (f->splice != CONFIG_SPLICE_NEVER)
		need_splice();
	fx_use_pool(f, 16, 4096, MIN_PIPE);
	fallback(f, RELAY_FALLBACK_PIPE_BUDGET);
}

/* A splicing direction gives its pipe back whenever it waits for `in`; if
 * the pool is empty and at its cap when bytes come again (other
 * connections took the pipes meanwhile), it copies them and counts the
 * fallback: the connection is never dropped for it. Exchanges under never
 * and auto do not ask for a pipe at all. */
static void
test_pool_full_after_idle(void **state)
{
	struct fx *f = *state;
	const bool splices = f->splice == CONFIG_SPLICE_ALWAYS;
	enum pipepool_fail why;

	need_splice();                  /* for a pipe the test can take */
	fx_use_pool(f, 1, PIPE_SIZE, MIN_PIPE);
	fx_start_reader(f, false);
	fx_start_relay(f);
	fx_feed(f, 0, KiB);
	if (splices) {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], KiB);
		assert_int_equal(fx_pool_stats(f).pooled, 1);
	}

	/* Another connection takes the only pipe. */
	assert_int_equal(pipepool_get(f->pool, &f->held, &why), 0);
	fx_feed(f, KiB, KiB);
	assert_int_equal(f->d.state, RELAY_READING);
	assert_int_equal(f->ctx.stats.fallbacks[RELAY_FALLBACK_POOL_FULL],
	    splices ? 1 : 0);

	/* It comes back: the next burst splices again. */
	pipepool_put(f->pool, &f->held);
	fx_feed(f, 2 * KiB, KiB);
	if (splices) {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], 2 * KiB);
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], KiB);
	} else {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], 0);
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], 3 * KiB);
	}
	fx_end_stream(f, 3 * KiB);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		RELAY_MATRIX(test_exchanges),
		RELAY_MATRIX(test_stream_then_exchanges),
		RELAY_MATRIX(test_queued_stream),
		RELAY_MATRIX(test_queued_after_stream),
		RELAY_MATRIX(test_queued_tail),
		RELAY_MATRIX(test_fallback_pool_full),
		RELAY_MATRIX(test_fallback_pipe_budget),
		RELAY_MATRIX(test_pool_full_after_idle),
	};
	return cmocka_run_group_tests_name("test_relay_mover", tests, NULL, NULL);
}
