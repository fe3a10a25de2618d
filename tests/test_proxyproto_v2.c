/* tests/test_proxyproto_v2.c: the PROXY protocol v2, parsed and encoded:
 * the fixed part, the address blocks (CVE-2019-14243's class), LOCAL and
 * the families kept local, TLVs walked as they stream, PP2_TYPE_CRC32C
 * (the Varnish 2026 out-of-bounds class), the longest header. Every vector
 * goes through expect_n() (test_proxyproto.c): whole, at every split, byte
 * by byte and peeking want(). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "spliced/proxyproto.h"
#include "test_proxyproto.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static uint8_t v2[PROXYPROTO_V2_MAX + 64];
static size_t v2n;

static void
v2_begin(uint8_t vercmd, uint8_t fam)
{
	memcpy(v2, sig, sizeof(sig));
	v2[12] = vercmd;
	v2[13] = fam;
	v2n = 16;
}

static void
v2_put(const void *d, size_t n)
{
	memcpy(v2 + v2n, d, n);
	v2n += n;
}

static void
v2_fill(uint8_t c, size_t n)
{
	memset(v2 + v2n, c, n);
	v2n += n;
}

/* A TLV header saying len, then fill bytes of value (may differ from len
 * to build a lying TLV). */
static void
v2_tlv(uint8_t type, size_t len, uint8_t c, size_t fill)
{
	uint8_t h[3] = { type, (uint8_t)(len >> 8), (uint8_t)len };

	v2_put(h, 3);
	v2_fill(c, fill);
}

/* The length field covers what was put; returns the header's length. */
static size_t
v2_end(void)
{
	v2[14] = (uint8_t)((v2n - 16) >> 8);
	v2[15] = (uint8_t)(v2n - 16);
	return v2n;
}

/* The CRC32C of the header, its value (at off) as zeros, written there. */
static void
v2_sign(size_t off)
{
	uint32_t crc;

	memset(v2 + off, 0, 4);
	crc = proxyproto_crc32c(0, v2, v2n);
	v2[off] = (uint8_t)(crc >> 24);
	v2[off + 1] = (uint8_t)(crc >> 16);
	v2[off + 2] = (uint8_t)(crc >> 8);
	v2[off + 3] = (uint8_t)crc;
}

/* TCP over IPv4, 127.0.0.2:1234 -> 127.0.0.1:80. */
static void
v2_inet(uint8_t vercmd)
{
	static const uint8_t blk[12] = { 127, 0, 0, 2, 127, 0, 0, 1, 0x04, 0xd2, 0, 80 };

	v2_begin(vercmd, 0x11);
	v2_put(blk, sizeof(blk));
}

static struct outcome
expect_v2(enum proxyproto_status st, size_t used)
{
	return expect_n(v2, v2n, st, used);
}

void
test_v2_encode(void **state)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(1234) };
	struct sockaddr_in b4 = { .sin_family = AF_INET, .sin_port = htons(80) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(40000) };
	struct sockaddr_in6 b6 = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
	uint8_t buf[PROXYPROTO_ENCODE_MAX];
	struct outcome o;
	ssize_t n;

	(void)state;
	inet_pton(AF_INET, "127.0.0.2", &a4.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &b4.sin_addr);
	n = proxyproto_encode_v2(buf, sizeof(buf), (struct sockaddr *)&a4,
	    (struct sockaddr *)&b4, false);
	assert_int_equal(n, 28);
	/* The spec's layout, written by hand. */
	v2_inet(0x21);
	v2_end();
	assert_memory_equal(buf, v2, 28);
	o = expect_n(buf, 28, PROXYPROTO_DONE, 28);
	assert_int_equal(o.res.version, 2);
	assert_false(o.res.local);
	assert_memory_equal(&o.res.src, &a4, sizeof(a4));
	assert_memory_equal(&o.res.dst, &b4, sizeof(b4));
	assert_in4(&o.res.src, o.res.srclen, "127.0.0.2", 1234);

	inet_pton(AF_INET6, "2001:db8::7", &a6.sin6_addr);
	inet_pton(AF_INET6, "::1", &b6.sin6_addr);
	n = proxyproto_encode_v2(buf, sizeof(buf), (struct sockaddr *)&a6,
	    (struct sockaddr *)&b6, false);
	assert_int_equal(n, 52);
	assert_int_equal(buf[13], 0x21);
	o = expect_n(buf, 52, PROXYPROTO_DONE, 52);
	assert_memory_equal(&o.res.src, &a6, sizeof(a6));
	assert_memory_equal(&o.res.dst, &b6, sizeof(b6));
	assert_in6(&o.res.src, o.res.srclen, "2001:db8::7", 40000);

	/* LOCAL, what health checks send: addresses ignored. */
	n = proxyproto_encode_v2(buf, sizeof(buf), (struct sockaddr *)&a4,
	    (struct sockaddr *)&b4, true);
	assert_int_equal(n, 16);
	assert_memory_equal(buf, sig, 12);
	assert_int_equal(buf[12], 0x20);
	assert_int_equal(buf[13], 0x00);
	o = expect_n(buf, 16, PROXYPROTO_DONE, 16);
	assert_true(o.res.local);
	assert_int_equal(o.res.srclen, 0);

	/* Mixed or missing: PROXY over UNSPEC, no address, local. */
	n = proxyproto_encode_v2(buf, sizeof(buf), (struct sockaddr *)&a4,
	    (struct sockaddr *)&b6, false);
	assert_int_equal(n, 16);
	assert_int_equal(buf[12], 0x21);
	assert_true(expect_n(buf, 16, PROXYPROTO_DONE, 16).res.local);
	assert_int_equal(proxyproto_encode_v2(buf, sizeof(buf), NULL, NULL, false), 16);

	errno = 0;
	assert_int_equal(proxyproto_encode_v2(buf, 51, (struct sockaddr *)&a6,
	    (struct sockaddr *)&b6, false), -1);
	assert_int_equal(errno, EINVAL);
}

