/* proxy/relay_splice.c: the splice mover, socket -> pipe -> socket.
 *
 * It goes through the zero-copy layer only, so it builds everywhere; where
 * the platform cannot splice, relay.c never selects it. */
#include <errno.h>

#include "spliced/relay.h"
#include "spliced/zerocopy.h"

static int
acquire(struct relay_dir *d, enum relay_fallback *why)
{
	enum pipepool_fail pf;

	if (d->pipe.rfd >= 0)
		return 0;
	if (d->ctx->pipes == NULL) {
		*why = RELAY_FALLBACK_UNSUPPORTED;
		return -1;
	}
	if (pipepool_get(d->ctx->pipes, &d->pipe, &pf) == 0)
		return 0;
	switch (pf) {
	case PIPEPOOL_FAIL_CAP:    *why = RELAY_FALLBACK_POOL_FULL; break;
	case PIPEPOOL_FAIL_BUDGET: *why = RELAY_FALLBACK_PIPE_BUDGET; break;
	default:                   *why = RELAY_FALLBACK_PIPE_ERROR; break;
	}
	return -1;
}

static void
release(struct relay_dir *d)
{
	if (d->pipe.rfd >= 0)
		pipepool_put(d->ctx->pipes, &d->pipe);   /* closes it if dirty */
}

static size_t
pending(const struct relay_dir *d)
{
	return d->pipe.queued;
}

static size_t
capacity(const struct relay_dir *d)
{
	return d->pipe.size;
}

static ssize_t
fill(struct relay_dir *d, bool *eof)
{
	/* Only called on an empty pipe, so EAGAIN can only mean an empty
	 * socket, never a full pipe (the ambiguity HAProxy's raw_sock.c
	 * works around). */
	ssize_t n = zc_splice_in(d->in, d->pipe.wfd, d->pipe.size, eof);

	if (n > 0)
		d->pipe.queued += (size_t)n;
	return n;
}

/* Not SPLICE_F_MORE: nothing says more is coming (zerocopy.h). */
static ssize_t
flush(struct relay_dir *d)
{
	ssize_t n = zc_splice_out(d->pipe.rfd, d->out, d->pipe.queued, false);

	if (n > 0)
		d->pipe.queued -= (size_t)n;
	return n;
}

const struct relay_mover relay_splice_mover = {
	.name = "splice",
	.mode = RELAY_MODE_SPLICE,
	.acquire = acquire,
	.release = release,
	.pending = pending,
	.capacity = capacity,
	.fill = fill,
	.flush = flush,
};
