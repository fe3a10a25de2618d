/* tests/test_relay.c: one direction of a proxied connection, for real.
 *
 * Two connected TCP pairs on 127.0.0.1, A <-> X and Y <-> B; the direction
 * under test moves X -> Y inside a libevent loop. A writer thread sends a
 * deterministic pattern into A and shuts it down; a reader thread reads B to
 * end of stream and checks every byte. Each data-path test runs per splice
 * policy (never, always, auto). splice(2) is wrapped (-Wl,--wrap=splice) so
 * that a kernel refusing it can be tried; that test comes last, because it
 * turns splicing off for the whole process.
 *
 * Bounds: every test runs under alarm(); each loop has an event timer; the
 * threads' sockets have send and receive timeouts, and teardown shuts the
 * sockets down to wake them before joining. Teardown also checks that the
 * process's fd count is back where it was. */
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
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/pipepool.h"
#include "spliced/relay.h"
#include "spliced/zerocopy.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BUFFER_SIZE (16 * KiB)          /* the default buffer_size */
#define THRESHOLD (64 * KiB)            /* the default splice_threshold */
#define PIPE_SIZE (256 * KiB)           /* the default pipe_size */
#define MIN_PIPE (16 * KiB)             /* what worker.c refuses below */
#define TEST_SECONDS 60                 /* alarm() per test */
#define IO_TIMEOUT_S 20                 /* the threads' socket timeouts */
#define LOOP_MS 20000                   /* one wait for the direction */

/* ---- the wrapped splice(2) -------------------------------------------- */

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

/* ---- the byte pattern --------------------------------------------------- */

/* Byte i of every stream: a multiplicative hash of the offset, so a byte
 * lost, repeated or moved shows up (no short period to hide in). */
static uint8_t
pattern(uint64_t i)
{
	return (uint8_t)(((uint32_t)i * 2654435761u) >> 24);
}

static void
pattern_fill(uint8_t *p, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n; k++)
		p[k] = pattern(off + k);
}

/* ---- the peers: writer into A, reader out of B ------------------------- */

struct writer {
	pthread_t t;
	bool started;
	int fd;
	size_t n;                   /* to send, then shutdown(SHUT_WR) */
	atomic_size_t sent;
	int err;                    /* 0, or the errno that stopped it */
};

struct reader {
	pthread_t t;
	bool started;
	int fd;
	sem_t gate;                 /* the reader waits for it if gated */
	bool gated;
	atomic_size_t got;
	size_t bad_at;              /* first wrong byte, or SIZE_MAX */
	bool eof;
	int err;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	static const size_t chunk = 256 * KiB;
	uint8_t *buf = malloc(chunk);
	size_t off = 0;

	if (buf == NULL) {
		w->err = ENOMEM;
		return NULL;
	}
	while (off < w->n) {
		size_t len = w->n - off < chunk ? w->n - off : chunk;
		ssize_t k;

		pattern_fill(buf, off, len);
		k = send(w->fd, buf, len, MSG_NOSIGNAL);
		if (k <= 0) {
			w->err = k < 0 ? errno : EIO;
			break;
		}
		off += (size_t)k;
		atomic_store(&w->sent, off);
	}
	if (off == w->n && shutdown(w->fd, SHUT_WR) == -1)
		w->err = errno;
	free(buf);
	return NULL;
}

static void *
reader_main(void *arg)
{
	struct reader *r = arg;
	static const size_t chunk = 64 * KiB;
	uint8_t *buf = malloc(chunk);
	struct timespec until;
	size_t off = 0;

	r->bad_at = SIZE_MAX;
	if (buf == NULL) {
		r->err = ENOMEM;
		return NULL;
	}
	if (r->gated) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += IO_TIMEOUT_S;
		while (sem_timedwait(&r->gate, &until) == -1 && errno == EINTR)
			;
	}
	for (;;) {
		ssize_t k = recv(r->fd, buf, chunk, 0);

		if (k == 0) {
			r->eof = true;
			break;
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			r->err = errno;
			break;
		}
		for (size_t i = 0; i < (size_t)k && r->bad_at == SIZE_MAX; i++)
			if (buf[i] != pattern(off + i))
				r->bad_at = off + i;
		off += (size_t)k;
		atomic_store(&r->got, off);
	}
	free(buf);
	return NULL;
}

