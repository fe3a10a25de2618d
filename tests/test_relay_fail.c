/* tests/test_relay_fail.c: how a direction fails, for every splice setting:
 * a reset on either side ends it FAILED with the side and the errno, and a
 * kernel that refuses to splice sockets costs no byte. Also a worker's
 * relay context that cannot have its memory.
 *
 * calloc(3) is wrapped (-Wl,--wrap=calloc) to try a relay context without
 * memory, and splice(2) (-Wl,--wrap=splice) to try a kernel that refuses
 * it; the splice tests come last, because the refusal turns splicing off
 * for the whole process. The fixture is relay_harness.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/zerocopy.h"

/* ---- the wrapped calloc(3), event_add() and splice(2) -------------------- */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

static atomic_bool calloc_refuse_once;  /* next call: NULL with ENOMEM */

void *
__wrap_calloc(size_t n, size_t size)
{
	if (atomic_exchange(&calloc_refuse_once, false)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

int __real_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv);

static struct event *refuse_add;        /* its next add: -1 with ENOSPC */

/* ENOSPC: what epoll_ctl says past fs.epoll.max_user_watches. */
int
__wrap_event_add(struct event *ev, const struct timeval *tv)
{
	if (ev != NULL && ev == refuse_add) {
		refuse_add = NULL;
		errno = ENOSPC;
		return -1;
	}
	return __real_event_add(ev, tv);
}

ssize_t __real_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
    size_t len, unsigned int flags);
ssize_t __wrap_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
    size_t len, unsigned int flags);

static atomic_bool splice_refuse_once;  /* next call: -1 with EINVAL */
static atomic_uint splice_calls;

ssize_t
__wrap_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
    size_t len, unsigned int flags)
{
	atomic_fetch_add(&splice_calls, 1);
	if (atomic_exchange(&splice_refuse_once, false)) {
		errno = EINVAL;
		return -1;
	}
	return __real_splice(fd_in, off_in, fd_out, off_out, len, flags);
}

/* The direction ended FAILED on `side`, once, and polls nothing more. */
static void
assert_failed(const struct fx *f, enum relay_side side)
{
	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_FAILED);
	assert_int_equal(f->d.fail_side, side);
	assert_false(f->d.rd_on);
	assert_false(f->d.wr_on);
	assert_false(event_pending(&f->d.rd, EV_READ, NULL));
	assert_false(event_pending(&f->d.wr, EV_WRITE, NULL));
}

/* ---- a worker's relay context without memory ----------------------------- */

static void
test_ctx_init_nomem(void **state)
{
	struct relay_ctx ctx;

	(void)state;
	atomic_store(&calloc_refuse_once, true);
	errno = 0;
	assert_int_equal(relay_ctx_init(&ctx, NULL, NULL, BUFFER_SIZE), -1);
	assert_int_equal(errno, ENOMEM);
	assert_false(atomic_load(&calloc_refuse_once));
	relay_ctx_cleanup(&ctx);        /* safe after a failed init */
	assert_int_equal(relay_ctx_init(&ctx, NULL, NULL, BUFFER_SIZE), 0);
	assert_non_null(ctx.bufs);
	relay_ctx_cleanup(&ctx);
}

/* ---- a reset on the input side ------------------------------------------ */

