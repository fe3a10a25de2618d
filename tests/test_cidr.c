/* tests/test_cidr.c: address blocks, parsed, printed and matched, and the
 * allow/deny lists made of them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "spliced/cidr.h"

static char why[256];

static struct cidr
parse_ok(const char *text)
{
	struct cidr c;

	why[0] = '\0';
	if (cidr_parse(&c, text, why, sizeof(why)) != 0)
		fail_msg("'%s' refused: %s", text, why);
	return c;
}

/* Refused, and the message is exactly want. */
static void
parse_bad(const char *text, const char *want)
{
	struct cidr c;

	why[0] = '\0';
	if (cidr_parse(&c, text, why, sizeof(why)) != -1)
		fail_msg("'%s' accepted", text);
	if (strcmp(why, want) != 0)
		fail_msg("'%s': message '%s', expected '%s'", text, why, want);
}

/* Parsed, then printed as want. */
static void
roundtrip(const char *text, const char *want)
{
	struct cidr c = parse_ok(text);
	char buf[CIDR_TEXT_MAX];

	assert_string_equal(cidr_format(&c, buf, sizeof(buf)), want);
}

/* A sockaddr of the text address, port 1234 (ports never matter). */
static const struct sockaddr *
sa_of(const char *text)
{
	static struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(1234);
	} else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(1234);
	} else {
		fail_msg("bad test address '%s'", text);
	}
	return (const struct sockaddr *)&ss;
}

static bool
match(const char *block, const char *addr)
{
	struct cidr c = parse_ok(block);

	return cidr_match(&c, sa_of(addr));
}

static void
test_parse_good(void **state)
{
	struct cidr c;

	(void)state;
	c = parse_ok("10.0.0.0/8");
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_int_equal(c.addr[0], 10);
	c = parse_ok("192.0.2.7");
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 32);
	c = parse_ok("::1");
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 128);
	assert_int_equal(c.addr[15], 1);
	c = parse_ok("all");
	assert_int_equal(c.family, AF_UNSPEC);
	c = parse_ok("ALL");
	assert_int_equal(c.family, AF_UNSPEC);
	roundtrip("10.0.0.0/8", "10.0.0.0/8");
	roundtrip("192.0.2.7", "192.0.2.7/32");
	roundtrip("0.0.0.0/0", "0.0.0.0/0");
	roundtrip("2001:db8::/32", "2001:db8::/32");
	roundtrip("2001:0DB8:0000::/32", "2001:db8::/32");
	roundtrip("::/0", "::/0");
	roundtrip("::1", "::1/128");
	roundtrip("10.8.0.0/13", "10.8.0.0/13");
	roundtrip("2001:db8::e000:0:0:0/67", "2001:db8:0:0:e000::/67");
	roundtrip("All", "all");
	/* Contains the IPv4-mapped range without being inside it. */
	roundtrip("::/64", "::/64");
	roundtrip("::fffe:0:0/95", "::fffe:0:0/95");
}

