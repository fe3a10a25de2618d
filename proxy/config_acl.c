/* proxy/config_acl.c: the values of a listener's keys of client identity
 * and admission (DESIGN section 7): proxy_protocol, accept_proxy_from and
 * allow / deny.
 *
 * The numbers among those keys (timeout_handshake, the per-source limits,
 * source_prefix_v6) are plain numbers and durations, in config_keys.c's
 * table. Here are the lists: accept_proxy_from adds a block each time it
 * is given, and allow and deny add to one list, rules, in the order of the
 * file, each rule with its line, so that the first match wins as written
 * and a refusal can name the line that refused (cidr.h). Checks across
 * keys (accept_proxy_from without accept_proxy, the health checks' header)
 * are config_finish.c's. */
#include "config_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "spliced/cidr.h"

static const char *const proxy_names[] = {
	[CONFIG_PROXY_OFF] = "off",
	[CONFIG_PROXY_V1] = "v1",
	[CONFIG_PROXY_V2] = "v2",
};

#define NPROXY (sizeof(proxy_names) / sizeof(proxy_names[0]))

const char *
config_proxy_protocol_name(enum config_proxy_protocol p)
{
	return (unsigned)p < NPROXY ? proxy_names[p] : "?";
}

static int
proxy_protocol_set(enum config_proxy_protocol *p, const char *v, char *why,
    size_t n)
{
	for (size_t i = 0; i < NPROXY; i++) {
		if (strcasecmp(v, proxy_names[i]) == 0) {
			*p = (enum config_proxy_protocol)i;
			return 0;
		}
	}
	snprintf(why, n, "'%.64s' is not a PROXY protocol version (off, v1 "
	    "or v2)", v);
	return -1;
}

int
config_acl_set(const struct config_key *k, void *base, const char *v,
    int line, char *why, size_t n)
{
	struct config_listener *l = base;
	struct cidr_rule *rules;
	struct cidr net, *from;

	if (k->type == CONFIG_KEY_PROXY_PROTOCOL)
		return proxy_protocol_set(&l->proxy_protocol, v, why, n);
	if (cidr_parse(&net, v, why, n) < 0)
		return -1;
	if (k->type == CONFIG_KEY_PROXY_FROM) {
		if ((from = config_grow(l->accept_proxy_from,
		    l->naccept_proxy_from, sizeof(*from))) == NULL)
			goto nomem;
		l->accept_proxy_from = from;
		from[l->naccept_proxy_from++] = net;
		return 0;
	}
	if ((rules = config_grow(l->rules, l->nrules, sizeof(*rules))) == NULL)
		goto nomem;
	l->rules = rules;
	rules[l->nrules++] = (struct cidr_rule){
	    .allow = k->type == CONFIG_KEY_ALLOW, .net = net, .line = line };
	return 0;
nomem:
	snprintf(why, n, "out of memory");
	return -1;
}
