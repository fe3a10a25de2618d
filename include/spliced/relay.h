/* include/spliced/relay.h: one direction of a proxied connection.
 *
 * A direction moves bytes from socket `in` to socket `out` until `in` reaches
 * end of stream (then it shuts down `out` for writing) or something fails.
 * It reads only when everything it read before has been written, so it never
 * holds more than one buffer or one pipe of bytes, whatever the traffic.
 * Buffers and pipes come from the worker's relay_ctx and are held only while
 * bytes are in flight: an idle direction holds neither.
 * A direction that cannot poll a socket (event_add() failed) fails at once,
 * on that side and with that errno, rather than wait for a wake-up that
 * would never come.
 *
 * The state machine lives in relay.c, the auto policy in relay_policy.c
 * (relay_policy.h); the two movers, copy (relay_copy.c) and splice
 * (relay_splice.c), sit behind struct relay_mover. */
#ifndef SPLICED_RELAY_H
#define SPLICED_RELAY_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/config.h"
#include "spliced/pipepool.h"
#include "spliced/relay_policy.h"

/* Bytes one direction moves per callback before it lets other connections
 * of the worker run (level-triggered polling brings it back). */
#define RELAY_BUDGET (1024 * 1024)
/* The smallest pipe worth splicing through: below it the syscalls per byte
 * cost more than copying through a buffer does (tools/bench sweep). */
#define RELAY_MIN_PIPE (128 * 1024)
/* Idle copy buffers a worker keeps for reuse. */
#define RELAY_BUFS_KEEP 64

enum relay_state {
	RELAY_READING,              /* nothing held; waiting for `in` */
	RELAY_WRITING,              /* bytes held; waiting for `out` (not reading) */
	RELAY_DONE,                 /* all written and `out` shut down for writing */
	RELAY_FAILED,               /* see fail_side and err */
	RELAY_STATE_MAX_,
};

enum relay_side { RELAY_SIDE_IN, RELAY_SIDE_OUT };

enum relay_fallback {           /* why a direction that wanted to splice copied */
	RELAY_FALLBACK_POOL_FULL,
	RELAY_FALLBACK_PIPE_BUDGET,
	RELAY_FALLBACK_PIPE_ERROR,
	RELAY_FALLBACK_UNSUPPORTED,
	RELAY_FALLBACK_MAX_,
};

struct relay_stats {            /* per worker, summed when read */
	uint64_t bytes[RELAY_MODE_MAX_];
	uint64_t fallbacks[RELAY_FALLBACK_MAX_];
};

/* What the directions of one worker share. Not thread-safe. */
struct relay_ctx {
	struct event_base *base;
	struct pipepool *pipes;     /* NULL: never splice */
	size_t buffer_size;
	char **bufs;                /* idle copy buffers */
	unsigned nbufs;
	struct relay_stats stats;
};

struct relay_dir;
typedef void (*relay_cb)(struct relay_dir *, void *arg);

struct relay_dir {
	struct relay_ctx *ctx;
	const struct relay_mover *mover;
	int in, out;
	struct event rd, wr;        /* `in` readable, `out` writable */
	bool rd_on, wr_on;
	enum relay_state state;
	bool short_read;            /* the last read did not fill the holder */
	struct relay_policy_state policy;   /* changed by relay_policy_*() only */
	/* Held only while bytes are in flight. */
	struct spipe pipe;          /* rfd < 0: none */
	char *buf;                  /* NULL: none */
	size_t off, len;            /* buf[off..len) still to write */
	/* Results. */
	uint64_t bytes[RELAY_MODE_MAX_];   /* written to `out`, by mover */
	uint64_t last_io_ms;        /* CLOCK_MONOTONIC_COARSE of the last byte */
	enum relay_side fail_side;
	int err;
	relay_cb cb;                /* on DONE or FAILED */
	void *arg;
	const struct relay_dir *other;   /* the connection's other direction */
};

/* Add every counter of from to to. */
void relay_stats_add(struct relay_stats *to, const struct relay_stats *from);

/* pipes: NULL never splices. 0, or -1 with errno (ENOMEM: no room for the
 * list of idle buffers). relay_ctx_cleanup() is safe either way. */
int relay_ctx_init(struct relay_ctx *, struct event_base *,
    struct pipepool *pipes, size_t buffer_size);
