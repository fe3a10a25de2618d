/* include/spliced/proxyproto.h: the PROXY protocol, versions 1 and 2
 * (HAProxy's doc/proxy-protocol.txt), encoded and parsed.
 *
 * Pure functions over bytes: no socket, no allocation, no clock. The
 * connection that reads a header (conn.c) peeks at what the client sent,
 * feeds it here, and then takes off the socket exactly the bytes the
 * parser says were the header's: the payload behind it is never read.
 *
 * Parsing is incremental: the header may arrive split at any point, and
 * feeding it in pieces gives the same result as feeding it whole. It is
 * bounded: a v1 line is at most PROXYPROTO_V1_MAX bytes (CRLF included),
 * a v2 header 16 bytes plus its length field (at most 65535). The parser
 * keeps what it needs of a header in itself (a few hundred bytes): TLVs
 * are skipped as they stream by, and a CRC32C TLV is checked over the
 * whole header. Never guessed: the first byte that cannot start or
 * continue a valid header makes it invalid at once.
 *
 * What a header says (struct proxyproto_result): for v1 TCP4/TCP6 and v2
 * PROXY over TCP (INET or INET6, STREAM), the original source and
 * destination. For v1 UNKNOWN, v2 LOCAL, and v2 PROXY with another
 * family or transport (UNSPEC, UNIX, DGRAM), `local`: the receiver keeps
 * the connection's own addresses, as the spec requires. */
#ifndef SPLICED_PROXYPROTO_H
#define SPLICED_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PROXYPROTO_V1_MAX 107           /* "PROXY ... \r\n", CRLF included */
#define PROXYPROTO_V2_HEAD 16           /* signature, ver/cmd, fam, len */
#define PROXYPROTO_V2_MAX (16 + 65535)
/* The longest header proxyproto_encode_v1/v2 write: v2 with the UNIX
 * address block (216), which they never send, bounds every other. */
#define PROXYPROTO_ENCODE_MAX (16 + 216)

enum proxyproto_status {
	PROXYPROTO_MORE,            /* all fed so far is header: feed more */
	PROXYPROTO_DONE,            /* the header is complete: see *out */
	PROXYPROTO_INVALID,         /* not a valid header (why says how) */
	PROXYPROTO_TOO_LARGE,       /* a v1 line with no CRLF in 107 bytes */
};

struct proxyproto_result {
	int version;                /* 1 or 2 */
	/* Keep the connection's own addresses (v1 UNKNOWN, v2 LOCAL, v2 with
	 * a family or transport other than TCP over IPv4/IPv6). */
	bool local;
	/* Unless local: the original client and the address it connected
	 * to, AF_INET or AF_INET6, ports in network order. */
	struct sockaddr_storage src, dst;
	socklen_t srclen, dstlen;
};

/* The parser's state; embed or allocate it, then proxyproto_init(). Its
 * fields are proxyproto.c's (240 bytes on x86_64, no pointer to the input). */
struct proxyproto_parser {
	enum proxyproto_status done;   /* MORE until the parser ended */
	const char *why;            /* why it ended INVALID or TOO_LARGE */
	int version;                /* 0 until the first byte told */
	size_t seen;                /* header bytes taken so far */
	size_t total;               /* v2: 16 + len once known; 0 before */
	/* v1: the line so far; v2: the fixed part and an IPv4/IPv6 address
	 * block (at most 16 + 36 bytes). */
	uint8_t head[PROXYPROTO_V1_MAX + 1];
	/* v1: the field being read (1 protocol, 2 source, 3 destination,
	 * 4 source port, 5 destination port) and where it starts in head. */
	uint8_t field;
	uint8_t fstart;
	bool unknown;               /* v1 UNKNOWN: the rest is ignored */
	bool cr;                    /* v1: the last byte was CR */
	/* v2 */
	bool local;
	bool walk;                  /* TLVs follow the address block */
	size_t addrlen;             /* the address block's length */
	size_t tlv_start;           /* offset of the TLV being read */
	size_t tlv_next;            /* offset of the next TLV */
	uint8_t tlv_hi;             /* high byte of its length */
	bool tlv_crc;               /* the TLV being read is PP2_TYPE_CRC32C */
	bool crc_seen;
	uint8_t crc_want[4];        /* the checksum the header carries */
	uint32_t crc;               /* running CRC32C register, the checksum as zero */
	/* What the header said, ports in network order. */
	int family;
	uint8_t saddr[16], daddr[16];
	uint16_t sport, dport;
};

void proxyproto_init(struct proxyproto_parser *);

/* Feed the next len bytes the peer sent (after all the bytes fed before).
 * *used: how many of them are header bytes, taken by the parser (with
 * PROXYPROTO_DONE, the bytes after them are payload; with MORE, all of
 * them). With PROXYPROTO_DONE, *out (if out is not NULL) holds the
 * result; zeros but version and local when local. With INVALID or
 * TOO_LARGE, *why (if why is not NULL) a static, one-line reason
 * ("v2: address block shorter than IPv6 needs"). Once an end
 * status is returned, later calls return it again, using nothing. */
enum proxyproto_status proxyproto_feed(struct proxyproto_parser *,
    const uint8_t *buf, size_t len, size_t *used,
    struct proxyproto_result *out, const char **why);

/* How many bytes to peek at next: v1 (or before the first byte) what is
 * left of 107, v2 what is left of 16, then exactly what is left of
 * 16 + len. Every one of them may still be header, so a caller that peeks
 * at most this, feeds it and takes `used` off the socket always makes
 * progress and never takes a payload byte. 0 once ended. */
size_t proxyproto_want(const struct proxyproto_parser *);

/* A header telling src and dst (ports included). Both AF_INET or both
 * AF_INET6 (IPv4-mapped IPv6 addresses of one side are not unmapped
 * here: do it first) give TCP4/TCP6; anything else, or NULLs, gives v1
 * "PROXY UNKNOWN\r\n" and, for v2, a PROXY command with family UNSPEC
 * and no address. v2 with local: the LOCAL command (src and dst
 * ignored), what health checks send. Returns the length written, or -1
 * (EINVAL: len too small; PROXYPROTO_ENCODE_MAX always fits). */
ssize_t proxyproto_encode_v1(char *buf, size_t len,
    const struct sockaddr *src, const struct sockaddr *dst);
ssize_t proxyproto_encode_v2(uint8_t *buf, size_t len,
    const struct sockaddr *src, const struct sockaddr *dst, bool local);

/* CRC32C (Castagnoli) of len bytes, continuing from crc (0 to start),
 * as the PP2_TYPE_CRC32C TLV carries it. */
uint32_t proxyproto_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
