/* tests/test_proxyproto.c: the PROXY protocol parser and encoders against
 * the receiver rules of HAProxy's doc/proxy-protocol.txt and the CVE
 * classes of issue 13: the harness, CRC32C and v1 here, v2 in
 * test_proxyproto_v2.c (one program).
 *
 * Every vector goes through expect_n(), which feeds it whole, split at
 * every point (or every 997th, for the 64 KiB ones), one byte at a time
 * and the way conn.c will (peeking at most proxyproto_want() bytes), and
 * asserts the same status, bytes used, result and reason each time, and
 * that an ended parser stays ended; a complete header is also fed with
 * payload behind it, which must not be taken. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/proxyproto.h"
#include "test_proxyproto.h"

enum mode { WHOLE, SPLIT, BYTES, PEEK };

/* The vector a loop is on, named when it fails. */
static const char *vector;

/* After an end status: it stays, and nothing more is taken. */
static void
assert_sticky(struct proxyproto_parser *p, const struct outcome *o)
{
	struct proxyproto_result res;
	const char *why = NULL;
	size_t used = 99;
	uint8_t more[4] = { 'P', '\r', 0, 'x' };

	assert_int_equal(proxyproto_want(p), 0);
	assert_int_equal(proxyproto_feed(p, more, sizeof(more), &used, &res, &why), o->st);
	assert_int_equal(used, 0);
	if (o->st == PROXYPROTO_DONE)
		assert_memory_equal(&res, &o->res, sizeof(res));
	else
		assert_ptr_equal(why, o->why);
}

/* One feed, folded into o; false once the parser ended. */
static bool
step(struct proxyproto_parser *p, struct outcome *o, const uint8_t *b, size_t n)
{
	size_t used = 99;

	o->st = proxyproto_feed(p, b, n, &used, &o->res, &o->why);
	assert_true(used <= n);
	if (o->st == PROXYPROTO_MORE)
		assert_int_equal(used, n);     /* all of it was header */
	o->used += used;
	return o->st == PROXYPROTO_MORE;
}

static struct outcome
run(const uint8_t *b, size_t n, enum mode mode, size_t split)
{
	struct proxyproto_parser p;
	struct outcome o;
	size_t off = 0, w;

	memset(&o, 0, sizeof(o));
	proxyproto_init(&p);
	switch (mode) {
	case WHOLE:
		step(&p, &o, b, n);
		break;
	case SPLIT:
		if (step(&p, &o, b, split))
			step(&p, &o, b + split, n - split);
		break;
	case BYTES:
		o.st = PROXYPROTO_MORE;
		for (off = 0; off < n; off++) {
			assert_true(proxyproto_want(&p) >= 1);
			if (!step(&p, &o, b + off, 1))
				break;
		}
		break;
	case PEEK:
		/* conn.c's loop: peek at most want(), take what was used. */
		o.st = PROXYPROTO_MORE;
		while (off < n && (w = proxyproto_want(&p)) > 0) {
			if (p.version == 2 && p.total != 0)
				assert_int_equal(w, p.total - p.seen);
			w = w < n - off ? w : n - off;
			if (!step(&p, &o, b + off, w))
				break;
			off += w;
		}
		break;
	}
	if (o.st != PROXYPROTO_MORE)
		assert_sticky(&p, &o);
	return o;
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *how, size_t k)
{
	if (a->st != b->st || a->used != b->used || a->why != b->why ||
	    memcmp(&a->res, &b->res, sizeof(a->res)) != 0)
		fail_msg("%s%s%s (%zu): status %d used %zu, whole: status %d used %zu",
		    vector ? vector : "", vector ? ": " : "", how, k, b->st, b->used,
		    a->st, a->used);
}