static void
test_parse_bad(void **state)
{
	char buf[CIDR_TEXT_MAX], big[200];
	struct cidr c;

	(void)state;
	parse_bad("", "empty (expected ADDRESS[/PREFIX] or all)");
	parse_bad("/", "'/': expected ADDRESS[/PREFIX] or all");
	parse_bad("/8", "'/8': expected ADDRESS[/PREFIX] or all");
	parse_bad("/abc", "'/abc': expected ADDRESS[/PREFIX] or all");
	parse_bad("10.0.0.0/", "'10.0.0.0/': missing prefix length after '/'");
	parse_bad("10.0.0.0/abc", "'10.0.0.0/abc': prefix length is not a "
	    "number");
	parse_bad("10.0.0.0/8x", "'10.0.0.0/8x': prefix length is not a "
	    "number");
	parse_bad("10.0.0.0/-8", "'10.0.0.0/-8': prefix length is not a "
	    "number");
	parse_bad("10.0.0.0/+8", "'10.0.0.0/+8': prefix length is not a "
	    "number");
	parse_bad("10.0.0.0/8/9", "'10.0.0.0/8/9': prefix length is not a "
	    "number");
	parse_bad("10.0.0.0/33", "'10.0.0.0/33': prefix length out of range "
	    "(0..32)");
	parse_bad("10.0.0.0/99999999999999999999", "'10.0.0.0/"
	    "99999999999999999999': prefix length out of range (0..32)");
	parse_bad("::/129", "'::/129': prefix length out of range (0..128)");
	/* "/08": a typo of /8 or of /28? */
	parse_bad("10.0.0.0/08", "'10.0.0.0/08': prefix length with a "
	    "leading zero");
	parse_bad("0.0.0.0/00", "'0.0.0.0/00': prefix length with a leading "
	    "zero");
	parse_bad("10.1.2.3/8", "'10.1.2.3/8': host bits set (the block is "
	    "10.0.0.0/8)");
	parse_bad("10.15.0.0/13", "'10.15.0.0/13': host bits set (the block "
	    "is 10.8.0.0/13)");
	parse_bad("2001:db8::1/32", "'2001:db8::1/32': host bits set (the "
	    "block is 2001:db8::/32)");
	parse_bad("2001:db8:0:0:f000::/67", "'2001:db8:0:0:f000::/67': host "
	    "bits set (the block is 2001:db8:0:0:e000::/67)");
	parse_bad("1.2.3.4/0", "'1.2.3.4/0': host bits set (the block is "
	    "0.0.0.0/0)");
	parse_bad("localhost", "'localhost': not an IP address (names are not "
	    "resolved)");
	parse_bad("example.com/24", "'example.com/24': not an IP address "
	    "(names are not resolved)");
	parse_bad("1.2.3", "'1.2.3': not an IPv4 address (four numbers 0..255 "
	    "without leading zeros)");
	parse_bad("10.1/16", "'10.1/16': not an IPv4 address (four numbers "
	    "0..255 without leading zeros)");
	parse_bad("010.0.0.0/8", "'010.0.0.0/8': not an IPv4 address (four "
	    "numbers 0..255 without leading zeros)");
	parse_bad("256.0.0.0/8", "'256.0.0.0/8': not an IPv4 address (four "
	    "numbers 0..255 without leading zeros)");
	parse_bad("0x0a000000/8", "'0x0a000000/8': not an IP address (names "
	    "are not resolved)");
	parse_bad("1:2:3:4:5:6:7:8:9", "'1:2:3:4:5:6:7:8:9': not an IPv6 "
	    "address");
	parse_bad("fe80::1%eth0", "'fe80::1%eth0': not an IPv6 address");
	parse_bad("[::1]", "'[::1]': not an IPv6 address");
	parse_bad(" 10.0.0.0/8", "' 10.0.0.0/8': one address block per line, "
	    "without spaces");
	parse_bad("10.0.0.0 /8", "'10.0.0.0 /8': one address block per line, "
	    "without spaces");
	parse_bad("10.0.0.0/8 192.0.2.0/24", "'10.0.0.0/8 192.0.2.0/24': one "
	    "address block per line, without spaces");
	parse_bad("10.0.0.0/8,192.0.2.0/24", "'10.0.0.0/8,192.0.2.0/24': one "
	    "address block per line, without spaces");
	parse_bad("all/0", "'all/0': all takes no prefix length");
	parse_bad("any", "'any': not an IP address (names are not resolved)");
	parse_bad("::ffff:10.0.0.0/104", "'::ffff:10.0.0.0/104': an "
	    "IPv4-mapped block never matches (IPv4 clients are matched as "
	    "IPv4): write 10.0.0.0/8");
	parse_bad("::ffff:0:0/96", "'::ffff:0:0/96': an IPv4-mapped block "
	    "never matches (IPv4 clients are matched as IPv4): write "
	    "0.0.0.0/0");
	/* A long input is quoted cut, and the message still fits. */
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(cidr_parse(&c, big, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "...': not an IPv4 address"));
	/* A refused block leaves *out alone. */
	c = parse_ok("192.0.2.0/24");
	assert_int_equal(cidr_parse(&c, "10.1.2.3/8", why, sizeof(why)), -1);
	assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "192.0.2.0/24");
}

/* The first and last address of a block match; the ones just outside do
 * not. */
