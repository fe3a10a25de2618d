/* include/spliced/balance.h: the four balancing algorithms.
 *
 * Each chooses one server among the candidates the caller has not marked
 * in skip[] (backend.c marks the drained, the down, the full, and the one
 * a retry avoids), by the servers' weights (backend_weight_of(): the
 * runtime weight if one was set, else config_server.weight, read at every
 * pick, so a change applies from the next one on) and, where the
 * algorithm says so, their load: the shared count of connections in all
 * workers (server_state.active). Choosing is all they do: backend.c then
 * makes the choice binding by reserving a slot, and asks again when
 * another worker took the last one first.
 *
 *  - roundrobin: smooth weighted round robin (nginx's). While the
 *    candidates stay the same, every cycle of as many picks as their
 *    weights add up to picks each its weight's number of times, spread
 *    out rather than bunched; a skipped server earns no credit while it
 *    sits out, so it does not come back to a run of picks. When a
 *    candidate's weight changes, the credits start over: the cycle from
 *    then on has the new shares, with no run of picks (or none) to even
 *    out what was earned under the old weights.
 *  - leastconn: the fewest connections per weight; ties go round in turn.
 *  - random: the power of two random choices: two servers drawn by
 *    weight, the one with fewer connections per weight wins (the first on
 *    a tie). With no load the picks follow the weights.
 *  - source: weighted rendezvous hashing of the client's address (without
 *    its port) against each server's name: a client keeps its server while
 *    that server is a candidate, adding one server to N moves about
 *    1/(N+1) of the clients (all to the newcomer), and the shares follow
 *    the weights.
 *
 * One struct balance per backend per worker (inside struct backend_lb).
 * Not thread-safe; it only reads the shared state. Its fields are
 * balance.c's: a caller reads them only in tests. */
#ifndef SPLICED_BALANCE_H
#define SPLICED_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "spliced/config.h"

struct server_state;

struct balance {
	enum config_balance algo;
	size_t n;
	struct server_state *const *shared;       /* [n], borrowed: load */
	const struct config_server *const *entry; /* [n], borrowed: weight */
	int64_t *current;           /* roundrobin: each server's credit */
	unsigned *weight;           /* roundrobin: the weights it was earned by */
	uint64_t *name_hash;        /* source: per address, of its name */
	size_t turn;                /* leastconn: where ties start */
	uint64_t rng;               /* random: xorshift64* state, never 0 */
};

/* Over the n servers shared[i], entry[i] (both must outlive it), by algo.
 * seed: the worker's, for random. 0, or -1 with errno (ENOMEM). */
int balance_init(struct balance *, enum config_balance algo,
    struct server_state *const *shared,
    const struct config_server *const *entry, size_t n, uint64_t seed);
void balance_cleanup(struct balance *);

/* The index of the server chosen among those with skip[i] false, of
 * which there must be at least one. peer: the client, for source (may be
 * NULL: then every client is the same). */
size_t balance_pick(struct balance *, const bool *skip,
    const struct sockaddr *peer);

/* A balancer over a new generation of addresses takes over what `from`
 * knew of the same addresses (the same struct server_state): their
 * round-robin credit (and the weights it was earned by); and leastconn's
 * turn and the generator. */
void balance_carry(struct balance *to, const struct balance *from);

/* What source hashes of a client: its address without its port, an
 * IPv4-mapped IPv6 address as the IPv4 address it maps. */
uint64_t balance_hash_peer(const struct sockaddr *);

#endif
