/* include/spliced/srctable.h: what each client source holds and may take,
 * for the per-source limits of listeners (max_connections_per_source,
 * connection_rate_per_source).
 *
 * One table for the process, shared by every worker (a mutex: it is
 * touched once when a client is admitted and once when it ends, and only
 * for listeners with a per-source limit), and kept across reloads, so
 * connections opened before a SIGHUP still count after it.
 *
 * A source is a listener's scope (a number stable for a listener name:
 * listener.h) and an address: an IPv4 address whole, an IPv6 address cut
 * to its first prefix_v6 bits (source_prefix_v6), so one host handing
 * out a /64 counts as one source. Each entry holds the source's open
 * connections and a token bucket (rate tokens a second, at most rate in
 * store: a burst of rate, then rate a second).
 *
 * Bounded: at most `capacity` entries (source_table_size), in memory
 * allocated once for that many (pages the kernel maps as entries are
 * first used). A new source in a full table takes the least recently
 * used entry that holds no connection, looking at a few of the least
 * recently used; when those all hold connections, the least recently
 * used goes anyway, and its connections are forgotten (their ends find
 * their ticket stale and change nothing): the limits then err towards
 * admitting, never towards refusing sources that did nothing wrong,
 * whatever a flood of new sources does. */
#ifndef SPLICED_SRCTABLE_H
#define SPLICED_SRCTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* How many of the least recently used entries a new source looks at for
 * one that holds no connection. */
#define SRCTABLE_EVICT_LOOK 8

struct srctable;

struct srckey {
	uint32_t scope;
	uint8_t family;             /* AF_INET or AF_INET6 (others: not tracked) */
	uint8_t addr[16];           /* masked; IPv4 in the first 4, the rest 0 */
};

/* What an admitted connection gives back when it ends. It names its
 * source and the generation of the source's entry, not the entry's
 * place: a resize moves entries, and the release finds the key again.
 * Generations are unique over the table's life, so an entry evicted, or
 * dropped by a resize, and made again for the same source later is
 * another entry to a ticket taken before. */
struct srctable_ticket {
	uint64_t gen;               /* 0: nothing to give back */
	struct srckey key;
};

/* Whether the ticket holds a slot to give back. */
static inline bool
srctable_ticket_held(const struct srctable_ticket *t)
{
	return t->gen != 0;
}

enum srctable_verdict {
	SRCTABLE_OK,                /* admitted; *ticket holds its slot */
	SRCTABLE_PER_SOURCE,        /* max_conns open already */
	SRCTABLE_RATE,              /* no token left */
};

struct srctable_stats {
	unsigned entries, capacity;
	uint64_t evictions;         /* entries taken for a new source */
	uint64_t evicted_busy;      /* of them, ones that still held connections */
};

/* A table of at most capacity entries (1..2^30). NULL with errno
 * (EINVAL: capacity out of range). */
struct srctable *srctable_new(unsigned capacity);
void srctable_free(struct srctable *);          /* NULL is fine */
/* A new capacity (a reload changed source_table_size): entries beyond it
 * go, least recently used first (their tickets go stale); the others
 * keep their counts and buckets. 0, or -1 with errno (ENOMEM: the table
 * is unchanged; EINVAL: capacity out of range). Any thread. */
int srctable_resize(struct srctable *, unsigned capacity);

/* The key of sa (AF_INET or AF_INET6) for scope. False for another
 * family (not tracked: admit it). */
bool srckey_make(struct srckey *, uint32_t scope, const struct sockaddr *sa,
    unsigned prefix_v6);

/* Admit one connection of source k: max_conns (0: no limit) open at
 * once, rate (0: no limit) new ones a second. On SRCTABLE_OK, *ticket is
 * set, and srctable_release() must be called once with it. A refused
 * connection takes neither a slot nor a token. now_ms: a monotonic clock
 * (clock_coarse_ms()). Any thread. */
enum srctable_verdict srctable_admit(struct srctable *, const struct srckey *k,
    unsigned max_conns, unsigned rate, uint64_t now_ms,
    struct srctable_ticket *ticket);
/* The connection of ticket ended: its slot goes back (unless its entry
 * went to another source since). The ticket is cleared. Any thread. */
void srctable_release(struct srctable *, struct srctable_ticket *);

/* Open connections the table counts for k now (0 when absent). Tests. */
unsigned srctable_active(struct srctable *, const struct srckey *k);
void srctable_stats(struct srctable *, struct srctable_stats *);

#endif
