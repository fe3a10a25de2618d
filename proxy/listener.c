/* proxy/listener.c: binding, socket activation, and the limits. Accepting
 * on the sockets is accept.c's. */
#include "spliced/listener.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/log.h"
#include "spliced/srctable.h"
#include "spliced/sdnotify.h"

struct listener_sock {
	atomic_uint refs;
	struct listener_proc *proc;
	unsigned gen;               /* of the set that bound it */
	LIST_ENTRY(listener_sock) link;         /* proc->bound; not passed ones */
	struct addr addr;           /* as the bind line says, or as passed */
	bool passed;                /* systemd's: one socket for every worker */
	/* Handed over by the process before a binary upgrade, with as many
	 * sockets as it had workers (at least as many as this process has:
	 * dups make up the difference). Worker w accepts on fds[i] for
	 * every i = w mod nworkers, so no socket's backlog goes unread. */
	bool handed;
	bool used;                  /* passed: some set took it */
	char *name;                 /* passed: its FileDescriptorName */
	int *fds;                   /* [nfds]; -1 once closed (a drain) */
	unsigned nfds;
};

struct listener_count {
	atomic_uint refs;
	atomic_uint active;
	uint32_t scope;             /* its sources' in the source table */
};

struct listener_proc {
	unsigned nworkers;
	atomic_uint active;         /* every client connection */
	struct listener_sock **passed;
	size_t npassed;
	struct listener_sock **handed;  /* not yet taken by a set */
	size_t nhanded;
	unsigned gen;               /* of the newest set bound (main thread) */
	/* Every socket spliced bound itself and has not closed. A worker
	 * that skipped a generation (the mailbox keeps only the newest)
	 * never saw the sets in between: this list is how it finds their
	 * sockets to close its own fd of. */
	pthread_mutex_t lock;
	LIST_HEAD(, listener_sock) bound;
	uint32_t scopes;            /* the last scope given (main thread) */
	/* Made by the first set with a per-source limit, kept to the end,
	 * so counts carry over reloads. */
	_Atomic(struct srctable *) sources;
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

	if (k == NULL || (k->fds = malloc((nfds ? nfds : 1) * sizeof(*k->fds))) == NULL) {
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

int
listener_sock_fd(const struct listener_sock *k, unsigned id, unsigned j)
{
	size_t i;

	/* A passed socket has no proc: every worker shares its one fd. */
	if (k->passed)
		return j == 0 ? k->fds[0] : -1;
	i = (size_t)id + (size_t)j * k->proc->nworkers;
	return i < k->nfds ? k->fds[i] : -1;
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

/* Check that fd is a listening TCP socket, set it up to accept from a
 * worker and read its address into *out. 0, or -1 (logged, as `who`
 * passed it). */
static int
sock_check(int fd, const char *name, const char *who, struct addr *out)
{
	struct addr a = { .len = sizeof(a.ss) };
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
	int type = 0, listening = 0, one = 1, fl, v6only = 1;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_STREAM || (len = sizeof(listening),
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len)) == -1 ||
	    !listening || getsockname(fd, (struct sockaddr *)&a.ss, &a.len) == -1 ||
	    (a.ss.ss_family != AF_INET && a.ss.ss_family != AF_INET6)) {
		log_warn("%s: fd %d (%s) is not a listening TCP "
		    "socket; left alone", who, fd, name);
		return -1;
	}
	/* Accepting must never block a worker; accepted sockets inherit
	 * TCP_NODELAY, as from the sockets spliced binds itself. */
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) {
		log_warn("%s: fd %d (%s): %s; left alone", who, fd,
		    name, strerror(errno));
		return -1;
	}
	/* [::] without IPV6_V6ONLY takes IPv4 too: what `*:P` binds. */
	len = sizeof(v6only);
	if (a.ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) &&
	    getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0)
		a.wildcard = !v6only;
	*out = a;
	return 0;
}

/* A passed fd as a listener_sock, or NULL (logged) when it is no
 * listening TCP socket or cannot be set up. */
static struct listener_sock *
sock_passed(int fd, const char *name)
{
	struct listener_sock *k;
	struct addr a;

	if (sock_check(fd, name, "socket activation", &a) == -1)
		return NULL;
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
	atomic_init(&p->sources, NULL);
	pthread_mutex_init(&p->lock, NULL);
	LIST_INIT(&p->bound);
	for (size_t i = 0; i < nfds; i++) {
		struct listener_sock *k = sock_passed(fds[i].fd, fds[i].name);

		if (k != NULL)
			p->passed[p->npassed++] = k;
	}
	return p;
}

