/* tests/test_tlshello.h: what test_tlshello.c (the harness, hello
 * builders, hellos that parse) shares with test_tlshello_bad.c (hellos
 * that do not: not TLS, invalid, too large); one program. */
#ifndef TEST_TLSHELLO_H
#define TEST_TLSHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/tlshello.h"

#define BIG (1u << 20)              /* a max that no vector here reaches */
#define REC 5                       /* record header */
#define HS 4                        /* handshake header */

/* What feeding a vector gave. */
struct outcome {
	enum tlshello_status st;
	size_t used;
	const char *why;
	char name[TLSHELLO_NAME_MAX + 1];
	bool has_name;
};

#define MSG_MAX 40000

struct msg {
	uint8_t b[MSG_MAX];
	size_t n;
};

/* Where a built hello's fields are, as offsets into the stream. */
struct marks {
	size_t rec_len, hs_len, version, sid_len, cs_len, comp_len, exts_len;
	size_t sni_ext, sni_list, sni_entry, name, name_end, last_ext;
	size_t exts_open;
};

/* The vector a loop is on, named when it fails. */
extern const char *vector;
extern const uint16_t suites_plain[5];
/* Captured hellos (tlshello_vectors.h). */
extern const uint8_t ossl_sni[315], ossl_alpn[2373], ossl_tls12[206],
    ossl_nosni[297];

/* Fed every way (whole, split at every point, bytewise), the same
 * answer: st after used bytes, with name (NULL: none). */
struct outcome expect(const uint8_t *b, size_t n, size_t max,
    enum tlshello_status st, size_t used, const char *name);
/* The same for a one-record hello, and re-framed over records of 1, 7,
 * 100, 1000 and 16384 bytes: the answer at the same handshake byte. */
void expect_hello(const char *what, const uint8_t *b, size_t n,
    enum tlshello_status st, size_t used, const char *name);
/* The offset just past the first occurrence of s in b. */
size_t after(const uint8_t *b, size_t n, const char *s);

/* Building hellos: bytes, lengths filled in once what they count is
 * written, the fixed fields, extensions. */
void put8(struct msg *, unsigned v);
void put16(struct msg *, unsigned v);
void putn(struct msg *, const void *p, size_t n);
void fill(struct msg *, uint8_t v, size_t n);
size_t open_len(struct msg *, int bytes);
void close_len(struct msg *, size_t at, int bytes);
void put_list16(struct msg *, int bytes, const uint16_t *v, size_t n);
void hello_begin(struct msg *, struct marks *, const uint16_t *cs, size_t ncs);
void hello_end(struct msg *, struct marks *);
size_t ext_open(struct msg *, struct marks *, unsigned type);
void ext_fill(struct msg *, struct marks *, unsigned type, uint8_t v, size_t len);
void ext_bytes(struct msg *, struct marks *, unsigned type, const void *p, size_t len);
void ext_sni_n(struct msg *, struct marks *, const char *name, size_t n);
void ext_sni(struct msg *, struct marks *, const char *name);
/* A plain TLS 1.3 hello, server_name first (name NULL: none). */
void build_simple(struct msg *, struct marks *, const char *name);
/* Records of at most k bytes holding a one-record hello's handshake. */
void reframe(const uint8_t *rec, size_t n, size_t k, struct msg *out);

/* test_tlshello_bad.c */
void test_not_tls(void **state);
void test_invalid_records(void **state);
void test_invalid_fields(void **state);
void test_invalid_server_name(void **state);
void test_too_large(void **state);
void test_name_before_done(void **state);

#endif
