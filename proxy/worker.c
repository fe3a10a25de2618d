/* proxy/worker.c: a worker thread and its event loop.
 *
 * Commands from other threads (drain, stop) are an atomic plus a
 * user-triggered event: event_active() is the one libevent call that is safe
 * across threads once evthread_use_pthreads() has run. */
#include "spliced/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "spliced/clock.h"
#include "spliced/log.h"
#include "spliced/zerocopy.h"

/* An older generation of the backend set, kept while connections hold
 * slots in its balancers. */
struct worker_gen {
	struct backend_set *bs;
	struct backend_lb *lb;      /* [bs->n] */
	struct worker_gen *next;
};

static void
lbs_free(struct backend_lb *lb, size_t n)
{
	for (size_t i = 0; lb != NULL && i < n; i++)
		backend_lb_cleanup(&lb[i]);
	free(lb);
}

/* Free the retired generations no connection uses any more. */
static void
sweep(struct worker *w)
{
	struct worker_gen **gp = &w->retired, *g;

	while ((g = *gp) != NULL) {
		size_t i;

		for (i = 0; i < g->bs->n && g->lb[i].users == 0; i++)
			;
		if (i < g->bs->n) {
			gp = &g->next;
			continue;
		}
		*gp = g->next;
		lbs_free(g->lb, g->bs->n);
		backend_set_unref(g->bs);
		free(g);
	}
}

/* Take the generation in the mailbox, if any. Out of memory, it goes back
 * (unless a newer one came meanwhile) and the next tick tries again. */
static void
adopt(struct worker *w)
{
	struct backend_set *bs = atomic_exchange(&w->next_bs, NULL), *none = NULL;
	struct backend_lb *lb = NULL;
	struct worker_gen *g = NULL;
	size_t i = 0;

	if (bs == NULL)
		return;
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (lb = calloc(bs->n ? bs->n : 1, sizeof(*lb))) == NULL)
		goto fail;
	for (i = 0; i < bs->n; i++) {
		if (backend_lb_init(&lb[i], &bs->b[i], 0) == -1)
			goto fail;
		backend_lb_carry(&lb[i], &w->lb[i]);
	}
	g->bs = w->bs;
	g->lb = w->lb;
	g->next = w->retired;
	w->retired = g;
	w->bs = bs;
	w->lb = lb;
	sweep(w);
	return;
fail:
	lbs_free(lb, i);
	free(g);
	if (!atomic_compare_exchange_strong(&w->next_bs, &none, bs))
		backend_set_unref(bs);
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	enum worker_cmd cmd = atomic_load(&w->cmd);

	(void)fd, (void)what;
	adopt(w);
	if (cmd != w->seen) {
		w->seen = cmd;
		if (cmd >= WORKER_DRAIN)
			listener_accept_stop(w);
		if (cmd == WORKER_STOP)
			conn_close_all(w);
	}
	if (cmd == WORKER_RUN)
		listener_accept_wake(w);
	else if (w->nconns == 0)
		event_base_loopbreak(w->base);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd, (void)what;
	if (w->pipes != NULL)
		pipepool_trim(w->pipes, clock_coarse_ms());
	adopt(w);
	sweep(w);
}

/* A relay direction turns its read event off and its write event on (and
 * back) as the peer's window fills and drains. The changelist folds such
 * flips within one loop turn into at most one epoll_ctl per fd. spliced
 * never dup()s a socket, which is the changelist's one caveat. */
static struct event_base *
new_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