/* The group of handed sockets of address a, made if new. NULL: ENOMEM. */
static struct listener_sock *
handed_group(struct listener_proc *p, const struct addr *a)
{
	struct listener_sock *k, **grown;

	for (size_t i = 0; i < p->nhanded; i++)
		if (addr_equal(&p->handed[i]->addr, a) &&
		    p->handed[i]->addr.wildcard == a->wildcard)
			return p->handed[i];
	if ((grown = realloc(p->handed, (p->nhanded + 1) *
	    sizeof(*grown))) == NULL)
		return NULL;
	p->handed = grown;
	if ((k = sock_alloc(p, a, 0)) == NULL)
		return NULL;
	k->handed = true;
	p->handed[p->nhanded++] = k;
	return k;
}

/* fd joins k's sockets. -1: ENOMEM (fd is the caller's still). */
static int
sock_add_fd(struct listener_sock *k, int fd)
{
	int *grown = realloc(k->fds, (k->nfds + 1) * sizeof(*grown));

	if (grown == NULL)
		return -1;
	k->fds = grown;
	k->fds[k->nfds++] = fd;
	return 0;
}

int
listener_proc_take_handed(struct listener_proc *p, const int *fds, size_t n)
{
	struct listener_sock *k;
	struct addr a;
	int d;

	for (size_t i = 0; i < n; i++) {
		if (sock_check(fds[i], "handed over", "upgrade", &a) == -1) {
			close(fds[i]);
			continue;
		}
		if ((k = handed_group(p, &a)) == NULL ||
		    sock_add_fd(k, fds[i]) == -1) {
			for (size_t j = i; j < n; j++)
				close(fds[j]);
			return -1;
		}
	}
	/* Fewer sockets than workers (the old process had fewer): the
	 * extra workers share them, each through an fd of its own so that
	 * closing its own (a drain) leaves the others'. */
	for (size_t g = 0; g < p->nhanded; g++) {
		k = p->handed[g];
		for (unsigned j = 0; k->nfds < p->nworkers; j++) {
			if ((d = fcntl(k->fds[j], F_DUPFD_CLOEXEC, 0)) == -1)
				return -1;
			if (sock_add_fd(k, d) == -1) {
				close(d);
				return -1;
			}
		}
	}
	return 0;
}

/* Append a copy of fd (named: a passed socket). -1: out of fds or memory. */
static int
fds_add(struct listener_fd **v, size_t *n, size_t *cap, int fd,
    const char *name)
{
	struct listener_fd *grown;
	int d;

	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;

		if ((grown = realloc(*v, c * sizeof(*grown))) == NULL)
			return -1;
		*v = grown;
		*cap = c;
	}
	if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return -1;
	(*v)[(*n)++] = (struct listener_fd){ d, name };
	return 0;
}

void
listener_fds_free(struct listener_fd *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(v[i].fd);
	free(v);
}

int
listener_proc_fds(struct listener_proc *p, struct listener_fd **out, size_t *n)
{
	struct listener_fd *v = NULL;
	struct listener_sock *k;
	size_t cap = 0;
	int rc = -1;

	*n = 0;
	/* Copies, taken under the lock: a worker that drains closes its own
	 * fds meanwhile, and a number closed may be reused for anything. */
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->npassed; i++)
		if (fds_add(&v, n, &cap, p->passed[i]->fds[0],
		    p->passed[i]->name) == -1)
			goto out;
	LIST_FOREACH(k, &p->bound, link)
		for (unsigned i = 0; i < k->nfds; i++)
			if (k->fds[i] >= 0 && fds_add(&v, n, &cap, k->fds[i],
			    NULL) == -1)
				goto out;
	rc = 0;
out:
	pthread_mutex_unlock(&p->lock);
	if (rc == -1) {
		listener_fds_free(v, *n);
		v = NULL;
		*n = 0;
	}
	*out = v;
	return rc;
}

void
listener_proc_free(struct listener_proc *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->npassed; i++)
		sock_unref(p->passed[i]);
	free(p->passed);
	for (size_t i = 0; i < p->nhanded; i++)
		sock_unref(p->handed[i]);
	free(p->handed);
	pthread_mutex_destroy(&p->lock);
	srctable_free(listener_proc_sources(p));
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

