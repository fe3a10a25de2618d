/* proxy/backend.c: the servers' shared state (built per generation,
 * carried over reloads and re-resolution), picking a server and holding
 * its connection slot, passive health (failed connects of traffic take a
 * server down; with checks off, trial connects bring it back), and the
 * non-blocking connect.
 *
 * backend_lb_pick() marks in lb->skip the servers not eligible (down,
 * full, or the one to avoid) and lets the backend's algorithm (balance.c)
 * choose among the rest. The choice is then made binding by reserving a
 * slot with a compare-and-swap on the server's shared active count:
 * another worker may have taken the last slot (or the trial connect) in
 * between, and then the pick runs again, seeing the server full.
 *
 * Runtime state (drain, maint, weight) is set per server line: its record
 * (struct server_line, shared by the generations that have the line) and
 * the atomics of each of its addresses, which are what picks read, next
 * to the address's up and active. A new address takes the line's record. */
#include "spliced/backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/log.h"

/* ---- shared state ---- */

static struct server_line *
line_new(void)
{
	struct server_line *ln = calloc(1, sizeof(*ln));

	if (ln == NULL)
		return NULL;
	atomic_init(&ln->refs, 1);
	atomic_init(&ln->admin, BACKEND_ADMIN_READY);
	atomic_init(&ln->weight, 0);
	atomic_init(&ln->active, 0);
	atomic_init(&ln->check_failures, 0);
	return ln;
}

static void
line_unref(struct server_line *ln)
{
	if (ln != NULL && atomic_fetch_sub(&ln->refs, 1) == 1)
		free(ln);
}

/* A new address of line ln: up, idle, with the line's runtime state. */
static struct server_state *
state_new(const struct addr *a, struct server_line *ln)
{
	struct server_state *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	atomic_init(&st->refs, 1);
	atomic_init(&st->active, 0);
	atomic_init(&st->up, true);
	atomic_init(&st->fails, 0);
	atomic_init(&st->trial_ms, 0);
	atomic_init(&st->backoff_ms, BACKEND_BACKOFF_MIN_MS);
	atomic_init(&st->admin, atomic_load(&ln->admin));
	atomic_init(&st->weight, atomic_load(&ln->weight));
	atomic_init(&st->check_failures, 0);
	atomic_fetch_add(&ln->refs, 1);
	st->line = ln;
	st->addr = *a;
	return st;
}

static struct server_state *
state_ref(struct server_state *st)
{
	atomic_fetch_add(&st->refs, 1);
	return st;
}

static void
state_unref(struct server_state *st)
{
	if (st != NULL && atomic_fetch_sub(&st->refs, 1) == 1) {
		line_unref(st->line);
		free(st);
	}
}

/* Append one address (its state already referenced) to sh. */
static int
shared_push(struct backend_shared *sh, size_t *cap,
    const struct config_server *e, struct server_state *st)
{
	if (sh->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct server_state **s = realloc(sh->servers, ncap * sizeof(*s));
		const struct config_server **en;

		if (s == NULL)
			return -1;
		sh->servers = s;
		if ((en = realloc(sh->entry, ncap * sizeof(*en))) == NULL)
			return -1;
		sh->entry = en;
		*cap = ncap;
	}
	sh->servers[sh->n] = st;
	sh->entry[sh->n++] = e;
	return 0;
}

/* The same server line in two configs: by name, and for a host-name
 * server the same host and port (a reload that changes them starts over). */
static bool
entry_same(const struct config_server *a, const struct config_server *b)
{
	if (strcmp(a->name, b->name) != 0 ||
	    (a->dnsname == NULL) != (b->dnsname == NULL))
		return false;
	return a->dnsname == NULL || (strcmp(a->dnsname, b->dnsname) == 0 &&
	    addr_port(&a->addr) == addr_port(&b->addr));
}

/* The backend of prev named like b, or NULL. */
static const struct backend_shared *
shared_find(const struct backend_set *prev, const struct config_backend *b)
{
	for (size_t i = 0; prev != NULL && i < prev->n; i++)
		if (strcmp(prev->b[i].cfg->name, b->name) == 0)
			return &prev->b[i];
	return NULL;
}

/* The state the address a of server line e had in pb, referenced, or NULL. */
static struct server_state *
state_carried(const struct backend_shared *pb, const struct config_server *e,
    const struct addr *a)
{
	for (size_t j = 0; pb != NULL && j < pb->n; j++)
		if (entry_same(pb->entry[j], e) &&
		    addr_equal(&pb->servers[j]->addr, a))
			return state_ref(pb->servers[j]);
	return NULL;
}

