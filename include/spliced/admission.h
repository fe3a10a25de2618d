/* include/spliced/admission.h: whether a client may go on to a server.
 *
 * Decided before a server is picked, on the client's address as spliced
 * knows it (the PROXY header's source with accept_proxy): the listener's
 * allow/deny lines first (cidr.h), then its per-source limits
 * (srctable.h). A refusal names what refused it, for the log.
 *
 * Refusals are logged at most once a second per reason and worker: a
 * flood of refused clients costs a counter each, not a log line each;
 * the next line says how many went unlogged. */
#ifndef SPLICED_ADMISSION_H
#define SPLICED_ADMISSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "spliced/config.h"
#include "spliced/srctable.h"
#include "spliced/stats.h"

/* Admit client sa of listener lc (scope: the listener's in table t,
 * which may be NULL when no listener has a per-source limit). 0: admitted,
 * and *ticket must go back to t (srctable_release) when the connection
 * ends; -1: refused for *why, with what refused it in detail ("deny
 * (spliced.ini:14) 127.0.0.3/32", "max_connections_per_source 5").
 * now_ms: clock_coarse_ms(). cfg: for the file name in detail. */
int admission_check(const struct config *cfg, const struct config_listener *lc,
    struct srctable *t, uint32_t scope, const struct sockaddr *sa,
    uint64_t now_ms, struct srctable_ticket *ticket, enum stats_deny *why,
    char *detail, size_t dlen);

/* One worker's rate limit on the refusal lines. Zero it to start. */
struct admission_log {
	uint64_t last_ms[STATS_DENY_MAX_];
	uint64_t quiet[STATS_DENY_MAX_];    /* refused since, not logged */
};

/* Log "listener L: refused client A: REASON: DETAIL" unless a line of
 * that reason was written in the last second (then it is only counted). */
void admission_log_refused(struct admission_log *, uint64_t now_ms,
    const char *listener, const struct sockaddr *sa, enum stats_deny why,
    const char *detail);

#endif