void relay_ctx_cleanup(struct relay_ctx *);

/* Set up a direction; nothing moves until relay_start(). cb runs once, when
 * the direction reaches RELAY_DONE or RELAY_FAILED. 0 or -1 (event setup). */
int relay_init(struct relay_dir *, struct relay_ctx *, int in, int out,
    enum config_splice policy, size_t threshold, relay_cb cb, void *arg);
/* n bytes moved for d before it started, by its owner (a ClientHello
 * read to route the connection and written on): counted as copied, in d
 * and the worker's totals, as if d had moved them. */
void relay_count_copied(struct relay_dir *, size_t n);
/* Read `in` now. cb may run before it returns. */
void relay_start(struct relay_dir *);
/* Start by waiting for `in` instead of reading it first: for a peer that has
 * only just connected, a read would almost always say EAGAIN. cb runs
 * before it returns if `in` cannot be polled. */
void relay_watch(struct relay_dir *);
/* The two directions of one connection: a direction that ends after the
 * other has ended leaves the FIN to close(), which the caller does next. */
void relay_pair(struct relay_dir *, struct relay_dir *);
/* Stop and release: events removed, buffer returned, pipe returned (a pipe
 * still holding bytes is closed). The sockets are the caller's. */
void relay_cleanup(struct relay_dir *);

/* A binary upgrade (handover.h). At a clean point (between callbacks, as
 * every caller on the worker's loop is) a direction is wholly described
 * by its state, its mover, its policy, and the bytes it holds: a pipe
 * (with the count in it) or buf[off..len).
 *
 * Stop polling: the direction stays as it is until relay_thaw() (or
 * relay_cleanup()). */
void relay_freeze(struct relay_dir *);
/* Poll again as its state asks. 0, or -1 with errno (the caller ends
 * the connection). */
int relay_thaw(struct relay_dir *);
struct handover_dir;
/* Describe a frozen direction; its held bytes stay where they are. */
void relay_export(const struct relay_dir *, struct handover_dir *);
/* A direction set up by relay_init() takes over one exported by another
 * process: its counters and policy, pipe (rfd, wfd: the pipe's fds, or
 * -1 when it had none; taken into the worker's pool, which must exist)
 * and copy-buffer bytes (data, hd->buf_len of them, copied). It stays
 * frozen: relay_thaw() starts it. 0, or -1 with errno (EINVAL: a record
 * that makes no sense here; ENOMEM); the fds are then still the
 * caller's. */
int relay_adopt(struct relay_dir *, const struct handover_dir *hd, int rfd,
    int wfd, const void *data);
/* Whether relay_adopt() would take hd (checked before the commit: after
 * it, a refusal would cost the connection). */
#define RELAY_ADOPT_BUF_MAX (64u * 1024 * 1024)     /* buffer_size's most */
bool relay_adopt_ok(const struct handover_dir *hd);
/* The pipe of a direction whose bytes another process now holds: its fds
 * are closed, and it leaves the pool's count (not counted as dirty). */
void relay_forget_pipe(struct relay_dir *);

/* "reading", "writing", "done", "failed". */
const char *relay_state_name(enum relay_state);
/* "copy", "splice": the mode label of logs, metrics and /connections. */
const char *relay_mode_name(enum relay_mode);
/* "pool_full", "pipe_budget", "pipe_error", "unsupported": the names of
 * the fallback counters in logs and metrics. */
const char *relay_fallback_name(enum relay_fallback);

/* The movers. relay_copy.c / relay_splice.c; relay.c drives them. */
struct relay_mover {
	const char *name;
	enum relay_mode mode;
	/* Take what holds bytes (buffer or pipe). 0, or -1 with *why: copy instead. */
	int (*acquire)(struct relay_dir *, enum relay_fallback *why);
	/* Give it back; it is empty unless the connection is being torn down. */
	void (*release)(struct relay_dir *);
	size_t (*pending)(const struct relay_dir *);
	size_t (*capacity)(const struct relay_dir *);
	/* in -> holder. >0 read, 0 would block (or *eof), -1 error. */
	ssize_t (*fill)(struct relay_dir *, bool *eof);
	/* holder -> out. >0 written, 0 would block, -1 error. */
	ssize_t (*flush)(struct relay_dir *);
};

extern const struct relay_mover relay_copy_mover;
extern const struct relay_mover relay_splice_mover;

#endif
