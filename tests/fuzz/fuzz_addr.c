/* tests/fuzz/fuzz_addr.c: addresses, CIDR blocks and the value parsers of
 * the config, one line of input at a time.
 *
 * Input: text, up to a first NUL; after the NUL, an optional probe
 * address (1 byte: its family, then 16 of address and 2 of port). Each
 * line of the text goes to addr_parse_server(), addr_parse() (numeric
 * only: fuzz_guard.h), cidr_parse() (a leading '-' makes the block a deny
 * rule), config_parse_size/duration_ms/keepalive/bool/splice. What must
 * hold:
 *   - an address parsed is printed (addr_written) and parsed back to the
 *     same address; a host name is left alone (AF_UNSPEC, only the port);
 *     addr_compare() is 0 exactly when addr_equal(), and antisymmetric;
 *   - a block parsed has its prefix in range and no host bit set, prints
 *     (cidr_format) and parses back to itself, and contains its own
 *     network address; cidr_match() of the probe agrees with a plain
 *     prefix comparison; cidr_rules_allow() and cidr_match_any() agree
 *     with cidr_match() rule by rule, first match winning;
 *   - a size or a duration parsed prints as a number that parses back the
 *     same; keepalive values stay in their ranges;
 *   - every refusal says why. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "spliced/addr.h"
#include "spliced/cidr.h"
#include "spliced/config.h"

#include "fuzz.h"
#include "fuzz_guard.h"

#define LINES_MAX 16

/* The probe, and cidr's view of the block, compared by hand. */
static bool
prefix_match(const struct cidr *c, const uint8_t *addr)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->addr[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static void
check_cidr(const struct cidr *c, const struct sockaddr_storage *probe)
{
	struct sockaddr_storage net;
	char text[CIDR_TEXT_MAX];
	struct cidr back;
	char why[128];
	unsigned maxbits = c->family == AF_INET ? 32 : 128;
	const uint8_t *pa = NULL;

	FUZZ_CHECK(c->family == AF_INET || c->family == AF_INET6 ||
	    c->family == AF_UNSPEC);
	cidr_format(c, text, sizeof(text));
	FUZZ_CHECK(memchr(text, '\0', sizeof(text)) != NULL);
	FUZZ_CHECK(cidr_parse(&back, text, why, sizeof(why)) == 0);
	FUZZ_CHECK(back.family == c->family);
	if (c->family == AF_UNSPEC) {
		FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)probe));
		return;
	}
	FUZZ_CHECK(c->bits <= maxbits);
	FUZZ_CHECK(back.bits == c->bits);
	FUZZ_CHECK(memcmp(back.addr, c->addr, maxbits / 8) == 0);
	for (unsigned b = c->bits; b < maxbits; b++)
		FUZZ_CHECK(!(c->addr[b / 8] & (0x80 >> (b % 8))));

	/* Its own network address is in it. */
	memset(&net, 0, sizeof(net));
	net.ss_family = (sa_family_t)c->family;
	if (c->family == AF_INET)
		memcpy(&((struct sockaddr_in *)&net)->sin_addr, c->addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&net)->sin6_addr, c->addr, 16);
	FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)&net));

	if (probe->ss_family == AF_INET)
		pa = (const uint8_t *)&((const struct sockaddr_in *)probe)->sin_addr;
	else if (probe->ss_family == AF_INET6)
		pa = ((const struct sockaddr_in6 *)probe)->sin6_addr.s6_addr;
	if (probe->ss_family == c->family)
		FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)probe) ==
		    prefix_match(c, pa));
	else if (probe->ss_family == AF_UNIX)
		FUZZ_CHECK(!cidr_match(c, (const struct sockaddr *)probe));
	else if (probe->ss_family == AF_INET6 &&
	    !IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)pa))
		FUZZ_CHECK(!cidr_match(c, (const struct sockaddr *)probe));
}

static void
check_rules(const struct cidr_rule *rules, size_t n,
    const struct sockaddr_storage *probe)
{
	const struct sockaddr *sa = (const struct sockaddr *)probe;
	const struct cidr_rule *matched = (const void *)1;
	struct cidr nets[LINES_MAX];
	bool any_allow = false, allowed;
	size_t first = n;

	for (size_t i = 0; i < n; i++) {
		nets[i] = rules[i].net;
		any_allow |= rules[i].allow;
		if (first == n && cidr_match(&rules[i].net, sa))
			first = i;
	}
	allowed = cidr_rules_allow(rules, n, sa, &matched);
	if (first < n) {
		FUZZ_CHECK(matched == &rules[first]);
		FUZZ_CHECK(allowed == rules[first].allow);
	} else {
		FUZZ_CHECK(matched == NULL);
		FUZZ_CHECK(allowed == !any_allow);
	}
	FUZZ_CHECK(cidr_match_any(nets, n, sa) == (first < n));
}

/* Same address, port and family; the scope is left out: getnameinfo()
 * prints it only for link-local addresses. */
static bool
same_place(const struct addr *a, const struct addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family || a->len != b->len ||
	    addr_port(a) != addr_port(b))
		return false;
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
	    &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
}