/* Signature, version, command, family and transport: refused at the byte. */
void
test_v2_fixed_part(void **state)
{
	(void)state;
	for (size_t i = 1; i < 12; i++) {
		v2_inet(0x21);
		v2_end();
		v2[i] ^= 0x40;
		expect_v2(PROXYPROTO_INVALID, i + 1);
	}
	for (unsigned b = 0; b < 256; b++) {
		bool ok = b == 0x20 || b == 0x21;

		v2_inet((uint8_t)b);
		v2_end();
		expect_v2(ok ? PROXYPROTO_DONE : PROXYPROTO_INVALID, ok ? 28 : 13);
	}
	for (unsigned b = 0; b < 256; b++) {
		bool ok = (b >> 4) <= 3 && (b & 0xf) <= 2;

		v2_begin(0x21, (uint8_t)b);
		v2_fill(0, 216);
		v2_end();
		expect_v2(ok ? PROXYPROTO_DONE : PROXYPROTO_INVALID, ok ? 232 : 14);
		/* LOCAL ignores the family, but not an unknown one. */
		v2[12] = 0x20;
		expect_v2(ok ? PROXYPROTO_DONE : PROXYPROTO_INVALID, ok ? 232 : 14);
	}
	/* v1's first byte with v2's second: neither. */
	expect_s("P\n", PROXYPROTO_INVALID, 2);
	expect_s("\rP", PROXYPROTO_INVALID, 2);
}

/* CVE-2019-14243's class: a length shorter than the family's address
 * block, refused once the length is read, whatever follows. */
void
test_v2_short_address_block(void **state)
{
	static const struct { uint8_t fam; size_t need; const char *why; } f[] = {
		{ 0x11, 12, "v2: address block shorter than IPv4 needs" },
		{ 0x12, 12, "v2: address block shorter than IPv4 needs" },
		{ 0x21, 36, "v2: address block shorter than IPv6 needs" },
		{ 0x22, 36, "v2: address block shorter than IPv6 needs" },
		{ 0x31, 216, "v2: address block shorter than UNIX needs" },
		{ 0x32, 216, "v2: address block shorter than UNIX needs" },
	};
	struct outcome o;

	(void)state;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		for (size_t len = 0; len < f[i].need; len++) {
			v2_begin(0x21, f[i].fam);
			v2_fill(0xab, len);
			v2_end();
			v2_fill(0xab, 300);     /* more bytes on the wire */
			o = expect_v2(PROXYPROTO_INVALID, 16);
			assert_string_equal(o.why, f[i].why);
		}
		v2_begin(0x21, f[i].fam);
		v2_fill(0, f[i].need);
		v2_end();
		o = expect_v2(PROXYPROTO_DONE, 16 + f[i].need);
		assert_int_equal(o.res.local, f[i].fam != 0x11 && f[i].fam != 0x21);
		/* A header that stops short is not done. */
		v2n -= 1;
		expect_v2(PROXYPROTO_MORE, 15 + f[i].need);
	}
}

