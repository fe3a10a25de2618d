/* proxy/srctable.c: the process's table of client sources, for the
 * per-source limits (include/spliced/srctable.h).
 *
 * Entries live in one array of capacity + 1, calloc'ed once, so the pages
 * of entries never used are never touched. Entry 0 is the sentinel of the
 * LRU ring (its lnext the most recently used, its lprev the least), and
 * index 0 means "none" in the hash chains, so neither needs special cases.
 * Live entries are always 1..n: an entry is only ever freed by a resize,
 * which rebuilds the array compact; an eviction reuses its entry at once.
 *
 * The hash is SipHash-1-3 keyed from getrandom() at srctable_new: the
 * sources are chosen by the peers, and a guessable hash would let them
 * aim every new source at one chain, turning each admission under the
 * table's mutex into a walk of the whole table.
 *
 * The bucket counts debt, not tokens: `debt` milli-tokens taken and not
 * yet refilled. A new entry owes nothing (a full bucket whatever the
 * rate), and a reload changing the rate needs no conversion. A rate of r
 * a second refills r milli-tokens a millisecond, so the arithmetic is
 * exact in whole milliseconds. */
#include "spliced/srctable.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* An index is 32 bits and the buckets a power of two at least the
 * capacity: 2^30 entries (64 GiB) is far past any real table. */
#define SRCTABLE_CAP_MAX (1u << 30)
#define MILLI 1000u

/* 64 bytes: one cache line, and 6.4 MB for the default 100000. */
struct srcentry {
	uint64_t gen;               /* unique per binding to a key; 0: sentinel */
	uint64_t debt;              /* milli-tokens owed to the bucket */
	uint64_t last_ms;           /* when debt was last paid down */
	struct srckey key;
	uint32_t active;            /* open connections */
	uint32_t hnext;             /* hash chain; 0: end */
	uint32_t lprev, lnext;      /* LRU ring through entry 0 */
};

_Static_assert(sizeof(struct srcentry) == 64, "the comment above says 64");

struct srctable {
	pthread_mutex_t mu;
	struct srcentry *e;         /* capacity + 1; e[0] the ring's sentinel */
	uint32_t *bucket;           /* heads of the chains; 0: empty */
	uint32_t mask;              /* buckets - 1 */
	unsigned n, cap;
	uint64_t next_gen;          /* the last generation given out */
	uint64_t sip[2];
	uint64_t evictions, evicted_busy;
};

/* ---- the hash ---- */

static inline uint64_t
rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3) do {                                  \
	v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);     \
	v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                        \
	v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                        \
	v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);     \
} while (0)

/* SipHash-1-3 of the key's 24 bytes as three words (host order: the
 * value only has to be unpredictable here, not portable). */
static uint32_t
key_hash(const struct srctable *t, const struct srckey *k)
{
	uint64_t v0 = t->sip[0] ^ 0x736f6d6570736575ULL;
	uint64_t v1 = t->sip[1] ^ 0x646f72616e646f6dULL;
	uint64_t v2 = t->sip[0] ^ 0x6c7967656e657261ULL;
	uint64_t v3 = t->sip[1] ^ 0x7465646279746573ULL;
	uint64_t m[4];

	memcpy(&m[0], k->addr, 8);
	memcpy(&m[1], k->addr + 8, 8);
	m[2] = (uint64_t)k->scope | (uint64_t)k->family << 32;
	m[3] = (uint64_t)24 << 56;
	for (int i = 0; i < 4; i++) {
		v3 ^= m[i];
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m[i];
	}
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return (uint32_t)(v0 ^ v1 ^ v2 ^ v3);
}

/* The SipHash key. getrandom() does not block (a daemon started early at
 * boot must not wait for the pool); failing it, the clock, the pid and
 * an address of this run are a poorer seed, but a seed. */
