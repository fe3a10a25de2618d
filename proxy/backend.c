/* proxy/backend.c: shared server state, the four balancing algorithms,
 * passive health, and the non-blocking connect.
 *
 * Every algorithm chooses among the servers not marked in lb->skip, which
 * backend_lb_pick() fills first (down, full, or the one to avoid). The
 * choice is then made binding by reserving a slot with a compare-and-swap
 * on the server's shared active count: another worker may have taken the
 * last slot (or the trial connect) in between, and then the pick runs
 * again, seeing the server full. */
#include "spliced/backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- shared state ---- */

static struct server_state *
state_new(const struct addr *a)
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
	if (st != NULL && atomic_fetch_sub(&st->refs, 1) == 1)
		free(st);
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

/* Push the addresses a[0..n) of server line e, carrying states from pb. */
static int
push_addrs(struct backend_shared *sh, size_t *cap,
    const struct backend_shared *pb, const struct config_server *e,
    const struct addr *a, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct server_state *st = state_carried(pb, e, &a[k]);

		if (st == NULL && (st = state_new(&a[k])) == NULL)
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

			if (i == b && j == s)
				rc = push_addrs(&bs->b[i], &cap, pb, e, a, n);
			else if (e->dnsname != NULL)
				rc = push_kept(&bs->b[i], &cap, pb, e);
			else
				rc = push_addrs(&bs->b[i], &cap, pb, e, &e->addr, 1);
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
		free(bs->b[i].servers);
		free(bs->b[i].entry);
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

/* ---- hashing and randomness ---- */

/* MurmurHash3's finaliser: every input bit affects every output bit. */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t
hash_bytes(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a, then mixed */

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return mix64(h);
}

uint64_t
backend_hash_peer(const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		return hash_bytes(&sin->sin_addr, 4);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *a = sin6->sin6_addr.s6_addr;

		/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
		if (memcmp(a, mapped, 12) == 0)
			return hash_bytes(a + 12, 4);
		return hash_bytes(a, 16);
	}
	return 0;
}

/* ln(x) for 0 < x <= 1, without libm: x = m * 2^e with m in [1, 2), and
 * ln(m) = 2 atanh((m - 1) / (m + 1)), whose series converges fast since
 * that ratio is below 1/3. Good to about 1e-12, which is all a hash
 * score needs. */
static double
ln_unit(double x)
{
	uint64_t bits;
	double m, s, s2, term, sum = 0;
	int e;

	memcpy(&bits, &x, sizeof(bits));
	e = (int)((bits >> 52) & 0x7ff) - 1023;
	bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
	memcpy(&m, &bits, sizeof(m));
	s = (m - 1) / (m + 1);
	s2 = s * s;
	term = s;
	for (int k = 1; k < 30; k += 2) {
		sum += term / k;
		term *= s2;
	}
	return e * 0.69314718055994530942 + 2 * sum;
}

/* xorshift64*: small, fast, and good enough to spread load. */
static uint64_t
rng_next(struct backend_lb *lb)
{
	uint64_t x = lb->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	lb->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* ---- the algorithms: each picks among the servers not skipped ---- */

static unsigned
active_of(const struct backend_lb *lb, size_t i)
{
	return atomic_load_explicit(&lb->shared[i]->active, memory_order_relaxed);
}

/* Whether server a carries less than server b, per weight. */
static bool
lighter(const struct backend_lb *lb, size_t a, size_t b)
{
	return (uint64_t)active_of(lb, a) * lb->entry[b]->weight <
	    (uint64_t)active_of(lb, b) * lb->entry[a]->weight;
}

/* Smooth weighted round robin (nginx's): every server earns its weight
 * each round; the richest is picked and pays the total back, which
 * interleaves heavy and light servers. A server sat out (down, full, just
 * failed) earns nothing that round, or it would come back rich and be
 * picked several times in a row. */
static size_t
pick_roundrobin(struct backend_lb *lb)
{
	int64_t total = 0;
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < lb->n; i++) {
		if (lb->skip[i])
			continue;
		lb->current[i] += lb->entry[i]->weight;
		total += lb->entry[i]->weight;
		if (best == SIZE_MAX || lb->current[i] > lb->current[best])
			best = i;
	}
	lb->current[best] -= total;
	return best;
}

/* Fewest connections per weight, counted over all workers; ties go round
 * in turn, so equal servers share new connections evenly. */
static size_t
pick_leastconn(struct backend_lb *lb)
{
	size_t n = lb->n, best = SIZE_MAX;

	for (size_t k = 0; k < n; k++) {
		size_t i = (lb->turn + k) % n;

		if (lb->skip[i])
			continue;
		if (best == SIZE_MAX || lighter(lb, i, best))
			best = i;
	}
	lb->turn = best + 1;
	return best;
}

