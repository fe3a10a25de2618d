/* include/spliced/cidr.h: address blocks (CIDR) as operators write them,
 * and the allow/deny lists made of them.
 *
 * Forms: "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32", "::1" (a
 * /128), and "all" (every address of every family). A block whose host
 * bits are not zero ("10.1.2.3/8") is an error, not silently widened: it
 * is nearly always a typo. IPv4-mapped IPv6 clients are matched as the
 * IPv4 address they map (conn.c unmaps them before asking): here an IPv4
 * block never matches an IPv6 address or the reverse, and a block inside
 * ::ffff:0:0/96 is refused, since it could never match. Addresses are
 * inet_pton's (no "10.1", no octet with a leading zero), the prefix
 * length plain decimal (no leading zero: "/08" is a typo of /8 or /28).
 * No name is ever resolved. Pure functions: no allocation, no global
 * state. */
#ifndef SPLICED_CIDR_H
#define SPLICED_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" and a NUL. */
#define CIDR_TEXT_MAX 56

struct cidr {
	int family;                 /* AF_INET, AF_INET6, or AF_UNSPEC: "all" */
	uint8_t addr[16];           /* network order; IPv4 in the first 4 */
	unsigned bits;              /* prefix length: 0..32 or 0..128 */
};

/* One allow or deny line of a listener, in file order. */
struct cidr_rule {
	bool allow;
	struct cidr net;
	int line;                   /* in the config file; 0: config_set() */
};

/* 0, or -1 (*out untouched) with a one-line reason in why
 * ("'10.0.0.0/33': prefix length out of range (0..32)", "'10.1.2.3/8':
 * host bits set (the block is 10.0.0.0/8)"). */
int cidr_parse(struct cidr *, const char *text, char *why, size_t whylen);

/* Whether sa (AF_INET or AF_INET6; any other family matches only "all")
 * is in the block. */
bool cidr_match(const struct cidr *, const struct sockaddr *sa);

/* Whether sa is in any block of the n. */
bool cidr_match_any(const struct cidr *, size_t n, const struct sockaddr *sa);

/* allow/deny in file order, first match wins; when no line matches, sa
 * is denied if the list has any allow line, allowed otherwise (only
 * deny lines: the rest is allowed; only allow lines: the rest is
 * denied). An empty list allows everything. *matched (if not NULL): the
 * rule that decided, or NULL when none matched. */
bool cidr_rules_allow(const struct cidr_rule *, size_t n,
    const struct sockaddr *sa, const struct cidr_rule **matched);

/* As written: "10.0.0.0/8", "::1/128", "all". Returns buf. */
const char *cidr_format(const struct cidr *, char *buf, size_t len);

#endif
