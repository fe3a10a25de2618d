/* tests/relay_harness.h: one relay direction between real sockets, for the
 * relay's cmocka programs (test_relay.c, test_relay_mover.c,
 * test_relay_fail.c). Include after <cmocka.h>.
 *
 * Two connected TCP pairs on 127.0.0.1, A <-> X and Y <-> B; the direction
 * under test moves X -> Y inside a libevent loop. A writer thread sends a
 * deterministic pattern into A and shuts it down; a reader thread reads B to
 * end of stream and checks every byte.
 *
 * Every data-path test runs once per splice setting (never, always, auto):
 * RELAY_MATRIX(test) gives its three cmocka entries, and the fixture's
 * `splice` says which one runs. An always run that needs splice(2) skips
 * itself in a build that cannot splice (fx_need_splice()).
 *
 * Bounds: every test runs under alarm(); each loop has an event timer; the
 * threads' sockets have send and receive timeouts, and teardown shuts the
 * sockets down to wake them before joining. Teardown also checks that the
 * process's fd count is back where it was. */
#ifndef SPLICED_TEST_RELAY_HARNESS_H
#define SPLICED_TEST_RELAY_HARNESS_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spliced/pipepool.h"
#include "spliced/relay.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
/* A quarter of the default buffer_size (64k, config.c), so that a buffer
 * is less than THRESHOLD: the streamer rule (RELAY_STREAMER_READS full
 * reads) and the threshold are told apart, and a transfer of up to one
 * buffer is an exchange. */
#define BUFFER_SIZE (16 * KiB)
#define THRESHOLD (64 * KiB)            /* the default splice_threshold */
/* A quarter of the default pipe_size (1m, config.c): the tests' pipes
 * cost less of the per-user pipe budget; still above RELAY_MIN_PIPE. */
#define PIPE_SIZE (256 * KiB)
/* What worker.c refuses below for a pool of PIPE_SIZE pipes. */
#define MIN_PIPE (PIPE_SIZE < RELAY_MIN_PIPE ? PIPE_SIZE : RELAY_MIN_PIPE)
#define TEST_SECONDS 60                 /* alarm() per test */
#define IO_TIMEOUT_S 20                 /* the threads' socket timeouts */
#define LOOP_MS 20000                   /* one wait for the direction */

/* A test's cmocka initial state: the splice setting, and for the
 * transfers the byte count. */
struct relay_params {
	enum config_splice splice;
	size_t n;
};

#define RELAY_ENTRY(f, suffix, splice_) { .name = #f "_" suffix, .test_func = f, \
	.setup_func = fx_setup, .teardown_func = fx_teardown, \
	.initial_state = &(struct relay_params){ .splice = (splice_) } }
/* One test, three entries: never, always, auto. */
#define RELAY_MATRIX(f) \
	RELAY_ENTRY(f, "never", CONFIG_SPLICE_NEVER), \
	RELAY_ENTRY(f, "always", CONFIG_SPLICE_ALWAYS), \
	RELAY_ENTRY(f, "auto", CONFIG_SPLICE_AUTO)

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

/* ---- the fixture -------------------------------------------------------- */

struct fx {
	enum config_splice splice;  /* the run of the matrix */
	size_t n;                   /* the transfers' byte count */
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

int fx_setup(void **state);
int fx_teardown(void **state);

/* Byte i of every stream. */
uint8_t pattern(uint64_t i);
void pattern_fill(uint8_t *p, uint64_t off, size_t n);
const char *splice_name(enum config_splice);

/* Run the loop until the direction's callback ran or ms passed. */
void fx_loop(struct fx *, unsigned ms);
/* The writer sends n pattern bytes into A, then shuts it down. */
void fx_start_writer(struct fx *, size_t n);
/* The reader checks B to end of stream; gated: only once r.gate is posted. */
void fx_start_reader(struct fx *, bool gated);
/* relay_init() X -> Y with the run's splice setting. */
void fx_init_relay(struct fx *);
/* The same with another splice_threshold. */
void fx_init_relay_threshold(struct fx *, size_t threshold);
/* fx_init_relay(), then relay_start(). */
void fx_start_relay(struct fx *);
/* Replace the pool (relay_ctx too) with pipepool_new(max, pipe_size,
 * min_size, no budget). */
void fx_use_pool(struct fx *, unsigned max, size_t pipe_size, size_t min_size);
struct pipepool_stats fx_pool_stats(const struct fx *);
/* Skip unless this build can splice. */
void need_splice(void);
/* Skip an always run in a build that cannot splice. */
void fx_need_splice(const struct fx *);
/* Bytes the direction wrote to `out`, by both movers. */
uint64_t moved(const struct relay_dir *);
/* Everything sent arrived intact, then end of stream: the direction is
 * done, holds nothing, and gave its buffer and pipe back. Joins the
 * threads. */
void fx_check_transfer(struct fx *, size_t n);
/* Send pattern bytes [off, off + len) into A without blocking and run the
 * relay until it has carried them all (the reader thread drains B). */
void fx_feed(struct fx *, size_t off, size_t len);
/* Shut A down, run to the end, and check the transfer of total bytes fed. */
void fx_end_stream(struct fx *, size_t total);
void close_fd(int *fd);

#endif