/* One server drawn by weight among those not skipped, leaving out `also`. */
static size_t
draw(struct backend_lb *lb, size_t also)
{
	uint64_t total = 0, r;
	size_t i, last = SIZE_MAX;

	for (i = 0; i < lb->n; i++)
		if (!lb->skip[i] && i != also)
			total += lb->entry[i]->weight;
	if (total == 0)
		return SIZE_MAX;
	r = rng_next(lb) % total;
	for (i = 0; i < lb->n; i++) {
		if (lb->skip[i] || i == also)
			continue;
		last = i;
		if (r < lb->entry[i]->weight)
			return i;
		r -= lb->entry[i]->weight;
	}
	return last;
}

/* The power of two random choices: two servers drawn by weight, the one
 * with fewer connections per weight wins (the first on a tie, so that
 * with no load the picks follow the weights exactly). Nearly as even as
 * leastconn, without every worker herding onto the same idlest server. */
static size_t
pick_random(struct backend_lb *lb)
{
	size_t a = draw(lb, SIZE_MAX), b = draw(lb, a);

	if (b == SIZE_MAX)
		return a;
	return lighter(lb, b, a) ? b : a;
}

/* Weighted rendezvous hashing: each server scores the client by a hash of
 * the client and the server's name; the best score wins. A client moves
 * only when its server leaves or a newcomer outscores it, so adding one
 * server to N moves about 1/(N+1) of the clients, and the scores
 * -ln(u) / weight make the shares follow the weights. A server skipped
 * (down, full) sends its clients to their second choice. */
static size_t
pick_source(struct backend_lb *lb, uint64_t peer_hash)
{
	double best_score = 0;
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < lb->n; i++) {
		uint64_t h = mix64(peer_hash ^ lb->name_hash[i]);
		/* u uniform in (0, 1): the top 53 bits, off zero by half a step. */
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
		double score;

		if (lb->skip[i])
			continue;
		score = -ln_unit(u) / lb->entry[i]->weight;
		if (best == SIZE_MAX || score < best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

/* ---- picking, and what comes of a connect ---- */

/* What source hashes per address: the server's name, so that a server
 * keeps its clients whatever its address; for the addresses of a host
 * name, the name and the address, so that they differ. */
static uint64_t
name_hash(const struct config_server *e, const struct server_state *st)
{
	char text[ADDR_TEXT_MAX];
	uint64_t h = hash_bytes(e->name, strlen(e->name));

	if (e->dnsname == NULL)
		return h;
	addr_format((const struct sockaddr *)&st->addr.ss, text, sizeof(text));
	return mix64(h ^ hash_bytes(text, strlen(text)));
}

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
	lb->current = calloc(n, sizeof(*lb->current));
	lb->name_hash = calloc(n, sizeof(*lb->name_hash));
	lb->skip = calloc(n, sizeof(*lb->skip));
	if (lb->stats == NULL || lb->current == NULL || lb->name_hash == NULL ||
	    lb->skip == NULL) {
		backend_lb_cleanup(lb);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < sh->n; i++)
		lb->name_hash[i] = name_hash(sh->entry[i], sh->servers[i]);
	lb->rng = mix64(seed + 0x9e3779b97f4a7c15ULL);
	if (lb->rng == 0)
		lb->rng = 1;
	return 0;
}

void
backend_lb_cleanup(struct backend_lb *lb)
{
	free(lb->stats);
	free(lb->current);
	free(lb->name_hash);
	free(lb->skip);
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
		to->current[i] = from->current[j];
	}
	to->turn = to->n > 0 ? from->turn % to->n : 0;
	to->rng = from->rng;
}

static bool
checks_on(const struct backend_lb *lb)
{
	return lb->cfg->health_check != CONFIG_HEALTH_OFF;
}

/* Up, or down by traffic with checks off and its trial connect due. */
static bool
usable(const struct backend_lb *lb, size_t i, uint64_t now_ms)
{
	struct server_state *st = lb->shared[i];

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
	lb->stats[i].active++;
	lb->users++;
	return true;
}

ssize_t
backend_lb_pick(struct backend_lb *lb, const struct sockaddr *peer,
    ssize_t avoid, uint64_t now_ms, enum backend_none *why, bool *trial)
{
	size_t n = lb->n, i;
	uint64_t peer_hash = 0;

	if (lb->cfg->balance == CONFIG_BALANCE_SOURCE)
		peer_hash = backend_hash_peer(peer);
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
		switch (lb->cfg->balance) {
		case CONFIG_BALANCE_LEASTCONN: i = pick_leastconn(lb); break;
		case CONFIG_BALANCE_SOURCE: i = pick_source(lb, peer_hash); break;
		case CONFIG_BALANCE_RANDOM: i = pick_random(lb); break;
		default: i = pick_roundrobin(lb); break;
		}
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
