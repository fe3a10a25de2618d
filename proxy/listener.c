/* proxy/listener.c: binding, socket activation, accepting with evconnlistener,
 * and the limits. */
#include "spliced/listener.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/conn.h"
#include "spliced/fdreserve.h"
#include "spliced/log.h"
#include "spliced/sdnotify.h"
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
	struct listener_set *ls;    /* the set its listeners are of */
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

struct listener_sock {
	atomic_uint refs;
	struct listener_proc *proc;
	unsigned gen;               /* of the set that bound it */
	LIST_ENTRY(listener_sock) link;         /* proc->bound; not passed ones */
	struct addr addr;           /* as the bind line says, or as passed */
	bool passed;                /* systemd's: one socket for every worker */
	bool used;                  /* passed: some set took it */
	char *name;                 /* passed: its FileDescriptorName */
	int *fds;                   /* [nfds]; -1 once closed (a drain) */
	unsigned nfds;
};

struct listener_count {
	atomic_uint refs;
	atomic_uint active;
};

struct listener_proc {
	unsigned nworkers;
	atomic_uint active;         /* every client connection */
	struct listener_sock **passed;
	size_t npassed;
	unsigned gen;               /* of the newest set bound (main thread) */
	/* Every socket spliced bound itself and has not closed. A worker
	 * that skipped a generation (the mailbox keeps only the newest)
	 * never saw the sets in between: this list is how it finds their
	 * sockets to close its own fd of. */
	pthread_mutex_t lock;
	LIST_HEAD(, listener_sock) bound;
};

/* One socket for bind line k of l. -1 with err naming the file, line and
 * key. after_drop: a reload in a process that left root. */
static int
bind_one(const struct config *cfg, const struct config_listener *l, size_t k,
    bool after_drop, char *err, size_t errlen)
{
	const struct addr *a = &l->binds[k];
	char text[ADDR_TEXT_MAX], why[ADDR_TEXT_MAX + 200];
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
	addr_written(a, text, sizeof(text));
	/* Linux shares a port between SO_REUSEPORT sockets of one user only:
	 * sockets bound as root before the drop keep it from the new user. */
	snprintf(why, sizeof(why), "cannot bind %s: %s%s", text, strerror(errno),
	    errno == EADDRINUSE && after_drop ? " (a socket bound before "
	    "spliced dropped privileges may hold it; restart to bind it)" : "");
	config_bind_error(cfg, l, k, why, err, errlen);
	if (fd >= 0)
		close(fd);
	return -1;
}

static struct listener_sock *
sock_alloc(struct listener_proc *p, const struct addr *a, unsigned nfds)
{
	struct listener_sock *k = calloc(1, sizeof(*k));

	if (k == NULL || (k->fds = malloc(nfds * sizeof(*k->fds))) == NULL) {
		free(k);
		return NULL;
	}
	atomic_init(&k->refs, 1);
	k->proc = p;
	k->addr = *a;
	k->nfds = nfds;
	for (unsigned i = 0; i < nfds; i++)
		k->fds[i] = -1;
	return k;
}

static void
sock_unref(struct listener_sock *k)
{
	if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	if (k->gen > 0) {
		pthread_mutex_lock(&k->proc->lock);
		LIST_REMOVE(k, link);
		pthread_mutex_unlock(&k->proc->lock);
	}
	for (unsigned i = 0; i < k->nfds; i++)
		if (k->fds[i] >= 0)
			close(k->fds[i]);
	free(k->fds);
	free(k->name);
	free(k);
}

/* Worker id's socket of k. */
static int
sock_fd(const struct listener_sock *k, unsigned id)
{
	return k->passed ? k->fds[0] : k->fds[id];
}

/* A passed socket serves bind address a: the same address (a dual-stack
 * [::]:P for `*:P`, a v6-only one for `[::]:P`), or for `*:P` 0.0.0.0:P. */
static bool
sock_matches(const struct listener_sock *k, const struct addr *a)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)&k->addr.ss;

	if (addr_equal(&k->addr, a))
		return k->addr.wildcard == a->wildcard;
	return a->wildcard && k->addr.ss.ss_family == AF_INET &&
	    in->sin_addr.s_addr == htonl(INADDR_ANY) &&
	    addr_port(&k->addr) == addr_port(a);
}