/* ---- the fixture -------------------------------------------------------- */

struct params {
	enum config_splice policy;
	size_t n;
};

struct fx {
	struct params prm;
	int fds_before;
	int a, x, y, b;             /* A <-> X, Y <-> B; the direction: X -> Y */
	struct event_base *base;
	struct event *timer;
	bool timed_out;
	struct pipepool *pool;
	struct relay_ctx ctx;
	struct relay_dir d;
	bool d_init;
	int fired;                  /* times the direction's callback ran */
	struct writer w;
	struct reader r;
	struct spipe held;          /* a pipe the test took from the pool */
};

static void
set_timeouts(int fd)
{
	struct timeval tv = { IO_TIMEOUT_S, 0 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* A connected pair over 127.0.0.1: *peer stays blocking (a thread's end),
 * *mine is non-blocking (the relay's end). */
static void
tcp_pair(int *peer, int *mine)
{
	tcp_connected_pair(peer, mine, SOCK_NONBLOCK);
	set_timeouts(*peer);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *f = arg;

	(void)fd, (void)what;
	f->timed_out = true;
	event_base_loopbreak(f->base);
}

static void
done_cb(struct relay_dir *d, void *arg)
{
	struct fx *f = arg;

	assert_ptr_equal(d, &f->d);
	f->fired++;
	event_base_loopbreak(f->base);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	alarm(TEST_SECONDS);
	if (*state != NULL)
		f->prm = *(const struct params *)*state;
	f->a = f->x = f->y = f->b = -1;
	f->held.rfd = f->held.wfd = -1;
	f->fds_before = count_fds();
	f->base = event_base_new();
	assert_non_null(f->base);
	f->timer = evtimer_new(f->base, timeout_cb, f);
	assert_non_null(f->timer);
	f->pool = pipepool_new(16, PIPE_SIZE, MIN_PIPE, 0);
	assert_non_null(f->pool);
	relay_ctx_init(&f->ctx, f->base, f->pool, BUFFER_SIZE);
	assert_non_null(f->ctx.bufs);
	tcp_pair(&f->a, &f->x);
	tcp_pair(&f->b, &f->y);
	f->w.fd = f->a;
	f->r.fd = f->b;
	assert_int_equal(sem_init(&f->r.gate, 0, 0), 0);
	*state = f;
	return 0;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int before = f->fds_before;

	if (f->d_init)
		relay_cleanup(&f->d);
	pipepool_put(f->pool, &f->held);
	/* Wake the threads wherever they block: shutdown makes a blocked send
	 * fail and a blocked recv return 0. */
	if (f->a >= 0)
		(void)shutdown(f->a, SHUT_RDWR);
	if (f->b >= 0)
		(void)shutdown(f->b, SHUT_RDWR);
	sem_post(&f->r.gate);
	if (f->w.started)
		pthread_join(f->w.t, NULL);
	if (f->r.started)
		pthread_join(f->r.t, NULL);
	sem_destroy(&f->r.gate);
	close_fd(&f->a);
	close_fd(&f->x);
	close_fd(&f->y);
	close_fd(&f->b);
	relay_ctx_cleanup(&f->ctx);
	pipepool_free(f->pool);
	event_free(f->timer);
	event_base_free(f->base);
	free(f);
	alarm(0);
	assert_int_equal(count_fds(), before);
	return 0;
}

/* Run the loop until the direction's callback ran or ms passed. */
static void
loop(struct fx *f, unsigned ms)
{
	struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

	f->timed_out = false;
	evtimer_add(f->timer, &tv);
	while (!f->fired && !f->timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	evtimer_del(f->timer);
}

static void
start_writer(struct fx *f, size_t n)
{
	f->w.n = n;
	assert_int_equal(pthread_create(&f->w.t, NULL, writer_main, &f->w), 0);
	f->w.started = true;
}

static void
start_reader(struct fx *f, bool gated)
{
	f->r.gated = gated;
	assert_int_equal(pthread_create(&f->r.t, NULL, reader_main, &f->r), 0);
	f->r.started = true;
}

static void
start_relay(struct fx *f, enum config_splice policy)
{
	assert_int_equal(relay_init(&f->d, &f->ctx, f->x, f->y, policy,
	    THRESHOLD, done_cb, f), 0);
	f->d_init = true;
	relay_start(&f->d);
}

static void
use_pool(struct fx *f, unsigned max, size_t pipe_size, size_t min_size)
{
	pipepool_free(f->pool);
	f->pool = f->ctx.pipes = pipepool_new(max, pipe_size, min_size, 0);
	assert_non_null(f->pool);
}

static void
need_splice(void)
{
	if (!zc_splice_supported()) {
		print_message("skipped: this build cannot splice (zero-copy: %s)\n",
		    zc_backend_name());
		skip();
	}
}

static struct pipepool_stats
pool_stats(const struct fx *f)
{
	struct pipepool_stats st;

	pipepool_stats(f->pool, &st);
	return st;
}

static uint64_t
moved(const struct relay_dir *d)
{
	return d->bytes[RELAY_MODE_COPY] + d->bytes[RELAY_MODE_SPLICE];
}

/* Everything sent arrived intact, then end of stream: the direction is
 * done, holds nothing, and gave its buffer and pipe back. */
static void
join_and_check_transfer(struct fx *f, size_t n)
{
	struct pipepool_stats st;

	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_DONE);
	assert_int_equal(moved(&f->d), n);
	if (f->w.started) {
		pthread_join(f->w.t, NULL);
		f->w.started = false;
	}
	pthread_join(f->r.t, NULL);
	f->r.started = false;
	assert_int_equal(f->w.err, 0);
	assert_int_equal(atomic_load(&f->w.sent), n);
	assert_int_equal(f->r.err, 0);
	assert_true(f->r.bad_at == SIZE_MAX);
	assert_int_equal(atomic_load(&f->r.got), n);
	assert_true(f->r.eof);      /* the shutdown was forwarded */
	assert_int_equal(f->ctx.stats.bytes[RELAY_MODE_COPY], f->d.bytes[RELAY_MODE_COPY]);
	assert_int_equal(f->ctx.stats.bytes[RELAY_MODE_SPLICE], f->d.bytes[RELAY_MODE_SPLICE]);

	/* Holders given back. */
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	st = pool_stats(f);
	assert_int_equal(st.in_use, 0);
	assert_int_equal(st.closed_dirty, 0);
	assert_int_equal(st.pooled, st.created);
	assert_true(st.created <= 1);   /* one pipe at most, reused */
	assert_true(f->ctx.nbufs <= 1);
	if (f->d.bytes[RELAY_MODE_COPY] > 0)
		assert_int_equal(f->ctx.nbufs, 1);
	if (f->d.bytes[RELAY_MODE_SPLICE] > 0)
		assert_int_equal(st.pooled, 1);
}

/* ---- (1) the policy, a pure function ----------------------------------- */

static void
test_policy(void **state)
{
	static const enum config_splice all[] = { CONFIG_SPLICE_AUTO,
	    CONFIG_SPLICE_ALWAYS, CONFIG_SPLICE_NEVER };
	const size_t t = THRESHOLD;
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

/* ---- (2) + (5) transfers, per policy and size --------------------------- */

static void
test_transfer(void **state)
{
	struct fx *f = *state;
	const size_t n = f->prm.n;
	const struct relay_dir *d = &f->d;

	if (f->prm.policy == CONFIG_SPLICE_ALWAYS ||
	    (f->prm.policy == CONFIG_SPLICE_AUTO && n >= 4 * MiB))
		need_splice();
	start_reader(f, false);
	start_writer(f, n);
	start_relay(f, f->prm.policy);
	loop(f, LOOP_MS);
	join_and_check_transfer(f, n);

	switch (f->prm.policy) {
	case CONFIG_SPLICE_NEVER:
		assert_int_equal(d->bytes[RELAY_MODE_SPLICE], 0);
		assert_int_equal(f->ctx.nbufs, 1);
		assert_int_equal(pool_stats(f).created, 0);
		break;
	case CONFIG_SPLICE_ALWAYS:
		assert_int_equal(d->bytes[RELAY_MODE_COPY], 0);
		assert_int_equal(f->ctx.nbufs, 0);  /* never took a buffer */
		assert_int_equal(pool_stats(f).created, 1);
		break;
	case CONFIG_SPLICE_AUTO:
		/* Every burst starts in copy mode. */
		if (n > 0)
			assert_true(d->bytes[RELAY_MODE_COPY] > 0);
		if (n <= BUFFER_SIZE) {
			/* An exchange never pays for a pipe. */
			assert_int_equal(d->bytes[RELAY_MODE_SPLICE], 0);
			assert_int_equal(pool_stats(f).created, 0);
		}
		if (n >= 4 * MiB)
			assert_true(d->bytes[RELAY_MODE_SPLICE] > n / 2);
		break;
	}
	for (int i = 0; i < RELAY_FALLBACK_MAX_; i++)
		assert_int_equal(f->ctx.stats.fallbacks[i], 0);
}

/* ---- (3) backpressure --------------------------------------------------- */

/* While B reads nothing, the direction stops reading X and holds one
 * buffer or one pipe, however much the writer pushes. */
static void
backpressure(void **state, enum config_splice policy)
{
	struct fx *f = *state;
	const size_t n = 32 * MiB;
	struct relay_dir *d = &f->d;
	uint64_t last = UINT64_MAX;
	int still = 0;

	start_reader(f, true);
	start_writer(f, n);
	start_relay(f, policy);
	/* Until it has stood still, in WRITING, for a few rounds. */
	for (int i = 0; i < 400 && still < 5; i++) {
		loop(f, 25);
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
		assert_int_equal(pool_stats(f).in_use, 1);
	} else {
		assert_non_null(d->buf);
		assert_true(d->len - d->off > 0);
		assert_true(d->len - d->off <= BUFFER_SIZE);
		assert_int_equal(d->pipe.rfd, -1);
		assert_int_equal(pool_stats(f).in_use, 0);
	}
	if (policy == CONFIG_SPLICE_NEVER)
		assert_int_equal(d->mover->mode, RELAY_MODE_COPY);
	if (policy == CONFIG_SPLICE_ALWAYS)
		assert_int_equal(d->mover->mode, RELAY_MODE_SPLICE);

	/* Let B read: every byte arrives. */
	sem_post(&f->r.gate);
	loop(f, LOOP_MS);
	join_and_check_transfer(f, n);
}

static void
test_backpressure_never(void **state)
{
	backpressure(state, CONFIG_SPLICE_NEVER);
}

static void
test_backpressure_always(void **state)
{
	need_splice();
	backpressure(state, CONFIG_SPLICE_ALWAYS);
}

static void
test_backpressure_auto(void **state)
{
	backpressure(state, CONFIG_SPLICE_AUTO);
}

/* ---- (4) a reset on the input side --------------------------------------- */

static void
reset_in(void **state, enum config_splice policy)
{
	struct fx *f = *state;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	const size_t total = 4 * MiB;
	uint8_t *buf = malloc(256 * KiB);
	size_t sent = 0;
	int unread;

	assert_non_null(buf);
	start_reader(f, false);
	start_relay(f, policy);
	/* Data flows: send without blocking, let the relay run, repeat; the
	 * last round is not given to the relay. */
	for (int i = 0; i < 200 && sent < total; i++) {
		ssize_t k;

		if (i > 0)
			loop(f, 5);
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
	loop(f, LOOP_MS);

	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_FAILED);
	assert_int_equal(f->d.fail_side, RELAY_SIDE_IN);
	assert_int_equal(f->d.err, ECONNRESET);
	assert_false(f->d.rd_on);
	assert_false(f->d.wr_on);
	assert_true(moved(&f->d) <= sent);
	/* What was written before the reset arrived intact. A failed direction
	 * does not shut `out` down (the connection decides); do it here. */
	relay_cleanup(&f->d);
	f->d_init = false;
	assert_int_equal(pool_stats(f).in_use, 0);
	assert_true(f->ctx.nbufs <= 1);
	assert_int_equal(shutdown(f->y, SHUT_WR), 0);
	pthread_join(f->r.t, NULL);
	f->r.started = false;
	assert_true(f->r.eof);
	assert_true(f->r.bad_at == SIZE_MAX);
	assert_int_equal(atomic_load(&f->r.got), moved(&f->d));
}

static void
test_reset_in_never(void **state)
{
	reset_in(state, CONFIG_SPLICE_NEVER);
}

static void
test_reset_in_always(void **state)
{
	need_splice();
	reset_in(state, CONFIG_SPLICE_ALWAYS);
}

/* ---- a reset on the output side ----------------------------------------- */

static void
reset_out(void **state, enum config_splice policy)
{
	struct fx *f = *state;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	start_writer(f, 32 * MiB);
	start_relay(f, policy);
	for (int i = 0; i < 400 && moved(&f->d) < MiB; i++)
		loop(f, 5);
	assert_true(moved(&f->d) >= MiB);
	assert_int_equal(setsockopt(f->b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close_fd(&f->b);
	loop(f, LOOP_MS);

	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_FAILED);
	assert_int_equal(f->d.fail_side, RELAY_SIDE_OUT);
	assert_true(f->d.err == ECONNRESET || f->d.err == EPIPE);
	assert_false(f->d.rd_on);
	assert_false(f->d.wr_on);
}

static void
test_reset_out_never(void **state)
{
	reset_out(state, CONFIG_SPLICE_NEVER);
}

static void
test_reset_out_always(void **state)
{
	need_splice();
	reset_out(state, CONFIG_SPLICE_ALWAYS);
}

/* Torn down while `out` is stuck, a direction returns its buffer, and its
 * pipe, still holding bytes, is closed rather than pooled for another
 * connection. */
static void
cleanup_while_held(void **state, enum config_splice policy)
{
	struct fx *f = *state;
	struct pipepool_stats st;

	start_reader(f, true);          /* B reads nothing */
	start_writer(f, 32 * MiB);
	start_relay(f, policy);
	for (int i = 0; i < 400 && f->d.state != RELAY_WRITING; i++)
		loop(f, 5);
	assert_int_equal(f->d.state, RELAY_WRITING);
	relay_cleanup(&f->d);
	f->d_init = false;
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	assert_false(event_pending(&f->d.rd, EV_READ, NULL));
	assert_false(event_pending(&f->d.wr, EV_WRITE, NULL));
	st = pool_stats(f);
	assert_int_equal(st.in_use, 0);
	if (policy == CONFIG_SPLICE_ALWAYS) {
		assert_int_equal(st.closed_dirty, 1);
		assert_int_equal(st.pooled, 0);
		assert_int_equal(f->ctx.nbufs, 0);
	} else {
		assert_int_equal(st.created, 0);
		assert_int_equal(f->ctx.nbufs, 1);
	}
}

static void
test_cleanup_while_held_never(void **state)
{
	cleanup_while_held(state, CONFIG_SPLICE_NEVER);
}

static void
test_cleanup_while_held_always(void **state)
{
	need_splice();
	cleanup_while_held(state, CONFIG_SPLICE_ALWAYS);
}

/* ---- (5) an idle direction holds nothing -------------------------------- */

static void
idle_holds_nothing(void **state, enum config_splice policy)
{
	struct fx *f = *state;
	char req[KiB], got[KiB];

	start_relay(f, policy);
	pattern_fill((uint8_t *)req, 0, sizeof(req));
	assert_int_equal(send(f->a, req, sizeof(req), MSG_NOSIGNAL), sizeof(req));
	for (int i = 0; i < 400 && moved(&f->d) < sizeof(req); i++)
		loop(f, 5);
	assert_int_equal(recv(f->b, got, sizeof(got), MSG_WAITALL), sizeof(got));
	assert_memory_equal(req, got, sizeof(req));

	/* The exchange is over; the connection stays open and idle. */
	assert_int_equal(f->fired, 0);
	assert_int_equal(f->d.state, RELAY_READING);
	assert_true(f->d.rd_on);
	assert_false(f->d.wr_on);
	assert_null(f->d.buf);
	assert_int_equal(f->d.pipe.rfd, -1);
	assert_int_equal(pool_stats(f).in_use, 0);
	if (policy == CONFIG_SPLICE_ALWAYS) {
		assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], sizeof(req));
		assert_int_equal(pool_stats(f).pooled, 1);
	} else {
		assert_int_equal(f->d.bytes[RELAY_MODE_COPY], sizeof(req));
		assert_int_equal(f->ctx.nbufs, 1);
	}

	/* And it still ends cleanly. */
	assert_int_equal(shutdown(f->a, SHUT_WR), 0);
	loop(f, LOOP_MS);
	assert_int_equal(f->fired, 1);
	assert_int_equal(f->d.state, RELAY_DONE);
	assert_int_equal(recv(f->b, got, sizeof(got), 0), 0);
}

static void
test_idle_holds_nothing_never(void **state)
{
	idle_holds_nothing(state, CONFIG_SPLICE_NEVER);
}

static void
test_idle_holds_nothing_always(void **state)
{
	need_splice();
	idle_holds_nothing(state, CONFIG_SPLICE_ALWAYS);
}

/* ---- auto: exchanges copy, streams splice, and back --------------------- */

/* Send pattern bytes [off, off + len) into A without blocking and run the
 * relay until it has carried them all (the reader thread drains B). */
static void
feed(struct fx *f, size_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	size_t sent = 0;
	int bad = 0;

	assert_non_null(buf);
	pattern_fill(buf, off, len);
	for (int i = 0; i < 2000 && !f->fired && moved(&f->d) < off + len; i++) {
		if (sent < len) {
			ssize_t k = send(f->a, buf + sent, len - sent,
			    MSG_DONTWAIT | MSG_NOSIGNAL);

			if (k > 0)
				sent += (size_t)k;
			else if (k == 0 || errno != EAGAIN)
				bad = k == 0 ? EIO : errno;
		}
		if (bad == 0)
			loop(f, 2);
		else
			break;
	}
	free(buf);
	assert_int_equal(bad, 0);
	if (f->fired)
		fail_msg("the direction ended while bytes were coming: %s, %s side, %s",
		    relay_state_name(f->d.state),
		    f->d.fail_side == RELAY_SIDE_IN ? "in" : "out", strerror(f->d.err));
	assert_int_equal(moved(&f->d), off + len);
}

static void
end_stream(struct fx *f, size_t total)
{
	assert_int_equal(shutdown(f->a, SHUT_WR), 0);
	loop(f, LOOP_MS);
	atomic_store(&f->w.sent, total);        /* no writer: main fed it */
	join_and_check_transfer(f, total);
}

/* Many small exchanges on one connection add up to more than the
 * threshold, but each is a burst of its own: none pays for a pipe. */
static void
test_auto_exchanges_copy(void **state)
{
	struct fx *f = *state;
	const size_t msg = KiB, count = 2 * THRESHOLD / KiB;

	start_reader(f, false);
	start_relay(f, CONFIG_SPLICE_AUTO);
	for (size_t i = 0; i < count; i++)
		feed(f, i * msg, msg);
	assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], 0);
	assert_int_equal(pool_stats(f).created, 0);
	end_stream(f, count * msg);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], count * msg);
}

