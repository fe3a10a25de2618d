/* tests/relay_harness.c: the fixture, peers and checks of the relay tests
 * (relay_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"
#include "relay_harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/zerocopy.h"

/* ---- the byte pattern --------------------------------------------------- */

/* A multiplicative hash of the offset, so a byte lost, repeated or moved
 * shows up (no short period to hide in). */
uint8_t
pattern(uint64_t i)
{
	return (uint8_t)(((uint32_t)i * 2654435761u) >> 24);
}

void
pattern_fill(uint8_t *p, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n; k++)
		p[k] = pattern(off + k);
}

const char *
splice_name(enum config_splice s)
{
	return s == CONFIG_SPLICE_NEVER ? "never" :
	    s == CONFIG_SPLICE_ALWAYS ? "always" : "auto";
}

/* ---- the peers: writer into A, reader out of B ------------------------- */

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

int
fx_setup(void **state)
{
	const struct relay_params *prm = *state;
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	alarm(TEST_SECONDS);
	signal(SIGPIPE, SIG_IGN);       /* as the daemon does */
	if (prm != NULL) {
		f->splice = prm->splice;
		f->n = prm->n;
	}
	f->a = f->x = f->y = f->b = -1;
	f->held.rfd = f->held.wfd = -1;
	f->fds_before = count_fds();
	f->base = event_base_new();
	assert_non_null(f->base);
	f->timer = evtimer_new(f->base, timeout_cb, f);
	assert_non_null(f->timer);
	f->pool = pipepool_new(16, PIPE_SIZE, MIN_PIPE, 0);
	assert_non_null(f->pool);
	assert_int_equal(relay_ctx_init(&f->ctx, f->base, f->pool, BUFFER_SIZE), 0);
	tcp_pair(&f->a, &f->x);
	tcp_pair(&f->b, &f->y);
	f->w.fd = f->a;
	f->r.fd = f->b;
	assert_int_equal(sem_init(&f->r.gate, 0, 0), 0);
	*state = f;
	return 0;
}

void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int
fx_teardown(void **state)
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

void
fx_loop(struct fx *f, unsigned ms)
{
	struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

	f->timed_out = false;
	evtimer_add(f->timer, &tv);
	while (!f->fired && !f->timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	evtimer_del(f->timer);
}

void
fx_start_writer(struct fx *f, size_t n)
{
	f->w.n = n;
	assert_int_equal(pthread_create(&f->w.t, NULL, writer_main, &f->w), 0);
	f->w.started = true;
}

void
fx_start_reader(struct fx *f, bool gated)
{
	f->r.gated = gated;
	assert_int_equal(pthread_create(&f->r.t, NULL, reader_main, &f->r), 0);
	f->r.started = true;
}

void
fx_init_relay(struct fx *f)
{
	fx_init_relay_threshold(f, THRESHOLD);
}

void
fx_init_relay_threshold(struct fx *f, size_t threshold)
{
	assert_int_equal(relay_init(&f->d, &f->ctx, f->x, f->y, f->splice,
	    threshold, done_cb, f), 0);
	f->d_init = true;
}

void
fx_start_relay(struct fx *f)
{
	fx_init_relay(f);
	relay_start(&f->d);
}

void
fx_use_pool(struct fx *f, unsigned max, size_t pipe_size, size_t min_size)
{
	pipepool_free(f->pool);
	f->pool = f->ctx.pipes = pipepool_new(max, pipe_size, min_size, 0);
	assert_non_null(f->pool);
}

void
need_splice(void)
{
	if (!zc_splice_supported()) {
		print_message("skipped: this build cannot splice (zero-copy: %s)\n",
		    zc_backend_name());
		skip();
	}
}

void
fx_need_splice(const struct fx *f)
{
	if (f->splice == CONFIG_SPLICE_ALWAYS)
		need_splice();
}

struct pipepool_stats
fx_pool_stats(const struct fx *f)
{
	struct pipepool_stats st;

	pipepool_stats(f->pool, &st);
	return st;
}

uint64_t
moved(const struct relay_dir *d)
{
	return d->bytes[RELAY_MODE_COPY] + d->bytes[RELAY_MODE_SPLICE];
}

void
fx_check_transfer(struct fx *f, size_t n)
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
	st = fx_pool_stats(f);
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

void
fx_feed(struct fx *f, size_t off, size_t len)
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
			fx_loop(f, 2);
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

void
fx_end_stream(struct fx *f, size_t total)
{
	assert_int_equal(shutdown(f->a, SHUT_WR), 0);
	fx_loop(f, LOOP_MS);
	atomic_store(&f->w.sent, total);        /* no writer: main fed it */
	fx_check_transfer(f, total);
}