struct outcome
expect_n(const uint8_t *b, size_t n, enum proxyproto_status st, size_t used)
{
	struct outcome whole = run(b, n, WHOLE, 0), o;
	size_t stride = n <= 4096 ? 1 : 997;

	if (whole.st != st || whole.used != used)
		fail_msg("%s%sstatus %d used %zu (%s), expected status %d used %zu",
		    vector ? vector : "", vector ? ": " : "", whole.st, whole.used,
		    whole.why ? whole.why : "-", st, used);
	if (st == PROXYPROTO_INVALID || st == PROXYPROTO_TOO_LARGE)
		assert_non_null(whole.why);
	for (size_t k = 0; k <= n; k += stride) {
		o = run(b, n, SPLIT, k);
		assert_same(&whole, &o, "split", k);
	}
	if (n > 0) {
		o = run(b, n, SPLIT, n - 1);
		assert_same(&whole, &o, "split", n - 1);
	}
	o = run(b, n, BYTES, 0);
	assert_same(&whole, &o, "bytes", 0);
	o = run(b, n, PEEK, 0);
	assert_same(&whole, &o, "peek", 0);
	if (st == PROXYPROTO_DONE) {
		/* Payload behind it (the same header again, then data) is
		 * never taken, however it is split. */
		uint8_t *two = malloc(2 * n + 5);

		assert_non_null(two);
		memcpy(two, b, n);
		memcpy(two + n, b, n);
		memcpy(two + 2 * n, "DATA!", 5);
		o = run(two, 2 * n + 5, WHOLE, 0);
		assert_same(&whole, &o, "payload", 0);
		o = run(two, 2 * n + 5, SPLIT, n);
		assert_same(&whole, &o, "payload split", n);
		o = run(two, 2 * n + 5, PEEK, 0);
		assert_same(&whole, &o, "payload peek", 0);
		free(two);
	}
	return whole;
}

struct outcome
expect_s(const char *s, enum proxyproto_status st, size_t used)
{
	return expect_n((const uint8_t *)s, strlen(s), st, used);
}

/* Used up to and including the first occurrence of mark in s. */
static size_t
upto(const char *s, const char *mark)
{
	const char *at = strstr(s, mark);

	assert_non_null(at);
	return (size_t)(at - s) + strlen(mark);
}

void
assert_in4(const struct sockaddr_storage *ss, socklen_t len, const char *ip, unsigned port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	char text[INET_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET);
	assert_int_equal(len, sizeof(*sin));
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
	assert_string_equal(text, ip);
	assert_int_equal(ntohs(sin->sin_port), port);
}

