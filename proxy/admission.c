/* proxy/admission.c: allow/deny and the per-source limits, in that order:
 * an address the rules refuse never takes a slot or a token of a source
 * it would count for. */
#include "spliced/admission.h"

#include <inttypes.h>
#include <stdio.h>

#include "spliced/addr.h"
#include "spliced/cidr.h"
#include "spliced/log.h"

int
admission_check(const struct config *cfg, const struct config_listener *lc,
    struct srctable *t, uint32_t scope, const struct sockaddr *sa,
    uint64_t now_ms, struct srctable_ticket *ticket, enum stats_deny *why,
    char *detail, size_t dlen)
{
	const struct cidr_rule *r = NULL;
	char net[CIDR_TEXT_MAX];
	struct srckey k;

	ticket->gen = 0;
	if (lc->nrules > 0 && !cidr_rules_allow(lc->rules, lc->nrules, sa, &r)) {
		*why = STATS_DENY_ACL;
		if (r == NULL)
			snprintf(detail, dlen, "no allow line matches");
		else
			snprintf(detail, dlen, "deny (%s:%d) %s", cfg->path,
			    r->line, cidr_format(&r->net, net, sizeof(net)));
		return -1;
	}
	if (t == NULL || (lc->max_connections_per_source == 0 &&
	    lc->connection_rate_per_source == 0) ||
	    !srckey_make(&k, scope, sa, lc->source_prefix_v6))
		return 0;
	switch (srctable_admit(t, &k, lc->max_connections_per_source,
	    lc->connection_rate_per_source, now_ms, ticket)) {
	case SRCTABLE_OK:
		return 0;
	case SRCTABLE_PER_SOURCE:
		*why = STATS_DENY_PER_SOURCE;
		snprintf(detail, dlen, "max_connections_per_source %u open",
		    lc->max_connections_per_source);
		return -1;
	case SRCTABLE_RATE:
	default:
		*why = STATS_DENY_RATE;
		snprintf(detail, dlen, "connection_rate_per_source %u a second",
		    lc->connection_rate_per_source);
		return -1;
	}
}

void
admission_log_refused(struct admission_log *lg, uint64_t now_ms,
    const char *listener, const struct sockaddr *sa, enum stats_deny why,
    const char *detail)
{
	char a[ADDR_TEXT_MAX], more[64] = "";

	if (lg->last_ms[why] != 0 && now_ms - lg->last_ms[why] < 1000) {
		lg->quiet[why]++;
		return;
	}
	if (lg->quiet[why] > 0)
		snprintf(more, sizeof(more), " (and %" PRIu64 " more since the "
		    "last line)", lg->quiet[why]);
	lg->last_ms[why] = now_ms;
	lg->quiet[why] = 0;
	log_warn("listener %s: refused client %s: %s: %s%s", listener,
	    addr_format(sa, a, sizeof(a)), stats_deny_name(why), detail, more);
}
