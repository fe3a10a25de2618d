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
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spliced/clock.h"
#include "spliced/log.h"
#include "spliced/zerocopy.h"

struct worker_conf *
worker_conf_new(struct listener_set *ls, struct backend_set *bs)
{
	struct worker_conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	c->cfg = config_ref(ls->cfg);
	c->ls = listener_set_ref(ls);
	c->bs = backend_set_ref(bs);
	return c;
}

struct worker_conf *
worker_conf_ref(struct worker_conf *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

void
worker_conf_unref(struct worker_conf *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	backend_set_unref(c->bs);
	listener_set_unref(c->ls);
	config_unref(c->cfg);
	free(c);
}

static void
snap_free(struct worker_snap *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; s->lb != NULL && i < s->conf->bs->n; i++)
		backend_lb_cleanup(&s->lb[i]);
	free(s->lb);
	worker_conf_unref(s->conf);
	free(s);
}

/* A snap of conf, its balancers taking over what prev's balancer of the
 * same backend name knew (prev may be NULL). NULL when out of memory. */
static struct worker_snap *
snap_new(struct worker *w, struct worker_conf *conf, const struct worker_snap *prev)
{
	const struct backend_set *bs = conf->bs;
	struct worker_snap *s;
	struct timespec now;
	size_t i, k;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->conf = worker_conf_ref(conf);
	if ((s->lb = calloc(bs->n ? bs->n : 1, sizeof(*s->lb))) == NULL)
		goto fail;
	/* Each worker draws its own random numbers (balance = random). */
	clock_gettime(CLOCK_REALTIME, &now);
	for (i = 0; i < bs->n; i++) {
		if (backend_lb_init(&s->lb[i], &bs->b[i], (uint64_t)now.tv_nsec ^
		    ((uint64_t)getpid() << 32) ^ ((uint64_t)w->id << 48) ^ i) == -1)
			goto fail;
		for (k = 0; prev != NULL && k < prev->conf->bs->n; k++)
			if (strcmp(prev->lb[k].cfg->name, bs->b[i].cfg->name) == 0)
				backend_lb_carry(&s->lb[i], &prev->lb[k]);
	}
	return s;
fail:
	/* Balancers not initialised are zeroed: cleanup takes them. */
	snap_free(s);
	return NULL;
}

/* Free the retired snaps no connection uses any more. */
static void
sweep(struct worker *w)
{
	struct worker_snap **sp = &w->retired, *s;

	while ((s = *sp) != NULL) {
		size_t i;

		/* A retry picks from the snap current then (conn.c), so a
		 * connection may hold a slot in a snap not its own: that
		 * slot keeps this one too. */
		for (i = 0; i < s->conf->bs->n && s->lb[i].users == 0; i++)
			;
		if (s->conns > 0 || i < s->conf->bs->n) {
			sp = &s->next;
			continue;
		}
		*sp = s->next;
		snap_free(s);
	}
}

/* Take the conf in the mailbox, if any. Out of memory, it goes back
 * (unless a newer one came meanwhile) and the next tick tries again. */
static void
adopt(struct worker *w)
{
	struct worker_conf *conf = atomic_exchange(&w->next, NULL), *none = NULL;
	struct worker_snap *s, *old = w->cur;

	if (conf == NULL)
		return;
	if ((s = snap_new(w, conf, old)) == NULL)
		goto fail;
	w->cur = s;
	if (conf->ls != old->conf->ls && w->acc != NULL &&
	    listener_accept_switch(w, old->conf->ls) == -1) {
		w->cur = old;
		snap_free(s);
		goto fail;
	}
	worker_conf_unref(conf);
	old->next = w->retired;
	w->retired = old;
	sweep(w);
	return;
fail:
	if (!atomic_compare_exchange_strong(&w->next, &none, conf))
		worker_conf_unref(conf);
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	enum worker_cmd cmd = atomic_load(&w->cmd);

	(void)fd, (void)what;
	atomic_store(&w->pong, atomic_load(&w->ping));
	/* A drained worker accepts no more: what it serves stays as it is. */
	if (w->seen == WORKER_RUN)
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
	if (w->seen == WORKER_RUN) {
		adopt(w);
		/* A wake-up lost between generations of limits costs a
		 * second at most. */
		listener_accept_wake(w);
	}
	/* Fds freed by other workers' connections: no wake-up says so. */
	if (!TAILQ_EMPTY(&w->fdwait))
		(void)worker_fds_ready(w);
	sweep(w);
}

/* This worker closed a connection: its fds go to the clients waiting for
 * one first, then back into the reserve. A callback of its own rather
 * than a call from worker_conn_gone(), which runs inside conn_close(). */
static void
fds_freed_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	(void)worker_fds_ready(arg);
}

bool
worker_fds_ready(struct worker *w)
{
	return conn_serve_fdwait(w) && fdreserve_fill(&w->reserve);
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
worker_new(unsigned id, struct worker_conf *conf, unsigned max_pipes,
    size_t pipe_budget, char *err, size_t errlen)
{
	struct config *cfg = conf->cfg;
	struct timeval second = { 1, 0 };
	struct worker *w;
	size_t min_pipe;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto nomem;
	w->id = id;
	w->cfg = config_ref(cfg);
	atomic_init(&w->next, NULL);
	atomic_init(&w->ping, 0);
	atomic_init(&w->pong, 0);
	TAILQ_INIT(&w->conns);
	TAILQ_INIT(&w->fdwait);
	fdreserve_init(&w->reserve);
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
	if ((w->cur = snap_new(w, conf, NULL)) == NULL)
		goto nomem;
	w->notify = event_new(w->base, -1, 0, notify_cb, w);
	w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	w->fds_freed = event_new(w->base, -1, 0, fds_freed_cb, w);
	if (w->notify == NULL || w->tick == NULL || w->fds_freed == NULL)
		goto nomem;
	if (!fdreserve_fill(&w->reserve))
		log_warn("worker %u: cannot hold %d fds in reserve: %s", id,
		    FDRESERVE_FDS, strerror(errno));
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
	if (w->fds_freed != NULL)
		event_free(w->fds_freed);
	fdreserve_cleanup(&w->reserve);
	/* Every connection is closed: no snap is used any more. */
	sweep(w);
	snap_free(w->cur);
	worker_conf_unref(atomic_exchange(&w->next, NULL));
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
	char name[16];

	/* top -H, perf and the watchdog's test tell the workers apart. */
	snprintf(name, sizeof(name), "spliced-w%u", w->id);
	pthread_setname_np(pthread_self(), name);

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
worker_publish(struct worker *w, struct worker_conf *conf)
{
	/* One the worker never took is replaced: only the newest counts. */
	worker_conf_unref(atomic_exchange(&w->next, worker_conf_ref(conf)));
	event_active(w->notify, 0, 1);
}

void
worker_ping(struct worker *w, unsigned seq)
{
	atomic_store(&w->ping, seq);
	event_active(w->notify, 0, 1);
}

bool
worker_answered(const struct worker *w, unsigned seq)
{
	return atomic_load(&w->pong) == seq;
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
	if (!TAILQ_EMPTY(&w->fdwait) || !fdreserve_full(&w->reserve))
		event_active(w->fds_freed, 0, 1);
	if (w->seen != WORKER_RUN && w->nconns == 0)
		event_base_loopbreak(w->base);
}
