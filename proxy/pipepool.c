/* proxy/pipepool.c: a capped, per-worker pool of empty pipes.
 *
 * Idle pipes sit on a stack: the most recently returned pipe is handed out
 * first (its pages are warm), so the bottom of the stack holds the pipes idle
 * the longest, and trimming only ever looks there.
 *
 * `held` counts what the kernel charges to the user's pipe budget for the
 * pipes this pool owns: their granted sizes, in use or idle. */
#include "spliced/pipepool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/clock.h"
#include "spliced/zerocopy.h"

struct idle {
	struct spipe p;
	uint64_t since_ms;
};

struct pipepool {
	unsigned max;
	size_t pipe_size, min_size, budget;
	struct idle *idle;          /* stack, bottom = idle longest */
	unsigned nidle, cap;
	struct pipepool_stats st;
};

struct pipepool *
pipepool_new(unsigned max, size_t pipe_size, size_t min_size, size_t budget)
{
	struct pipepool *pp;

	if ((pp = calloc(1, sizeof(*pp))) == NULL)
		return NULL;
	pp->max = max;
	pp->pipe_size = pipe_size;
	pp->min_size = min_size;
	pp->budget = budget;
	return pp;
}

static void
close_pipe(struct pipepool *pp, struct spipe *p)
{
	int fds[2] = { p->rfd, p->wfd };

	zc_pipe_close(fds);
	pp->st.held -= p->size;
	p->rfd = p->wfd = -1;
	p->size = 0;
}

/* The size the next pipe out should have: pipe_size, halved until it is
 * within an even share of the budget between the pipes that would then be
 * out (half the budget each, so the share is still whole when the pipes
 * out double), and no smaller than min_size. */
static size_t
share(const struct pipepool *pp)
{
	size_t size = pp->pipe_size, fair;

	if (pp->budget == 0)
		return size;
	fair = pp->budget / (2 * ((size_t)pp->st.in_use + 1));
	while (size / 2 >= pp->min_size && size > fair)
		size /= 2;
	return size;
}

void
pipepool_free(struct pipepool *pp)
{
	if (pp == NULL)
		return;
	for (unsigned i = 0; i < pp->nidle; i++)
		close_pipe(pp, &pp->idle[i].p);
	free(pp->idle);
	free(pp);
}

/* A pipe from the idle stack, grown first when it is smaller than the share
 * it may have now and the budget allows (a quiet spell after a busy one
 * must not leave a lone stream on small pipes). */
static void
reuse(struct pipepool *pp, struct spipe *p, size_t want)
{
	size_t size = want;

	*p = pp->idle[--pp->nidle].p;
	if (p->size < want &&
	    (pp->budget == 0 || pp->st.held - p->size + want <= pp->budget) &&
	    zc_pipe_resize(p->wfd, &size) == 0 && size != p->size) {
		pp->st.held = pp->st.held - p->size + size;
		p->size = size;
	}
	pp->st.reused++;
}

int
pipepool_get(struct pipepool *pp, struct spipe *p, enum pipepool_fail *why)
{
	int fds[2];
	size_t size;

	if (pp->st.in_use >= pp->max) {
		*why = PIPEPOOL_FAIL_CAP;
		goto fail;
	}
	size = share(pp);
	if (pp->nidle > 0) {
		reuse(pp, p, size);
		goto out;
	}
	/* The share was computed for pipes out, not for bytes held: pipes
	 * handed out large when few were out may still hold most of it. */
	while (pp->budget > 0 && pp->st.held + size > pp->budget &&
	    size / 2 >= pp->min_size)
		size /= 2;
	if (pp->budget > 0 && pp->st.held + size > pp->budget) {
		*why = PIPEPOOL_FAIL_BUDGET;
		goto fail;
	}
	if (zc_pipe_open(fds, &size) == -1) {
		*why = PIPEPOOL_FAIL_ERROR;
		goto fail;
	}
	if (size < pp->min_size) {
		/* Past pipe-user-pages-soft the kernel hands out one-page pipes:
		 * splicing 4 KiB per syscall pair is slower than copying. */
		zc_pipe_close(fds);
		*why = PIPEPOOL_FAIL_BUDGET;
		goto fail;
	}
	p->rfd = fds[0];
	p->wfd = fds[1];
	p->size = size;
	pp->st.held += size;
	pp->st.created++;
out:
	p->queued = 0;
	pp->st.in_use++;
	return 0;
fail:
	pp->st.fails[*why]++;
	return -1;
}

void
pipepool_put(struct pipepool *pp, struct spipe *p)
{
	struct idle *grown;

	if (p->rfd < 0)
		return;
	pp->st.in_use--;
	if (p->queued > 0) {
		pp->st.closed_dirty++;
		goto drop;
	}
	if (pp->nidle == pp->cap) {
		unsigned cap = pp->cap ? pp->cap * 2 : 8;

		grown = realloc(pp->idle, cap * sizeof(*grown));
		if (grown == NULL)
			goto drop;
		pp->idle = grown;
		pp->cap = cap;
	}
	pp->idle[pp->nidle].p = *p;
	pp->idle[pp->nidle].since_ms = clock_coarse_ms();
	pp->nidle++;
	p->rfd = p->wfd = -1;
	p->queued = 0;
	return;
drop:
	close_pipe(pp, p);
	p->queued = 0;
}

void
pipepool_trim(struct pipepool *pp, uint64_t now)
{
	unsigned n = 0;

	/* Ages only fall going up the stack: stop at the first pipe kept. */
	while (n < pp->nidle && now - pp->idle[n].since_ms >=
	    (pp->nidle - n > PIPEPOOL_KEEP ? PIPEPOOL_IDLE_MS : PIPEPOOL_KEEP_MS))
		close_pipe(pp, &pp->idle[n++].p);
	if (n == 0)
		return;
	pp->nidle -= n;
	memmove(pp->idle, pp->idle + n, pp->nidle * sizeof(*pp->idle));
}

void
pipepool_stats(const struct pipepool *pp, struct pipepool_stats *st)
{
	*st = pp->st;
	st->pooled = pp->nidle;
}

void
pipepool_adopt(struct pipepool *pp, const struct spipe *p)
{
	pp->st.in_use++;
	pp->st.held += p->size;
}

void
pipepool_forget(struct pipepool *pp, struct spipe *p)
{
	if (p->rfd < 0)
		return;
	pp->st.in_use--;
	close_pipe(pp, p);
	p->queued = 0;
}