/* Valid, but the connection's own addresses are kept. */
void
test_v2_local(void **state)
{
	struct outcome o;

	(void)state;
	v2_begin(0x20, 0x00);
	v2_end();
	o = expect_v2(PROXYPROTO_DONE, 16);
	assert_true(o.res.local);
	assert_int_equal(o.res.version, 2);
	/* LOCAL with addresses: skipped, still local. */
	v2_inet(0x20);
	v2_end();
	o = expect_v2(PROXYPROTO_DONE, 28);
	assert_true(o.res.local);
	assert_int_equal(o.res.srclen, 0);
	/* LOCAL's block is discarded unread: no TLV structure needed, and a
	 * CRC32C TLV in it is not checked. */
	v2_begin(0x20, 0x11);
	v2_fill(0xee, 7);
	v2_end();
	expect_v2(PROXYPROTO_DONE, 23);
	v2_begin(0x20, 0x00);
	v2_tlv(0x03, 4, 0x55, 4);
	v2_end();
	expect_v2(PROXYPROTO_DONE, 23);
	/* PROXY over UNSPEC, DGRAM, UNIX: local too. */
	v2_begin(0x21, 0x00);
	v2_end();
	assert_true(expect_v2(PROXYPROTO_DONE, 16).res.local);
	v2_inet(0x21);
	v2[13] = 0x12;
	v2_end();
	assert_true(expect_v2(PROXYPROTO_DONE, 28).res.local);
	v2_begin(0x21, 0x31);
	v2_fill('/', 216);
	v2_tlv(0x04, 1, 0, 1);
	v2_end();
	assert_true(expect_v2(PROXYPROTO_DONE, 236).res.local);
	/* A family with an UNSPEC transport: no defined block, skipped. */
	v2_begin(0x21, 0x10);
	v2_fill(0xee, 5);
	v2_end();
	assert_true(expect_v2(PROXYPROTO_DONE, 21).res.local);
}

/* TLVs are walked as they stream: each must fit the header. */
void
test_v2_tlvs(void **state)
{
	struct outcome o;

	(void)state;
	v2_inet(0x21);
	v2_tlv(0x04, 0, 0, 0);                  /* NOOP, empty */
	v2_tlv(0x01, 2, 'h', 2);                /* ALPN */
	v2_tlv(0xe0, 300, 0x0d, 300);           /* custom, CR bytes */
	v2_end();
	o = expect_v2(PROXYPROTO_DONE, v2n);
	assert_in4(&o.res.src, o.res.srclen, "127.0.0.2", 1234);
	assert_in4(&o.res.dst, o.res.dstlen, "127.0.0.1", 80);
	/* PROXY over UNSPEC: TLVs right after the fixed part. */
	v2_begin(0x21, 0x00);
	v2_tlv(0x05, 3, 'u', 3);
	v2_end();
	expect_v2(PROXYPROTO_DONE, v2n);

	/* One or two bytes after the address block: no room for a TLV
	 * header (HAProxy refuses them too), known from the length. */
	for (size_t tail = 1; tail <= 2; tail++) {
		v2_inet(0x21);
		v2_fill(0, tail);
		v2_end();
		expect_v2(PROXYPROTO_INVALID, 16);
		v2_begin(0x21, 0x00);
		v2_fill(0, tail);
		v2_end();
		expect_v2(PROXYPROTO_INVALID, 16);
		/* ... or after a TLV: known from that TLV's length. */
		v2_inet(0x21);
		v2_tlv(0x04, 1, 0, 1);
		v2_fill(0, tail);
		v2_end();
		expect_v2(PROXYPROTO_INVALID, 31);
	}
	/* A TLV running past the header's end: refused at its length. */
	v2_inet(0x21);
	v2_tlv(0x02, 10, 'a', 5);
	v2_end();
	v2_fill('a', 50);
	o = expect_v2(PROXYPROTO_INVALID, 31);
	assert_string_equal(o.why, "v2: a TLV runs past the header's end");
	v2_inet(0x21);
	v2_tlv(0x20, 0xffff, 0, 0);
	v2_end();
	expect_v2(PROXYPROTO_INVALID, 31);
	/* A second TLV running past the end. */
	v2_inet(0x21);
	v2_tlv(0x04, 0, 0, 0);
	v2_tlv(0x04, 4, 0, 3);
	v2_end();
	expect_v2(PROXYPROTO_INVALID, 34);
}

/* PP2_TYPE_CRC32C: the Varnish 2026 out-of-bounds class and the rules of
 * 2.2.3. */
