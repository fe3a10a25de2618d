/* include/spliced/pipepool.h: the pipes of one worker's splice movers.
 *
 * Not thread-safe: each worker owns one pool. A direction takes a pipe when it
 * starts splicing and gives it back as soon as the pipe is empty, so idle
 * connections hold none. An empty pipe is kept for reuse; a pipe that still
 * holds bytes (its connection died) is closed, never reused, because the
 * bytes would leak into another connection. pipepool_trim(), called about
 * once a second, closes idle pipes beyond the PIPEPOOL_KEEP most recently
 * used once they have sat unused for PIPEPOOL_IDLE_MS, and those few after
 * PIPEPOOL_KEEP_MS: a burst does not pin fds or the per-user pipe budget
 * afterwards, and a proxy left idle holds no pipe at all.
 *
 * Pipe sizes follow the load. Big pipes halve the syscalls per byte, but
 * the kernel charges every pipe's slots to a per-user budget
 * (pipe-user-pages-soft: 16384 pages, 64 MiB, by default; past it new
 * pipes get one page). So a pool with a budget hands out pipe_size while
 * few pipes are out and smaller pipes (down to min_size) as more are: each
 * new pipe gets at most an even share of the budget between the pipes out,
 * and the pipes the pool holds, in use or idle, never add up to more than
 * the budget. A reused pipe smaller than the share it may have is grown
 * first. */
#ifndef SPLICED_PIPEPOOL_H
#define SPLICED_PIPEPOOL_H

#include <stddef.h>
#include <stdint.h>

#define PIPEPOOL_KEEP 4
#define PIPEPOOL_IDLE_MS 1000
#define PIPEPOOL_KEEP_MS 5000

struct spipe {
	int rfd, wfd;
	size_t size;                /* what the kernel granted */
	size_t queued;              /* bytes inside the pipe now */
};

enum pipepool_fail {            /* why pipepool_get() said no */
	PIPEPOOL_FAIL_CAP,          /* max pipes are out */
	PIPEPOOL_FAIL_BUDGET,       /* the kernel granted a pipe too small to help */
	PIPEPOOL_FAIL_ERROR,        /* pipe creation failed (EMFILE, ENFILE, ...) */
	PIPEPOOL_FAIL_MAX_,
};

struct pipepool_stats {
	unsigned in_use, pooled;
	size_t held;                /* bytes of pipe the pool holds, in use or idle */
	uint64_t created, reused, closed_dirty;
	uint64_t fails[PIPEPOOL_FAIL_MAX_];
};

struct pipepool;

/* max: pipes in use at once; pipe_size: the largest size asked of
 * F_SETPIPE_SZ; min_size: a granted size below this is refused
 * (PIPEPOOL_FAIL_BUDGET); budget: bytes of pipe the pool may hold, 0 for
 * no limit (then every pipe is asked for pipe_size). NULL with errno. */
struct pipepool *pipepool_new(unsigned max, size_t pipe_size, size_t min_size,
    size_t budget);
void pipepool_free(struct pipepool *);        /* NULL is fine */

/* 0 with *p filled (queued = 0), or -1 with *why set: the caller copies. */
int pipepool_get(struct pipepool *, struct spipe *p, enum pipepool_fail *why);
/* Returns the pipe (empty: kept; holding bytes: closed). *p is cleared. */
void pipepool_put(struct pipepool *, struct spipe *p);
/* A binary upgrade: a pipe another process handed over, bytes in it,
 * counted as one of this pool's in use from now on (even past max: it
 * exists already). */
void pipepool_adopt(struct pipepool *, const struct spipe *p);
/* A pipe of this pool handed over to another process, which holds its
 * bytes now: closed here, not counted as dirty. *p is cleared. */
void pipepool_forget(struct pipepool *, struct spipe *p);
/* Close the idle pipes that sat unused too long (see above).
 * now_ms: CLOCK_MONOTONIC_COARSE in milliseconds. */
void pipepool_trim(struct pipepool *, uint64_t now_ms);

void pipepool_stats(const struct pipepool *, struct pipepool_stats *);

#endif
