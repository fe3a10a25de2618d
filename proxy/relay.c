/* proxy/relay.c: the per-direction state machine.
 *
 * A connection has two directions, upstream (client -> backend) and
 * downstream (backend -> client), each an instance of this machine:
 *
 *                       read some, `out` would block
 *        +-----------+ ----------------------------> +-----------+
 *  start | READING   |                               | WRITING   |
 *  ----> | (nothing  |  <--------------------------- | (bytes    |
 *        |  held)    |    `out` took everything      |  held)    |
 *        +-----------+                               +-----------+
 *          |  end of stream on `in` (read returns 0)       |
 *          v                                               |
 *        +-----------+   shutdown(out, SHUT_WR)            |
 *        | DONE      |                                     |
 *        +-----------+   read/write/poll error, from any --+--> FAILED
 *
 * run() is the only place that moves bytes. It alternates flush (holder ->
 * out) and fill (in -> holder) and reads only when the holder is empty, so:
 *   - memory is bounded: one buffer or one pipe per direction, whatever the
 *     traffic (backpressure: while `out` blocks, `in` is not even polled);
 *   - end of stream is only ever seen with nothing held, so EOF is forwarded
 *     right away and never overtakes bytes;
 *   - the mover may change between fills, at the one clean point where
 *     nothing is held: bytes never overtake each other across movers.
 * Which mover the next fill uses is the policy's call (relay_policy.c): its
 * state is d->policy, which only its pure functions change. The holder is
 * given back whenever the direction waits for `in`, so an idle connection
 * holds no buffer and no pipe. */
#include "spliced/relay.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spliced/clock.h"
#include "spliced/handover.h"
#include "spliced/log.h"
#include "spliced/zerocopy.h"

int
relay_ctx_init(struct relay_ctx *ctx, struct event_base *base,
    struct pipepool *pipes, size_t buffer_size)
{
	*ctx = (struct relay_ctx){ .base = base, .pipes = pipes,
	    .buffer_size = buffer_size };
	if ((ctx->bufs = calloc(RELAY_BUFS_KEEP, sizeof(*ctx->bufs))) == NULL)
		return -1;
	return 0;
}

void
relay_stats_add(struct relay_stats *to, const struct relay_stats *from)
{
	for (int m = 0; m < RELAY_MODE_MAX_; m++)
		to->bytes[m] += from->bytes[m];
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		to->fallbacks[f] += from->fallbacks[f];
}

void
relay_ctx_cleanup(struct relay_ctx *ctx)
{
	for (unsigned i = 0; i < ctx->nbufs; i++)
		free(ctx->bufs[i]);
	free(ctx->bufs);
	ctx->bufs = NULL;
	ctx->nbufs = 0;
}

const char *
relay_state_name(enum relay_state s)
{
	static const char *const names[RELAY_STATE_MAX_] = {
		[RELAY_READING] = "reading",
		[RELAY_WRITING] = "writing",
		[RELAY_DONE] = "done",
		[RELAY_FAILED] = "failed",
	};

	assert((unsigned)s < RELAY_STATE_MAX_);
	return names[s];
}

const char *
relay_mode_name(enum relay_mode m)
{
	static const char *const names[RELAY_MODE_MAX_] = {
		[RELAY_MODE_COPY] = "copy",
		[RELAY_MODE_SPLICE] = "splice",
	};

	assert((unsigned)m < RELAY_MODE_MAX_);
	return names[m];
}

const char *
relay_fallback_name(enum relay_fallback f)
{
	static const char *const names[RELAY_FALLBACK_MAX_] = {
		[RELAY_FALLBACK_POOL_FULL] = "pool_full",
		[RELAY_FALLBACK_PIPE_BUDGET] = "pipe_budget",
		[RELAY_FALLBACK_PIPE_ERROR] = "pipe_error",
		[RELAY_FALLBACK_UNSUPPORTED] = "unsupported",
	};

	assert((unsigned)f < RELAY_FALLBACK_MAX_);
	return names[f];
}

static void
set_state(struct relay_dir *d, enum relay_state s)
{
	/* DONE and FAILED are final: the connection may already be closing. */
	assert(d->state != RELAY_DONE && d->state != RELAY_FAILED);
	d->state = s;
}

/* event_add(), with an errno when it fails: libevent sets none on some
 * paths (an event without a base, for one). */