static void
test_reset_in(void **state)
{
	struct fx *f = *state;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	const size_t total = 4 * MiB;
	uint8_t *buf = malloc(256 * KiB);
	size_t sent = 0;
	int unread;

	fx_need_splice(f);
	assert_non_null(buf);
	fx_start_reader(f, false);
	fx_start_relay(f);
	/* Data flows: send without blocking, let the relay run, repeat; the
	 * last round is not given to the relay. */
	for (int i = 0; i < 200 && sent < total; i++) {
		ssize_t k;

		if (i > 0)
			fx_loop(f, 5);
		assert_int_equal(f->fired, 0);
		pattern_fill(buf, sent, 256 * KiB);
		k = send(f->a, buf, 256 * KiB, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k > 0)
			sent += (size_t)k;
		else
			assert_true(k == -1 && errno == EAGAIN);
	}
	free(buf);
	assert_int_equal(sent, total);
	/* Reset while bytes still wait in X, unread. */
	assert_int_equal(ioctl(f->x, FIONREAD, &unread), 0);
	assert_true(unread > 0);
	assert_int_equal(setsockopt(f->a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close_fd(&f->a);
	fx_loop(f, LOOP_MS);

	assert_failed(f, RELAY_SIDE_IN);
	assert_int_equal(f->d.err, ECONNRESET);
	assert_true(moved(&f->d) <= sent);
	/* What was written before the reset arrived intact. A failed direction
	 * does not shut `out` down (the connection decides); do it here. */
	relay_cleanup(&f->d);
	f->d_init = false;
	assert_int_equal(fx_pool_stats(f).in_use, 0);
	assert_true(f->ctx.nbufs <= 1);
	assert_int_equal(shutdown(f->y, SHUT_WR), 0);
	pthread_join(f->r.t, NULL);
	f->r.started = false;
	assert_true(f->r.eof);
	assert_true(f->r.bad_at == SIZE_MAX);
	assert_int_equal(atomic_load(&f->r.got), moved(&f->d));
}

/* ---- a reset on the output side ----------------------------------------- */

static void
test_reset_out(void **state)
{
	struct fx *f = *state;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	fx_need_splice(f);
	fx_start_writer(f, 32 * MiB);
	fx_start_relay(f);
	for (int i = 0; i < 400 && moved(&f->d) < MiB; i++)
		fx_loop(f, 5);
	assert_true(moved(&f->d) >= MiB);
	assert_int_equal(setsockopt(f->b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close_fd(&f->b);
	fx_loop(f, LOOP_MS);

	assert_failed(f, RELAY_SIDE_OUT);
	assert_true(f->d.err == ECONNRESET || f->d.err == EPIPE);
}

/* ---- a socket that cannot be polled --------------------------------------- */

/* Without its read event a direction would wait for ever (for the idle
 * timeout, in the daemon): it fails instead, there and then, on the side
 * it could not poll, holding nothing. */
static void
test_watch_refused(void **state)
{
	struct fx *f = *state;

	fx_need_splice(f);
	fx_init_relay(f);
	refuse_add = &f->d.rd;
	relay_watch(&f->d);
	assert_null(refuse_add);
	assert_failed(f, RELAY_SIDE_IN);
	assert_int_equal(f->d.err, ENOSPC);
}

/* The same when it waits for `in` again after an exchange. */
static void
test_wait_refused(void **state)
{
	struct fx *f = *state;
	char req[KiB], got[KiB];
	int queued;

	fx_need_splice(f);
	pattern_fill((uint8_t *)req, 0, sizeof(req));
	assert_int_equal(send(f->a, req, sizeof(req), MSG_NOSIGNAL), sizeof(req));
	/* All in X before the direction starts: its first read takes it. */
	do
		assert_int_equal(ioctl(f->x, FIONREAD, &queued), 0);
	while (queued < (int)sizeof(req) && usleep(1000) == 0);
	refuse_add = &f->d.rd;
	fx_start_relay(f);
	assert_null(refuse_add);
	assert_failed(f, RELAY_SIDE_IN);
	assert_int_equal(f->d.err, ENOSPC);
	assert_int_equal(moved(&f->d), sizeof(req));
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	assert_int_equal(recv(f->b, got, sizeof(got), MSG_WAITALL), sizeof(got));
	assert_memory_equal(req, got, sizeof(req));
}

/* And when `out` is full: the direction fails on the output side. */
static void
test_write_refused(void **state)
{
	struct fx *f = *state;

	fx_need_splice(f);
	fx_start_reader(f, true);       /* B reads nothing */
	fx_start_writer(f, 32 * MiB);
	fx_init_relay(f);
	refuse_add = &f->d.wr;
	relay_start(&f->d);
	fx_loop(f, LOOP_MS);
	assert_false(f->timed_out);
	assert_null(refuse_add);
	assert_failed(f, RELAY_SIDE_OUT);
	assert_int_equal(f->d.err, ENOSPC);
}

/* ---- LAST: a kernel that refuses to splice sockets ------------------------ */

/* The first splice a direction tries is refused with EINVAL: it copies
 * every byte, counts the fallback once, and splicing is off for the whole
 * process, so no direction tries again. The matrix runs in order: never
 * tries no splice; always meets the refusal; auto, after it, finds
 * splicing off and copies without trying. */
static void
test_splice_refused(void **state)
{
	struct fx *f = *state;
	const size_t n = MiB;
	const bool could = zc_splice_supported();
	const bool tries = f->splice != CONFIG_SPLICE_NEVER && could;

	fx_need_splice(f);
	atomic_store(&splice_calls, 0);
	atomic_store(&splice_refuse_once, tries);
	fx_start_reader(f, false);
	fx_start_writer(f, n);
	fx_start_relay(f);
	fx_loop(f, LOOP_MS);
	atomic_store(&splice_refuse_once, false);
	fx_check_transfer(f, n);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], n);
	assert_int_equal(f->ctx.stats.fallbacks[RELAY_FALLBACK_UNSUPPORTED], tries ? 1 : 0);
	assert_int_equal(atomic_load(&splice_calls), tries ? 1 : 0);
	if (tries)
		assert_false(zc_splice_supported());
	else
		assert_int_equal(zc_splice_supported(), could);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_init_nomem),
		RELAY_MATRIX(test_reset_in),
		RELAY_MATRIX(test_reset_out),
		RELAY_MATRIX(test_watch_refused),
		RELAY_MATRIX(test_wait_refused),
		RELAY_MATRIX(test_write_refused),
		RELAY_MATRIX(test_splice_refused),  /* last: turns splicing off */
	};
	return cmocka_run_group_tests_name("test_relay_fail", tests, NULL, NULL);
}
