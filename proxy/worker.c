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

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	enum worker_cmd cmd = atomic_load(&w->cmd);

	(void)fd, (void)what;
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
	for (size_t i = 0; w->lb != NULL && i < w->bs->n; i++)
		backend_lb_cleanup(&w->lb[i]);
	free(w->lb);
	backend_set_unref(w->bs);
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
