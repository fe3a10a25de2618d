/* proxy/proxyproto.c: the PROXY protocol v1 and v2, encoded and parsed
 * (HAProxy's doc/proxy-protocol.txt; "the spec" below).
 *
 * The parser is a byte-at-a-time state machine: every byte is judged
 * when it arrives and nothing depends on how the bytes were split, so
 * feeding in pieces gives what feeding whole gives. It decides at the
 * first byte that makes a valid header impossible, and takes no byte
 * past the header's last.
 *
 * Where the spec leaves a choice, this file takes the strict one:
 * - v1: ports and IPv4 octets with a leading zero are refused (the spec
 *   forbids them; "0" itself is fine). IPv6 is what inet_pton accepts
 *   (so "::ffff:1.2.3.4" too). "UNKNOWN" must be followed by SP or CRLF;
 *   what follows it up to CRLF is ignored, but a bare CR or LF in it is
 *   refused like anywhere else in the line (the spec: a single CR or LF
 *   never ends the line).
 * - v1: 107 bytes without CRLF is TOO_LARGE, decided at the 107th byte.
 * - v2: the family and transport nibbles are checked for every command
 *   (the spec says other values must be rejected); LOCAL then skips the
 *   rest of the header unread, TLVs included, as the spec ("discard the
 *   protocol block") and HAProxy do.
 * - v2 PROXY: the address block is 0 (UNSPEC), 12 (INET), 36 (INET6) or
 *   216 (UNIX) bytes; a shorter length is invalid. What follows it must
 *   be whole TLVs: a tail too short for a TLV header, or a TLV running
 *   past the end, is invalid (as HAProxy). A family with an UNSPEC
 *   transport has no defined block, so its rest is skipped unread.
 * - v2 PROXY over DGRAM, UNIX or UNSPEC: valid, but `local` (the
 *   connection's own addresses are kept), as HAProxy does.
 * - PP2_TYPE_CRC32C: length 4, at most one, and the CRC32C of the whole
 *   header with its value as zeros must match it (big-endian), else
 *   invalid. Other TLVs are skipped unread. */
#include "spliced/proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define V1_MAGIC "PROXY "
#define V1_MAGIC_LEN 6
#define V1_ADDR4_MAX 15             /* 255.255.255.255 */
#define V1_ADDR6_MAX 45             /* INET6_ADDRSTRLEN - 1 */
#define V1_PORT_MAX 5

#define V2_SIG_LEN 12
#define V2_VERSION 0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_TR_UNSPEC 0x0
#define V2_TR_STREAM 0x1
#define V2_TR_DGRAM 0x2
#define V2_TLV_HDR 3                /* type, length (16 bits) */
#define PP2_TYPE_CRC32C 0x03

static const uint8_t v2_sig[V2_SIG_LEN] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* Address block length by family (v2 2.2). */
static const size_t v2_addrlen[] = {
	[V2_FAM_UNSPEC] = 0,
	[V2_FAM_INET] = 12,
	[V2_FAM_INET6] = 36,
	[V2_FAM_UNIX] = 216,
};

/* ---- CRC32C ---- */

/* Reflected Castagnoli polynomial 0x82F63B78, four bits a step: a
 * 16-entry table (each n run through four shift-and-xor rounds) is small
 * enough to check by hand and fast enough for a 64 KiB header. */
static const uint32_t crc32c_nibble[16] = {
	0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1,
	0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
	0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
	0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

/* One byte into the register (not inverted: the caller does that). */
static uint32_t
crc32c_byte(uint32_t reg, uint8_t b)
{
	reg ^= b;
	reg = (reg >> 4) ^ crc32c_nibble[reg & 0xf];
	reg = (reg >> 4) ^ crc32c_nibble[reg & 0xf];
	return reg;
}

uint32_t
proxyproto_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t reg = ~crc;

	for (size_t i = 0; i < len; i++)
		reg = crc32c_byte(reg, p[i]);
	return ~reg;
}

/* ---- parser ---- */

void
proxyproto_init(struct proxyproto_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->done = PROXYPROTO_MORE;
	p->crc = 0xffffffffu;
}