/* A stream switches to splicing; once it is over and the connection goes
 * back to small exchanges, those are copied again. */
static void
test_auto_stream_then_exchanges(void **state)
{
	struct fx *f = *state;
	const size_t stream = 4 * MiB, msg = KiB;
	uint64_t copied, spliced;
	size_t off;

	need_splice();
	start_reader(f, false);
	start_relay(f, CONFIG_SPLICE_AUTO);
	feed(f, 0, stream);
	assert_true(f->d.bytes[RELAY_MODE_SPLICE] > stream / 2);
	/* The first exchanges may still ride the stream's burst. */
	off = stream;
	for (int i = 0; i < RELAY_IDLE_WAKES; i++, off += msg)
		feed(f, off, msg);
	copied = f->d.bytes[RELAY_MODE_COPY];
	spliced = f->d.bytes[RELAY_MODE_SPLICE];
	for (int i = 0; i < 10; i++, off += msg)
		feed(f, off, msg);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY] - copied, 10 * msg);
	assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], spliced);
	assert_int_equal(pool_stats(f).in_use, 0);  /* the pipe went back */
	end_stream(f, off);
}

/* ---- fallbacks: no pipe to be had, the bytes are copied ----------------- */

static void
fallback(void **state, enum relay_fallback why)
{
	struct fx *f = *state;
	const size_t n = MiB;

	start_reader(f, false);
	start_writer(f, n);
	start_relay(f, CONFIG_SPLICE_ALWAYS);
	loop(f, LOOP_MS);
	join_and_check_transfer(f, n);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], n);
	assert_true(f->ctx.stats.fallbacks[why] >= 1);
	for (int i = 0; i < RELAY_FALLBACK_MAX_; i++)
		if (i != (int)why)
			assert_int_equal(f->ctx.stats.fallbacks[i], 0);
}

