/* tests/test_relay.c: one direction of a proxied connection, for real: the
 * bytes arrive, in order, and the direction holds at most one buffer or one
 * pipe of them, for every splice setting (never, always, auto).
 *
 * The fixture (two TCP pairs, a writer and a reader thread) is in
 * relay_harness.c. Which mover carries the bytes is test_relay_mover.c's
 * concern, failures are test_relay_fail.c's, the policy's decisions
 * test_relay_policy.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay_harness.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

/* ---- transfers, per setting and size ------------------------------------ */

static void
test_transfer(void **state)
{
	struct fx *f = *state;
	const size_t n = f->n;
	const struct relay_dir *d = &f->d;

	if (f->splice == CONFIG_SPLICE_ALWAYS ||
	    (f->splice == CONFIG_SPLICE_AUTO && n >= 4 * MiB))
		need_splice();
	fx_start_reader(f, false);
	fx_start_writer(f, n);
	fx_start_relay(f);
	fx_loop(f, LOOP_MS);
	fx_check_transfer(f, n);

	switch (f->splice) {
	case CONFIG_SPLICE_NEVER:
		assert_int_equal(d->bytes[RELAY_MODE_SPLICE], 0);
		assert_int_equal(f->ctx.nbufs, 1);
		assert_int_equal(fx_pool_stats(f).created, 0);
		break;
	case CONFIG_SPLICE_ALWAYS:
		assert_int_equal(d->bytes[RELAY_MODE_COPY], 0);
		assert_int_equal(f->ctx.nbufs, 0);  /* never took a buffer */
		assert_int_equal(fx_pool_stats(f).created, 1);
		break;
	case CONFIG_SPLICE_AUTO:
		/* An exchange is copied and never pays for a pipe. A stream
		 * may splice from its first byte, when the kernel already
		 * holds a buffer of it (test_relay_mover's test_queued_*). */
		if (n <= BUFFER_SIZE) {
			assert_int_equal(d->bytes[RELAY_MODE_COPY], n);
			assert_int_equal(d->bytes[RELAY_MODE_SPLICE], 0);
			assert_int_equal(fx_pool_stats(f).created, 0);
		}
		if (n >= 4 * MiB)
			assert_true(d->bytes[RELAY_MODE_SPLICE] > n / 2);
		break;
	}
	for (int i = 0; i < RELAY_FALLBACK_MAX_; i++)
		assert_int_equal(f->ctx.stats.fallbacks[i], 0);
}

/* ---- backpressure --------------------------------------------------------- */

/* While B reads nothing, the direction stops reading X and holds one
 * buffer or one pipe, however much the writer pushes. */
static void
test_backpressure(void **state)
{
	struct fx *f = *state;
	const size_t n = 32 * MiB;
	struct relay_dir *d = &f->d;
	uint64_t last = UINT64_MAX;
	int still = 0;

	fx_need_splice(f);
	fx_start_reader(f, true);
	fx_start_writer(f, n);
	fx_start_relay(f);
	/* Until it has stood still, in WRITING, for a few rounds. */
	for (int i = 0; i < 400 && still < 5; i++) {
		fx_loop(f, 25);
		assert_int_equal(f->fired, 0);
		if (d->state == RELAY_WRITING && moved(d) == last)
			still++;
		else
			still = 0;
		last = moved(d);
	}
	assert_int_equal(still, 5);
	assert_int_equal(d->state, RELAY_WRITING);
	assert_false(d->rd_on);
	assert_false(event_pending(&d->rd, EV_READ, NULL));
	assert_true(d->wr_on);
	assert_true(event_pending(&d->wr, EV_WRITE, NULL));
	assert_true(atomic_load(&f->w.sent) < n);       /* the writer is held up */
	if (d->mover->mode == RELAY_MODE_SPLICE) {
		assert_true(d->pipe.rfd >= 0);
		assert_true(d->pipe.queued > 0);
		assert_true(d->pipe.queued <= d->pipe.size);
		assert_null(d->buf);
		assert_int_equal(fx_pool_stats(f).in_use, 1);
	} else {
		assert_non_null(d->buf);
		assert_true(d->len - d->off > 0);
		assert_true(d->len - d->off <= BUFFER_SIZE);
		assert_int_equal(d->pipe.rfd, -1);
		assert_int_equal(fx_pool_stats(f).in_use, 0);
	}
	if (f->splice == CONFIG_SPLICE_NEVER)
		assert_int_equal(d->mover->mode, RELAY_MODE_COPY);
	if (f->splice == CONFIG_SPLICE_ALWAYS)
		assert_int_equal(d->mover->mode, RELAY_MODE_SPLICE);

	/* Let B read: every byte arrives. */
	sem_post(&f->r.gate);
	fx_loop(f, LOOP_MS);
	fx_check_transfer(f, n);
}