static int
add_event(struct event *ev)
{
	errno = 0;
	if (event_add(ev, NULL) == 0)
		return 0;
	if (errno == 0)
		errno = EIO;
	return -1;
}

/* Poll `in` (rd) and `out` (wr) or not. 0, or -1 with errno when an event
 * could not be added. */
static int
arm(struct relay_dir *d, bool rd, bool wr)
{
	if (rd != d->rd_on) {
		if (!rd)
			event_del(&d->rd);
		else if (add_event(&d->rd) == -1)
			return -1;
		d->rd_on = rd;
	}
	if (wr != d->wr_on) {
		if (!wr)
			event_del(&d->wr);
		else if (add_event(&d->wr) == -1)
			return -1;
		d->wr_on = wr;
	}
	return 0;
}

/* fail() and finish() only record: run() calls the callback as its very
 * last step, because the callback may free the connection and `d` with it. */
static void
fail(struct relay_dir *d, enum relay_side side, int err)
{
	arm(d, false, false);
	d->fail_side = side;
	d->err = err;
	set_state(d, RELAY_FAILED);
}

/* Poll only `in` (side IN) or only `out` (side OUT). When the event
 * cannot be added (epoll_ctl: ENOMEM, or ENOSPC past max_user_watches),
 * nothing would wake the direction again before the idle timeout: it
 * fails now, on that side, like any other error. */
static void
wait_for(struct relay_dir *d, enum relay_side side)
{
	bool in = side == RELAY_SIDE_IN;

	if (arm(d, in, !in) == -1)
		fail(d, side, errno);
}

static void
finish(struct relay_dir *d)
{
	arm(d, false, false);
	d->mover->release(d);
	/* ENOTCONN: the peer already reset; the other direction will see it.
	 * When the other direction is done too, the connection is closed
	 * next, with nothing unread: close() sends the same FIN. */
	if (d->other == NULL || d->other->state != RELAY_DONE)
		(void)shutdown(d->out, SHUT_WR);
	set_state(d, RELAY_DONE);
}

/* `in` has nothing more for now (or the byte budget is spent): the policy
 * counts the wake-up, which may end the burst. */
static void
wait_in(struct relay_dir *d)
{
	relay_policy_wait(&d->policy, d->ctx->buffer_size);
	d->short_read = false;
	d->mover->release(d);
	set_state(d, RELAY_READING);
	wait_for(d, RELAY_SIDE_IN);
}

/* Copy for the rest of this burst: nothing is held here (a clean point),
 * and splicing is not tried again before the burst ends. */
static void
copy_for_burst(struct relay_dir *d)
{
	d->mover->release(d);
	d->mover = &relay_copy_mover;
	relay_policy_copy_for_burst(&d->policy);
}

static void
choose_mover(struct relay_dir *d)
{
	const struct relay_mover *m;
	enum relay_fallback why;
	bool ok;

	ok = d->ctx->pipes != NULL && zc_splice_supported();
	if (relay_policy_ask_queued(&d->policy, ok,
	    d->mover == &relay_copy_mover)) {
		ssize_t q = zc_queued(d->in);

		/* Not known, the counters decide alone, as they would have. */
		if (q >= 0)
			relay_policy_queued(&d->policy, (size_t)q,
			    d->ctx->buffer_size);
	}
	m = relay_policy_next(&d->policy, ok) == RELAY_MODE_SPLICE ?
	    &relay_splice_mover : &relay_copy_mover;
	if (m != d->mover) {
		d->mover->release(d);   /* empty: this is the clean point */
		d->mover = m;
	}
	/* A splicing direction gave its pipe back when it last waited, so
	 * every burst asks again, and a refusal means copying, not failing. */
	if (m->mode == RELAY_MODE_SPLICE && m->acquire(d, &why) == -1) {
		d->ctx->stats.fallbacks[why]++;
		copy_for_burst(d);
	}
}

/* The kernel cannot splice these sockets: turn splicing off for the process
 * and carry on copying. Nothing was moved by the failed call. */
static void
splice_unsupported(struct relay_dir *d, int err)
{
	if (zc_splice_disable())
		log_warn("splice(2) failed (%s): zero-copy disabled, copying from now on",
		    err == ENOSYS ? "ENOSYS" : "EINVAL");
	d->ctx->stats.fallbacks[RELAY_FALLBACK_UNSUPPORTED]++;
	copy_for_burst(d);
}