static void
test_fallback_pool_full(void **state)
{
	need_splice();
	use_pool(*state, 0, PIPE_SIZE, MIN_PIPE);
	fallback(state, RELAY_FALLBACK_POOL_FULL);
}

/* A one-page pipe (what the kernel grants past the per-user budget) is
 * refused by the pool: the direction copies. */
static void
test_fallback_pipe_budget(void **state)
{
	need_splice();
	use_pool(*state, 16, 4096, MIN_PIPE);
	fallback(state, RELAY_FALLBACK_PIPE_BUDGET);
}

/* A splicing direction gives its pipe back whenever it waits for `in`; if
 * the pool is empty and at its cap when bytes come again (other
 * connections took the pipes meanwhile), it copies them and counts the
 * fallback: the connection is never dropped for it. */
static void
test_pool_full_after_idle(void **state)
{
	struct fx *f = *state;
	enum pipepool_fail why;

	need_splice();
	use_pool(f, 1, PIPE_SIZE, MIN_PIPE);
	start_reader(f, false);
	start_relay(f, CONFIG_SPLICE_ALWAYS);
	feed(f, 0, KiB);
	assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], KiB);
	assert_int_equal(pool_stats(f).pooled, 1);

	/* Another connection takes the only pipe. */
	assert_int_equal(pipepool_get(f->pool, &f->held, &why), 0);
	feed(f, KiB, KiB);
	assert_int_equal(f->d.state, RELAY_READING);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], KiB);
	assert_int_equal(f->ctx.stats.fallbacks[RELAY_FALLBACK_POOL_FULL], 1);

	/* It comes back: the next burst splices again. */
	pipepool_put(f->pool, &f->held);
	feed(f, 2 * KiB, KiB);
	assert_int_equal(f->d.bytes[RELAY_MODE_SPLICE], 2 * KiB);
	end_stream(f, 3 * KiB);
}