/* Torn down while `out` is stuck, a direction returns its buffer, and its
 * pipe, still holding bytes, is closed rather than pooled for another
 * connection. */
static void
test_cleanup_while_held(void **state)
{
	struct fx *f = *state;
	struct pipepool_stats st;
	enum relay_mode mode;

	fx_need_splice(f);
	fx_start_reader(f, true);       /* B reads nothing */
	fx_start_writer(f, 32 * MiB);
	fx_start_relay(f);
	for (int i = 0; i < 400 && f->d.state != RELAY_WRITING; i++)
		fx_loop(f, 5);
	assert_int_equal(f->d.state, RELAY_WRITING);
	mode = f->d.mover->mode;
	relay_cleanup(&f->d);
	f->d_init = false;
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	assert_false(event_pending(&f->d.rd, EV_READ, NULL));
	assert_false(event_pending(&f->d.wr, EV_WRITE, NULL));
	st = fx_pool_stats(f);
	assert_int_equal(st.in_use, 0);
	if (mode == RELAY_MODE_SPLICE) {
		assert_int_equal(st.closed_dirty, 1);
		assert_int_equal(st.pooled, 0);
	} else {
		assert_int_equal(st.closed_dirty, 0);
		assert_int_equal(f->ctx.nbufs, 1);
	}
	switch (f->splice) {
	case CONFIG_SPLICE_NEVER:
		assert_int_equal(st.created, 0);
		break;
	case CONFIG_SPLICE_ALWAYS:
		assert_int_equal(mode, RELAY_MODE_SPLICE);
		assert_int_equal(f->ctx.nbufs, 0);
		break;
	case CONFIG_SPLICE_AUTO:
		/* The buffer, if the direction took one (to copy, or for a
		 * first read before anything was queued), went back. */
		if (f->d.bytes[RELAY_MODE_COPY] > 0)
			assert_int_equal(f->ctx.nbufs, 1);
		assert_true(f->ctx.nbufs <= 1);
		break;
	}
}

/* ---- an idle direction holds nothing -------------------------------------- */

static void
test_idle_holds_nothing(void **state)
{
	struct fx *f = *state;
	char req[KiB], got[KiB];

	fx_need_splice(f);
	fx_start_relay(f);
	pattern_fill((uint8_t *)req, 0, sizeof(req));
	assert_int_equal(send(f->a, req, sizeof(req), MSG_NOSIGNAL), sizeof(req));
	for (int i = 0; i < 400 && moved(&f->d) < sizeof(req); i++)
		fx_loop(f, 5);
	assert_int_equal(recv(f->b, got, sizeof(got), MSG_WAITALL), sizeof(got));
	assert_memory_equal(req, got, sizeof(req));

	/* The exchange is over; the connection stays open and idle. */
	assert_int_equal(f->fired, 0);
	assert_int_equal(f->d.state, RELAY_READING);
	assert_true(f->d.rd_on);
	assert_false(f->d.wr_on);
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	assert_int_equal(fx_pool_stats(f).in_use, 0);
	if (f->splice == CONFIG_SPLICE_ALWAYS) {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], sizeof(req));
		assert_int_equal(fx_pool_stats(f).pooled, 1);
	} else {                        /* auto: an exchange is copied */
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], sizeof(req));
		assert_int_equal(f->ctx.nbufs, 1);
	}

	/* And it still ends cleanly. */
	assert_int_equal(shutdown(f->a, SHUT_WR), 0);
	fx_loop(f, LOOP_MS);
	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_DONE);
	assert_int_equal(recv(f->b, got, sizeof(got), 0), 0);
}

/* ---- urgent data ---------------------------------------------------------- */

