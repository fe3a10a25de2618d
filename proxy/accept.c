/* proxy/accept.c: a worker's accepting with evconnlistener, the clients
 * waiting for a slot, and the pauses for lack of fds. */
#include "spliced/accept.h"

#include <errno.h>
#include <stdio.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/conn.h"
#include "spliced/fdreserve.h"
#include "spliced/handover.h"
#include "spliced/listener.h"
#include "spliced/log.h"

/* A client accepted while its limit was full (another worker took the last
 * slot between our check and our accept). */
struct waiting {
	int fd;
	size_t li;
	struct sockaddr_storage peer;
	socklen_t peerlen;
};

struct slot {                   /* evconnlistener callback argument */
	struct acceptor *a;
	size_t li;
};

/* The events of one listener set's sockets. */
struct evset {
	struct listener_set *ls;
	struct evconnlistener **evl;    /* [listener][bind] flattened */
	struct slot *slots;
	size_t nevl;
	bool *full;                 /* [listener]: paused at its limit */
};

struct acceptor {
	struct event_base *base;
	unsigned id;
	struct conn_home *home;     /* its current snap's set is set->ls */
	void (*wake_peers)(void *);
	void *arg;
	struct evset *set;
	bool fd_paused;             /* paused for lack of fds */
	bool held;                  /* a binary upgrade holds it (accept_hold) */
	struct event *resume;       /* ends an fd pause */
	time_t last_fd_log;
	struct waiting *wait;
	size_t nwait, capwait;
};

/* Admit, and pass on a wake-up the admission owes others. */
static bool
admit(struct acceptor *a, struct listener *l)
{
	bool wake, ok = listener_admit(a->set->ls, l, &wake);

	if (wake)
		a->wake_peers(a->arg);
	return ok;
}

/* Accepting on listener li is on exactly when nothing holds it back. */
static void
apply(struct acceptor *a, size_t li)
{
	struct evset *e = a->set;
	bool on = !a->fd_paused && !a->held && !e->full[li];

	for (size_t k = 0; k < e->nevl; k++) {
		if (e->slots[k].li != li)
			continue;
		if (on)
			evconnlistener_enable(e->evl[k]);
		else
			evconnlistener_disable(e->evl[k]);
	}
}

static void
apply_all(struct acceptor *a)
{
	for (size_t li = 0; li < a->set->ls->n; li++)
		apply(a, li);
}

static int
enqueue(struct acceptor *a, int fd, size_t li, const struct sockaddr *sa,
    socklen_t len)
{
	struct waiting *grown;

	if (a->nwait == a->capwait) {
		size_t cap = a->capwait ? a->capwait * 2 : 8;

		if ((grown = realloc(a->wait, cap * sizeof(*grown))) == NULL)
			return -1;
		a->wait = grown;
		a->capwait = cap;
	}
	grown = &a->wait[a->nwait++];
	grown->fd = fd;
	grown->li = li;
	memcpy(&grown->peer, sa, len);
	grown->peerlen = len;
	return 0;
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct slot *s = arg;
	struct acceptor *a = s->a;
	struct listener_set *ls = a->set->ls;
	struct listener *l = &ls->l[s->li];

	(void)evl;
	if (admit(a, l)) {
		conn_start(a->home, l, fd, sa, (socklen_t)len);
		return;
	}
	/* Full. Stop accepting (disabling here also ends libevent's accept
	 * loop) and keep this client waiting like the backlog would. */
	if (listener_set_full(ls)) {
		for (size_t li = 0; li < ls->n; li++) {
			a->set->full[li] = true;
			apply(a, li);
		}
	} else {
		a->set->full[s->li] = true;
		apply(a, s->li);
	}
	if (enqueue(a, fd, s->li, sa, (socklen_t)len) == -1) {
		log_warn("listener %s: out of memory, closing a client", l->cfg->name);
		close(fd);
	}
	/* The slot may have freed between the admit and the pause. */
	accept_wake(a);
}

void
accept_pause(struct acceptor *a, int err, const char *what)
{
	struct timeval tv = { 0, ACCEPT_FD_PAUSE_MS * 1000 };
	time_t now = time(NULL);

	if (now != a->last_fd_log) {
		a->last_fd_log = now;
		log_warn("worker %u: %s: %s; accepting paused until fds free up",
		    a->id, what, strerror(err));
	}
	a->fd_paused = true;
	apply_all(a);
	/* Not armed, the pause would never end: retried from accept_wake. */
	if (evtimer_add(a->resume, &tv) == -1)
		log_warn("worker %u: cannot arm the end of an fd pause: %s",
		    a->id, strerror(errno));
}