static enum proxyproto_status
fail(struct proxyproto_parser *p, const char *why)
{
	p->why = why;
	return PROXYPROTO_INVALID;
}

static bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Field 1 so far (head[6..at]) is a prefix of a protocol v1 knows. */
static bool
v1_proto_prefix(const struct proxyproto_parser *p, size_t n)
{
	static const char *const protos[] = { "TCP4", "TCP6", "UNKNOWN" };

	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (n <= strlen(protos[i]) &&
		    memcmp(p->head + V1_MAGIC_LEN, protos[i], n) == 0)
			return true;
	return false;
}

/* Field 1 ended (at SP or CR): TCP4, TCP6 or UNKNOWN. */
static enum proxyproto_status
v1_proto_end(struct proxyproto_parser *p, size_t n, uint8_t b)
{
	const char *f = (const char *)p->head + V1_MAGIC_LEN;

	if (n == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
		p->unknown = true;
		p->cr = b == '\r';
		return PROXYPROTO_MORE;
	}
	if (n != 4 || (memcmp(f, "TCP4", 4) != 0 && memcmp(f, "TCP6", 4) != 0))
		return fail(p, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (b != ' ')
		return fail(p, "v1: line ends before the addresses");
	p->family = f[3] == '4' ? AF_INET : AF_INET6;
	return PROXYPROTO_MORE;
}

/* Fields 2..5 ended at head[at]: an address inet_pton takes, or a port
 * 0..65535 without a leading zero (the character checks were made as
 * the bytes came). */
static enum proxyproto_status
v1_field_end(struct proxyproto_parser *p, size_t at)
{
	size_t n = at - p->fstart;
	const uint8_t *f = p->head + p->fstart;
	char text[V1_ADDR6_MAX + 1];
	unsigned long port = 0;

	if (n == 0)
		return fail(p, "v1: empty field (two spaces, or a space before CRLF)");
	if (p->field <= 3) {
		memcpy(text, f, n);
		text[n] = '\0';
		if (inet_pton(p->family, text, p->field == 2 ? p->saddr : p->daddr) != 1)
			return fail(p, p->family == AF_INET ?
			    "v1: not an IPv4 address in dotted decimal" :
			    "v1: not an IPv6 address");
		return PROXYPROTO_MORE;
	}
	for (size_t i = 0; i < n; i++)
		port = port * 10 + (unsigned long)(f[i] - '0');
	if (port > 65535)
		return fail(p, "v1: port above 65535");
	if (p->field == 4)
		p->sport = htons((uint16_t)port);
	else
		p->dport = htons((uint16_t)port);
	return PROXYPROTO_MORE;
}

/* A byte inside field 2..5: can it still be part of a valid field? */
static enum proxyproto_status
v1_field_byte(struct proxyproto_parser *p, size_t at, uint8_t b)
{
	size_t n = at - p->fstart + 1;  /* length with b */

	if (p->field <= 3) {
		bool ok = p->family == AF_INET ? is_digit(b) || b == '.' :
		    is_hex(b) || b == ':' || b == '.';

		if (!ok)
			return fail(p, "v1: a character no address has");
		if (n > (p->family == AF_INET ? V1_ADDR4_MAX : V1_ADDR6_MAX))
			return fail(p, "v1: address too long");
		return PROXYPROTO_MORE;
	}
	if (!is_digit(b))
		return fail(p, "v1: port is not decimal digits");
	if (n > 1 && p->head[p->fstart] == '0')
		return fail(p, "v1: port with a leading zero");
	if (n > V1_PORT_MAX)
		return fail(p, "v1: port above 65535");
	return PROXYPROTO_MORE;
}

static enum proxyproto_status
v1_byte(struct proxyproto_parser *p, uint8_t b)
{
	size_t at = p->seen++;
	enum proxyproto_status st;

	p->head[at] = b;
	if (at < V1_MAGIC_LEN) {
		if (b != (uint8_t)V1_MAGIC[at])
			return fail(p, "v1: does not start with \"PROXY \"");
		if (at == V1_MAGIC_LEN - 1) {
			p->field = 1;
			p->fstart = V1_MAGIC_LEN;
		}
		return PROXYPROTO_MORE;
	}
	if (p->cr) {
		if (b != '\n')
			return fail(p, "v1: CR not followed by LF");
		return PROXYPROTO_DONE;
	}
	if (b == '\n')
		return fail(p, "v1: LF without CR");
	if (p->unknown) {
		p->cr = b == '\r';
		st = PROXYPROTO_MORE;
	} else if (p->field == 1) {
		if (b == ' ' || b == '\r')
			st = v1_proto_end(p, at - V1_MAGIC_LEN, b);
		else if (!v1_proto_prefix(p, at - V1_MAGIC_LEN + 1))
			st = fail(p, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
		else
			st = PROXYPROTO_MORE;
		if (st == PROXYPROTO_MORE && b == ' ') {
			p->field = 2;
			p->fstart = (uint8_t)(at + 1);
		}
	} else if (b == ' ') {
		if (p->field == 5)
			return fail(p, "v1: a field after the destination port");
		if ((st = v1_field_end(p, at)) == PROXYPROTO_MORE) {
			p->field++;
			p->fstart = (uint8_t)(at + 1);
		}
	} else if (b == '\r') {
		if (p->field != 5)
			return fail(p, "v1: line ends before the destination port");
		if ((st = v1_field_end(p, at)) == PROXYPROTO_MORE)
			p->cr = true;
	} else {
		st = v1_field_byte(p, at, b);
	}
	if (st == PROXYPROTO_MORE && p->seen >= PROXYPROTO_V1_MAX) {
		p->why = "v1: no CRLF in 107 bytes";
		return PROXYPROTO_TOO_LARGE;
	}
	return st;
}

/* Bytes 13..16 read: what follows, and how much of it. */
static enum proxyproto_status
v2_fixed_end(struct proxyproto_parser *p)
{
	unsigned cmd = p->head[12] & 0xf;
	unsigned fam = p->head[13] >> 4, tr = p->head[13] & 0xf;
	size_t len = (size_t)p->head[14] << 8 | p->head[15];

	p->total = PROXYPROTO_V2_HEAD + len;
	p->local = true;
	if (cmd == V2_CMD_LOCAL || (fam != V2_FAM_UNSPEC && tr == V2_TR_UNSPEC))
		return PROXYPROTO_MORE;         /* skipped unread */
	p->addrlen = v2_addrlen[fam];
	if (len < p->addrlen) {
		static const char *const why[] = {
			[V2_FAM_INET] = "v2: address block shorter than IPv4 needs",
			[V2_FAM_INET6] = "v2: address block shorter than IPv6 needs",
			[V2_FAM_UNIX] = "v2: address block shorter than UNIX needs",
		};
		return fail(p, why[fam]);
	}
	p->walk = true;
	p->local = !((fam == V2_FAM_INET || fam == V2_FAM_INET6) && tr == V2_TR_STREAM);
	p->family = fam == V2_FAM_INET ? AF_INET : AF_INET6;
	p->tlv_next = PROXYPROTO_V2_HEAD + p->addrlen;
	if (p->total - p->tlv_next > 0 && p->total - p->tlv_next < V2_TLV_HDR)
		return fail(p, "v2: bytes after the address block, too few for a TLV");
	return PROXYPROTO_MORE;
}

/* A byte of the TLVs at offset at. *c: the byte as the checksum sees it
 * (zero inside the CRC32C TLV's value). */
static enum proxyproto_status
v2_tlv_byte(struct proxyproto_parser *p, size_t at, uint8_t b, uint8_t *c)
{
	size_t vlen, end;

	if (at == p->tlv_next) {                /* type */
		p->tlv_start = at;
		p->tlv_crc = b == PP2_TYPE_CRC32C;
		if (p->tlv_crc && p->crc_seen)
			return fail(p, "v2: a second CRC32C TLV");
		p->crc_seen |= p->tlv_crc;
	} else if (at == p->tlv_start + 1) {
		p->tlv_hi = b;
	} else if (at == p->tlv_start + 2) {    /* length known */
		vlen = (size_t)p->tlv_hi << 8 | b;
		end = at + 1 + vlen;
		if (end > p->total)
			return fail(p, "v2: a TLV runs past the header's end");
		if (p->tlv_crc && vlen != sizeof(p->crc_want))
			return fail(p, "v2: CRC32C TLV whose length is not 4");
		if (p->total - end > 0 && p->total - end < V2_TLV_HDR)
			return fail(p, "v2: bytes after a TLV, too few for a TLV");
		p->tlv_next = end;
	} else if (p->tlv_crc) {                /* value */
		p->crc_want[at - p->tlv_start - V2_TLV_HDR] = b;
		*c = 0;
	}
	return PROXYPROTO_MORE;
}

static enum proxyproto_status
v2_byte(struct proxyproto_parser *p, uint8_t b)
{
	size_t at = p->seen++;
	uint8_t c = b;
	enum proxyproto_status st = PROXYPROTO_MORE;
	uint32_t want;

	if (at < V2_SIG_LEN) {
		if (b != v2_sig[at])
			return fail(p, "v2: signature mismatch");
	} else if (at == 12) {
		if (b >> 4 != V2_VERSION)
			return fail(p, "v2: version is not 2");
		if ((b & 0xf) != V2_CMD_LOCAL && (b & 0xf) != V2_CMD_PROXY)
			return fail(p, "v2: command is neither LOCAL nor PROXY");
	} else if (at == 13) {
		if (b >> 4 > V2_FAM_UNIX)
			return fail(p, "v2: unknown address family");
		if ((b & 0xf) > V2_TR_DGRAM)
			return fail(p, "v2: unknown transport");
	}
	if (at < PROXYPROTO_V2_HEAD)
		p->head[at] = b;
	if (at == PROXYPROTO_V2_HEAD - 1) {
		st = v2_fixed_end(p);
	} else if (at >= PROXYPROTO_V2_HEAD && p->walk) {
		if (at < PROXYPROTO_V2_HEAD + p->addrlen) {
			if (p->addrlen <= v2_addrlen[V2_FAM_INET6])
				p->head[at] = b;        /* an IPv4/IPv6 block, kept */
		} else {
			st = v2_tlv_byte(p, at, b, &c);
		}
	}
	if (st != PROXYPROTO_MORE)
		return st;
	p->crc = crc32c_byte(p->crc, c);
	if (p->total == 0 || p->seen < p->total)
		return PROXYPROTO_MORE;
	if (p->crc_seen) {
		want = (uint32_t)p->crc_want[0] << 24 | (uint32_t)p->crc_want[1] << 16 |
		    (uint32_t)p->crc_want[2] << 8 | p->crc_want[3];
		if (~p->crc != want)
			return fail(p, "v2: CRC32C does not match");
	}
	if (!p->local) {
		size_t a = p->family == AF_INET ? 4 : 16;
		const uint8_t *blk = p->head + PROXYPROTO_V2_HEAD;

		memcpy(p->saddr, blk, a);
		memcpy(p->daddr, blk + a, a);
		memcpy(&p->sport, blk + 2 * a, 2);
		memcpy(&p->dport, blk + 2 * a + 2, 2);
	}
	return PROXYPROTO_DONE;
}

static void
fill_sa(struct sockaddr_storage *ss, socklen_t *len, int family,
    const uint8_t *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sin->sin_port = port;
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sin6->sin6_port = port;
		*len = sizeof(*sin6);
	}
}

static void
result(const struct proxyproto_parser *p, struct proxyproto_result *out)
{
	memset(out, 0, sizeof(*out));
	out->version = p->version;
	out->local = p->local;
	if (p->local)
		return;
	fill_sa(&out->src, &out->srclen, p->family, p->saddr, p->sport);
	fill_sa(&out->dst, &out->dstlen, p->family, p->daddr, p->dport);
}

enum proxyproto_status
proxyproto_feed(struct proxyproto_parser *p, const uint8_t *buf, size_t len,
    size_t *used, struct proxyproto_result *out, const char **why)
{
	enum proxyproto_status st = p->done;
	size_t i = 0;

	while (st == PROXYPROTO_MORE && i < len) {
		uint8_t b = buf[i++];

		if (p->version == 0) {
			if (b == (uint8_t)V1_MAGIC[0])
				p->version = 1;
			else if (b == v2_sig[0])
				p->version = 2;
			else
				st = fail(p, "neither a v1 (\"PROXY\") nor a v2 header");
		}
		if (p->version == 1)
			st = v1_byte(p, b);
		else if (p->version == 2)
			st = v2_byte(p, b);
		if (st == PROXYPROTO_DONE && p->version == 1)
			p->local = p->unknown;
	}
	*used = i;                      /* 0 when it had ended before */
	p->done = st;
	if (st == PROXYPROTO_DONE && out != NULL)
		result(p, out);
	if ((st == PROXYPROTO_INVALID || st == PROXYPROTO_TOO_LARGE) && why != NULL)
		*why = p->why;
	return st;
}

size_t
proxyproto_want(const struct proxyproto_parser *p)
{
	if (p->done != PROXYPROTO_MORE)
		return 0;
	if (p->version == 2)
		return (p->total != 0 ? p->total : PROXYPROTO_V2_HEAD) - p->seen;
	return PROXYPROTO_V1_MAX - p->seen;
}

/* ---- encoders ---- */

static bool
same_family(const struct sockaddr *src, const struct sockaddr *dst, int family)
{
	return src != NULL && dst != NULL && src->sa_family == family &&
	    dst->sa_family == family;
}

ssize_t
proxyproto_encode_v1(char *buf, size_t len, const struct sockaddr *src,
    const struct sockaddr *dst)
{
	char line[PROXYPROTO_V1_MAX + 1], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	unsigned sp, dp;
	int n;

	if (same_family(src, dst, AF_INET)) {
		const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

		inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
		inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
		sp = ntohs(a->sin_port);
		dp = ntohs(b->sin_port);
		n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %u %u\r\n", s, d, sp, dp);
	} else if (same_family(src, dst, AF_INET6)) {
		const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

		inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
		inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
		sp = ntohs(a->sin6_port);
		dp = ntohs(b->sin6_port);
		n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s %u %u\r\n", s, d, sp, dp);
	} else {
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	}
	/* inet_ntop's longest forms make 104 bytes; should a line ever not
	 * fit what a receiver must take, UNKNOWN is the honest header. */
	if (n < 0 || (size_t)n >= sizeof(line))
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	if ((size_t)n > len) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, line, (size_t)n);
	if ((size_t)n < len)
		buf[n] = '\0';
	return n;
}

