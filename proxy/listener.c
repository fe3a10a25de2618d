/* proxy/listener.c: binding, accepting with evconnlistener, and the limits. */
#include "spliced/listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/conn.h"
#include "spliced/log.h"
#include "spliced/worker.h"

/* A client accepted while its limit was full (another worker took the last
 * slot between our check and our accept). */
struct waiting {
	int fd;
	size_t li;
	struct sockaddr_storage peer;
	socklen_t peerlen;
};

struct slot {                   /* evconnlistener callback argument */
	struct worker_accept *wa;
	size_t li;
};

struct worker_accept {
	struct worker *w;
	struct evconnlistener **evl;    /* [listener][bind] flattened */
	struct slot *slots;
	size_t nevl;
	bool *full;                 /* [listener]: paused at its limit */
	bool fd_paused;             /* paused for lack of fds */
	bool stopped;
	struct event *resume;       /* ends an fd pause */
	time_t last_fd_log;
	struct waiting *wait;
	size_t nwait, capwait;
};

static int
bind_one(const struct addr *a, char *err, size_t errlen, const char *lname)
{
	char text[ADDR_TEXT_MAX];
	int fd, one = 1, v6only;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	/* SO_REUSEPORT: one socket per worker, the kernel spreads accepts.
	 * TCP_NODELAY here is inherited by every accepted socket (Linux and
	 * the BSDs copy it from the listener), which saves a setsockopt per
	 * client; the reason for it is the backend sockets' (backend.c). */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		goto fail;
	if (a->ss.ss_family == AF_INET6) {
		/* "*:port" covers IPv4 too; an explicit IPv6 address does not. */
		v6only = !a->wildcard;
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == -1)
			goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(fd, SOMAXCONN) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "listener %s: cannot bind %s: %s", lname,
	    a->wildcard ? "*" : addr_format((const struct sockaddr *)&a->ss,
	    text, sizeof(text)), strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

struct listener_set *
listener_set_bind(struct config *cfg, unsigned nworkers, char *err, size_t errlen)
{
	struct listener_set *ls;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		goto nomem;
	ls->cfg = config_ref(cfg);
	ls->nworkers = nworkers;
	ls->n = cfg->nlisteners;
	if ((ls->l = calloc(ls->n, sizeof(*ls->l))) == NULL)
		goto nomem;
	for (size_t i = 0; i < ls->n; i++) {
		const struct config_listener *lc = &cfg->listeners[i];
		struct listener *l = &ls->l[i];
		size_t nfds = lc->nbinds * nworkers;

		l->cfg = lc;
		if ((l->fds = malloc(nfds * sizeof(*l->fds))) == NULL)
			goto nomem;
		for (size_t k = 0; k < nfds; k++)
			l->fds[k] = -1;
		for (size_t k = 0; k < nfds; k++)
			if ((l->fds[k] = bind_one(&lc->binds[k / nworkers], err,
			    errlen, lc->name)) == -1)
				goto fail;
	}
	return ls;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	listener_set_free(ls);
	return NULL;
}

void
listener_set_free(struct listener_set *ls)
{
	if (ls == NULL)
		return;
	for (size_t i = 0; ls->l != NULL && i < ls->n; i++) {
		struct listener *l = &ls->l[i];

		for (size_t k = 0; l->fds != NULL && k < l->cfg->nbinds * ls->nworkers; k++)
			if (l->fds[k] >= 0)
				close(l->fds[k]);
		free(l->fds);
	}
	free(ls->l);
	config_unref(ls->cfg);
	free(ls);
}

static bool
take(atomic_uint *count, unsigned max)
{
	unsigned n = atomic_load(count);

	do
		if (max > 0 && n >= max)
			return false;
	while (!atomic_compare_exchange_weak(count, &n, n + 1));
	return true;
}

bool
listener_admit(struct listener_set *ls, struct listener *l, bool *wake)
{
	*wake = false;
	if (!take(&ls->active, ls->cfg->max_connections))
		return false;
	if (!take(&l->active, l->cfg->max_connections)) {
		*wake = atomic_fetch_sub(&ls->active, 1) >= ls->cfg->max_connections;
		return false;
	}
	return true;
}

/* On a worker: admit, and pass on a wake-up the admission owes others. */
static bool
admit(struct worker *w, struct listener *l)
{
	bool wake, ok = listener_admit(w->ls, l, &wake);

	if (wake)
		worker_wake_peers(w);
	return ok;
}

bool
listener_release(struct listener_set *ls, struct listener *l)
{
	unsigned g = atomic_fetch_sub(&ls->active, 1);
	unsigned n = atomic_fetch_sub(&l->active, 1);

	return g >= ls->cfg->max_connections ||
	    (l->cfg->max_connections > 0 && n >= l->cfg->max_connections);
}

static bool
room(const struct listener_set *ls, const struct listener *l)
{
	return atomic_load(&ls->active) < ls->cfg->max_connections &&
	    (l->cfg->max_connections == 0 ||
	    atomic_load(&l->active) < l->cfg->max_connections);
}

/* Accepting on listener li is on exactly when nothing holds it back. */
static void
apply(struct worker_accept *wa, size_t li)
{
	bool on = !wa->stopped && !wa->fd_paused && !wa->full[li];

	for (size_t k = 0; k < wa->nevl; k++) {
		if (wa->slots[k].li != li)
			continue;
		if (on)
			evconnlistener_enable(wa->evl[k]);
		else
			evconnlistener_disable(wa->evl[k]);
	}
}

static int
enqueue(struct worker_accept *wa, int fd, size_t li, struct sockaddr *sa, int len)
{
	struct waiting *grown;

	if (wa->nwait == wa->capwait) {
		size_t cap = wa->capwait ? wa->capwait * 2 : 8;

		if ((grown = realloc(wa->wait, cap * sizeof(*grown))) == NULL)
			return -1;
		wa->wait = grown;
		wa->capwait = cap;
	}
	grown = &wa->wait[wa->nwait++];
	grown->fd = fd;
	grown->li = li;
	memcpy(&grown->peer, sa, (size_t)len);
	grown->peerlen = (socklen_t)len;
	return 0;
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct slot *s = arg;
	struct worker_accept *wa = s->wa;
	struct worker *w = wa->w;
	struct listener *l = &w->ls->l[s->li];

	(void)evl;
	if (admit(w, l)) {
		conn_start(w, l, fd, sa, (socklen_t)len);
		return;
	}
	/* Full. Stop accepting (disabling here also ends libevent's accept
	 * loop) and keep this client waiting like the backlog would. */
	if (atomic_load(&w->ls->active) >= w->ls->cfg->max_connections) {
		for (size_t li = 0; li < w->ls->n; li++) {
			wa->full[li] = true;
			apply(wa, li);
		}
	} else {
		wa->full[s->li] = true;
		apply(wa, s->li);
	}
	if (enqueue(wa, fd, s->li, sa, len) == -1) {
		log_warn("listener %s: out of memory, closing a client", l->cfg->name);
		close(fd);
	}
	/* The slot may have freed between the admit and the pause. */
	listener_accept_wake(w);
}

static void
fd_pause(struct worker_accept *wa, int err)
{
	struct timeval tv = { 0, LISTENER_FD_PAUSE_MS * 1000 };
	time_t now = time(NULL);

	if (now != wa->last_fd_log) {
		wa->last_fd_log = now;
		log_warn("worker %u: %s; pausing accepts for %d ms",
		    wa->w->id, strerror(err), LISTENER_FD_PAUSE_MS);
	}
	wa->fd_paused = true;
	for (size_t li = 0; li < wa->w->ls->n; li++)
		apply(wa, li);
	evtimer_add(wa->resume, &tv);
}

static void
error_cb(struct evconnlistener *evl, void *arg)
{
	struct slot *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)evl;
	/* The pending connection stays in the backlog, so the listening socket
	 * stays readable: retrying at once would spin. */
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
		fd_pause(s->wa, err);
	else
		log_warn("listener %s: accept: %s",
		    s->wa->w->ls->l[s->li].cfg->name, strerror(err));
}

