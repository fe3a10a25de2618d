/* proxy/balance.c: the four balancing algorithms (roundrobin, leastconn,
 * random, source), and the hashing and randomness they use.
 *
 * Every algorithm chooses among the servers not marked in skip[], which
 * backend_lb_pick() fills first; the choice is made binding there. Load is
 * read with relaxed atomics: another worker's connect may change it a
 * moment later anyway, and the slot reservation is what is exact.
 *
 * Weights are read at each pick too (backend_weight_of(): the runtime
 * weight an operator set, or the config line's), so a change takes effect
 * at the next pick in every worker, without a new generation. */
#include "spliced/balance.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/backend.h"

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
balance_hash_peer(const struct sockaddr *sa)
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
rng_next(struct balance *b)
{
	uint64_t x = b->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* ---- the algorithms: each picks among the servers not skipped ---- */

static unsigned
active_of(const struct balance *b, size_t i)
{
	return atomic_load_explicit(&b->shared[i]->active, memory_order_relaxed);
}

static unsigned
weight_of(const struct balance *b, size_t i)
{
	return backend_weight_of(b->shared[i], b->entry[i]);
}

/* Whether server x carries less than server y, per weight. */
static bool
lighter(const struct balance *b, size_t x, size_t y)
{
	return (uint64_t)active_of(b, x) * weight_of(b, y) <
	    (uint64_t)active_of(b, y) * weight_of(b, x);
}

/* Smooth weighted round robin (nginx's): every server earns its weight
 * each round; the richest is picked and pays the total back, which
 * interleaves heavy and light servers. A server sat out (down, full, just
 * failed) earns nothing that round, or it would come back rich and be
 * picked several times in a row.
 *
 * When a candidate's weight has changed since the last pick, every credit
 * starts over from zero: credits earned under the old weights can be of
 * the order of the old total (256 times a server's), and a server left
 * rich by them would get a run of picks, or a poor one none, for as many
 * rounds as that takes to even out. From zero, the next cycle already has
 * the new shares, spread out. */
static size_t
pick_roundrobin(struct balance *b, const bool *skip)
{
	int64_t total = 0;
	size_t best = SIZE_MAX;
	bool changed = false;

	for (size_t i = 0; i < b->n; i++) {
		unsigned w;

		if (skip[i])
			continue;
		w = weight_of(b, i);
		changed |= w != b->weight[i];
		b->weight[i] = w;
	}
	if (changed)
		memset(b->current, 0, b->n * sizeof(*b->current));
	for (size_t i = 0; i < b->n; i++) {
		if (skip[i])
			continue;
		b->current[i] += b->weight[i];
		total += b->weight[i];
		if (best == SIZE_MAX || b->current[i] > b->current[best])
			best = i;
	}
	b->current[best] -= total;
	return best;
}

/* Fewest connections per weight, counted over all workers; ties go round
 * in turn, so equal servers share new connections evenly. */
static size_t
pick_leastconn(struct balance *b, const bool *skip)
{
	size_t n = b->n, best = SIZE_MAX;

	for (size_t k = 0; k < n; k++) {
		size_t i = (b->turn + k) % n;

		if (skip[i])
			continue;
		if (best == SIZE_MAX || lighter(b, i, best))
			best = i;
	}
	b->turn = best + 1;
	return best;
}

/* One server drawn by weight among those not skipped, leaving out `also`.
 * A weight lowered between the two passes (an operator's change, on
 * another thread) can leave r past the end: the last candidate, once. */
static size_t
draw(struct balance *b, const bool *skip, size_t also)
{
	uint64_t total = 0, r;
	size_t i, last = SIZE_MAX;

	for (i = 0; i < b->n; i++)
		if (!skip[i] && i != also)
			total += weight_of(b, i);
	if (total == 0)
		return SIZE_MAX;
	r = rng_next(b) % total;
	for (i = 0; i < b->n; i++) {
		unsigned w;

		if (skip[i] || i == also)
			continue;
		last = i;
		if (r < (w = weight_of(b, i)))
			return i;
		r -= w;
	}
	return last;
}

/* The power of two random choices: two servers drawn by weight, the one
 * with fewer connections per weight wins (the first on a tie, so that
 * with no load the picks follow the weights exactly). Nearly as even as
 * leastconn, without every worker herding onto the same idlest server. */
static size_t
pick_random(struct balance *b, const bool *skip)
{
	size_t x = draw(b, skip, SIZE_MAX), y = draw(b, skip, x);

	if (y == SIZE_MAX)
		return x;
	return lighter(b, y, x) ? y : x;
}

/* Weighted rendezvous hashing: each server scores the client by a hash of
 * the client and the server's name; the best score wins. A client moves
 * only when its server leaves or a newcomer outscores it, so adding one
 * server to N moves about 1/(N+1) of the clients, and the scores
 * -ln(u) / weight make the shares follow the weights. A server skipped
 * (down, full) sends its clients to their second choice. */
static size_t
pick_source(struct balance *b, const bool *skip, uint64_t peer_hash)
{
	double best_score = 0;
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < b->n; i++) {
		uint64_t h = mix64(peer_hash ^ b->name_hash[i]);
		/* u uniform in (0, 1): the top 53 bits, off zero by half a step. */
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
		double score;

		if (skip[i])
			continue;
		score = -ln_unit(u) / weight_of(b, i);
		if (best == SIZE_MAX || score < best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

size_t
balance_pick(struct balance *b, const bool *skip, const struct sockaddr *peer)
{
	switch (b->algo) {
	case CONFIG_BALANCE_LEASTCONN:
		return pick_leastconn(b, skip);
	case CONFIG_BALANCE_SOURCE:
		return pick_source(b, skip, balance_hash_peer(peer));
	case CONFIG_BALANCE_RANDOM:
		return pick_random(b, skip);
	default:
		return pick_roundrobin(b, skip);
	}
}

/* ---- a balancer's life ---- */

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
balance_init(struct balance *b, enum config_balance algo,
    struct server_state *const *shared,
    const struct config_server *const *entry, size_t n, uint64_t seed)
{
	size_t alloc = n ? n : 1;

	memset(b, 0, sizeof(*b));
	b->algo = algo;
	b->n = n;
	b->shared = shared;
	b->entry = entry;
	b->current = calloc(alloc, sizeof(*b->current));
	b->weight = calloc(alloc, sizeof(*b->weight));
	b->name_hash = calloc(alloc, sizeof(*b->name_hash));
	if (b->current == NULL || b->weight == NULL || b->name_hash == NULL) {
		balance_cleanup(b);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		b->name_hash[i] = name_hash(entry[i], shared[i]);
		b->weight[i] = weight_of(b, i);
	}
	b->rng = mix64(seed + 0x9e3779b97f4a7c15ULL);
	if (b->rng == 0)
		b->rng = 1;
	return 0;
}

void
balance_cleanup(struct balance *b)
{
	free(b->current);
	free(b->weight);
	free(b->name_hash);
	memset(b, 0, sizeof(*b));
}

void
balance_carry(struct balance *to, const struct balance *from)
{
	for (size_t i = 0; i < to->n; i++)
		for (size_t j = 0; j < from->n; j++)
			if (from->shared[j] == to->shared[i]) {
				to->current[i] = from->current[j];
				to->weight[i] = from->weight[j];
				break;
			}
	to->turn = to->n > 0 ? from->turn % to->n : 0;
	to->rng = from->rng;
}
