/* proxy/relay_copy.c: the copy mover, recv(2) into a buffer and send(2) it. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "spliced/relay.h"

static int
acquire(struct relay_dir *d, enum relay_fallback *why)
{
	struct relay_ctx *ctx = d->ctx;

	(void)why;
	if (d->buf != NULL)
		return 0;
	if (ctx->nbufs > 0)
		d->buf = ctx->bufs[--ctx->nbufs];
	else if ((d->buf = malloc(ctx->buffer_size)) == NULL)
		return -1;
	d->off = d->len = 0;
	return 0;
}

static void
release(struct relay_dir *d)
{
	struct relay_ctx *ctx = d->ctx;

	if (d->buf == NULL)
		return;
	if (ctx->nbufs < RELAY_BUFS_KEEP)
		ctx->bufs[ctx->nbufs++] = d->buf;
	else
		free(d->buf);
	d->buf = NULL;
	d->off = d->len = 0;
}

static size_t
pending(const struct relay_dir *d)
{
	return d->len - d->off;
}

static size_t
capacity(const struct relay_dir *d)
{
	return d->ctx->buffer_size;
}

static ssize_t
fill(struct relay_dir *d, bool *eof)
{
	ssize_t n;

	*eof = false;
	do
		n = recv(d->in, d->buf, d->ctx->buffer_size, 0);
	while (n == -1 && errno == EINTR);
	if (n == 0)
		*eof = true;
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	d->off = 0;
	d->len = (size_t)n;
	return n;
}

static ssize_t
flush(struct relay_dir *d)
{
	ssize_t n;

	do
		n = send(d->out, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	d->off += (size_t)n;
	if (d->off == d->len)
		d->off = d->len = 0;
	return n;
}

const struct relay_mover relay_copy_mover = {
	.name = "copy",
	.mode = RELAY_MODE_COPY,
	.acquire = acquire,
	.release = release,
	.pending = pending,
	.capacity = capacity,
	.fill = fill,
	.flush = flush,
};