void
listener_accept_pause(struct worker *w, int err)
{
	if (w->acc != NULL)
		fd_pause(w->acc, err);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_accept *wa = arg;

	(void)fd, (void)what;
	wa->fd_paused = false;
	for (size_t li = 0; li < wa->w->ls->n; li++)
		apply(wa, li);
}

int
listener_accept_start(struct worker *w)
{
	struct listener_set *ls = w->ls;
	struct worker_accept *wa;
	size_t k = 0;

	if ((wa = calloc(1, sizeof(*wa))) == NULL)
		goto fail;
	w->acc = wa;
	wa->w = w;
	for (size_t li = 0; li < ls->n; li++)
		wa->nevl += ls->l[li].cfg->nbinds;
	wa->evl = calloc(wa->nevl, sizeof(*wa->evl));
	wa->slots = calloc(wa->nevl, sizeof(*wa->slots));
	wa->full = calloc(ls->n, sizeof(*wa->full));
	wa->resume = evtimer_new(w->base, resume_cb, wa);
	if (wa->evl == NULL || wa->slots == NULL || wa->full == NULL || wa->resume == NULL)
		goto fail;
	for (size_t li = 0; li < ls->n; li++) {
		struct listener *l = &ls->l[li];

		for (size_t b = 0; b < l->cfg->nbinds; b++, k++) {
			int *fd = &l->fds[b * ls->nworkers + w->id];

			wa->slots[k] = (struct slot){ wa, li };
			wa->evl[k] = evconnlistener_new(w->base, accept_cb,
			    &wa->slots[k], LEV_OPT_CLOSE_ON_FREE |
			    LEV_OPT_CLOSE_ON_EXEC, 0, *fd);
			if (wa->evl[k] == NULL)
				goto fail;
			*fd = -1;       /* the evconnlistener owns it now */
			evconnlistener_set_error_cb(wa->evl[k], error_cb);
		}
	}
	return 0;
fail:
	log_error("worker %u: cannot set up accepting: out of memory", w->id);
	return -1;
}