/* The record of the line named like e in pb, referenced, or a new one. */
static struct server_line *
line_carried(const struct backend_shared *pb, const struct config_server *e)
{
	for (size_t j = 0; pb != NULL && j < pb->cfg->nservers; j++)
		if (strcmp(pb->cfg->servers[j].name, e->name) == 0) {
			atomic_fetch_add(&pb->lines[j]->refs, 1);
			return pb->lines[j];
		}
	return line_new();
}

/* Push the addresses a[0..n) of server line e (record ln), carrying states
 * from pb. */
static int
push_addrs(struct backend_shared *sh, size_t *cap,
    const struct backend_shared *pb, const struct config_server *e,
    struct server_line *ln, const struct addr *a, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct server_state *st = state_carried(pb, e, &a[k]);

		if (st == NULL && (st = state_new(&a[k], ln)) == NULL)
			return -1;
		if (shared_push(sh, cap, e, st) == -1) {
			state_unref(st);
			return -1;
		}
	}
	return 0;
}

/* A host-name server keeps what it resolved to in pb (a reload). */
static int
push_kept(struct backend_shared *sh, size_t *cap,
    const struct backend_shared *pb, const struct config_server *e)
{
	for (size_t j = 0; pb != NULL && j < pb->n; j++) {
		if (!entry_same(pb->entry[j], e))
			continue;
		if (shared_push(sh, cap, e, state_ref(pb->servers[j])) == -1) {
			state_unref(pb->servers[j]);
			return -1;
		}
	}
	return 0;
}

static struct backend_set *
set_alloc(struct config *cfg)
{
	struct backend_set *bs;

	if ((bs = calloc(1, sizeof(*bs))) == NULL)
		return NULL;
	atomic_init(&bs->refs, 1);
	bs->cfg = config_ref(cfg);
	if ((bs->b = calloc(cfg->nbackends ? cfg->nbackends : 1,
	    sizeof(*bs->b))) == NULL) {
		config_unref(bs->cfg);
		free(bs);
		return NULL;
	}
	bs->n = cfg->nbackends;
	for (size_t i = 0; i < bs->n; i++)
		bs->b[i].cfg = &cfg->backends[i];
	/* Room for each backend's line records, which build() fills;
	 * backend_set_unref() frees a set left half-built. */
	for (size_t i = 0; i < bs->n; i++)
		if ((bs->b[i].lines = calloc(cfg->backends[i].nservers ?
		    cfg->backends[i].nservers : 1, sizeof(*bs->b[i].lines))) ==
		    NULL) {
			backend_set_unref(bs);
			return NULL;
		}
	return bs;
}

/* The set for cfg, carrying state from prev; server line s of backend b
 * (b == SIZE_MAX: none) gets the addresses a[0..n) instead of its own. */
static struct backend_set *
build(struct config *cfg, const struct backend_set *prev, size_t b, size_t s,
    const struct addr *a, size_t n)
{
	struct backend_set *bs;

	if ((bs = set_alloc(cfg)) == NULL)
		goto fail;
	for (size_t i = 0; i < bs->n; i++) {
		const struct config_backend *bc = &cfg->backends[i];
		const struct backend_shared *pb = shared_find(prev, bc);
		size_t cap = 0;
		int rc;

		for (size_t j = 0; j < bc->nservers; j++) {
			const struct config_server *e = &bc->servers[j];
			struct server_line *ln = line_carried(pb, e);

			if ((bs->b[i].lines[j] = ln) == NULL)
				goto fail;
			if (i == b && j == s)
				rc = push_addrs(&bs->b[i], &cap, pb, e, ln, a, n);
			else if (e->dnsname != NULL)
				rc = push_kept(&bs->b[i], &cap, pb, e);
			else
				rc = push_addrs(&bs->b[i], &cap, pb, e, ln,
				    &e->addr, 1);
			if (rc == -1)
				goto fail;
		}
	}
	return bs;
fail:
	backend_set_unref(bs);
	errno = ENOMEM;
	return NULL;
}

struct backend_set *
backend_set_new(struct config *cfg, const struct backend_set *prev)
{
	return build(cfg, prev, SIZE_MAX, SIZE_MAX, NULL, 0);
}

struct backend_set *
backend_set_update(const struct backend_set *old, size_t b, size_t s,
    const struct addr *a, size_t n)
{
	return build(old->cfg, old, b, s, a, n);
}

struct backend_set *
backend_set_ref(struct backend_set *bs)
{
	if (bs != NULL)
		atomic_fetch_add(&bs->refs, 1);
	return bs;
}