static void
run(struct relay_dir *d)
{
	enum relay_fallback why;
	size_t moved = 0;
	ssize_t n;
	bool eof;

	for (;;) {
		if (d->mover->pending(d) > 0) {
			n = d->mover->flush(d);
			if (n < 0) {
				fail(d, RELAY_SIDE_OUT, errno);
				break;
			}
			d->bytes[d->mover->mode] += (size_t)n;
			d->ctx->stats.bytes[d->mover->mode] += (size_t)n;
			moved += (size_t)n;
			if (d->mover->pending(d) > 0) {
				set_state(d, RELAY_WRITING);
				wait_for(d, RELAY_SIDE_OUT);
				break;
			}
		}
		/* A short read drained `in`: poll instead of a read that would
		 * only say EAGAIN. Level-triggered polling still reports EOF. */
		if (d->short_read || moved >= RELAY_BUDGET) {
			wait_in(d);
			break;
		}
		choose_mover(d);
		if (d->mover->acquire(d, &why) == -1) {
			fail(d, RELAY_SIDE_IN, ENOMEM);
			break;
		}
		n = d->mover->fill(d, &eof);
		if (n < 0 && d->mover->mode == RELAY_MODE_SPLICE &&
		    (errno == EINVAL || errno == ENOSYS)) {
			splice_unsupported(d, errno);
			continue;
		}
		if (n < 0) {
			fail(d, RELAY_SIDE_IN, errno);
			break;
		}
		if (n == 0 && d->mover->mode == RELAY_MODE_SPLICE &&
		    zc_at_urgent_mark(d->in)) {
			/* Neither EOF nor EAGAIN: splice stopped at urgent data,
			 * which recv steps over. */
			copy_for_burst(d);
			continue;
		}
		if (eof) {
			finish(d);
			break;
		}
		if (n == 0) {
			wait_in(d);
			break;
		}
		d->short_read = relay_policy_read(&d->policy, (size_t)n,
		    d->mover->capacity(d));
	}
	if (moved > 0)
		d->last_io_ms = clock_coarse_ms();
	if (d->state == RELAY_DONE || d->state == RELAY_FAILED)
		d->cb(d, d->arg);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	run(arg);
}

int
relay_init(struct relay_dir *d, struct relay_ctx *ctx, int in, int out,
    enum config_splice policy, size_t threshold, relay_cb cb, void *arg)
{
	*d = (struct relay_dir){ .ctx = ctx, .mover = &relay_copy_mover,
	    .in = in, .out = out, .state = RELAY_READING,
	    .pipe = { .rfd = -1, .wfd = -1 },
	    .last_io_ms = clock_coarse_ms(), .cb = cb, .arg = arg };
	relay_policy_init(&d->policy, policy, threshold);
	if (event_assign(&d->rd, ctx->base, in, EV_READ | EV_PERSIST, io_cb, d) == -1 ||
	    event_assign(&d->wr, ctx->base, out, EV_WRITE | EV_PERSIST, io_cb, d) == -1)
		return -1;
	return 0;
}

void
relay_count_copied(struct relay_dir *d, size_t n)
{
	d->bytes[RELAY_MODE_COPY] += n;
	d->ctx->stats.bytes[RELAY_MODE_COPY] += n;
}

void
relay_start(struct relay_dir *d)
{
	run(d);
}

void
relay_watch(struct relay_dir *d)
{
	wait_for(d, RELAY_SIDE_IN);
	if (d->state == RELAY_FAILED)
		d->cb(d, d->arg);
}

void
relay_pair(struct relay_dir *a, struct relay_dir *b)
{
	a->other = b;
	b->other = a;
}

void
relay_cleanup(struct relay_dir *d)
{
	arm(d, false, false);
	/* Both, whichever mover is current: a pipe still holding bytes is
	 * closed by the pool, never reused. */
	relay_copy_mover.release(d);
	relay_splice_mover.release(d);
}

void
relay_freeze(struct relay_dir *d)
{
	(void)arm(d, false, false);
}

int
relay_thaw(struct relay_dir *d)
{
	switch (d->state) {
	case RELAY_READING:
		return arm(d, true, false);
	case RELAY_WRITING:
		return arm(d, false, true);
	default:
		return 0;
	}
}

