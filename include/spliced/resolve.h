/* include/spliced/resolve.h: servers given by host name.
 *
 * `server = b app.internal:9001` is resolved with libevent's evdns on the
 * main thread's event_base (never on a worker, never with a blocking
 * getaddrinfo), A and AAAA at once, and again every resolve_interval of
 * its backend. Each address becomes a server of its own to balancing and
 * health checks (backend.h), with the line's weight and max_connections.
 *
 * The name server is [global] resolver (ADDRESS:PORT) when set, and then
 * only it (no /etc/hosts, no search domains: what nginx's and HAProxy's
 * resolvers do); else the system's, from /etc/resolv.conf with its search
 * domains, options and /etc/hosts, as getaddrinfo would.
 *
 * When the answer differs from the addresses in use, the resolver builds a
 * new generation of the backend_set (backend_set_update: an address still
 * there keeps its state, a new one starts up and idle) and publishes it;
 * reload.c hands it to the health checks and the workers (worker.h). An
 * address that went away gets no new connection; connections already on
 * it finish. A failed resolution (timeout, SERVFAIL, NXDOMAIN, no
 * address) keeps the addresses in use. Each change of addresses or of the
 * outcome (failing, resolving again, failing for another reason) is logged
 * once; the same outcome again is not.
 *
 * Not thread-safe: everything runs on the given base's thread. A config
 * without host-name servers makes no DNS query and opens no socket. */
#ifndef SPLICED_RESOLVE_H
#define SPLICED_RESOLVE_H

#include <event2/util.h>        /* struct evutil_addrinfo: a macro on Linux */
#include <stdbool.h>
#include <stddef.h>

#include "spliced/addr.h"

struct backend_set;
struct event_base;
struct resolver;

/* Addresses kept per name at most; the rest of a larger answer is left out. */
#define RESOLVER_MAX_ADDRS 64

/* A new generation (already the resolver's current one): the callee takes
 * its own references. */
typedef void (*resolver_publish_cb)(struct backend_set *, void *arg);
/* A name that did not resolve in the first round, as a config error:
 * "FILE:LINE: [backend app] server: cannot resolve 'app.internal': why". */
typedef void (*resolver_report_cb)(const char *msg, void *arg);

/* A resolver for the host-name servers of bs's config, starting from bs
 * (the resolver holds a reference). Nothing is asked before
 * resolver_first_round() or resolver_start(). NULL with a message in err
 * (out of memory, no evdns base, or a [global] resolver evdns refuses). */
struct resolver *resolver_new(struct event_base *, struct backend_set *bs,
    resolver_publish_cb, void *arg, char *err, size_t errlen);

/* Ask every name once and run the base's loop until each has answered or
 * failed (bounded by the name server timeouts: 2 s, 2 attempts, unless
 * resolv.conf says otherwise); report each that failed. Re-resolution
 * then goes on by itself on the loop. Returns how many names failed. */
size_t resolver_first_round(struct resolver *, resolver_report_cb, void *arg);

/* After a reload, instead of the first round: ask every name now without
 * waiting; the answers publish as re-resolution does. Names the config
 * kept carry their addresses over (backend_set_new), so they serve
 * meanwhile; new ones have none until they answer. */
void resolver_start(struct resolver *);

/* resolver_free() from a callback of the base's own loop (a reload):
 * nothing is asked or published any more, and what is left is freed
 * from the loop once libevent has called back the cancelled queries.
 * Until then it is on the list *graveyard (NULL-terminated, the
 * caller's), for resolver_free_retired() at exit. NULL is fine. */
void resolver_retire(struct resolver *, struct resolver **graveyard);
/* Free every resolver still on the list (outside the loop: at exit). */
void resolver_free_retired(struct resolver **graveyard);

/* The current generation (borrowed). For tests: reload.c is handed each
 * one through the publish callback. */
struct backend_set *resolver_set(const struct resolver *);

/* Cancel the queries in flight (running the loop until libevent has
 * called them back) and free everything. NULL is fine. */
void resolver_free(struct resolver *);

/* For tests: the usable addresses of an answer, each with the port, sorted
 * (addr_compare) and without duplicates; at most max. How many. */
size_t resolver_addrs(const struct evutil_addrinfo *, unsigned port,
    struct addr *out, size_t max);
/* For tests: whether two sorted lists hold the same addresses. */
bool resolver_same(const struct addr *a, size_t na, const struct addr *b,
    size_t nb);

#endif