void
backend_set_unref(struct backend_set *bs)
{
	if (bs == NULL || atomic_fetch_sub(&bs->refs, 1) != 1)
		return;
	for (size_t i = 0; bs->b != NULL && i < bs->n; i++) {
		for (size_t j = 0; j < bs->b[i].n; j++)
			state_unref(bs->b[i].servers[j]);
		for (size_t j = 0; bs->b[i].lines != NULL &&
		    j < bs->b[i].cfg->nservers; j++)
			line_unref(bs->b[i].lines[j]);
		free(bs->b[i].servers);
		free(bs->b[i].entry);
		free(bs->b[i].lines);
	}
	free(bs->b);
	config_unref(bs->cfg);
	free(bs);
}

bool
backend_server_set_up(struct server_state *st, bool up)
{
	bool was = !up;

	if (!atomic_compare_exchange_strong(&st->up, &was, up))
		return false;
	atomic_store(&st->fails, 0);
	if (up)
		atomic_store(&st->backoff_ms, BACKEND_BACKOFF_MIN_MS);
	return true;
}

/* ---- runtime state ---- */

static const char *const admin_names[BACKEND_ADMIN_MAX_] = {
	[BACKEND_ADMIN_READY] = "ready",
	[BACKEND_ADMIN_DRAIN] = "drain",
	[BACKEND_ADMIN_MAINT] = "maint",
};

static const char *const status_names[BACKEND_STATUS_MAX_] = {
	[BACKEND_STATUS_UP] = "up",
	[BACKEND_STATUS_DOWN] = "down",
	[BACKEND_STATUS_DRAIN] = "drain",
	[BACKEND_STATUS_MAINT] = "maint",
};

const char *
backend_admin_name(enum backend_admin a)
{
	return (unsigned)a < BACKEND_ADMIN_MAX_ ? admin_names[a] : "?";
}

int
backend_admin_parse(const char *text, enum backend_admin *out)
{
	for (unsigned a = 0; a < BACKEND_ADMIN_MAX_; a++)
		if (strcmp(text, admin_names[a]) == 0) {
			*out = (enum backend_admin)a;
			return 0;
		}
	return -1;
}

const char *
backend_status_name(enum backend_status st)
{
	return (unsigned)st < BACKEND_STATUS_MAX_ ? status_names[st] : "?";
}

static enum backend_status
status_of(unsigned admin, bool up)
{
	if (admin == BACKEND_ADMIN_MAINT)
		return BACKEND_STATUS_MAINT;
	if (admin == BACKEND_ADMIN_DRAIN)
		return BACKEND_STATUS_DRAIN;
	return up ? BACKEND_STATUS_UP : BACKEND_STATUS_DOWN;
}

enum backend_status
backend_status(const struct backend_shared *sh, size_t i)
{
	return status_of(atomic_load(&sh->servers[i]->admin),
	    atomic_load(&sh->servers[i]->up));
}

enum backend_status
backend_line_status(const struct backend_shared *sh, size_t j)
{
	const struct config_server *e = &sh->cfg->servers[j];
	bool up = false;

	for (size_t i = 0; i < sh->n && !up; i++)
		up = sh->entry[i] == e && atomic_load(&sh->servers[i]->up);
	return status_of(atomic_load(&sh->lines[j]->admin), up);
}

unsigned
backend_weight(const struct backend_shared *sh, size_t i)
{
	return backend_weight_of(sh->servers[i], sh->entry[i]);
}

unsigned
backend_line_weight(const struct backend_shared *sh, size_t j)
{
	unsigned w = atomic_load(&sh->lines[j]->weight);

	return w != 0 ? w : sh->cfg->servers[j].weight;
}