void
test_v2_crc32c(void **state)
{
	struct outcome o;
	size_t at;

	(void)state;
	v2_inet(0x21);
	v2_tlv(0x04, 2, 0, 2);
	at = v2n + 3;
	v2_tlv(0x03, 4, 0, 4);
	v2_tlv(0x01, 2, 'h', 2);
	v2_end();
	v2_sign(at);
	o = expect_v2(PROXYPROTO_DONE, v2n);
	assert_in4(&o.res.src, o.res.srclen, "127.0.0.2", 1234);
	/* Any flipped bit, in the addresses, a value or the checksum:
	 * refused at the last byte, once the whole header was summed. (The
	 * TLV headers are left alone: a flip there changes the structure.) */
	for (size_t i = 16; i < v2n; i++) {
		if ((i >= 28 && i < 31) || (i >= at - 3 && i < at) ||
		    (i >= at + 4 && i < at + 7))
			continue;
		v2[i] ^= 0x01;
		o = expect_v2(PROXYPROTO_INVALID, v2n);
		assert_string_equal(o.why, "v2: CRC32C does not match");
		v2[i] ^= 0x01;
	}
	/* IPv6, the checksum first. */
	v2_begin(0x21, 0x21);
	v2_fill(0x20, 36);
	at = v2n + 3;
	v2_tlv(0x03, 4, 0, 4);
	v2_end();
	v2_sign(at);
	expect_v2(PROXYPROTO_DONE, v2n);

	/* Length other than 4: refused at the length, before any value. */
	for (size_t len = 0; len < 16; len++) {
		if (len == 4)
			continue;
		v2_inet(0x21);
		v2_tlv(0x03, len, 0, len);
		v2_end();
		o = expect_v2(PROXYPROTO_INVALID, 31);
		assert_string_equal(o.why, "v2: CRC32C TLV whose length is not 4");
	}
	/* Its 4 bytes running past the header's end. */
	v2_inet(0x21);
	v2_tlv(0x03, 4, 0, 2);
	v2_end();
	v2_fill(0, 20);
	expect_v2(PROXYPROTO_INVALID, 31);
	/* Two of them, even both right: refused at the second's type. */
	v2_inet(0x21);
	v2_tlv(0x03, 4, 0, 4);
	v2_tlv(0x03, 4, 0, 4);
	v2_end();
	v2_sign(31);
	v2_sign(38);
	expect_v2(PROXYPROTO_INVALID, 36);     /* the second's type, byte 36 */
}

/* The longest header (16 + 65535), with and without a checksum. */
void
test_v2_largest(void **state)
{
	size_t at;

	(void)state;
	v2_inet(0x21);
	v2_tlv(0x04, 65535 - 12 - 3, 0x0a, 65535 - 12 - 3);
	assert_int_equal(v2_end(), PROXYPROTO_V2_MAX);
	expect_v2(PROXYPROTO_DONE, PROXYPROTO_V2_MAX);

	v2_inet(0x21);
	at = v2n + 3;
	v2_tlv(0x03, 4, 0, 4);
	v2_tlv(0xee, 65535 - 12 - 7 - 3, 0x0d, 65535 - 12 - 7 - 3);
	assert_int_equal(v2_end(), PROXYPROTO_V2_MAX);
	v2_sign(at);
	expect_v2(PROXYPROTO_DONE, PROXYPROTO_V2_MAX);
	v2[PROXYPROTO_V2_MAX - 1] ^= 0x80;
	expect_v2(PROXYPROTO_INVALID, PROXYPROTO_V2_MAX);
}

/* want(): what is left of 16, then exactly of 16 + len; 0 once ended. */
void
test_v2_want(void **state)
{
	struct proxyproto_parser p;
	struct proxyproto_result res;
	size_t used;

	(void)state;
	v2_inet(0x21);
	v2_end();
	v2_put("payload", 7);
	proxyproto_init(&p);
	assert_int_equal(proxyproto_feed(&p, v2, 1, &used, &res, NULL), PROXYPROTO_MORE);
	assert_int_equal(proxyproto_want(&p), 15);
	assert_int_equal(proxyproto_feed(&p, v2 + 1, 15, &used, &res, NULL), PROXYPROTO_MORE);
	assert_int_equal(proxyproto_want(&p), 12);
	assert_int_equal(proxyproto_feed(&p, v2 + 16, 19, &used, &res, NULL), PROXYPROTO_DONE);
	assert_int_equal(used, 12);
	assert_int_equal(proxyproto_want(&p), 0);
}