/* ---- (6) LAST: a kernel that refuses to splice sockets ------------------ */

static void
test_splice_unsupported(void **state)
{
	struct fx *f = *state;
	const size_t n = MiB;

	need_splice();
	atomic_store(&splice_calls, 0);
	atomic_store(&splice_refuse_once, true);
	start_reader(f, false);
	start_writer(f, n);
	start_relay(f, CONFIG_SPLICE_ALWAYS);
	loop(f, LOOP_MS);
	join_and_check_transfer(f, n);
	assert_int_equal(f->d.bytes[RELAY_MODE_COPY], n);
	assert_int_equal(f->ctx.stats.fallbacks[RELAY_FALLBACK_UNSUPPORTED], 1);
	assert_int_equal(atomic_load(&splice_calls), 1);  /* never tried again */
	assert_false(zc_splice_supported());
}

/* ---- the table ------------------------------------------------------------ */

/* ---- urgent data ------------------------------------------------------- */

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

/* splice(2) stops at a TCP urgent mark, reporting EAGAIN or a false EOF;
 * the direction must step over it by copying: every in-band byte arrives,
 * then the real EOF, and the worker does not spin meanwhile. */
static void
test_urgent_always(void **state)
{
	struct fx *f = *state;
	const size_t n = 400 * KiB;

	need_splice();
	f->w.n = n;
	start_reader(f, false);
	start_relay(f, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(pthread_create(&f->w.t, NULL, urgent_writer_main, &f->w), 0);
	f->w.started = true;
	loop(f, LOOP_MS);
	assert_false(f->timed_out);
	join_and_check_transfer(f, n);
	assert_true(f->d.bytes[RELAY_MODE_SPLICE] > 0);
	assert_true(f->d.bytes[RELAY_MODE_COPY] > 0);   /* past the mark */
}

static const char *
policy_name(enum config_splice p)
{
	return p == CONFIG_SPLICE_NEVER ? "never" :
	    p == CONFIG_SPLICE_ALWAYS ? "always" : "auto";
}

#define T(f) { #f, f, setup, teardown, NULL }

/* After the transfers, which main() lays out per policy and size. */
static const struct CMUnitTest more_tests[] = {
	T(test_backpressure_never),
	T(test_backpressure_always),
	T(test_backpressure_auto),
	T(test_reset_in_never),
	T(test_reset_in_always),
	T(test_reset_out_never),
	T(test_reset_out_always),
	T(test_cleanup_while_held_never),
	T(test_cleanup_while_held_always),
	T(test_idle_holds_nothing_never),
	T(test_idle_holds_nothing_always),
	T(test_auto_exchanges_copy),
	T(test_auto_stream_then_exchanges),
	T(test_fallback_pool_full),
	T(test_fallback_pipe_budget),
	T(test_pool_full_after_idle),
	T(test_urgent_always),
	T(test_splice_unsupported),     /* last: turns splicing off */
};

int
main(void)
{
	static const enum config_splice policies[] = { CONFIG_SPLICE_NEVER,
	    CONFIG_SPLICE_ALWAYS, CONFIG_SPLICE_AUTO };
	static const size_t sizes[] = { 0, 1, KiB, 64 * KiB, MiB, 4 * MiB };
	enum { NP = 3, NS = 6, NMORE = sizeof(more_tests) / sizeof(more_tests[0]) };
	static struct params prm[NP * NS];
	static char names[NP * NS][48];
	struct CMUnitTest tests[1 + NP * NS + NMORE] = {
		{ "test_policy", test_policy, NULL, NULL, NULL },
	};
	size_t k = 1;

	signal(SIGPIPE, SIG_IGN);       /* as the daemon does */
	for (size_t p = 0; p < NP; p++) {
		for (size_t s = 0; s < NS; s++, k++) {
			prm[k - 1] = (struct params){ policies[p], sizes[s] };
			snprintf(names[k - 1], sizeof(names[k - 1]),
			    "test_transfer_%s_%zu", policy_name(policies[p]), sizes[s]);
			tests[k] = (struct CMUnitTest){ names[k - 1], test_transfer,
			    setup, teardown, &prm[k - 1] };
		}
	}
	for (size_t i = 0; i < NMORE; i++)
		tests[k++] = more_tests[i];
	return _cmocka_run_group_tests("test_relay", tests, k, NULL, NULL);
}
