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
 * What a worker serves comes from the main thread as a struct worker_conf:
 * a config, the listening sockets bound for it and a generation of its
 * servers' addresses. A reload (new config) and a host name resolving
 * elsewhere (new addresses, same config) both publish a new one, through a
 * one-slot mailbox: the main thread stores a reference in it with an
 * atomic exchange (dropping one the worker never took) and wakes the
 * worker, which takes it out with an exchange too, so whoever takes a conf
 * out of the slot owns that reference and no reader ever races a free.
 *
 * The worker then accepts and balances under the new conf (balancers of
 * the same backend name carry their counters and round-robin credit over),
 * while each connection keeps the struct worker_snap it started under:
 * its listener, its timeouts and its backend's settings (a connect retry
 * picks among the newest servers of that backend: conn.c). A retired
 * snap is freed by the worker once no connection of its is left and none
 * holds a slot in its balancers (checked every second).
 *
 * The watchdog (main.c) asks each worker to answer a ping, a sequence
 * number, from its loop; a worker that stops turning stops answering. */
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
#include "spliced/fdreserve.h"
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

/* Immutable once made; references may be dropped on any thread. */
struct worker_conf {
	atomic_uint refs;
	struct config *cfg;         /* a reference */
	struct listener_set *ls;    /* a reference, bound for cfg */
	struct backend_set *bs;     /* a reference, of cfg */
};

/* One worker's view of a conf: its balancers, and how many of its
 * connections started under it. */
struct worker_snap {
	struct worker_conf *conf;   /* a reference */
	struct backend_lb *lb;      /* one per conf->bs->b[] */
	unsigned conns;
	struct worker_snap *next;   /* the retired list */
};

struct worker {
	unsigned id;
	pthread_t thread;
	bool started;
	struct event_base *base;
	/* The config at start: what only a restart changes (pipes, buffers). */
	struct config *cfg;         /* a reference */
	struct worker_snap *cur;    /* new connections start under it */
	_Atomic(struct worker_conf *) next;     /* the mailbox: a reference */
	struct worker_snap *retired;   /* older snaps still used by connections */
	struct worker **peers;      /* every worker, self included */
	unsigned npeers;
	struct pipepool *pipes;     /* NULL when splicing is impossible */
	struct relay_ctx relay;
	struct log_batch log;       /* access lines, written once per loop turn */
	struct worker_accept *acc;
	TAILQ_HEAD(conn_list, conn) conns;
	unsigned nconns;
	/* Connections whose backend socket found no fd: they wait, in
	 * arrival order, and are served before accepting resumes. */
	TAILQ_HEAD(conn_waitq, conn) fdwait;
	struct fdreserve reserve;
	struct event *notify, *tick, *fds_freed;
	_Atomic enum worker_cmd cmd;
	enum worker_cmd seen;       /* the last command acted on */
	atomic_bool finished;       /* its loop has returned */
	struct event *exited;       /* activated (another thread's) when finished */
	atomic_uint ping, pong;     /* the watchdog's question, the loop's answer */
	struct worker_stats st;
};

/* A conf of ls and bs (both of one config), holding references to them.
 * NULL with errno. */
struct worker_conf *worker_conf_new(struct listener_set *, struct backend_set *);
struct worker_conf *worker_conf_ref(struct worker_conf *);
void worker_conf_unref(struct worker_conf *);  /* NULL is fine */

/* NULL with err. conf: what it serves first; its config is also the
 * start-up one. max_pipes, pipe_budget: this worker's share of the
 * process's pipes and pipe bytes (pipepool_new(); budget 0: no limit). */
struct worker *worker_new(unsigned id, struct worker_conf *, unsigned max_pipes,
    size_t pipe_budget, char *err, size_t errlen);
void worker_free(struct worker *);            /* after worker_join; NULL ok */
int worker_start(struct worker *);            /* 0 / -1 with errno */
void worker_join(struct worker *);

/* Thread-safe. */
void worker_wake(struct worker *);            /* re-check waiting clients */
void worker_wake_peers(struct worker *);      /* worker_wake() every worker */
void worker_drain(struct worker *);           /* stop accepting; exit once idle */
void worker_stop(struct worker *);            /* close everything now; exit */
/* Serve new connections under conf from the worker's next loop turn on.
 * Takes its own reference. */
void worker_publish(struct worker *, struct worker_conf *);
/* The watchdog: ask the worker to answer seq from its loop; whether it
 * has answered seq. */
void worker_ping(struct worker *, unsigned seq);
bool worker_answered(const struct worker *, unsigned seq);

/* Worker thread: a connection ended (slot already released by conn.c). */
void worker_conn_gone(struct worker *, bool wake_peers);
/* Worker thread: whether accepting may resume after a pause for lack of
 * fds: serves the connections waiting for an fd first, then refills the
 * reserve; true when nobody waits and the reserve is whole. */
bool worker_fds_ready(struct worker *);

#endif