int
backend_server_set_admin(struct backend_set *bs, const char *backend,
    const char *server, int admin, unsigned weight)
{
	const struct backend_shared *sh = NULL;
	const struct config_server *e = NULL;
	struct server_line *ln;
	unsigned was_admin, was_weight;
	size_t j;

	if (admin >= BACKEND_ADMIN_MAX_ || weight > CONFIG_WEIGHT_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < bs->n && sh == NULL; i++)
		if (strcmp(bs->b[i].cfg->name, backend) == 0)
			sh = &bs->b[i];
	for (j = 0; sh != NULL && j < sh->cfg->nservers; j++)
		if (strcmp(sh->cfg->servers[j].name, server) == 0) {
			e = &sh->cfg->servers[j];
			break;
		}
	if (e == NULL) {
		errno = ENOENT;
		return -1;
	}
	ln = sh->lines[j];
	was_admin = atomic_load(&ln->admin);
	was_weight = backend_line_weight(sh, j);
	/* The line first: an address that a generation built from now on
	 * adds takes the new state. */
	if (weight != 0)
		atomic_store(&ln->weight, weight);
	if (admin >= 0)
		atomic_store(&ln->admin, (unsigned)admin);
	for (size_t i = 0; i < sh->n; i++) {
		if (sh->entry[i] != e)
			continue;
		if (weight != 0)
			atomic_store(&sh->servers[i]->weight, weight);
		if (admin >= 0)
			atomic_store(&sh->servers[i]->admin, (unsigned)admin);
	}
	if (admin >= 0 && (unsigned)admin != was_admin)
		log_info("server %s/%s: %s (was %s)", sh->cfg->name, e->name,
		    backend_admin_name((enum backend_admin)admin),
		    backend_admin_name((enum backend_admin)was_admin));
	if (weight != 0 && weight != was_weight)
		log_info("server %s/%s: weight %u (was %u)", sh->cfg->name,
		    e->name, weight, was_weight);
	return 0;
}

/* ---- one worker's balancer ---- */

