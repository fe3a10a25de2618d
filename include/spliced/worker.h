/* include/spliced/worker.h: worker threads, one event_base each.
 *
 * A worker owns everything its connections touch: the event base, the pipe
 * pool, copy buffers, balancing state and counters (per server too, in its
 * backend_lb). Nothing on the data path is shared with other workers except
 * the read-only config, the limit counters and the servers' state (atomics,
 * struct backend_set). Other threads talk to a worker only through
 * worker_wake/worker_drain/worker_stop/worker_set_backends, which are
 * thread-safe.
 *
 * New server addresses (a host name resolved to something else) come as a
 * new generation of the backend_set, handed over through a one-slot
 * mailbox: the main thread stores a reference in it with an atomic
 * exchange (dropping one the worker never took) and wakes the worker,
 * which takes it out with an exchange too, so whoever takes a set out of
 * the slot owns that reference and no reader ever races a free. The
 * worker then balances over the new generation (backend_lb_carry keeps
 * its counters and round-robin credit); connections keep the slot they
 * hold in the generation they were picked from, which the worker frees
 * once none is left (checked every second). */
#ifndef SPLICED_WORKER_H
#define SPLICED_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/conn.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/relay.h"

enum worker_cmd { WORKER_RUN, WORKER_DRAIN, WORKER_STOP };

struct worker_stats {
	uint64_t connections;
	uint64_t reasons[CONN_REASON_MAX_];
	uint64_t connect_failures;  /* attempts, including retried ones */
};

struct worker_accept;           /* listener.c */
struct worker_gen;              /* worker.c: a retired generation */

struct worker {
	unsigned id;
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct config *cfg;         /* a reference */
	struct listener_set *ls;
	struct backend_set *bs;     /* a reference: the generation in use */
	_Atomic(struct backend_set *) next_bs;  /* the mailbox: a reference */
	struct worker_gen *retired; /* older generations still holding slots */
	struct worker **peers;      /* every worker, self included */
	unsigned npeers;
	struct pipepool *pipes;     /* NULL when splicing is impossible */
	struct relay_ctx relay;
	struct log_batch log;       /* access lines, written once per loop turn */
	struct backend_lb *lb;      /* one per cfg->backends[], over bs */
	struct worker_accept *acc;
	TAILQ_HEAD(conn_list, conn) conns;
	unsigned nconns;
	struct event *notify, *tick;
	_Atomic enum worker_cmd cmd;
	enum worker_cmd seen;       /* the last command acted on */
	atomic_bool finished;       /* its loop has returned */
	struct event *exited;       /* activated (another thread's) when finished */
	struct worker_stats st;
};

/* NULL with err. max_pipes, pipe_budget: this worker's share of the
 * process's pipes and pipe bytes (pipepool_new(); budget 0: no limit). */
struct worker *worker_new(unsigned id, struct config *, struct listener_set *,
    struct backend_set *, unsigned max_pipes, size_t pipe_budget, char *err,
    size_t errlen);
void worker_free(struct worker *);            /* after worker_join; NULL ok */
int worker_start(struct worker *);            /* 0 / -1 with errno */
void worker_join(struct worker *);

/* Thread-safe. */
void worker_wake(struct worker *);            /* re-check waiting clients */
void worker_wake_peers(struct worker *);      /* worker_wake() every worker */
void worker_drain(struct worker *);           /* stop accepting; exit once idle */
void worker_stop(struct worker *);            /* close everything now; exit */
/* Balance new connections over bs (a newer generation of the worker's
 * set: same config) from the worker's next loop turn on. Takes its own
 * reference. */
void worker_set_backends(struct worker *, struct backend_set *bs);

/* Worker thread: a connection ended (slot already released by conn.c). */
void worker_conn_gone(struct worker *, bool wake_peers);

#endif
