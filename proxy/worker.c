/* proxy/worker.c: a worker thread and its event loop.
 *
 * Commands from other threads (drain, stop) are an atomic plus a
 * user-triggered event: event_active() is the one libevent call that is safe
 * across threads once evthread_use_pthreads() has run. */
#include "spliced/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spliced/accept.h"
#include "spliced/clock.h"
#include "spliced/fdreserve.h"
#include "spliced/handover.h"
#include "spliced/log.h"
#include "spliced/pipepool.h"
#include "spliced/stats.h"
#include "spliced/zerocopy.h"

enum worker_cmd { WORKER_RUN, WORKER_DRAIN, WORKER_STOP };

struct worker_waiting {
	int fd;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char listener[HANDOVER_NAME_MAX];
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
	struct conn_home *home;     /* its connections */
	struct acceptor *acc;       /* NULL once it stopped accepting */
	struct event *notify, *tick, *fds_freed;
	_Atomic enum worker_cmd cmd;
	enum worker_cmd seen;       /* the last command acted on */
	atomic_bool finished;       /* its loop has returned */
	struct event *exited;       /* activated (another thread's) when finished */
	atomic_uint ping, pong;     /* the watchdog's question, the loop's answer */
	struct stats_worker *stats; /* written by its thread only (stats.h) */
	/* Questions from other threads (worker_query()), answered from the
	 * loop; once finished, by the asker. */
	pthread_mutex_t qlock;
	bool qlock_ok;
	struct worker_query *queries;
	/* A binary upgrade's clients waiting for a slot, until the acceptor
	 * exists to take them (run()). */
	struct worker_waiting *waiting;
	size_t nwaiting;
};

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
	worker_snap_stats_cleanup(s);
	worker_conf_unref(s->conf);
	free(s);
}

int
worker_snap_stats(struct worker_snap *s, struct stats_worker *w)
{
	const struct listener_set *ls = s->conf->ls;
	const struct backend_set *bs = s->conf->bs;

	if ((s->sl = calloc(ls->n ? ls->n : 1, sizeof(*s->sl))) == NULL ||
	    (s->sb = calloc(bs->n ? bs->n : 1, sizeof(*s->sb))) == NULL ||
	    (s->ss = calloc(bs->n ? bs->n : 1, sizeof(*s->ss))) == NULL)
		return -1;
	for (size_t i = 0; i < ls->n; i++)
		if ((s->sl[i] = stats_worker_listener(w,
		    ls->l[i].cfg->name)) == NULL)
			return -1;
	for (size_t i = 0; i < bs->n; i++) {
		const struct backend_shared *b = &bs->b[i];

		if ((s->sb[i] = stats_worker_backend(w, b->cfg->name)) == NULL ||
		    (s->ss[i] = calloc(b->n ? b->n : 1, sizeof(**s->ss))) == NULL)
			return -1;
		for (size_t k = 0; k < b->n; k++)
			if ((s->ss[i][k] = stats_worker_server(w,
			    b->cfg->name, b->entry[k]->name)) == NULL)
				return -1;
	}
	return 0;
}