void
assert_in6(const struct sockaddr_storage *ss, socklen_t len, const char *ip, unsigned port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	char text[INET6_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET6);
	assert_int_equal(len, sizeof(*sin6));
	assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
	assert_string_equal(text, ip);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

/* ---- CRC32C ---- */

static void
test_crc32c(void **state)
{
	const char *v = "123456789";

	(void)state;
	assert_int_equal(proxyproto_crc32c(0, v, 9), 0xE3069283u);
	assert_int_equal(proxyproto_crc32c(0, v, 0), 0);
	/* Continued over any split, as the parser computes it. */
	for (size_t k = 0; k <= 9; k++)
		assert_int_equal(proxyproto_crc32c(proxyproto_crc32c(0, v, k), v + k, 9 - k),
		    0xE3069283u);
	/* RFC 3720 B.4: 32 bytes of zeros, and of 0xff. */
	uint8_t z[32];
	memset(z, 0, sizeof(z));
	assert_int_equal(proxyproto_crc32c(0, z, sizeof(z)), 0x8A9136AAu);
	memset(z, 0xff, sizeof(z));
	assert_int_equal(proxyproto_crc32c(0, z, sizeof(z)), 0x62A8AB43u);
}

/* ---- v1 ---- */

static void
test_v1_spec_example(void **state)
{
	const char *line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	char wire[256];
	struct outcome o;

	(void)state;
	o = expect_s(line, PROXYPROTO_DONE, strlen(line));
	assert_int_equal(o.res.version, 1);
	assert_false(o.res.local);
	assert_in4(&o.res.src, o.res.srclen, "192.168.0.1", 56324);
	assert_in4(&o.res.dst, o.res.dstlen, "192.168.0.11", 443);
	/* The spec's example with its HTTP request behind: none of it taken. */
	snprintf(wire, sizeof(wire), "%sGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n", line);
	expect_s(wire, PROXYPROTO_DONE, strlen(line));
}

static void
test_v1_longest_lines(void **state)
{
	const char *tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	const char *tcp6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char *unk = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct outcome o;

	(void)state;
	assert_int_equal(strlen(tcp4), 56);     /* the spec's figures */
	assert_int_equal(strlen(tcp6), 104);
	assert_int_equal(strlen(unk), 107);
	o = expect_s(tcp4, PROXYPROTO_DONE, 56);
	assert_in4(&o.res.src, o.res.srclen, "255.255.255.255", 65535);
	o = expect_s(tcp6, PROXYPROTO_DONE, 104);
	assert_in6(&o.res.dst, o.res.dstlen, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	o = expect_s(unk, PROXYPROTO_DONE, 107);
	assert_true(o.res.local);
	assert_int_equal(o.res.version, 1);
}

static void
test_v1_tcp6_forms(void **state)
{
	struct outcome o;

	(void)state;
	o = expect_s("PROXY TCP6 ::1 2001:DB8::5 0 1\r\n", PROXYPROTO_DONE, 32);
	assert_in6(&o.res.src, o.res.srclen, "::1", 0);
	assert_in6(&o.res.dst, o.res.dstlen, "2001:db8::5", 1);
	o = expect_s("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n", PROXYPROTO_DONE, 48);
	assert_in6(&o.res.src, o.res.srclen, "::ffff:10.0.0.1", 1);
}

static void
test_v1_unknown(void **state)
{
	struct outcome o;

	(void)state;
	o = expect_s("PROXY UNKNOWN\r\n", PROXYPROTO_DONE, 15);
	assert_true(o.res.local);
	assert_int_equal(o.res.version, 1);
	assert_int_equal(o.res.srclen, 0);
	/* Whatever follows UNKNOWN is ignored up to CRLF. */
	o = expect_s("PROXY UNKNOWN not even an address\r\n", PROXYPROTO_DONE, 35);
	assert_true(o.res.local);
	expect_s("PROXY UNKNOWN 1.2.3.4 \t junk\r\nX", PROXYPROTO_DONE, 30);
	/* An empty feed is no news. */
	expect_s("", PROXYPROTO_MORE, 0);
}

/* Each refused at the byte that makes it impossible (marked by the
 * prefix it is decided at). */
static void
test_v1_invalid(void **state)
{
	static const struct { const char *in, *at; } bad[] = {
		{ "GET / HTTP/1.1\r\n", "G" },
		{ "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "p" },
		{ "PROXX TCP4", "PROXX" },
		{ "PROXYTCP4", "PROXYT" },
		{ "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY  " },
		{ "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP5" },
		{ "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY t" },
		{ "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", "TCP " },
		{ "PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n", "TCP44" },
		{ "PROXY UNKNOWNX\r\n", "UNKNOWNX" },
		{ "PROXY TCP4\r\n", "TCP4\r" },
		{ "PROXY UNKNOWN\n", "UNKNOWN\n" },
		{ "PROXY UNKNOWN\r\r\n", "UNKNOWN\r\r" },
		{ "PROXY UNKNOWN a\nb\r\n", "a\n" },
		{ "PROXY UNKNOWN a\rb\r\n", "a\rb" },
		{ "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "1.2.3.4  " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "1 2 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "1 2 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "1\r" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "1 \r" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "8\r" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "2\n" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "\rX" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "\r\r" },
		{ "PROXY TCP4 ::1 ::1 1 2\r\n", "TCP4 :" },
		{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "1.2.3 " },
		{ "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "1.2.3.4.5 " },
		{ "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "256 " },
		{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "01.2.3.4 " },
		{ "PROXY TCP4 1111.2.3.4 5.6.7.8 1 2\r\n", "1111.2.3.4 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8x 1 2\r\n", "8x" },
		{ "PROXY TCP4 255.255.255.2555 1.1.1.1 1 2\r\n", "255.255.255.2555" },
		{ "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "1.2.3.4 " },
		{ "PROXY TCP6 ::1 ::g 1 2\r\n", "::g" },
		{ "PROXY TCP6 1::2::3 ::1 1 2\r\n", "1::2::3 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", " 01" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", " 00" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "65536 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "99999\r" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "123456" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "-" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "+" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n", "\t" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vector = bad[i].in;
		expect_s(bad[i].in, PROXYPROTO_INVALID, upto(bad[i].in, bad[i].at));
	}
	/* The bounds themselves are fine. */
	vector = NULL;
	expect_s("PROXY TCP4 0.0.0.0 10.0.0.1 0 65535\r\n", PROXYPROTO_DONE, 37);
}

/* CVE-2021-23351's class: a line with no CRLF is cut at 107 bytes,
 * never a byte more. */
static void
test_v1_too_large(void **state)
{
	char line[300];
	struct outcome o;
	struct proxyproto_parser p;
	size_t used;
	struct proxyproto_result res;

	(void)state;
	memset(line, 'a', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	o = expect_n((const uint8_t *)line, 108, PROXYPROTO_TOO_LARGE, 107);
	assert_string_equal(o.why, "v1: no CRLF in 107 bytes");
	expect_n((const uint8_t *)line, sizeof(line), PROXYPROTO_TOO_LARGE, 107);
	expect_n((const uint8_t *)line, 107, PROXYPROTO_TOO_LARGE, 107);
	expect_n((const uint8_t *)line, 106, PROXYPROTO_MORE, 106);
	/* CRLF as bytes 106 and 107: fits; as 107 and 108: does not. */
	memcpy(line + 105, "\r\n", 2);
	expect_n((const uint8_t *)line, 200, PROXYPROTO_DONE, 107);
	memset(line + 105, 'a', 2);
	memcpy(line + 106, "\r\n", 2);
	expect_n((const uint8_t *)line, 200, PROXYPROTO_TOO_LARGE, 107);
	/* A TCP4 line padded past the limit with valid-looking digits. */
	memset(line, '1', sizeof(line));
	memcpy(line, "PROXY TCP4 1.2.3.4 5.6.7.8 1 ", 29);
	expect_n((const uint8_t *)line, sizeof(line), PROXYPROTO_INVALID, 35);

	/* want() counts down what is left of 107. */
	proxyproto_init(&p);
	assert_int_equal(proxyproto_want(&p), 107);
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(proxyproto_feed(&p, (const uint8_t *)line, 100, &used, &res, NULL),
	    PROXYPROTO_MORE);
	assert_int_equal(proxyproto_want(&p), 7);
}

static void
test_v1_encode(void **state)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(56324) };
	struct sockaddr_in b4 = { .sin_family = AF_INET, .sin_port = htons(443) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
	struct sockaddr_in6 b6 = { .sin6_family = AF_INET6, .sin6_port = htons(65535) };
	char buf[PROXYPROTO_ENCODE_MAX];
	struct outcome o;
	ssize_t n;

	(void)state;
	inet_pton(AF_INET, "192.168.0.1", &a4.sin_addr);
	inet_pton(AF_INET, "192.168.0.11", &b4.sin_addr);
	n = proxyproto_encode_v1(buf, sizeof(buf), (struct sockaddr *)&a4, (struct sockaddr *)&b4);
	assert_int_equal(n, 47);
	assert_memory_equal(buf, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 47);
	o = expect_n((const uint8_t *)buf, (size_t)n, PROXYPROTO_DONE, (size_t)n);
	assert_memory_equal(&o.res.src, &a4, sizeof(a4));
	assert_memory_equal(&o.res.dst, &b4, sizeof(b4));

	inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
	inet_pton(AF_INET6, "::ffff:127.0.0.2", &b6.sin6_addr);
	n = proxyproto_encode_v1(buf, sizeof(buf), (struct sockaddr *)&a6, (struct sockaddr *)&b6);
	assert_true(n > 0);
	o = expect_n((const uint8_t *)buf, (size_t)n, PROXYPROTO_DONE, (size_t)n);
	assert_memory_equal(&o.res.src, &a6, sizeof(a6));
	assert_memory_equal(&o.res.dst, &b6, sizeof(b6));
	assert_int_equal(o.res.srclen, sizeof(a6));

	/* Mixed families, or none: UNKNOWN, which parses as local. */
	n = proxyproto_encode_v1(buf, sizeof(buf), (struct sockaddr *)&a4, (struct sockaddr *)&b6);
	assert_int_equal(n, 15);
	assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
	assert_true(expect_n((const uint8_t *)buf, 15, PROXYPROTO_DONE, 15).res.local);
	assert_int_equal(proxyproto_encode_v1(buf, sizeof(buf), NULL, NULL), 15);

	/* Too small: -1 EINVAL, nothing promised written. */
	errno = 0;
	assert_int_equal(proxyproto_encode_v1(buf, 46, (struct sockaddr *)&a4,
	    (struct sockaddr *)&b4), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(proxyproto_encode_v1(buf, 47, (struct sockaddr *)&a4,
	    (struct sockaddr *)&b4), 47);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_v1_spec_example),
		cmocka_unit_test(test_v1_longest_lines),
		cmocka_unit_test(test_v1_tcp6_forms),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_invalid),
		cmocka_unit_test(test_v1_too_large),
		cmocka_unit_test(test_v1_encode),
		cmocka_unit_test(test_v2_encode),
		cmocka_unit_test(test_v2_fixed_part),
		cmocka_unit_test(test_v2_short_address_block),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_tlvs),
		cmocka_unit_test(test_v2_crc32c),
		cmocka_unit_test(test_v2_largest),
		cmocka_unit_test(test_v2_want),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