static void
error_cb(struct evconnlistener *evl, void *arg)
{
	struct slot *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)evl;
	/* The pending connection stays in the backlog, so the listening socket
	 * stays readable: retrying at once would spin. */
	if (fdreserve_shortage(err))
		accept_pause(s->a, err, "accept");
	else
		log_warn("listener %s: accept: %s",
		    s->a->set->ls->l[s->li].cfg->name, strerror(err));
}

/* Ends an fd pause once the fds are back: clients already accepted come
 * first, and the reserve must be whole before accept(2) may take fds
 * again. */
static void
try_resume(struct acceptor *a)
{
	struct timeval tv = { 0, ACCEPT_FD_PAUSE_MS * 1000 };

	if (!conn_home_fds_ready(a->home)) {
		if (!evtimer_pending(a->resume, NULL))
			(void)evtimer_add(a->resume, &tv);
		return;
	}
	a->fd_paused = false;
	apply_all(a);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	try_resume(arg);
}

static void
evset_free(struct evset *e)
{
	if (e == NULL)
		return;
	for (size_t k = 0; k < e->nevl; k++)
		if (e->evl[k] != NULL)
			evconnlistener_free(e->evl[k]);
	free(e->evl);
	free(e->slots);
	free(e->full);
	free(e);
}

/* Events on ls's sockets, for a, disabled while a is paused for fds. The
 * sockets stay the listener_socks' (no LEV_OPT_CLOSE_ON_FREE): a reload
 * may hand them to the next set. NULL when out of memory. */
static struct evset *
evset_new(struct acceptor *a, struct listener_set *ls)
{
	struct evset *e;
	size_t k = 0;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->ls = ls;
	for (size_t li = 0; li < ls->n; li++)
		for (size_t b = 0; b < ls->l[li].cfg->nbinds; b++)
			for (unsigned j = 0; listener_sock_fd(ls->l[li].socks[b],
			    a->id, j) >= 0; j++)
				e->nevl++;
	e->evl = calloc(e->nevl ? e->nevl : 1, sizeof(*e->evl));
	e->slots = calloc(e->nevl ? e->nevl : 1, sizeof(*e->slots));
	e->full = calloc(ls->n ? ls->n : 1, sizeof(*e->full));
	if (e->evl == NULL || e->slots == NULL || e->full == NULL)
		goto fail;
	for (size_t li = 0; li < ls->n; li++) {
		struct listener *l = &ls->l[li];

		for (size_t b = 0; b < l->cfg->nbinds; b++) {
			int fd;

			for (unsigned j = 0; (fd = listener_sock_fd(l->socks[b],
			    a->id, j)) >= 0; j++, k++) {
				e->slots[k] = (struct slot){ a, li };
				e->evl[k] = evconnlistener_new(a->base, accept_cb,
				    &e->slots[k], LEV_OPT_CLOSE_ON_EXEC |
				    (a->fd_paused || a->held ? LEV_OPT_DISABLED :
				    0), 0, fd);
				if (e->evl[k] == NULL)
					goto fail;
				evconnlistener_set_error_cb(e->evl[k], error_cb);
			}
		}
	}
	return e;
fail:
	evset_free(e);
	return NULL;
}

struct acceptor *
accept_new(struct event_base *base, unsigned id, struct conn_home *home,
    struct listener_set *ls, void (*wake_peers)(void *), void *arg)
{
	struct acceptor *a = calloc(1, sizeof(*a));

	if (a == NULL)
		goto fail;
	a->base = base;
	a->id = id;
	a->home = home;
	a->wake_peers = wake_peers;
	a->arg = arg;
	if ((a->resume = evtimer_new(base, resume_cb, a)) == NULL ||
	    (a->set = evset_new(a, ls)) == NULL)
		goto fail;
	return a;
fail:
	log_error("worker %u: cannot set up accepting: out of memory", id);
	if (a != NULL && a->resume != NULL)
		event_free(a->resume);
	free(a);
	return NULL;
}

void
accept_free(struct acceptor *a)
{
	struct listener_proc *proc;

	if (a == NULL)
		return;
	/* Waiting clients hold no slot: closing them is all there is. */
	for (size_t i = 0; i < a->nwait; i++)
		close(a->wait[i].fd);
	/* The events go before the sockets they watch. */
	proc = a->set->ls->proc;
	evset_free(a->set);
	listener_close_own(proc, a->id, NULL);
	event_free(a->resume);
	free(a->wait);
	free(a);
}