struct worker *
worker_new(unsigned id, struct config *cfg, struct listener_set *ls,
    struct backend_set *bs, unsigned max_pipes, size_t pipe_budget, char *err,
    size_t errlen)
{
	struct timespec now;
	struct timeval second = { 1, 0 };
	struct worker *w;
	size_t min_pipe;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto nomem;
	w->id = id;
	w->cfg = config_ref(cfg);
	w->ls = ls;
	w->bs = backend_set_ref(bs);
	atomic_init(&w->next_bs, NULL);
	TAILQ_INIT(&w->conns);
	atomic_init(&w->cmd, WORKER_RUN);
	if ((w->base = new_base()) == NULL) {
		snprintf(err, errlen, "worker %u: cannot create an event loop", id);
		goto fail;
	}
	if (zc_splice_supported()) {
		/* Below 128 KiB a pipe costs more in syscalls than copying
		 * through a buffer does (tools/bench sweep): such a pipe, or
		 * one the kernel would not grow past a page, is refused. */
		min_pipe = cfg->pipe_size < RELAY_MIN_PIPE ? cfg->pipe_size : RELAY_MIN_PIPE;
		if ((w->pipes = pipepool_new(max_pipes, cfg->pipe_size, min_pipe,
		    pipe_budget)) == NULL)
			goto nomem;
	}
	relay_ctx_init(&w->relay, w->base, w->pipes, cfg->buffer_size);
	if (w->relay.bufs == NULL || log_batch_init(&w->log, w->base) == -1)
		goto nomem;
	if ((w->lb = calloc(bs->n ? bs->n : 1, sizeof(*w->lb))) == NULL)
		goto nomem;
	/* Each worker draws its own random numbers (balance = random). */
	clock_gettime(CLOCK_REALTIME, &now);
	for (size_t i = 0; i < bs->n; i++)
		if (backend_lb_init(&w->lb[i], &bs->b[i], (uint64_t)now.tv_nsec ^
		    ((uint64_t)getpid() << 32) ^ ((uint64_t)id << 48) ^ i) == -1)
			goto nomem;
	w->notify = event_new(w->base, -1, 0, notify_cb, w);
	w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	if (w->notify == NULL || w->tick == NULL)
		goto nomem;
	event_add(w->tick, &second);
	return w;
nomem:
	snprintf(err, errlen, "worker %u: out of memory", id);
fail:
	worker_free(w);
	return NULL;
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	listener_accept_stop(w);
	conn_close_all(w);
	if (w->notify != NULL)
		event_free(w->notify);
	if (w->tick != NULL)
		event_free(w->tick);
	/* Every connection is closed: no slot is held anywhere. */
	sweep(w);
	lbs_free(w->lb, w->bs->n);
	backend_set_unref(w->bs);
	backend_set_unref(atomic_exchange(&w->next_bs, NULL));
	relay_ctx_cleanup(&w->relay);
	log_batch_cleanup(&w->log);
	pipepool_free(w->pipes);
	if (w->base != NULL)
		event_base_free(w->base);
	config_unref(w->cfg);
	free(w);
}

static void *
run(void *arg)
{
	struct worker *w = arg;

	if (listener_accept_start(w) == 0)
		event_base_dispatch(w->base);
	/* Whatever is left (a stop, or a failed start) ends here, on the
	 * thread that owns it. */
	listener_accept_stop(w);
	conn_close_all(w);
	log_batch_flush(&w->log);
	atomic_store(&w->finished, true);
	if (w->exited != NULL)
		event_active(w->exited, 0, 1);
	return NULL;
}

int
worker_start(struct worker *w)
{
	int r = pthread_create(&w->thread, NULL, run, w);

	if (r != 0) {
		errno = r;
		return -1;
	}
	w->started = true;
	return 0;
}

void
worker_join(struct worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	w->started = false;
}

static void
command(struct worker *w, enum worker_cmd cmd)
{
	enum worker_cmd cur = atomic_load(&w->cmd);

	/* Commands only escalate: run -> drain -> stop. */
	while (cur < cmd && !atomic_compare_exchange_weak(&w->cmd, &cur, cmd))
		;
	event_active(w->notify, 0, 1);
}

void
worker_wake(struct worker *w)
{
	event_active(w->notify, 0, 1);
}

void
worker_drain(struct worker *w)
{
	command(w, WORKER_DRAIN);
}

void
worker_stop(struct worker *w)
{
	command(w, WORKER_STOP);
}

void
worker_set_backends(struct worker *w, struct backend_set *bs)
{
	/* One the worker never took is replaced: only the newest counts. */
	backend_set_unref(atomic_exchange(&w->next_bs, backend_set_ref(bs)));
	event_active(w->notify, 0, 1);
}

void
worker_wake_peers(struct worker *w)
{
	for (unsigned i = 0; i < w->npeers; i++)
		worker_wake(w->peers[i]);
}

void
worker_conn_gone(struct worker *w, bool wake_peers)
{
	if (wake_peers)
		worker_wake_peers(w);
	if (w->seen != WORKER_RUN && w->nconns == 0)
		event_base_loopbreak(w->base);
}