/* A passed fd as a listener_sock, or NULL (logged) when it is no
 * listening TCP socket or cannot be set up. */
static struct listener_sock *
sock_passed(int fd, const char *name)
{
	struct listener_sock *k;
	struct addr a = { .len = sizeof(a.ss) };
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
	int type = 0, listening = 0, one = 1, fl, v6only = 1;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_STREAM || (len = sizeof(listening),
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len)) == -1 ||
	    !listening || getsockname(fd, (struct sockaddr *)&a.ss, &a.len) == -1 ||
	    (a.ss.ss_family != AF_INET && a.ss.ss_family != AF_INET6)) {
		log_warn("socket activation: fd %d (%s) is not a listening TCP "
		    "socket; left alone", fd, name);
		return NULL;
	}
	/* Accepting must never block a worker; accepted sockets inherit
	 * TCP_NODELAY, as from the sockets spliced binds itself. */
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) {
		log_warn("socket activation: fd %d (%s): %s; left alone", fd,
		    name, strerror(errno));
		return NULL;
	}
	/* [::] without IPV6_V6ONLY takes IPv4 too: what `*:P` binds. */
	len = sizeof(v6only);
	if (a.ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) &&
	    getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0)
		a.wildcard = !v6only;
	if ((k = sock_alloc(NULL, &a, 1)) == NULL || (k->name = strdup(name)) == NULL) {
		sock_unref(k);
		return NULL;
	}
	k->passed = true;
	k->fds[0] = fd;
	return k;
}

struct listener_proc *
listener_proc_new(unsigned nworkers, const struct sdnotify_fd *fds, size_t nfds)
{
	struct listener_proc *p = calloc(1, sizeof(*p));

	if (p == NULL || (nfds > 0 &&
	    (p->passed = calloc(nfds, sizeof(*p->passed))) == NULL)) {
		free(p);
		return NULL;
	}
	p->nworkers = nworkers;
	atomic_init(&p->active, 0);
	pthread_mutex_init(&p->lock, NULL);
	LIST_INIT(&p->bound);
	for (size_t i = 0; i < nfds; i++) {
		struct listener_sock *k = sock_passed(fds[i].fd, fds[i].name);

		if (k != NULL)
			p->passed[p->npassed++] = k;
	}
	return p;
}

void
listener_proc_free(struct listener_proc *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->npassed; i++)
		sock_unref(p->passed[i]);
	free(p->passed);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void
listener_proc_report_unused(const struct listener_proc *p)
{
	char text[ADDR_TEXT_MAX];

	for (size_t i = 0; i < p->npassed; i++) {
		const struct listener_sock *k = p->passed[i];

		if (!k->used)
			log_warn("socket activation: the socket passed as '%s' "
			    "(%s) matches no bind line; it stays open, unused",
			    k->name, addr_written(&k->addr, text, sizeof(text)));
	}
}

unsigned
listener_proc_active(const struct listener_proc *p)
{
	return atomic_load(&p->active);
}

/* The socket(s) for bind line b of listener l of ls: prev's, a passed
 * one, or new ones. NULL with err. */