int
accept_switch(struct acceptor *a, struct listener_set *ls)
{
	struct listener_set *old = a->set->ls;
	struct evset *e;
	size_t kept = 0;

	if (ls == old)
		return 0;
	/* The new listeners first: on a socket both sets share, the old and
	 * the new event sit side by side for a moment, and no client waits
	 * in a backlog nobody watches. */
	if ((e = evset_new(a, ls)) == NULL) {
		log_error("worker %u: out of memory taking the new listeners; "
		    "accepting as before", a->id);
		return -1;
	}
	for (size_t i = 0; i < a->nwait; i++) {
		struct waiting *c = &a->wait[i];
		const char *name = old->l[c->li].cfg->name;
		size_t li;

		for (li = 0; li < ls->n; li++)
			if (strcmp(ls->l[li].cfg->name, name) == 0)
				break;
		/* A client of a listener the reload removed, accepted while
		 * the limit held it back: its listener is gone. */
		if (li == ls->n) {
			close(c->fd);
			continue;
		}
		c->li = li;
		a->wait[kept++] = *c;
	}
	a->nwait = kept;
	evset_free(a->set);
	a->set = e;
	/* A listener with clients waiting stays paused, as it was: a client
	 * arriving later must not take the slot ahead of them. */
	for (size_t i = 0; i < a->nwait; i++)
		e->full[a->wait[i].li] = true;
	apply_all(a);
	listener_close_own(ls->proc, a->id, ls);
	accept_wake(a);
	return 0;
}

void
accept_wake(struct acceptor *a)
{
	struct listener_set *ls;
	size_t kept = 0;

	/* Held by an upgrade: its waiting clients are being handed over. */
	if (a == NULL || a->held)
		return;
	ls = a->set->ls;

	/* In arrival order; a client whose listener is still full keeps its
	 * place, others behind it on other listeners may go ahead. */
	for (size_t i = 0; i < a->nwait; i++) {
		struct waiting *c = &a->wait[i];

		if (admit(a, &ls->l[c->li]))
			conn_start(a->home, &ls->l[c->li], c->fd,
			    (struct sockaddr *)&c->peer, c->peerlen);
		else
			a->wait[kept++] = *c;
	}
	a->nwait = kept;
	for (size_t li = 0; li < ls->n; li++) {
		bool waiting = false;

		if (!a->set->full[li])
			continue;
		for (size_t i = 0; i < a->nwait; i++)
			waiting |= a->wait[i].li == li;
		if (!waiting && listener_room(ls, &ls->l[li])) {
			a->set->full[li] = false;
			apply(a, li);
		}
	}
	if (a->fd_paused && !evtimer_pending(a->resume, NULL))
		try_resume(a);
}

void
accept_hold(struct acceptor *a, bool hold)
{
	if (a == NULL)
		return;
	a->held = hold;
	apply_all(a);
	if (!hold)
		accept_wake(a);
}

size_t
accept_waiting_count(const struct acceptor *a)
{
	return a != NULL ? a->nwait : 0;
}

int
accept_export(struct acceptor *a, unsigned worker, struct handover_items *items)
{
	size_t first = items->n;

	for (size_t i = 0; a != NULL && i < a->nwait; i++) {
		const struct waiting *c = &a->wait[i];
		struct handover_item *it = handover_items_add(items);

		if (it == NULL) {
			items->n = first;
			errno = ENOMEM;
			return -1;
		}
		memset(it, 0, sizeof(*it));
		it->rec.waiting = 1;
		snprintf(it->rec.listener, sizeof(it->rec.listener), "%s",
		    a->set->ls->l[c->li].cfg->name);
		memcpy(&it->rec.peer, &c->peer, c->peerlen);
		it->rec.peerlen = c->peerlen;
		it->rec.worker = worker;
		it->rec.nfds = 1;
		it->fds[0] = c->fd;
	}
	return 0;
}

void
accept_release(struct acceptor *a)
{
	/* The new process has these clients: closing our copy ends nothing. */
	for (size_t i = 0; a != NULL && i < a->nwait; i++)
		close(a->wait[i].fd);
	if (a != NULL)
		a->nwait = 0;
}

void
accept_adopt(struct acceptor *a, const char *listener, int fd,
    const struct sockaddr *peer, socklen_t peerlen)
{
	const struct listener_set *ls = a->set->ls;
	size_t li;

	for (li = 0; li < ls->n; li++)
		if (strcmp(ls->l[li].cfg->name, listener) == 0)
			break;
	if (li == ls->n || enqueue(a, fd, li, peer, peerlen) == -1) {
		struct linger lg = { 1, 0 };

		log_warn("upgrade: cannot take over a client waiting on "
		    "listener %s; resetting it", listener);
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		return;
	}
	/* At its limit, as the old process was: it waits for a slot. */
	a->set->full[li] = true;
	apply(a, li);
}