void
listener_proc_close_handed(struct listener_proc *p)
{
	char text[ADDR_TEXT_MAX];

	for (size_t i = 0; i < p->nhanded; i++) {
		log_info("upgrade: the listening socket %s is in no bind line "
		    "of this config; closed", addr_written(&p->handed[i]->addr,
		    text, sizeof(text)));
		sock_unref(p->handed[i]);
	}
	free(p->handed);
	p->handed = NULL;
	p->nhanded = 0;
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
	for (size_t i = 0; i < p->nhanded; i++) {
		k = p->handed[i];
		if (!sock_matches(k, a))
			continue;
		/* The set takes the list's reference: bound from now on, as
		 * if this process had bound it. */
		p->handed[i] = p->handed[--p->nhanded];
		k->gen = ls->gen;
		pthread_mutex_lock(&p->lock);
		LIST_INSERT_HEAD(&p->bound, k, link);
		pthread_mutex_unlock(&p->lock);
		return k;
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
count_get(struct listener_proc *p, const struct listener_set *prev,
    const char *name)
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
	c->scope = ++p->scopes;
	return c;
}

/* The source table, made by the first bind of a config with a per-source
 * limit, at that config's size. Workers read the pointer while a reload
 * may set it: an atomic, published with release. */
static int
sources_make(struct listener_proc *p, const struct config *cfg, char *err,
    size_t errlen)
{
	struct srctable *t;
	bool wanted = false;

	for (size_t i = 0; i < cfg->nlisteners; i++)
		wanted |= cfg->listeners[i].max_connections_per_source > 0 ||
		    cfg->listeners[i].connection_rate_per_source > 0;
	if (!wanted || atomic_load_explicit(&p->sources, memory_order_acquire))
		return 0;
	if ((t = srctable_new(cfg->source_table_size)) == NULL) {
		snprintf(err, errlen, "source table of %u entries: %s",
		    cfg->source_table_size, strerror(errno));
		return -1;
	}
	atomic_store_explicit(&p->sources, t, memory_order_release);
	return 0;
}

void
listener_proc_sources_fit(struct listener_proc *p, const struct config *cfg)
{
	struct srctable *t = listener_proc_sources(p);
	struct srctable_stats st;

	if (t == NULL)
		return;
	srctable_stats(t, &st);
	/* The old size goes on: the limits still hold. */
	if (st.capacity != cfg->source_table_size &&
	    srctable_resize(t, cfg->source_table_size) == -1)
		log_warn("source table: cannot resize to %u entries: %s; "
		    "keeping %u", cfg->source_table_size, strerror(errno),
		    st.capacity);
}

struct srctable *
listener_proc_sources(struct listener_proc *p)
{
	return atomic_load_explicit(&p->sources, memory_order_acquire);
}

uint32_t
listener_scope(const struct listener *l)
{
	return l->count->scope;
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
		if ((l->count = count_get(p, prev, lc->name)) == NULL ||
		    (l->socks = calloc(lc->nbinds, sizeof(*l->socks))) == NULL)
			goto nomem;
		for (size_t b = 0; b < lc->nbinds; b++)
			if ((l->socks[b] = sock_get(ls, lc, b, prev, err,
			    errlen)) == NULL)
				goto fail;
	}
	if (sources_make(p, cfg, err, errlen) == -1)
		goto fail;
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

void
listener_adopt(struct listener_set *ls, struct listener *l)
{
	atomic_fetch_add(&ls->proc->active, 1);
	atomic_fetch_add(&l->count->active, 1);
}

bool
listener_release(struct listener_set *ls, struct listener *l)
{
	unsigned g = atomic_fetch_sub(&ls->proc->active, 1);
	unsigned n = atomic_fetch_sub(&l->count->active, 1);

	return g >= ls->cfg->max_connections ||
	    (l->cfg->max_connections > 0 && n >= l->cfg->max_connections);
}

bool
listener_set_full(const struct listener_set *ls)
{
	return atomic_load(&ls->proc->active) >= ls->cfg->max_connections;
}

bool
listener_room(const struct listener_set *ls, const struct listener *l)
{
	return atomic_load(&ls->proc->active) < ls->cfg->max_connections &&
	    (l->cfg->max_connections == 0 ||
	    atomic_load(&l->count->active) < l->cfg->max_connections);
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
void
listener_close_own(struct listener_proc *p, unsigned id,
    const struct listener_set *keep)
{
	struct listener_sock *k;

	pthread_mutex_lock(&p->lock);
	LIST_FOREACH(k, &p->bound, link) {
		if (keep != NULL && (k->gen > keep->gen || binds(keep, k)))
			continue;
		for (size_t i = id; i < k->nfds; i += p->nworkers)
			if (k->fds[i] >= 0) {
				close(k->fds[i]);
				k->fds[i] = -1;
			}
	}
	pthread_mutex_unlock(&p->lock);
}