static void
test_match_boundaries(void **state)
{
	(void)state;
	assert_true(match("0.0.0.0/0", "0.0.0.0"));
	assert_true(match("0.0.0.0/0", "255.255.255.255"));
	assert_false(match("0.0.0.0/0", "::1"));
	assert_true(match("192.0.2.7", "192.0.2.7"));
	assert_false(match("192.0.2.7", "192.0.2.6"));
	assert_false(match("192.0.2.7", "192.0.2.8"));
	assert_true(match("192.0.2.0/24", "192.0.2.0"));
	assert_true(match("192.0.2.0/24", "192.0.2.255"));
	assert_false(match("192.0.2.0/24", "192.0.1.255"));
	assert_false(match("192.0.2.0/24", "192.0.3.0"));
	/* /13: the block splits a byte (10.8.0.0 .. 10.15.255.255). */
	assert_true(match("10.8.0.0/13", "10.8.0.0"));
	assert_true(match("10.8.0.0/13", "10.15.255.255"));
	assert_false(match("10.8.0.0/13", "10.7.255.255"));
	assert_false(match("10.8.0.0/13", "10.16.0.0"));
	assert_true(match("128.0.0.0/1", "255.0.0.1"));
	assert_false(match("128.0.0.0/1", "127.255.255.255"));
	assert_true(match("255.255.255.254/31", "255.255.255.255"));
	assert_false(match("255.255.255.254/31", "255.255.255.253"));

	assert_true(match("::/0", "::"));
	assert_true(match("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(match("::/0", "10.0.0.1"));
	assert_true(match("::1", "::1"));
	assert_false(match("::1", "::2"));
	assert_false(match("::1", "::"));
	assert_true(match("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:"
	    "ffff"));
	assert_false(match("2001:db8::/32", "2001:db9::"));
	assert_false(match("2001:db8::/32", "2001:db7:ffff::"));
	/* /67: three bits into the ninth byte (e000 = 111...: 2001:db8:0:0:
	 * e000:: .. 2001:db8:0:0:ffff:ffff:ffff:ffff). */
	assert_true(match("2001:db8:0:0:e000::/67", "2001:db8::e000:0:0:0"));
	assert_true(match("2001:db8:0:0:e000::/67",
	    "2001:db8::ffff:ffff:ffff:ffff"));
	assert_false(match("2001:db8:0:0:e000::/67",
	    "2001:db8::dfff:ffff:ffff:ffff"));
	assert_false(match("2001:db8:0:0:e000::/67", "2001:db8:0:1::"));
	assert_true(match("::fffe:0:0/127", "::fffe:0:1"));
	assert_false(match("::fffe:0:0/127", "::fffe:0:2"));
}

/* Families never cross: clients are unmapped before they are matched
 * (conn.c), so an IPv4-mapped address given as IPv6 is IPv6 here. */
static void
test_match_families(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct cidr c;

	(void)state;
	assert_false(match("10.0.0.0/8", "::ffff:10.0.0.1"));
	assert_false(match("0.0.0.0/0", "::ffff:10.0.0.1"));
	assert_false(match("::/0", "10.0.0.1"));
	assert_true(match("::/0", "::ffff:10.0.0.1"));
	assert_true(match("all", "10.0.0.1"));
	assert_true(match("all", "::1"));
	/* Another family matches only "all". */
	c = parse_ok("all");
	assert_true(cidr_match(&c, (const struct sockaddr *)&sun));
	c = parse_ok("0.0.0.0/0");
	assert_false(cidr_match(&c, (const struct sockaddr *)&sun));
	c = parse_ok("::/0");
	assert_false(cidr_match(&c, (const struct sockaddr *)&sun));
}

static void
test_match_any(void **state)
{
	struct cidr set[2];

	(void)state;
	set[0] = parse_ok("10.0.0.0/8");
	set[1] = parse_ok("2001:db8::/32");
	assert_true(cidr_match_any(set, 2, sa_of("10.1.2.3")));
	assert_true(cidr_match_any(set, 2, sa_of("2001:db8::1")));
	assert_false(cidr_match_any(set, 2, sa_of("192.0.2.1")));
	assert_false(cidr_match_any(set, 1, sa_of("2001:db8::1")));
	assert_false(cidr_match_any(set, 0, sa_of("10.1.2.3")));
}

/* Rules from text: "+BLOCK" allows, "-BLOCK" denies; line = index + 1. */
static size_t
rules_of(struct cidr_rule *r, const char *const *text, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		r[i].allow = text[i][0] == '+';
		r[i].net = parse_ok(text[i] + 1);
		r[i].line = (int)i + 1;
	}
	return n;
}

/* Whether addr is allowed, and the line of the rule that decided (0:
 * none). */
static bool
allowed(const struct cidr_rule *r, size_t n, const char *addr, int line)
{
	const struct cidr_rule *m = r;
	bool ok = cidr_rules_allow(r, n, sa_of(addr), &m);

	if ((m == NULL ? 0 : m->line) != line)
		fail_msg("%s: decided by line %d, expected %d", addr,
		    m == NULL ? 0 : m->line, line);
	return ok;
}

static void
test_rules(void **state)
{
	static const char *const mixed[] = { "-192.0.2.7", "+192.0.2.0/24",
		"+2001:db8::/32", "-all" };
	static const char *const only_deny[] = { "-192.0.2.0/24", "-::1" };
	static const char *const only_allow[] = { "+192.0.2.0/24" };
	static const char *const shadowed[] = { "+all", "-192.0.2.0/24" };
	static const char *const order[] = { "+192.0.2.0/25",
		"-192.0.2.0/24", "+192.0.2.0/24" };
	struct cidr_rule r[8] = { { .allow = false } };
	size_t n;

	(void)state;
	/* Empty: everything is allowed. */
	assert_true(allowed(r, 0, "10.0.0.1", 0));
	assert_true(cidr_rules_allow(r, 0, sa_of("::1"), NULL));

	n = rules_of(r, mixed, 4);
	assert_false(allowed(r, n, "192.0.2.7", 1));
	assert_true(allowed(r, n, "192.0.2.8", 2));
	assert_true(allowed(r, n, "2001:db8::5", 3));
	assert_false(allowed(r, n, "10.0.0.1", 4));
	assert_false(allowed(r, n, "::1", 4));
	assert_false(cidr_rules_allow(r, n, sa_of("192.0.2.7"), NULL));

	/* Only deny lines: the rest is allowed. */
	n = rules_of(r, only_deny, 2);
	assert_false(allowed(r, n, "192.0.2.1", 1));
	assert_false(allowed(r, n, "::1", 2));
	assert_true(allowed(r, n, "192.0.3.1", 0));
	assert_true(allowed(r, n, "::2", 0));

	/* Only allow lines: the rest is denied. */
	n = rules_of(r, only_allow, 1);
	assert_true(allowed(r, n, "192.0.2.1", 1));
	assert_false(allowed(r, n, "192.0.3.1", 0));
	assert_false(allowed(r, n, "::1", 0));

	/* First match wins: a line after "all" decides nothing. */
	n = rules_of(r, shadowed, 2);
	assert_true(allowed(r, n, "192.0.2.1", 1));
	n = rules_of(r, order, 3);
	assert_true(allowed(r, n, "192.0.2.127", 1));
	assert_false(allowed(r, n, "192.0.2.128", 2));
	/* Allow lines exist, none matched: denied. */
	assert_false(allowed(r, n, "192.0.3.1", 0));
}

static void
test_format(void **state)
{
	struct cidr c = parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	char buf[CIDR_TEXT_MAX], small[8];

	(void)state;
	assert_string_equal(cidr_format(&c, buf, sizeof(buf)),
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	c = parse_ok("::FFFE:0:0/95");
	assert_string_equal(cidr_format(&c, buf, sizeof(buf)),
	    "::fffe:0:0/95");
	/* Cut to the buffer, always terminated. */
	c = parse_ok("192.0.2.0/24");
	assert_ptr_equal(cidr_format(&c, small, sizeof(small)), small);
	assert_string_equal(small, "192.0.2");
	assert_ptr_equal(cidr_format(&c, small, 0), small);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_match_boundaries),
		cmocka_unit_test(test_match_families),
		cmocka_unit_test(test_match_any),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