static void
seed(struct srctable *t)
{
	struct timespec ts;

	if (getrandom(t->sip, sizeof(t->sip), GRND_NONBLOCK) ==
	    (ssize_t)sizeof(t->sip))
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t->sip[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^
	    (uint64_t)ts.tv_sec;
	t->sip[1] = (uint64_t)getpid() * 0xc2b2ae3d27d4eb4fULL ^
	    (uint64_t)(uintptr_t)t;
}

static bool
key_equal(const struct srckey *a, const struct srckey *b)
{
	return a->scope == b->scope && a->family == b->family &&
	    memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* ---- the chains and the ring ---- */

static uint32_t
lookup(const struct srctable *t, const struct srckey *k)
{
	uint32_t i = t->bucket[key_hash(t, k) & t->mask];

	while (i != 0 && !key_equal(&t->e[i].key, k))
		i = t->e[i].hnext;
	return i;
}

static void
hash_insert(struct srctable *t, uint32_t i)
{
	uint32_t *head = &t->bucket[key_hash(t, &t->e[i].key) & t->mask];

	t->e[i].hnext = *head;
	*head = i;
}

static void
hash_remove(struct srctable *t, uint32_t i)
{
	uint32_t *p = &t->bucket[key_hash(t, &t->e[i].key) & t->mask];

	while (*p != i)
		p = &t->e[*p].hnext;
	*p = t->e[i].hnext;
}

static void
ring_unlink(struct srcentry *e, uint32_t i)
{
	e[e[i].lprev].lnext = e[i].lnext;
	e[e[i].lnext].lprev = e[i].lprev;
}

/* i becomes the most recently used. */
static void
ring_push(struct srcentry *e, uint32_t i)
{
	e[i].lprev = 0;
	e[i].lnext = e[0].lnext;
	e[e[0].lnext].lprev = i;
	e[0].lnext = i;
}

/* i becomes the least recently used (a resize copying in order). */
static void
ring_append(struct srcentry *e, uint32_t i)
{
	e[i].lnext = 0;
	e[i].lprev = e[0].lprev;
	e[e[0].lprev].lnext = i;
	e[0].lprev = i;
}

/* The entry a new source takes in a full table: the least recently used
 * of the last SRCTABLE_EVICT_LOOK that holds no connection, else the
 * least recently used. */
static uint32_t
victim(struct srctable *t)
{
	uint32_t i = t->e[0].lprev;

	for (unsigned look = 0; look < SRCTABLE_EVICT_LOOK && i != 0; look++) {
		if (t->e[i].active == 0)
			return i;
		i = t->e[i].lprev;
	}
	t->evicted_busy++;
	return t->e[0].lprev;
}

/* An entry for k, which is not in the table, as most recently used. */
static uint32_t
take(struct srctable *t, const struct srckey *k)
{
	uint32_t i;

	if (t->n < t->cap) {
		i = ++t->n;
	} else {
		i = victim(t);
		t->evictions++;
		hash_remove(t, i);
		ring_unlink(t->e, i);
	}
	t->e[i] = (struct srcentry){ .gen = ++t->next_gen, .key = *k };
	hash_insert(t, i);
	ring_push(t->e, i);
	return i;
}

/* ---- the table ---- */

static uint32_t
buckets_for(unsigned cap)
{
	uint32_t nb = 1;

	while (nb < cap)
		nb <<= 1;
	return nb;
}

struct srctable *
srctable_new(unsigned capacity)
{
	struct srctable *t;

	if (capacity == 0 || capacity > SRCTABLE_CAP_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->cap = capacity;
	t->mask = buckets_for(capacity) - 1;
	if ((t->e = calloc((size_t)capacity + 1, sizeof(*t->e))) == NULL)
		goto fail;
	if ((t->bucket = calloc((size_t)t->mask + 1, sizeof(*t->bucket))) ==
	    NULL)
		goto fail;
	if ((errno = pthread_mutex_init(&t->mu, NULL)) != 0)
		goto fail;
	seed(t);
	return t;
fail:
	free(t->bucket);
	free(t->e);
	free(t);
	return NULL;
}

void
srctable_free(struct srctable *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t->bucket);
	free(t->e);
	free(t);
}

/* New arrays for the new capacity, the most recently used entries copied
 * in order and packed from 1 (a shrink leaves the rest behind: their
 * tickets find no entry with their generation), the chains rebuilt. All
 * allocated before anything changes, so ENOMEM leaves the table whole. */
int
srctable_resize(struct srctable *t, unsigned capacity)
{
	struct srcentry *ne;
	uint32_t *nbk, nb, j = 0;

	if (capacity == 0 || capacity > SRCTABLE_CAP_MAX) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&t->mu);
	if (capacity == t->cap) {
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	nb = buckets_for(capacity);
	ne = calloc((size_t)capacity + 1, sizeof(*ne));
	nbk = calloc(nb, sizeof(*nbk));
	if (ne == NULL || nbk == NULL) {
		free(nbk);
		free(ne);
		pthread_mutex_unlock(&t->mu);
		errno = ENOMEM;
		return -1;
	}
	for (uint32_t i = t->e[0].lnext; i != 0 && j < capacity;
	    i = t->e[i].lnext) {
		ne[++j] = t->e[i];
		ring_append(ne, j);
	}
	free(t->e);
	free(t->bucket);
	t->e = ne;
	t->bucket = nbk;
	t->mask = nb - 1;
	t->cap = capacity;
	t->n = j;
	for (uint32_t i = 1; i <= j; i++)
		hash_insert(t, i);
	pthread_mutex_unlock(&t->mu);
	return 0;
}

bool
srckey_make(struct srckey *k, uint32_t scope, const struct sockaddr *sa,
    unsigned prefix_v6)
{
	memset(k, 0, sizeof(*k));
	k->scope = scope;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		k->family = AF_INET;
		memcpy(k->addr, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;
		unsigned bits = prefix_v6 < 1 ? 1 :
		    prefix_v6 > 128 ? 128 : prefix_v6;

		k->family = AF_INET6;
		memcpy(k->addr, &sin6->sin6_addr, 16);
		if (bits % 8 != 0)
			k->addr[bits / 8] &= (uint8_t)(0xff00u >> (bits % 8));
		for (unsigned b = (bits + 7) / 8; b < 16; b++)
			k->addr[b] = 0;
		return true;
	}
	return false;
}

/* Pays the bucket's debt down for the time since it was last paid. A full
 * refill takes a second, so a longer wait counts as one (and the product
 * stays far inside 64 bits); a rate lowered by a reload caps the debt at
 * its new burst. A clock read by another worker a little behind counts as
 * no time. */
static void
refill(struct srcentry *e, unsigned rate, uint64_t now_ms)
{
	uint64_t burst = (uint64_t)rate * MILLI;
	uint64_t dt = now_ms > e->last_ms ? now_ms - e->last_ms : 0;
	uint64_t paid = (dt > MILLI ? MILLI : dt) * rate;

	if (e->debt > burst)
		e->debt = burst;
	e->debt = e->debt > paid ? e->debt - paid : 0;
	if (now_ms > e->last_ms)
		e->last_ms = now_ms;
}

enum srctable_verdict
srctable_admit(struct srctable *t, const struct srckey *k, unsigned max_conns,
    unsigned rate, uint64_t now_ms, struct srctable_ticket *ticket)
{
	enum srctable_verdict v = SRCTABLE_OK;
	struct srcentry *e;
	uint32_t i;

	*ticket = (struct srctable_ticket){ .gen = 0 };
	/* Nothing to count, or a family not tracked: no entry at all, so a
	 * listener without limits never fills the table. */
	if ((max_conns == 0 && rate == 0) ||
	    (k->family != AF_INET && k->family != AF_INET6))
		return SRCTABLE_OK;
	pthread_mutex_lock(&t->mu);
	if ((i = lookup(t, k)) == 0) {
		i = take(t, k);
		t->e[i].last_ms = now_ms;
	} else {
		ring_unlink(t->e, i);
		ring_push(t->e, i);
	}
	e = &t->e[i];
	/* A new entry holds nothing and owes nothing: never refused. */
	if (rate != 0)
		refill(e, rate, now_ms);
	if (max_conns != 0 && e->active >= max_conns)
		v = SRCTABLE_PER_SOURCE;
	else if (rate != 0 && e->debt + MILLI > (uint64_t)rate * MILLI)
		v = SRCTABLE_RATE;
	if (v == SRCTABLE_OK) {
		e->active++;
		if (rate != 0)
			e->debt += MILLI;
		ticket->gen = e->gen;
		ticket->key = *k;
	}
	pthread_mutex_unlock(&t->mu);
	return v;
}

void
srctable_release(struct srctable *t, struct srctable_ticket *ticket)
{
	uint32_t i;

	if (ticket->gen == 0)
		return;
	pthread_mutex_lock(&t->mu);
	i = lookup(t, &ticket->key);
	/* active > 0 always holds for a live ticket; the test only keeps a
	 * double release from wrapping the count round. */
	if (i != 0 && t->e[i].gen == ticket->gen && t->e[i].active > 0)
		t->e[i].active--;
	pthread_mutex_unlock(&t->mu);
	*ticket = (struct srctable_ticket){ .gen = 0 };
}

unsigned
srctable_active(struct srctable *t, const struct srckey *k)
{
	unsigned n = 0;
	uint32_t i;

	pthread_mutex_lock(&t->mu);
	if ((i = lookup(t, k)) != 0)
		n = t->e[i].active;
	pthread_mutex_unlock(&t->mu);
	return n;
}

void
srctable_stats(struct srctable *t, struct srctable_stats *st)
{
	pthread_mutex_lock(&t->mu);
	*st = (struct srctable_stats){
		.entries = t->n,
		.capacity = t->cap,
		.evictions = t->evictions,
		.evicted_busy = t->evicted_busy,
	};
	pthread_mutex_unlock(&t->mu);
}