void
worker_snap_stats_cleanup(struct worker_snap *s)
{
	for (size_t i = 0; s->ss != NULL && i < s->conf->bs->n; i++)
		free(s->ss[i]);
	free(s->sl);
	free(s->sb);
	free(s->ss);
	s->sl = NULL;
	s->sb = NULL;
	s->ss = NULL;
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
	if (worker_snap_stats(s, w->stats) == -1)
		goto fail;
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

static void stop_accepting(struct worker *);

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
	/* The connections first: clients the acceptor admits as it switches
	 * start under the new snap. */
	w->cur = s;
	conn_home_switch(w->home, s);
	if (w->acc != NULL && accept_switch(w->acc, conf->ls) == -1) {
		w->cur = old;
		conn_home_switch(w->home, old);
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

/* Under qlock: run the queued questions, oldest first, and tell their
 * askers. */
static void
answer_queries(struct worker *w)
{
	struct worker_query *q = w->queries, *next, *rev = NULL;

	w->queries = NULL;
	for (; q != NULL; q = next) {       /* queued newest first */
		next = q->next;
		q->next = rev;
		rev = q;
	}
	for (q = rev; q != NULL; q = next) {
		next = q->next;
		q->fn(w, q->arg);
		event_active(q->done, 0, 1);
	}
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	enum worker_cmd cmd = atomic_load(&w->cmd);

	(void)fd, (void)what;
	atomic_store(&w->pong, atomic_load(&w->ping));
	pthread_mutex_lock(&w->qlock);
	answer_queries(w);
	pthread_mutex_unlock(&w->qlock);
	/* A drained worker accepts no more: what it serves stays as it is. */
	if (w->seen == WORKER_RUN)
		adopt(w);
	if (cmd != w->seen) {
		w->seen = cmd;
		if (cmd >= WORKER_DRAIN)
			stop_accepting(w);
		if (cmd == WORKER_STOP)
			conn_close_all(w->home);
	}
	if (cmd == WORKER_RUN)
		accept_wake(w->acc);
	else if (conn_home_count(w->home) == 0)
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
		accept_wake(w->acc);
	}
	/* Fds freed by other workers' connections: no wake-up says so. A
	 * reserve short since start-up is refilled here too. */
	if (conn_home_fds_wanted(w->home))
		(void)conn_home_fds_ready(w->home);
	sweep(w);
}

/* This worker closed a connection: its fds go to the clients waiting for
 * one first, then back into the reserve. A callback of its own rather
 * than a call from on_conn_ended(), which runs inside conn.c. */
static void
fds_freed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd, (void)what;
	(void)conn_home_fds_ready(w->home);
}

static void
wake_peers(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < w->npeers; i++)
		worker_wake(w->peers[i]);
}

/* conn.h's hooks. */
static void
on_conn_ended(void *arg, bool wake)
{
	struct worker *w = arg;

	if (wake)
		wake_peers(w);
	if (conn_home_fds_wanted(w->home))
		event_active(w->fds_freed, 0, 1);
	if (w->seen != WORKER_RUN && conn_home_count(w->home) == 0)
		event_base_loopbreak(w->base);
}

static void
on_fd_short(void *arg, int err, const char *what)
{
	struct worker *w = arg;

	if (w->acc != NULL)
		accept_pause(w->acc, err, what);
}