ssize_t
proxyproto_encode_v2(uint8_t *buf, size_t len, const struct sockaddr *src,
    const struct sockaddr *dst, bool local)
{
	uint8_t hdr[PROXYPROTO_V2_HEAD + 36], *blk = hdr + PROXYPROTO_V2_HEAD;
	size_t alen = 0;
	uint8_t fam = V2_FAM_UNSPEC << 4 | V2_TR_UNSPEC;

	memcpy(hdr, v2_sig, V2_SIG_LEN);
	hdr[12] = V2_VERSION << 4 | (local ? V2_CMD_LOCAL : V2_CMD_PROXY);
	if (!local && same_family(src, dst, AF_INET)) {
		const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

		fam = V2_FAM_INET << 4 | V2_TR_STREAM;
		memcpy(blk, &a->sin_addr, 4);
		memcpy(blk + 4, &b->sin_addr, 4);
		memcpy(blk + 8, &a->sin_port, 2);
		memcpy(blk + 10, &b->sin_port, 2);
		alen = 12;
	} else if (!local && same_family(src, dst, AF_INET6)) {
		const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

		fam = V2_FAM_INET6 << 4 | V2_TR_STREAM;
		memcpy(blk, &a->sin6_addr, 16);
		memcpy(blk + 16, &b->sin6_addr, 16);
		memcpy(blk + 32, &a->sin6_port, 2);
		memcpy(blk + 34, &b->sin6_port, 2);
		alen = 36;
	}
	hdr[13] = fam;
	hdr[14] = (uint8_t)(alen >> 8);
	hdr[15] = (uint8_t)alen;
	if (PROXYPROTO_V2_HEAD + alen > len) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, hdr, PROXYPROTO_V2_HEAD + alen);
	return (ssize_t)(PROXYPROTO_V2_HEAD + alen);
}
