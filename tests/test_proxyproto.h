/* tests/test_proxyproto.h: what test_proxyproto.c (the harness, v1 and
 * CRC32C) shares with test_proxyproto_v2.c (v2); one program. */
#ifndef TEST_PROXYPROTO_H
#define TEST_PROXYPROTO_H

#include "spliced/proxyproto.h"

/* What feeding a vector gave: status, header bytes used in all, result
 * (zeros unless DONE), reason (NULL unless INVALID or TOO_LARGE). */
struct outcome {
	enum proxyproto_status st;
	size_t used;
	struct proxyproto_result res;
	const char *why;
};

/* Feed b[0..n) whole, split at every point, byte by byte and as conn.c
 * will (peeking want()); all must give st and used (and one result); a
 * DONE header is fed again with payload behind it, never taken. */
struct outcome expect_n(const uint8_t *b, size_t n, enum proxyproto_status st, size_t used);
struct outcome expect_s(const char *s, enum proxyproto_status st, size_t used);
void assert_in4(const struct sockaddr_storage *ss, socklen_t len, const char *ip, unsigned port);
void assert_in6(const struct sockaddr_storage *ss, socklen_t len, const char *ip, unsigned port);

void test_v2_encode(void **state);
void test_v2_fixed_part(void **state);
void test_v2_short_address_block(void **state);
void test_v2_local(void **state);
void test_v2_tlvs(void **state);
void test_v2_crc32c(void **state);
void test_v2_largest(void **state);
void test_v2_want(void **state);

#endif
