/* include/spliced/health.h: active health checks.
 *
 * For every server address of a backend with health_check = tcp (a server
 * given by host name has one per address it resolves to): a non-blocking TCP
 * connect every health_interval, given up after health_timeout. `rise`
 * checks passed in a row bring a server that is down back up; `fall`
 * failed in a row take a server that is up down. The state is the
 * server's atomic in the struct backend_set, so every worker sees a change
 * at once; a down server gets no new connections, and connections already
 * on it are left alone. Each change is logged once, with its reason:
 *     server app/a 127.0.0.1:9001 is down: 3 checks failed: Connection refused
 *
 * Checks run on one event_base (the main thread's), never on a worker's,
 * so a slow or silent server never slows the data path. A check never
 * overlaps the one before on the same server. A server taken down by
 * failed connects of traffic (backend.h) needs `rise` passed checks from
 * then on. Checks start a random fraction of an interval after
 * health_new(), so servers are not all probed at the same moment.
 *
 * Every failed check adds one to the address's check_failures. A server
 * an operator put in maint is not checked (its state stays what it was);
 * its checks resume within an interval of it being ready or drained
 * again, with fresh streaks. A drained server is checked as usual.
 *
 * Not thread-safe: everything runs on the given base's thread. */
#ifndef SPLICED_HEALTH_H
#define SPLICED_HEALTH_H

#include <stdbool.h>

struct backend_set;
struct event_base;
struct health;

/* Start checking every server of bs whose backend has checks on (none may
 * have: then nothing runs). Holds a reference to bs. NULL with errno. */
struct health *health_new(struct event_base *, struct backend_set *bs);
/* Check the addresses of bs (a newer generation of the same config's set)
 * from now on: an address already checked keeps its check (streaks,
 * rhythm, a check in flight), a new one gets a check within an interval,
 * and the checks of addresses gone are stopped. Holds a reference to bs
 * instead of the old set. 0, or -1 with errno (ENOMEM): then nothing
 * changed. */
int health_update(struct health *, struct backend_set *bs);
/* Stop every check (sockets of checks in flight are closed). NULL is fine. */
void health_free(struct health *);

/* For tests: how many checks have finished (passed or failed; not those
 * of a server in maint, which are skipped). */
unsigned long health_checks_done(const struct health *);

#endif