void
relay_export(const struct relay_dir *d, struct handover_dir *hd)
{
	const struct relay_policy_state *p = &d->policy;

	*hd = (struct handover_dir){ .state = (uint8_t)d->state,
	    .mode = (uint8_t)d->mover->mode, .short_read = d->short_read,
	    .has_pipe = d->pipe.rfd >= 0,
	    .pipe_size = (uint32_t)d->pipe.size,
	    .pipe_queued = (uint32_t)d->pipe.queued,
	    .buf_len = d->buf != NULL ? (uint32_t)(d->len - d->off) : 0,
	    .bytes = { d->bytes[0], d->bytes[1] }, .last_io_ms = d->last_io_ms,
	    .p_splice = (uint8_t)p->splice, .p_no_splice = p->no_splice,
	    .p_ask = p->ask, .p_queue = (uint8_t)p->queue,
	    .p_full_reads = p->full_reads, .p_short_wakes = p->short_wakes,
	    .p_threshold = p->threshold, .p_burst = p->burst,
	    .p_wake_bytes = p->wake_bytes };
}

bool
relay_adopt_ok(const struct handover_dir *hd)
{
	/* Bytes are held only while WRITING, and by the mover in use, in a
	 * buffer no larger than buffer_size may be, or a pipe no fuller
	 * than its size: a record saying otherwise did not come from a
	 * clean point. A pipe needs a pool to go back to, which only a
	 * build that splices has. */
	return (hd->state == RELAY_READING || hd->state == RELAY_WRITING ||
	    hd->state == RELAY_DONE) && hd->mode < RELAY_MODE_MAX_ &&
	    (hd->state == RELAY_WRITING) == (hd->pipe_queued > 0 ||
	    hd->buf_len > 0) &&
	    (hd->buf_len == 0 || hd->mode == RELAY_MODE_COPY) &&
	    hd->buf_len <= RELAY_ADOPT_BUF_MAX &&
	    (hd->pipe_queued == 0 || (hd->mode == RELAY_MODE_SPLICE &&
	    hd->has_pipe)) && hd->pipe_queued <= hd->pipe_size &&
	    (!hd->has_pipe || zc_splice_supported()) &&
	    hd->p_splice <= CONFIG_SPLICE_NEVER &&
	    hd->p_queue <= RELAY_QUEUE_STREAM;
}

int
relay_adopt(struct relay_dir *d, const struct handover_dir *hd, int rfd,
    int wfd, const void *data)
{
	struct relay_policy_state *p = &d->policy;
	size_t n = hd->buf_len;

	if (!relay_adopt_ok(hd) || (hd->has_pipe && (rfd < 0 || wfd < 0 ||
	    d->ctx->pipes == NULL))) {
		errno = EINVAL;
		return -1;
	}
	if (n > 0) {
		/* A buffer at least as large as the bytes: buffer_size may
		 * have shrunk across the upgrade, and the copy mover reuses
		 * a larger one harmlessly. */
		if ((d->buf = malloc(n > d->ctx->buffer_size ? n :
		    d->ctx->buffer_size)) == NULL)
			return -1;
		memcpy(d->buf, data, n);
		d->off = 0;
		d->len = n;
	}
	if (hd->has_pipe) {
		d->pipe = (struct spipe){ .rfd = rfd, .wfd = wfd,
		    .size = hd->pipe_size, .queued = hd->pipe_queued };
		pipepool_adopt(d->ctx->pipes, &d->pipe);
	}
	d->mover = hd->mode == RELAY_MODE_SPLICE ? &relay_splice_mover :
	    &relay_copy_mover;
	d->state = (enum relay_state)hd->state;
	d->short_read = hd->short_read;
	d->bytes[0] = hd->bytes[0];
	d->bytes[1] = hd->bytes[1];
	d->last_io_ms = hd->last_io_ms;
	p->splice = (enum config_splice)hd->p_splice;
	p->no_splice = hd->p_no_splice;
	p->ask = hd->p_ask;
	p->queue = (enum relay_queue)hd->p_queue;
	p->full_reads = hd->p_full_reads;
	p->short_wakes = hd->p_short_wakes;
	p->threshold = (size_t)hd->p_threshold;
	p->burst = hd->p_burst;
	p->wake_bytes = hd->p_wake_bytes;
	return 0;
}

void
relay_forget_pipe(struct relay_dir *d)
{
	if (d->pipe.rfd >= 0)
		pipepool_forget(d->ctx->pipes, &d->pipe);
}