int
backend_lb_init(struct backend_lb *lb, const struct backend_shared *sh,
    uint64_t seed)
{
	size_t n = sh->n ? sh->n : 1;

	memset(lb, 0, sizeof(*lb));
	lb->cfg = sh->cfg;
	lb->shared = sh->servers;
	lb->entry = sh->entry;
	lb->n = sh->n;
	lb->stats = calloc(n, sizeof(*lb->stats));
	lb->skip = calloc(n, sizeof(*lb->skip));
	if (lb->stats == NULL || lb->skip == NULL ||
	    balance_init(&lb->bal, sh->cfg->balance, sh->servers, sh->entry,
	    sh->n, seed) == -1) {
		backend_lb_cleanup(lb);
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

void
backend_lb_cleanup(struct backend_lb *lb)
{
	free(lb->stats);
	free(lb->skip);
	balance_cleanup(&lb->bal);
	memset(lb, 0, sizeof(*lb));
}

ssize_t
backend_lb_index(const struct backend_lb *lb, const struct server_state *st)
{
	for (size_t i = 0; i < lb->n; i++)
		if (lb->shared[i] == st)
			return (ssize_t)i;
	return -1;
}

void
backend_lb_carry(struct backend_lb *to, const struct backend_lb *from)
{
	for (size_t i = 0; i < to->n; i++) {
		ssize_t j = backend_lb_index(from, to->shared[i]);

		if (j < 0)
			continue;
		to->stats[i].connections = from->stats[j].connections;
		to->stats[i].connect_failures = from->stats[j].connect_failures;
	}
	balance_carry(&to->bal, &from->bal);
}

static unsigned
active_of(const struct backend_lb *lb, size_t i)
{
	return atomic_load_explicit(&lb->shared[i]->active, memory_order_relaxed);
}

static bool
checks_on(const struct backend_lb *lb)
{
	return lb->cfg->health_check != CONFIG_HEALTH_OFF;
}

/* Ready, and up or down by traffic with checks off and its trial connect
 * due. */
static bool
usable(const struct backend_lb *lb, size_t i, uint64_t now_ms)
{
	struct server_state *st = lb->shared[i];

	if (atomic_load_explicit(&st->admin, memory_order_relaxed) !=
	    BACKEND_ADMIN_READY)
		return false;
	if (atomic_load(&st->up))
		return true;
	return !checks_on(lb) && now_ms >= atomic_load(&st->trial_ms);
}

static bool
full(const struct backend_lb *lb, size_t i)
{
	unsigned max = lb->entry[i]->max_connections;

	return max > 0 && active_of(lb, i) >= max;
}

/* Make the pick binding: claim the trial connect of a server down by
 * traffic (no other worker gets it until the trial is over), and take a
 * slot. False if another worker got there first. */
static bool
reserve(struct backend_lb *lb, size_t i, uint64_t now_ms, bool *trial)
{
	struct server_state *st = lb->shared[i];
	unsigned max = lb->entry[i]->max_connections;
	unsigned n = atomic_load(&st->active);

	*trial = !atomic_load(&st->up);
	if (*trial) {
		uint64_t due = atomic_load(&st->trial_ms);

		if (now_ms < due || !atomic_compare_exchange_strong(
		    &st->trial_ms, &due, now_ms + atomic_load(&st->backoff_ms)))
			return false;
	}
	do
		if (max > 0 && n >= max)
			return false;
	while (!atomic_compare_exchange_weak(&st->active, &n, n + 1));
	atomic_fetch_add_explicit(&st->line->active, 1, memory_order_relaxed);
	lb->stats[i].active++;
	lb->users++;
	return true;
}

ssize_t
backend_lb_pick(struct backend_lb *lb, const struct sockaddr *peer,
    ssize_t avoid, uint64_t now_ms, enum backend_none *why, bool *trial)
{
	size_t n = lb->n, i;

	/* Each lost race leaves the server full or its trial taken, so the
	 * next round skips it: n + 1 rounds always settle. */
	for (size_t round = 0; round <= n; round++) {
		size_t eligible = 0, nfull = 0;

		for (i = 0; i < n; i++) {
			lb->skip[i] = !usable(lb, i, now_ms);
			if (!lb->skip[i] && full(lb, i)) {
				lb->skip[i] = true;
				nfull++;
			}
			eligible += !lb->skip[i];
		}
		if (eligible == 0) {
			*why = nfull > 0 ? BACKEND_NONE_FREE : BACKEND_NONE_UP;
			return -1;
		}
		if (avoid >= 0 && (size_t)avoid < n && !lb->skip[avoid] &&
		    eligible > 1)
			lb->skip[avoid] = true;
		i = balance_pick(&lb->bal, lb->skip, peer);
		if (reserve(lb, i, now_ms, trial))
			return (ssize_t)i;
	}
	*why = BACKEND_NONE_FREE;
	return -1;
}

static void
slot_free(struct backend_lb *lb, size_t i)
{
	atomic_fetch_sub(&lb->shared[i]->active, 1);
	atomic_fetch_sub_explicit(&lb->shared[i]->line->active, 1,
	    memory_order_relaxed);
	lb->stats[i].active--;
	lb->users--;
}

bool
backend_lb_connected(struct backend_lb *lb, size_t i)
{
	struct server_state *st = lb->shared[i];

	lb->stats[i].connections++;
	if (atomic_load_explicit(&st->fails, memory_order_relaxed) != 0)
		atomic_store(&st->fails, 0);
	/* With checks on, only the checks bring a server back. */
	return !checks_on(lb) && !atomic_load(&st->up) &&
	    backend_server_set_up(st, true);
}

bool
backend_lb_failed(struct backend_lb *lb, size_t i, bool trial,
    uint64_t now_ms)
{
	struct server_state *st = lb->shared[i];
	unsigned backoff;

	lb->stats[i].connect_failures++;
	slot_free(lb, i);
	if (!atomic_load(&st->up)) {
		/* Only a failed trial says anything new: a connect begun
		 * before the server went down was counted already. */
		if (trial && !checks_on(lb)) {
			backoff = atomic_load(&st->backoff_ms) * 2;
			if (backoff > BACKEND_BACKOFF_MAX_MS)
				backoff = BACKEND_BACKOFF_MAX_MS;
			atomic_store(&st->backoff_ms, backoff);
			atomic_store(&st->trial_ms, now_ms + backoff);
		}
		return false;
	}
	if (atomic_fetch_add(&st->fails, 1) + 1 < lb->cfg->fall)
		return false;
	/* The first trial is due one back-off from now; set before the
	 * server shows down, so no worker sees a stale time. */
	atomic_store(&st->trial_ms, now_ms + atomic_load(&st->backoff_ms));
	return backend_server_set_up(st, false);
}

ssize_t
backend_lb_adopt(struct backend_lb *lb, const char *server,
    const struct sockaddr *addr, socklen_t len)
{
	for (size_t i = 0; i < lb->n; i++) {
		const struct addr *a = &lb->shared[i]->addr;

		if (strcmp(lb->entry[i]->name, server) != 0 || a->len != len ||
		    memcmp(&a->ss, addr, len) != 0)
			continue;
		/* Past max_connections if need be: the connection exists. */
		atomic_fetch_add(&lb->shared[i]->active, 1);
		atomic_fetch_add_explicit(&lb->shared[i]->line->active, 1,
		    memory_order_relaxed);
		lb->stats[i].active++;
		lb->users++;
		return (ssize_t)i;
	}
	return -1;
}

void
backend_lb_release(struct backend_lb *lb, size_t i)
{
	slot_free(lb, i);
}

/* ---- connecting ---- */

int
backend_connect(const struct addr *a)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* A relay must not add Nagle's delay to what the client already sent
	 * in small pieces: the client's own stack decided when to push. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == -1 &&
	    errno != EINPROGRESS) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int
backend_connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return errno;
	return err;
}