static void
check_addr(const char *line, struct addr *prev, bool *have_prev)
{
	struct addr a, back;
	char text[ADDR_TEXT_MAX], err[256];
	char *name = NULL, *name2 = NULL;
	int c1, c2;

	if (addr_parse_server(&a, line, &name, err, sizeof(err)) < 0) {
		FUZZ_CHECK(name == NULL);
		FUZZ_CHECK(err[0] != '\0');
	} else if (name != NULL) {
		FUZZ_CHECK(name[0] != '\0');
		FUZZ_CHECK(a.ss.ss_family == AF_UNSPEC && a.len == 0);
		FUZZ_CHECK(addr_port(&a) >= 1);
		free(name);
	} else {
		FUZZ_CHECK(a.ss.ss_family == AF_INET ||
		    a.ss.ss_family == AF_INET6);
		FUZZ_CHECK(addr_port(&a) >= 1);
		addr_written(&a, text, sizeof(text));
		FUZZ_CHECK(addr_parse_server(&back, text, &name2, err,
		    sizeof(err)) == 0);
		FUZZ_CHECK(name2 == NULL);
		FUZZ_CHECK(back.wildcard == a.wildcard);
		FUZZ_CHECK(same_place(&a, &back));
	}

	/* addr_parse: a name fails here (numeric only), the rest as above. */
	if (addr_parse(&a, line, true, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	if (*have_prev) {
		c1 = addr_compare(&a, prev);
		c2 = addr_compare(prev, &a);
		FUZZ_CHECK((c1 == 0) == addr_equal(&a, prev));
		FUZZ_CHECK((c1 > 0) == (c2 < 0) && (c1 < 0) == (c2 > 0));
	}
	FUZZ_CHECK(addr_compare(&a, &a) == 0 && addr_equal(&a, &a));
	*prev = a;
	*have_prev = true;
}

static void
check_values(const char *line)
{
	struct config_keepalive ka;
	enum config_splice sp;
	char text[64], why[256];
	size_t size, size2;
	unsigned ms, ms2;
	bool b;

	if (config_parse_size(line, &size) == 0) {
		snprintf(text, sizeof(text), "%zu", size);
		FUZZ_CHECK(config_parse_size(text, &size2) == 0 && size2 == size);
	}
	if (config_parse_duration_ms(line, &ms) == 0) {
		snprintf(text, sizeof(text), "%ums", ms);
		FUZZ_CHECK(config_parse_duration_ms(text, &ms2) == 0 &&
		    ms2 == ms);
	}
	why[0] = '\0';
	if (config_parse_keepalive(line, &ka, why, sizeof(why)) == 0) {
		FUZZ_CHECK(ka.idle_s <= 32767 && ka.interval_s <= 32767 &&
		    ka.count <= 127);
		FUZZ_CHECK(ka.on || (ka.idle_s == 0 && ka.interval_s == 0 &&
		    ka.count == 0));
	} else {
		FUZZ_CHECK(why[0] != '\0');
	}
	(void)config_parse_bool(line, &b);
	(void)config_parse_splice(line, &sp);
}

static void
make_probe(struct sockaddr_storage *ss, const uint8_t *p, size_t n)
{
	uint8_t b[19];

	memset(b, 0, sizeof(b));
	if (n > 0)
		memcpy(b, p, n < sizeof(b) ? n : sizeof(b));
	memset(ss, 0, sizeof(*ss));
	switch (b[0] % 3) {
	case 0:
		ss->ss_family = AF_INET;
		memcpy(&((struct sockaddr_in *)ss)->sin_addr, b + 1, 4);
		memcpy(&((struct sockaddr_in *)ss)->sin_port, b + 17, 2);
		break;
	case 1:
		ss->ss_family = AF_INET6;
		memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, b + 1, 16);
		memcpy(&((struct sockaddr_in6 *)ss)->sin6_port, b + 17, 2);
		break;
	default:
		ss->ss_family = AF_UNIX;
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cidr_rule rules[LINES_MAX];
	struct sockaddr_storage probe;
	struct addr prev;
	bool have_prev = false;
	size_t textlen, nrules = 0, nlines = 0;
	char *text, *line, *save = NULL, why[128];
	const uint8_t *nul;

	nul = memchr(data, '\0', size);
	textlen = nul != NULL ? (size_t)(nul - data) : size;
	if (nul != NULL)
		make_probe(&probe, nul + 1, size - textlen - 1);
	else
		make_probe(&probe, NULL, 0);
	if ((text = malloc(textlen + 1)) == NULL)
		return 0;
	memcpy(text, data, textlen);
	text[textlen] = '\0';

	fuzz_guard_begin();
	for (line = strtok_r(text, "\n", &save);
	    line != NULL && nlines < LINES_MAX;
	    line = strtok_r(NULL, "\n", &save), nlines++) {
		bool deny = line[0] == '-';
		struct cidr c;

		check_addr(line, &prev, &have_prev);
		check_values(line);
		why[0] = '\0';
		if (cidr_parse(&c, line + deny, why, sizeof(why)) < 0) {
			FUZZ_CHECK(why[0] != '\0');
			continue;
		}
		check_cidr(&c, &probe);
		rules[nrules++] = (struct cidr_rule){ .allow = !deny, .net = c,
		    .line = (int)nlines + 1 };
	}
	check_rules(rules, nrules, &probe);
	fuzz_guard_end();
	free(text);
	return 0;
}