static struct listener_sock *
sock_get(struct listener_set *ls, const struct config_listener *l, size_t b0,
    const struct listener_set *prev, char *err, size_t errlen)
{
	struct listener_proc *p = ls->proc;
	const struct addr *a = &l->binds[b0];
	const char *lname = l->name;
	char text[ADDR_TEXT_MAX];
	struct listener_sock *k;

	for (size_t i = 0; prev != NULL && i < prev->n; i++)
		for (size_t b = 0; b < prev->l[i].cfg->nbinds; b++) {
			k = prev->l[i].socks[b];
			if (addr_equal(&k->addr, a) && k->addr.wildcard == a->wildcard) {
				atomic_fetch_add(&k->refs, 1);
				return k;
			}
		}
	for (size_t i = 0; i < p->npassed; i++) {
		k = p->passed[i];
		if (!sock_matches(k, a))
			continue;
		if (!k->used)
			log_info("listener %s: bind %s: using the socket systemd "
			    "passed as '%s'", lname, addr_written(&k->addr, text,
			    sizeof(text)), k->name);
		k->used = true;
		atomic_fetch_add(&k->refs, 1);
		return k;
	}
	if ((k = sock_alloc(p, a, p->nworkers)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (unsigned w = 0; w < p->nworkers; w++)
		if ((k->fds[w] = bind_one(ls->cfg, l, b0, prev != NULL &&
		    geteuid() != 0, err, errlen)) == -1) {
			sock_unref(k);
			return NULL;
		}
	k->gen = ls->gen;
	pthread_mutex_lock(&p->lock);
	LIST_INSERT_HEAD(&p->bound, k, link);
	pthread_mutex_unlock(&p->lock);
	return k;
}

static struct listener_count *
count_get(const struct listener_set *prev, const char *name)
{
	struct listener_count *c;

	for (size_t i = 0; prev != NULL && i < prev->n; i++)
		if (strcmp(prev->l[i].cfg->name, name) == 0) {
			atomic_fetch_add(&prev->l[i].count->refs, 1);
			return prev->l[i].count;
		}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	atomic_init(&c->active, 0);
	return c;
}

struct listener_set *
listener_set_bind(struct listener_proc *p, struct config *cfg,
    const struct listener_set *prev, char *err, size_t errlen)
{
	struct listener_set *ls;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		goto nomem;
	atomic_init(&ls->refs, 1);
	ls->cfg = config_ref(cfg);
	ls->proc = p;
	ls->gen = ++p->gen;
	if ((ls->l = calloc(cfg->nlisteners ? cfg->nlisteners : 1,
	    sizeof(*ls->l))) == NULL)
		goto nomem;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *lc = &cfg->listeners[i];
		struct listener *l = &ls->l[ls->n++];

		l->cfg = lc;
		if ((l->count = count_get(prev, lc->name)) == NULL ||
		    (l->socks = calloc(lc->nbinds, sizeof(*l->socks))) == NULL)
			goto nomem;
		for (size_t b = 0; b < lc->nbinds; b++)
			if ((l->socks[b] = sock_get(ls, lc, b, prev, err,
			    errlen)) == NULL)
				goto fail;
	}
	return ls;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	listener_set_unref(ls);
	return NULL;
}

struct listener_set *
listener_set_ref(struct listener_set *ls)
{
	atomic_fetch_add(&ls->refs, 1);
	return ls;
}

void
listener_set_unref(struct listener_set *ls)
{
	if (ls == NULL || atomic_fetch_sub(&ls->refs, 1) != 1)
		return;
	for (size_t i = 0; i < ls->n; i++) {
		struct listener *l = &ls->l[i];

		for (size_t b = 0; l->socks != NULL && b < l->cfg->nbinds; b++)
			sock_unref(l->socks[b]);
		free(l->socks);
		if (l->count != NULL && atomic_fetch_sub(&l->count->refs, 1) == 1)
			free(l->count);
	}
	free(ls->l);
	config_unref(ls->cfg);
	free(ls);
}

static size_t
missing(const struct listener_set *a, const struct listener_set *b)
{
	size_t n = 0;

	for (size_t i = 0; i < a->n; i++) {
		size_t k;

		for (k = 0; k < b->n; k++)
			if (strcmp(a->l[i].cfg->name, b->l[k].cfg->name) == 0)
				break;
		n += k == b->n;
	}
	return n;
}

void
listener_set_diff(const struct listener_set *ls, const struct listener_set *prev,
    size_t *added, size_t *removed)
{
	*added = missing(ls, prev);
	*removed = missing(prev, ls);
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
	atomic_uint *all = &ls->proc->active;

	*wake = false;
	if (!take(all, ls->cfg->max_connections))
		return false;
	if (!take(&l->count->active, l->cfg->max_connections)) {
		*wake = atomic_fetch_sub(all, 1) >= ls->cfg->max_connections;
		return false;
	}
	return true;
}

/* On a worker: admit, and pass on a wake-up the admission owes others. */
static bool
admit(struct worker *w, struct listener *l)
{
	bool wake, ok = listener_admit(w->cur->conf->ls, l, &wake);

	if (wake)
		worker_wake_peers(w);
	return ok;
}

bool
listener_release(struct listener_set *ls, struct listener *l)
{
	unsigned g = atomic_fetch_sub(&ls->proc->active, 1);
	unsigned n = atomic_fetch_sub(&l->count->active, 1);

	return g >= ls->cfg->max_connections ||
	    (l->cfg->max_connections > 0 && n >= l->cfg->max_connections);
}

static bool
room(const struct listener_set *ls, const struct listener *l)
{
	return atomic_load(&ls->proc->active) < ls->cfg->max_connections &&
	    (l->cfg->max_connections == 0 ||
	    atomic_load(&l->count->active) < l->cfg->max_connections);
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
	struct listener *l = &wa->ls->l[s->li];

	(void)evl;
	if (admit(w, l)) {
		conn_start(w, l, fd, sa, (socklen_t)len);
		return;
	}
	/* Full. Stop accepting (disabling here also ends libevent's accept
	 * loop) and keep this client waiting like the backlog would. */
	if (atomic_load(&wa->ls->proc->active) >= wa->ls->cfg->max_connections) {
		for (size_t li = 0; li < wa->ls->n; li++) {
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
fd_pause(struct worker_accept *wa, int err, const char *what)
{
	struct timeval tv = { 0, LISTENER_FD_PAUSE_MS * 1000 };
	time_t now = time(NULL);

	if (now != wa->last_fd_log) {
		wa->last_fd_log = now;
		log_warn("worker %u: %s: %s; accepting paused until fds free up",
		    wa->w->id, what, strerror(err));
	}
	wa->fd_paused = true;
	for (size_t li = 0; li < wa->ls->n; li++)
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
	if (fdreserve_shortage(err))
		fd_pause(s->wa, err, "accept");
	else
		log_warn("listener %s: accept: %s",
		    s->wa->ls->l[s->li].cfg->name, strerror(err));
}

void
listener_accept_pause(struct worker *w, int err, const char *what)
{
	if (w->acc != NULL)
		fd_pause(w->acc, err, what);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_accept *wa = arg;
	struct timeval tv = { 0, LISTENER_FD_PAUSE_MS * 1000 };

	(void)fd, (void)what;
	/* Clients already accepted come first, and the reserve must be
	 * whole before accept(2) may take fds again. */
	if (!worker_fds_ready(wa->w)) {
		evtimer_add(wa->resume, &tv);
		return;
	}
	wa->fd_paused = false;
	for (size_t li = 0; li < wa->ls->n; li++)
		apply(wa, li);
}

static void
wa_free(struct worker_accept *wa)
{
	for (size_t k = 0; k < wa->nevl; k++)
		if (wa->evl[k] != NULL)
			evconnlistener_free(wa->evl[k]);
	if (wa->resume != NULL)
		event_free(wa->resume);
	free(wa->wait);
	free(wa->evl);
	free(wa->slots);
	free(wa->full);
	free(wa);
}

/* Accepting on ls's sockets, for w. The sockets stay the listener_socks'
 * (no LEV_OPT_CLOSE_ON_FREE): a reload may hand them to the next set. */
static struct worker_accept *
wa_new(struct worker *w, struct listener_set *ls)
{
	struct worker_accept *wa;
	size_t k = 0;

	if ((wa = calloc(1, sizeof(*wa))) == NULL)
		return NULL;
	wa->w = w;
	wa->ls = ls;
	for (size_t li = 0; li < ls->n; li++)
		wa->nevl += ls->l[li].cfg->nbinds;
	wa->evl = calloc(wa->nevl ? wa->nevl : 1, sizeof(*wa->evl));
	wa->slots = calloc(wa->nevl ? wa->nevl : 1, sizeof(*wa->slots));
	wa->full = calloc(ls->n ? ls->n : 1, sizeof(*wa->full));
	wa->resume = evtimer_new(w->base, resume_cb, wa);
	if (wa->evl == NULL || wa->slots == NULL || wa->full == NULL || wa->resume == NULL)
		goto fail;
	for (size_t li = 0; li < ls->n; li++) {
		struct listener *l = &ls->l[li];

		for (size_t b = 0; b < l->cfg->nbinds; b++, k++) {
			wa->slots[k] = (struct slot){ wa, li };
			wa->evl[k] = evconnlistener_new(w->base, accept_cb,
			    &wa->slots[k], LEV_OPT_CLOSE_ON_EXEC, 0,
			    sock_fd(l->socks[b], w->id));
			if (wa->evl[k] == NULL)
				goto fail;
			evconnlistener_set_error_cb(wa->evl[k], error_cb);
		}
	}
	return wa;
fail:
	wa_free(wa);
	return NULL;
}

int
listener_accept_start(struct worker *w)
{
	if ((w->acc = wa_new(w, w->cur->conf->ls)) != NULL)
		return 0;
	log_error("worker %u: cannot set up accepting: out of memory", w->id);
	return -1;
}

static bool
binds(const struct listener_set *ls, const struct listener_sock *k)
{
	for (size_t li = 0; li < ls->n; li++)
		for (size_t b = 0; b < ls->l[li].cfg->nbinds; b++)
			if (ls->l[li].socks[b] == k)
				return true;
	return false;
}

/* Close this worker's own socket of every address it will not accept on
 * again: those that keep (a set now in use) no longer binds, from its
 * generation or an older one; keep NULL (a drain): all of them. New
 * clients of such an address are refused rather than left in a backlog
 * nobody reads while old connections keep an old set alive. A passed
 * socket is never on the list: its backlog is the next start's. */
static void
close_own(struct worker *w, const struct listener_set *keep)
{
	struct listener_proc *p = w->cur->conf->ls->proc;
	struct listener_sock *k;

	pthread_mutex_lock(&p->lock);
	LIST_FOREACH(k, &p->bound, link)
		if (k->fds[w->id] >= 0 && (keep == NULL ||
		    (k->gen <= keep->gen && !binds(keep, k)))) {
			close(k->fds[w->id]);
			k->fds[w->id] = -1;
		}
	pthread_mutex_unlock(&p->lock);
}

int
listener_accept_switch(struct worker *w, struct listener_set *old)
{
	struct worker_accept *wa, *prev = w->acc;
	struct listener_set *ls = w->cur->conf->ls;

	/* The new listeners first: on a socket both sets share, the old and
	 * the new event sit side by side for a moment, and no client waits
	 * in a backlog nobody watches. */
	if ((wa = wa_new(w, ls)) == NULL) {
		log_error("worker %u: out of memory taking the new listeners; "
		    "accepting as before", w->id);
		return -1;
	}
	for (size_t i = 0; i < prev->nwait; i++) {
		struct waiting *c = &prev->wait[i];
		const char *name = old->l[c->li].cfg->name;
		size_t li;

		for (li = 0; li < ls->n; li++)
			if (strcmp(ls->l[li].cfg->name, name) == 0)
				break;
		/* A client of a listener the reload removed, accepted while
		 * the limit held it back: its listener is gone. */
		if (li == ls->n || enqueue(wa, c->fd, li,
		    (struct sockaddr *)&c->peer, (int)c->peerlen) == -1)
			close(c->fd);
	}
	prev->nwait = 0;
	w->acc = wa;
	wa_free(prev);
	close_own(w, ls);
	listener_accept_wake(w);
	return 0;
}

void
listener_accept_stop(struct worker *w)
{
	struct worker_accept *wa = w->acc;

	if (wa == NULL)
		return;
	/* Waiting clients hold no slot: closing them is all there is. */
	for (size_t i = 0; i < wa->nwait; i++)
		close(wa->wait[i].fd);
	wa_free(wa);
	w->acc = NULL;
	close_own(w, NULL);
}

void
listener_accept_wake(struct worker *w)
{
	struct worker_accept *wa = w->acc;
	struct listener_set *ls;
	size_t kept = 0;

	if (wa == NULL)
		return;
	ls = wa->ls;
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
