/* proxy/cidr.c: address blocks as operators write them, and matching
 * client addresses against them.
 *
 * The address goes through inet_pton only, so no name is ever resolved and
 * the shorthands inet_aton would take ("10.1", "0x0a000001", octets with a
 * leading zero, which some tools read as octal) are refused. The prefix
 * length is decimal digits with no leading zero, for the same reason: "/08"
 * may be a typo of "/8" or of "/28". Matching compares whole bytes, then the
 * bits left over under a mask. */
#include "spliced/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Longest text quoted back in a message: why has room for a few of them. */
#define QUOTE_MAX 64

static void
cidr_fail(char *why, size_t n, const char *text, const char *what)
{
	snprintf(why, n, "'%.*s%s': %s", QUOTE_MAX, text,
	    strlen(text) > QUOTE_MAX ? "..." : "", what);
}

/* Whether the first bits of a and b are the same. */
static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	uint8_t mask;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[full] ^ b[full]) & mask) == 0;
}

/* addr with every bit after the first bits cleared, into out. */
static void
prefix_only(const uint8_t *addr, unsigned bits, size_t len, uint8_t *out)
{
	memcpy(out, addr, len);
	for (size_t i = 0; i < len; i++) {
		if (bits >= 8 * (i + 1))
			continue;
		out[i] &= bits > 8 * i ? (uint8_t)(0xff << (8 * (i + 1) - bits)) :
		    0;
	}
}

/* The address part, len bytes of text, into c (family and addr). */
static int
parse_address(struct cidr *c, const char *text, size_t len, char *why,
    size_t n)
{
	char host[INET6_ADDRSTRLEN];

	if (len == 0) {
		cidr_fail(why, n, text, "expected ADDRESS[/PREFIX] or all");
		return -1;
	}
	if (len < sizeof(host)) {
		memcpy(host, text, len);
		host[len] = '\0';
		c->family = memchr(host, ':', len) != NULL ? AF_INET6 : AF_INET;
		if (inet_pton(c->family, host, c->addr) == 1)
			return 0;
	}
	if (memchr(text, ':', len) != NULL)
		cidr_fail(why, n, text, "not an IPv6 address");
	else if (strspn(text, "0123456789.") >= len)
		cidr_fail(why, n, text, "not an IPv4 address (four numbers "
		    "0..255 without leading zeros)");
	else
		cidr_fail(why, n, text, "not an IP address (names are not "
		    "resolved)");
	return -1;
}

/* The digits after the '/', against the family's longest prefix. */
static int
parse_prefix(struct cidr *c, const char *text, const char *p, unsigned max,
    char *why, size_t n)
{
	char what[64];
	unsigned v = 0;
	size_t len = strspn(p, "0123456789");

	if (*p == '\0') {
		cidr_fail(why, n, text, "missing prefix length after '/'");
		return -1;
	}
	if (len == 0 || p[len] != '\0') {
		cidr_fail(why, n, text, "prefix length is not a number");
		return -1;
	}
	if (len > 1 && p[0] == '0') {
		cidr_fail(why, n, text, "prefix length with a leading zero");
		return -1;
	}
	for (size_t i = 0; i < len && v <= max; i++)
		v = v * 10 + (unsigned)(p[i] - '0');
	if (v > max) {
		snprintf(what, sizeof(what), "prefix length out of range "
		    "(0..%u)", max);
		cidr_fail(why, n, text, what);
		return -1;
	}
	c->bits = v;
	return 0;
}

int
cidr_parse(struct cidr *out, const char *text, char *why, size_t n)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	struct cidr c = { .family = AF_UNSPEC };
	const char *slash;
	char what[CIDR_TEXT_MAX + 128], net[CIDR_TEXT_MAX];
	uint8_t host0[16];
	size_t alen, len;

	if (text == NULL || *text == '\0') {
		snprintf(why, n, "empty (expected ADDRESS[/PREFIX] or all)");
		return -1;
	}
	if (text[strcspn(text, " \t,;")] != '\0') {
		cidr_fail(why, n, text, "one address block per line, without "
		    "spaces");
		return -1;
	}
	if (strcasecmp(text, "all") == 0) {
		*out = c;
		return 0;
	}
	slash = strchr(text, '/');
	alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	if (alen == 3 && strncasecmp(text, "all", 3) == 0) {
		cidr_fail(why, n, text, "all takes no prefix length");
		return -1;
	}
	if (parse_address(&c, text, alen, why, n) < 0)
		return -1;
	len = c.family == AF_INET ? 4 : 16;
	c.bits = (unsigned)len * 8;
	if (slash != NULL && parse_prefix(&c, text, slash + 1, c.bits, why,
	    n) < 0)
		return -1;
	prefix_only(c.addr, c.bits, len, host0);
	if (memcmp(host0, c.addr, len) != 0) {
		memcpy(c.addr, host0, len);
		snprintf(what, sizeof(what), "host bits set (the block is %s)",
		    cidr_format(&c, net, sizeof(net)));
		cidr_fail(why, n, text, what);
		return -1;
	}
	/* Clients arrive unmapped (conn.c): a block inside ::ffff:0:0/96
	 * would never match anyone. Blocks that only contain it (::/0) are
	 * fine: they match IPv6 clients, as written. */
	if (c.family == AF_INET6 && c.bits >= 96 &&
	    memcmp(c.addr, mapped, 12) == 0) {
		struct cidr v4 = { .family = AF_INET, .bits = c.bits - 96 };

		memcpy(v4.addr, c.addr + 12, 4);
		snprintf(what, sizeof(what), "an IPv4-mapped block never "
		    "matches (IPv4 clients are matched as IPv4): write %s",
		    cidr_format(&v4, net, sizeof(net)));
		cidr_fail(why, n, text, what);
		return -1;
	}
	*out = c;
	return 0;
}

bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	if (c->family == AF_UNSPEC)
		return true;
	if (sa == NULL || sa->sa_family != c->family)
		return false;
	if (c->family == AF_INET)
		return prefix_equal(c->addr, (const uint8_t *)
		    &((const struct sockaddr_in *)sa)->sin_addr, c->bits);
	return prefix_equal(c->addr,
	    ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, c->bits);
}

bool
cidr_match_any(const struct cidr *c, size_t n, const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&c[i], sa))
			return true;
	return false;
}

bool
cidr_rules_allow(const struct cidr_rule *r, size_t n,
    const struct sockaddr *sa, const struct cidr_rule **matched)
{
	bool any_allow = false;

	if (matched != NULL)
		*matched = NULL;
	for (size_t i = 0; i < n; i++) {
		if (cidr_match(&r[i].net, sa)) {
			if (matched != NULL)
				*matched = &r[i];
			return r[i].allow;
		}
		any_allow |= r[i].allow;
	}
	return !any_allow;
}

const char *
cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	if (c->family != AF_INET && c->family != AF_INET6) {
		snprintf(buf, len, "all");
		return buf;
	}
	if (inet_ntop(c->family, c->addr, host, sizeof(host)) == NULL)
		snprintf(host, sizeof(host), "?");
	snprintf(buf, len, "%s/%u", host, c->bits);
	return buf;
}