void
listener_accept_stop(struct worker *w)
{
	struct worker_accept *wa = w->acc;

	if (wa == NULL)
		return;
	for (size_t k = 0; k < wa->nevl; k++)
		if (wa->evl[k] != NULL)
			evconnlistener_free(wa->evl[k]);
	/* Waiting clients hold no slot: closing them is all there is. */
	for (size_t i = 0; i < wa->nwait; i++)
		close(wa->wait[i].fd);
	if (wa->resume != NULL)
		event_free(wa->resume);
	free(wa->wait);
	free(wa->evl);
	free(wa->slots);
	free(wa->full);
	free(wa);
	w->acc = NULL;
}

void
listener_accept_wake(struct worker *w)
{
	struct worker_accept *wa = w->acc;
	struct listener_set *ls = w->ls;
	size_t kept = 0;

	if (wa == NULL)
		return;
	/* In arrival order; a client whose listener is still full keeps its
	 * place, others behind it on other listeners may go ahead. */
	for (size_t i = 0; i < wa->nwait; i++) {
		struct waiting *c = &wa->wait[i];

		if (admit(w, &ls->l[c->li]))
			conn_start(w, &ls->l[c->li], c->fd,
			    (struct sockaddr *)&c->peer, c->peerlen);
		else
			wa->wait[kept++] = *c;
	}
	wa->nwait = kept;
	for (size_t li = 0; li < ls->n; li++) {
		bool waiting = false;

		if (!wa->full[li])
			continue;
		for (size_t i = 0; i < wa->nwait; i++)
			waiting |= wa->wait[i].li == li;
		if (!waiting && room(ls, &ls->l[li])) {
			wa->full[li] = false;
			apply(wa, li);
		}
	}
}