static void
stop_accepting(struct worker *w)
{
	accept_free(w->acc);
	w->acc = NULL;
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
	static const struct conn_hooks hooks = { on_conn_ended, on_fd_short };
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
	if (relay_ctx_init(&w->relay, w->base, w->pipes, cfg->buffer_size) == -1 ||
	    log_batch_init(&w->log, w->base) == -1)
		goto nomem;
	if (pthread_mutex_init(&w->qlock, NULL) != 0)
		goto nomem;
	w->qlock_ok = true;
	if ((w->stats = stats_worker_new()) == NULL ||
	    (w->cur = snap_new(w, conf, NULL)) == NULL ||
	    (w->home = conn_home_new(w->base, &w->relay, &w->log, w->stats,
	    id, w->cur, &hooks, w)) == NULL)
		goto nomem;
	if (conn_home_fds_wanted(w->home))
		log_warn("worker %u: cannot hold %d fds in reserve: %s", id,
		    FDRESERVE_FDS, strerror(errno));
	w->notify = event_new(w->base, -1, 0, notify_cb, w);
	w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	w->fds_freed = event_new(w->base, -1, 0, fds_freed_cb, w);
	if (w->notify == NULL || w->tick == NULL || w->fds_freed == NULL ||
	    event_add(w->tick, &second) == -1)
		goto nomem;
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
	stop_accepting(w);
	/* Closes every connection: no snap is used any more. */
	conn_home_free(w->home);
	if (w->notify != NULL)
		event_free(w->notify);
	if (w->tick != NULL)
		event_free(w->tick);
	if (w->fds_freed != NULL)
		event_free(w->fds_freed);
	sweep(w);
	snap_free(w->cur);
	worker_conf_unref(atomic_exchange(&w->next, NULL));
	relay_ctx_cleanup(&w->relay);
	log_batch_cleanup(&w->log);
	pipepool_free(w->pipes);
	if (w->base != NULL)
		event_base_free(w->base);
	config_unref(w->cfg);
	stats_worker_free(w->stats);
	if (w->qlock_ok)
		pthread_mutex_destroy(&w->qlock);
	for (size_t i = 0; i < w->nwaiting; i++)
		close(w->waiting[i].fd);
	free(w->waiting);
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

	if ((w->acc = accept_new(w->base, w->id, w->home, w->cur->conf->ls,
	    wake_peers, w)) != NULL) {
		for (size_t i = 0; i < w->nwaiting; i++)
			accept_adopt(w->acc, w->waiting[i].listener,
			    w->waiting[i].fd, (struct sockaddr *)&w->waiting[i].peer,
			    w->waiting[i].peerlen);
		w->nwaiting = 0;
		accept_wake(w->acc);
		event_base_dispatch(w->base);
	}
	/* Whatever is left (a stop, or a failed start) ends here, on the
	 * thread that owns it. */
	stop_accepting(w);
	conn_close_all(w->home);
	log_batch_flush(&w->log);
	/* From now on questions are answered by whoever asks: answer those
	 * that came meanwhile, with the figures final. */
	pthread_mutex_lock(&w->qlock);
	atomic_store(&w->finished, true);
	answer_queries(w);
	pthread_mutex_unlock(&w->qlock);
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
worker_link(struct worker *w, struct worker **peers, unsigned npeers,
    struct event *exited)
{
	w->peers = peers;
	w->npeers = npeers;
	w->exited = exited;
}

bool
worker_finished(const struct worker *w)
{
	return atomic_load(&w->finished);
}

void
worker_totals_add(const struct worker *w, struct worker_totals *t)
{
	conn_stats_add(&t->conn, conn_home_stats(w->home));
	relay_stats_add(&t->relay, &w->relay.stats);
}

/* Each worker counts in the balancer of the backend of that name in its
 * current snap; the counts follow an address from one generation to the
 * next (backend_lb_carry). */
void
worker_server_totals_add(const struct worker *w, const struct server_state *s,
    struct server_stats *st)
{
	const struct worker_snap *snap = w->cur;

	for (size_t k = 0; k < snap->conf->bs->n; k++) {
		const struct backend_lb *lb = &snap->lb[k];
		ssize_t j = backend_lb_index(lb, s);

		if (j < 0)
			continue;
		st->connections += lb->stats[j].connections;
		st->connect_failures += lb->stats[j].connect_failures;
	}
}

void
worker_query(struct worker *w, struct worker_query *q)
{
	pthread_mutex_lock(&w->qlock);
	if (atomic_load(&w->finished)) {
		q->fn(w, q->arg);
		event_active(q->done, 0, 1);
	} else {
		q->next = w->queries;
		w->queries = q;
		event_active(w->notify, 0, 1);
	}
	pthread_mutex_unlock(&w->qlock);
}

bool
worker_query_cancel(struct worker *w, struct worker_query *q)
{
	struct worker_query **p;
	bool found = false;

	pthread_mutex_lock(&w->qlock);
	for (p = &w->queries; *p != NULL; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			found = true;
			break;
		}
	pthread_mutex_unlock(&w->qlock);
	return found;
}

int
worker_sample(struct worker *w, struct stats_sample *s)
{
	struct pipepool_stats ps;

	if (stats_sample_add_worker(s, w->stats) == -1 ||
	    conn_home_sample(w->home, s) == -1)
		return -1;
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		s->fallbacks[f] += w->relay.stats.fallbacks[f];
	if (w->pipes != NULL) {
		pipepool_stats(w->pipes, &ps);
		s->pipes.in_use += ps.in_use;
		s->pipes.pooled += ps.pooled;
		s->pipes.held += ps.held;
		s->pipes.created += ps.created;
		s->pipes.reused += ps.reused;
		s->pipes.closed_dirty += ps.closed_dirty;
		for (int f = 0; f < PIPEPOOL_FAIL_MAX_; f++)
			s->pipes.fails[f] += ps.fails[f];
	}
	s->workers++;
	return 0;
}

void
worker_hold(struct worker *w, bool hold)
{
	accept_hold(w->acc, hold);
}

unsigned
worker_unsettled(struct worker *w)
{
	return conn_home_unsettled(w->home);
}

int
worker_export(struct worker *w, struct handover_items *items)
{
	size_t first = items->n;

	if (conn_home_export(w->home, w->id, items) == -1)
		return -1;
	if (accept_export(w->acc, w->id, items) == -1) {
		items->n = first;
		conn_home_thaw(w->home);
		return -1;
	}
	return 0;
}

void
worker_thaw(struct worker *w)
{
	conn_home_thaw(w->home);
}

void
worker_abort_frozen(struct worker *w)
{
	conn_home_abort_frozen(w->home);
}

unsigned
worker_release(struct worker *w)
{
	unsigned n = (unsigned)accept_waiting_count(w->acc);

	accept_release(w->acc);
	return conn_home_release(w->home) + n;
}

bool
worker_adopt_check(const struct worker *w, const struct handover_conn *r,
    char *err, size_t errlen)
{
	return conn_adopt_check(w->cur, r, err, errlen);
}

void
worker_adopt(struct worker *w, const struct handover_conn *r, const int *fds,
    const void *const data[2])
{
	struct worker_waiting *g;

	if (!r->waiting) {
		conn_adopt(w->home, r, fds, data);
		return;
	}
	/* The acceptor exists once the worker runs (run()): it waits here. */
	if ((g = realloc(w->waiting, (w->nwaiting + 1) * sizeof(*g))) == NULL) {
		log_warn("upgrade: out of memory taking over a waiting client; "
		    "closing it");
		close(fds[0]);
		return;
	}
	w->waiting = g;
	g[w->nwaiting++] = (struct worker_waiting){ .fd = fds[0],
	    .peer = r->peer, .peerlen = r->peerlen };
	snprintf(g[w->nwaiting - 1].listener, sizeof(g->listener), "%s",
	    r->listener);
}

int
worker_counters(struct worker *w, struct stats_sample *s,
    struct worker_totals *t)
{
	worker_totals_add(w, t);
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		s->fallbacks[f] += w->relay.stats.fallbacks[f];
	return stats_sample_add_worker(s, w->stats);
}

int
worker_adopt_stats(struct worker *w, const struct stats_sample *s,
    const struct worker_totals *t)
{
	conn_home_add_stats(w->home, &t->conn);
	relay_stats_add(&w->relay.stats, &t->relay);
	/* The exit lines' per-server counts (worker_server_totals_add): on
	 * the server line's first address in this worker's balancer. */
	for (size_t i = 0; i < s->ns; i++)
		for (size_t b = 0; b < w->cur->conf->bs->n; b++) {
			struct backend_lb *lb = &w->cur->lb[b];

			if (strcmp(lb->cfg->name, s->s[i].backend) != 0)
				continue;
			for (size_t k = 0; k < lb->n; k++)
				if (strcmp(lb->entry[k]->name, s->s[i].name) == 0) {
					lb->stats[k].connections +=
					    s->s[i].connections;
					lb->stats[k].connect_failures +=
					    s->s[i].connect_failures;
					break;
				}
		}
	return stats_worker_adopt(w->stats, s);
}