/* Half the pattern, one urgent byte (MSG_OOB), the other half, then EOF. */
static void *
urgent_writer_main(void *arg)
{
	struct writer *w = arg;
	size_t half = w->n / 2;
	uint8_t *buf = malloc(w->n);
	ssize_t k;

	if (buf == NULL) {
		w->err = ENOMEM;
		return NULL;
	}
	pattern_fill(buf, 0, w->n);
	if ((k = send(w->fd, buf, half, MSG_NOSIGNAL)) != (ssize_t)half ||
	    send(w->fd, "U", 1, MSG_OOB | MSG_NOSIGNAL) != 1 ||
	    (k = send(w->fd, buf + half, w->n - half, MSG_NOSIGNAL)) !=
	    (ssize_t)(w->n - half) || shutdown(w->fd, SHUT_WR) == -1)
		w->err = errno ? errno : EIO;
	else
		atomic_store(&w->sent, w->n);
	free(buf);
	return NULL;
}

/* The urgent byte is not part of the stream: recv(2) steps over it, while
 * splice(2) stops at the mark, reporting EAGAIN or a false EOF; a splicing
 * direction must step over it by copying. Every in-band byte arrives, then
 * the real EOF, and the worker does not spin meanwhile. */
static void
test_urgent(void **state)
{
	struct fx *f = *state;
	const size_t n = 400 * KiB;

	fx_need_splice(f);
	f->w.n = n;
	fx_start_reader(f, false);
	fx_start_relay(f);
	assert_int_equal(pthread_create(&f->w.t, NULL, urgent_writer_main, &f->w), 0);
	f->w.started = true;
	fx_loop(f, LOOP_MS);
	assert_false(f->timed_out);
	fx_check_transfer(f, n);
	assert_true(f->d.bytes[RELAY_MODE_COPY] > 0);   /* past the mark, or all */
	if (f->splice == CONFIG_SPLICE_NEVER)
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], 0);
	if (f->splice == CONFIG_SPLICE_ALWAYS)
		assert_true(f->d.bytes[RELAY_MODE_SPLICE] > 0);
}

/* ---- names ---------------------------------------------------------------- */

/* The names logs and the exit totals print: one per value, none missing. */
static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(relay_state_name(RELAY_READING), "reading");
	assert_string_equal(relay_state_name(RELAY_WRITING), "writing");
	assert_string_equal(relay_state_name(RELAY_DONE), "done");
	assert_string_equal(relay_state_name(RELAY_FAILED), "failed");
	assert_string_equal(relay_fallback_name(RELAY_FALLBACK_POOL_FULL), "pool_full");
	assert_string_equal(relay_fallback_name(RELAY_FALLBACK_PIPE_BUDGET), "pipe_budget");
	assert_string_equal(relay_fallback_name(RELAY_FALLBACK_PIPE_ERROR), "pipe_error");
	assert_string_equal(relay_fallback_name(RELAY_FALLBACK_UNSUPPORTED), "unsupported");
}

/* ---- the table ------------------------------------------------------------ */

#define TRANSFER(name_, splice_, n_) { .name = "test_transfer_" name_ "_" #n_, \
	.test_func = test_transfer, .setup_func = fx_setup, \
	.teardown_func = fx_teardown, \
	.initial_state = &(struct relay_params){ .splice = (splice_), .n = (n_) } }
/* Nothing, a byte, an exchange, the threshold, streams. */
#define TRANSFERS(name_, splice_) \
	TRANSFER(name_, splice_, 0), TRANSFER(name_, splice_, 1), \
	TRANSFER(name_, splice_, 1024), TRANSFER(name_, splice_, 65536), \
	TRANSFER(name_, splice_, 1048576), TRANSFER(name_, splice_, 4194304)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		TRANSFERS("never", CONFIG_SPLICE_NEVER),
		TRANSFERS("always", CONFIG_SPLICE_ALWAYS),
		TRANSFERS("auto", CONFIG_SPLICE_AUTO),
		RELAY_MATRIX(test_backpressure),
		RELAY_MATRIX(test_cleanup_while_held),
		RELAY_MATRIX(test_idle_holds_nothing),
		RELAY_MATRIX(test_urgent),
	};
	return cmocka_run_group_tests_name("test_relay", tests, NULL, NULL);
}
