/* tests/test_tlshello.c: the ClientHello parser (tlshello.h) against
 * hellos OpenSSL sent (tlshello_vectors.h), a Chrome-like hello with
 * post-quantum key shares and GREASE, and hand-built hellos that break
 * each rule of RFC 8446 §4.1.2/§5.1 and RFC 6066 §3 the parser checks.
 *
 * Every vector goes through expect(), which feeds it whole, split in two
 * at every point (every 97th past 4 KiB), and one byte at a time, and
 * asserts the same status, bytes used, reason and name each time, and
 * that an ended parser stays ended; a DONE hello is also fed with a
 * record behind it, which must not be taken. expect_hello() also
 * re-frames a one-record hello over records of k bytes (k = 1, 7, 100,
 * 1000, 16384), where the answer must come at the same handshake byte.
 * The hellos that must not parse are in test_tlshello_bad.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/tlshello.h"
#include "test_tlshello.h"
#include "tlshello_vectors.h"

/* ---- the harness ---- */

enum mode { WHOLE, SPLIT, BYTES };

/* The vector a loop is on, named when it fails. */
const char *vector;

/* After an end status: it stays, and nothing more is taken. */
static void
assert_sticky(struct tlshello_parser *p, const struct outcome *o)
{
	static const uint8_t more[4] = { 0x16, 0x03, 0x01, 0x00 };
	const char *why = NULL;
	size_t used = 99;

	assert_int_equal(tlshello_feed(p, more, sizeof(more), &used, &why), o->st);
	assert_int_equal(used, 0);
	if (o->st == TLSHELLO_DONE)
		assert_null(why);
	else
		assert_ptr_equal(why, o->why);
}

/* One feed, folded into o; false once the parser ended. */
static bool
step(struct tlshello_parser *p, struct outcome *o, const uint8_t *b, size_t n)
{
	size_t used = 99;

	o->st = tlshello_feed(p, b, n, &used, &o->why);
	assert_true(used <= n);
	if (o->st == TLSHELLO_MORE) {
		assert_int_equal(used, n);
		assert_null(tlshello_name(p));
	}
	o->used += used;
	return o->st == TLSHELLO_MORE;
}

static struct outcome
run(const uint8_t *b, size_t n, size_t max, enum mode mode, size_t split)
{
	struct tlshello_parser p;
	struct outcome o;
	const char *name;

	memset(&o, 0, sizeof(o));
	tlshello_init(&p, max);
	assert_null(tlshello_name(&p));
	switch (mode) {
	case WHOLE:
		step(&p, &o, b, n);
		break;
	case SPLIT:
		if (step(&p, &o, b, split))
			step(&p, &o, b + split, n - split);
		break;
	case BYTES:
		o.st = TLSHELLO_MORE;
		for (size_t off = 0; off < n; off++)
			if (!step(&p, &o, b + off, 1))
				break;
		break;
	}
	if (o.st != TLSHELLO_MORE)
		assert_sticky(&p, &o);
	if ((name = tlshello_name(&p)) != NULL) {
		assert_int_equal(o.st, TLSHELLO_DONE);
		assert_true(strlen(name) <= TLSHELLO_NAME_MAX);
		strcpy(o.name, name);
		o.has_name = true;
	}
	return o;
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *how, size_t k)
{
	if (a->st != b->st || a->used != b->used || a->why != b->why ||
	    a->has_name != b->has_name || strcmp(a->name, b->name) != 0)
		fail_msg("%s%s%s (%zu): status %d used %zu name %s, whole: status %d used %zu name %s",
		    vector ? vector : "", vector ? ": " : "", how, k, b->st, b->used,
		    b->has_name ? b->name : "-", a->st, a->used,
		    a->has_name ? a->name : "-");
}

/* Fed every way, the same answer: st after used bytes, with name (NULL:
 * none). */
struct outcome
expect(const uint8_t *b, size_t n, size_t max, enum tlshello_status st,
    size_t used, const char *name)
{
	struct outcome whole = run(b, n, max, WHOLE, 0), o;
	size_t stride = n <= 4096 ? 1 : 97;

	if (whole.st != st || whole.used != used)
		fail_msg("%s%sstatus %d used %zu (%s), expected status %d used %zu",
		    vector ? vector : "", vector ? ": " : "", whole.st, whole.used,
		    whole.why ? whole.why : "-", st, used);
	if (st == TLSHELLO_DONE) {
		assert_null(whole.why);
		if (name == NULL)
			assert_false(whole.has_name);
		else if (!whole.has_name || strcmp(whole.name, name) != 0)
			fail_msg("%s: name %s, expected %s", vector ? vector : "",
			    whole.has_name ? whole.name : "(none)", name);
	} else if (st != TLSHELLO_MORE) {
		assert_non_null(whole.why);
		assert_false(whole.has_name);
	}
	for (size_t k = 0; k <= n; k += stride) {
		o = run(b, n, max, SPLIT, k);
		assert_same(&whole, &o, "split", k);
	}
	o = run(b, n, max, BYTES, 0);
	assert_same(&whole, &o, "bytes", 0);
	if (st == TLSHELLO_DONE) {
		/* A record behind it (the client's next flight) is not taken. */
		static const uint8_t next[] = { 0x17, 0x03, 0x03, 0x00, 0x02, 'h', 'i' };
		uint8_t *two = malloc(n + sizeof(next));

		assert_non_null(two);
		memcpy(two, b, n);
		memcpy(two + n, next, sizeof(next));
		o = run(two, n + sizeof(next), max, WHOLE, 0);
		assert_same(&whole, &o, "payload", 0);
		o = run(two, n + sizeof(next), max, SPLIT, n);
		assert_same(&whole, &o, "payload split", n);
		free(two);
	}
	return whole;
}

/* ---- building hellos ---- */


void
put8(struct msg *m, unsigned v)
{
	assert_true(m->n < MSG_MAX);
	m->b[m->n++] = (uint8_t)v;
}

void
put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

void
putn(struct msg *m, const void *p, size_t n)
{
	assert_true(n <= MSG_MAX - m->n);
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

void
fill(struct msg *m, uint8_t v, size_t n)
{
	assert_true(n <= MSG_MAX - m->n);
	memset(m->b + m->n, v, n);
	m->n += n;
}

/* A length of `bytes` bytes, filled in by close_len once what it counts
 * is written. */
size_t
open_len(struct msg *m, int bytes)
{
	size_t at = m->n;

	fill(m, 0, (size_t)bytes);
	return at;
}

void
close_len(struct msg *m, size_t at, int bytes)
{
	size_t len = m->n - at - (size_t)bytes;

	for (int i = bytes - 1; i >= 0; i--, len >>= 8)
		m->b[at + (size_t)i] = (uint8_t)(len & 0xff);
}

/* A list of 16-bit values behind a length of `bytes` bytes. */
void
put_list16(struct msg *m, int bytes, const uint16_t *v, size_t n)
{
	size_t at = open_len(m, bytes);

	for (size_t i = 0; i < n; i++)
		put16(m, v[i]);
	close_len(m, at, bytes);
}


const uint16_t suites_plain[] = { 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f };

/* The record header, the handshake header and the fixed fields, up to an
 * open extensions block (hello_end closes them all). */
void
hello_begin(struct msg *m, struct marks *k, const uint16_t *cs, size_t ncs)
{
	memset(m, 0, sizeof(*m));
	memset(k, 0, sizeof(*k));
	put8(m, 0x16);
	put16(m, 0x0301);
	k->rec_len = open_len(m, 2);
	put8(m, 1);
	k->hs_len = open_len(m, 3);
	k->version = m->n;
	put16(m, 0x0303);
	for (unsigned i = 0; i < 32; i++)
		put8(m, 0xa0 + i);
	k->sid_len = m->n;
	put8(m, 32);
	for (unsigned i = 0; i < 32; i++)
		put8(m, 0x50 + i);
	k->cs_len = m->n;
	put_list16(m, 2, cs, ncs);
	k->comp_len = m->n;
	put8(m, 1);
	put8(m, 0);
	k->exts_len = k->exts_open = open_len(m, 2);
}

void
hello_end(struct msg *m, struct marks *k)
{
	if (k->exts_open != 0)
		close_len(m, k->exts_open, 2);
	close_len(m, k->hs_len, 3);
	close_len(m, k->rec_len, 2);
}

/* An extension's type and an open length (close_len(m, at, 2) ends it). */
size_t
ext_open(struct msg *m, struct marks *k, unsigned type)
{
	k->last_ext = m->n;
	put16(m, type);
	return open_len(m, 2);
}

/* An extension of type with len bytes of v. */
void
ext_fill(struct msg *m, struct marks *k, unsigned type, uint8_t v, size_t len)
{
	size_t at = ext_open(m, k, type);

	fill(m, v, len);
	close_len(m, at, 2);
}

void
ext_bytes(struct msg *m, struct marks *k, unsigned type, const void *p, size_t len)
{
	size_t at = ext_open(m, k, type);

	putn(m, p, len);
	close_len(m, at, 2);
}

/* server_name with one host_name entry (the name as given, n bytes). */
void
ext_sni_n(struct msg *m, struct marks *k, const char *name, size_t n)
{
	size_t ext, list;

	k->sni_ext = m->n;
	ext = ext_open(m, k, 0);
	k->sni_list = list = open_len(m, 2);
	k->sni_entry = m->n;
	put8(m, 0);
	put16(m, (unsigned)n);
	k->name = m->n;
	putn(m, name, n);
	k->name_end = m->n;
	close_len(m, list, 2);
	close_len(m, ext, 2);
}

void
ext_sni(struct msg *m, struct marks *k, const char *name)
{
	ext_sni_n(m, k, name, strlen(name));
}

/* A plain TLS 1.3 hello, OpenSSL's order: server_name first. */
void
build_simple(struct msg *m, struct marks *k, const char *name)
{
	static const uint8_t versions[] = { 4, 0x03, 0x04, 0x03, 0x03 };
	static const uint8_t groups[] = { 0, 4, 0x00, 0x1d, 0x00, 0x17 };

	hello_begin(m, k, suites_plain, sizeof(suites_plain) / sizeof(suites_plain[0]));
	if (name != NULL)
		ext_sni(m, k, name);
	ext_bytes(m, k, 0x000a, groups, sizeof(groups));
	ext_bytes(m, k, 0x002b, versions, sizeof(versions));
	hello_end(m, k);
}

/* Records of at most k bytes holding the handshake bytes of a one-record
 * hello (its header's type and version kept). */
void
reframe(const uint8_t *rec, size_t n, size_t k, struct msg *out)
{
	const uint8_t *hs = rec + REC;
	size_t left = n - REC, chunk;

	out->n = 0;
	while (left > 0) {
		chunk = left < k ? left : k;
		put8(out, rec[0]);
		put8(out, rec[1]);
		put8(out, rec[2]);
		put16(out, (unsigned)chunk);
		putn(out, hs, chunk);
		hs += chunk;
		left -= chunk;
	}
}

/* A one-record hello, every way expect() feeds it, then re-framed over
 * records of k bytes: the answer at the same handshake byte. */
void
expect_hello(const char *what, const uint8_t *b, size_t n, enum tlshello_status st,
    size_t used, const char *name)
{
	static const size_t ks[] = { 1, 7, 100, 1000, TLSHELLO_RECORD_MAX };
	static struct msg framed;
	char label[128];
	size_t hs = used - REC;     /* handshake bytes the answer took */

	vector = what;
	assert_true(used > REC && st != TLSHELLO_NOT_TLS && st != TLSHELLO_TOO_LARGE);
	expect(b, n, BIG, st, used, name);
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		snprintf(label, sizeof(label), "%s, records of %zu", what, ks[i]);
		vector = label;
		reframe(b, n, ks[i], &framed);
		expect(framed.b, framed.n, BIG, st, hs + REC * ((hs + ks[i] - 1) / ks[i]), name);
	}
	vector = NULL;
}

/* The offset just past the first occurrence of s in b (a name's end). */
size_t
after(const uint8_t *b, size_t n, const char *s)
{
	size_t len = strlen(s);

	for (size_t i = 0; i + len <= n; i++)
		if (memcmp(b + i, s, len) == 0)
			return i + len;
	fail_msg("\"%s\" not in the vector", s);
	return 0;
}

/* ---- Chrome-like and padded hellos ---- */

/* A GREASE value (RFC 8701): 0x?A?A. */
static unsigned
grease(unsigned i)
{
	return (i & 0xf) << 12 | 0x0a00 | (i & 0xf) << 4 | 0x0a;
}

/* Chrome's hello as of 2025 (its order without the shuffle): GREASE
 * first and last, X25519MLKEM768 (0x11ec) with its 1,216-byte share,
 * ECH GREASE. Over 1,500 bytes. */
static void
build_chrome(struct msg *m, struct marks *k, const char *name)
{
	uint16_t cs[16] = { 0, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c,
		0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035 };
	static const uint8_t alpn[] = { 0, 12, 2, 'h', '2', 8, 'h', 't', 't', 'p',
		'/', '1', '.', '1' };
	static const uint8_t status[] = { 1, 0, 0, 0, 0 };
	static const uint8_t sigalgs[] = { 0, 16, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
		0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01 };
	static const uint8_t ecpf[] = { 1, 0 }, reneg[] = { 0 }, pskm[] = { 1, 1 };
	static const uint8_t compress[] = { 2, 0, 2 };          /* brotli */
	static const uint8_t alps[] = { 0, 3, 2, 'h', '2' };
	size_t ext, list;
	const uint16_t groups[] = { (uint16_t)grease(5), 0x11ec, 0x001d, 0x0017, 0x0018 };
	const uint16_t versions[] = { (uint16_t)grease(9), 0x0304, 0x0303 };

	cs[0] = (uint16_t)grease(3);
	hello_begin(m, k, cs, 16);
	ext_fill(m, k, grease(7), 0, 0);
	ext_sni(m, k, name);
	ext_fill(m, k, 0x0017, 0, 0);                   /* extended_master_secret */
	ext_bytes(m, k, 0xff01, reneg, sizeof(reneg));  /* renegotiation_info */
	ext = ext_open(m, k, 0x000a);                   /* supported_groups */
	put_list16(m, 2, groups, 5);
	close_len(m, ext, 2);
	ext_bytes(m, k, 0x000b, ecpf, sizeof(ecpf));    /* ec_point_formats */
	ext_fill(m, k, 0x0023, 0, 0);                   /* session_ticket */
	ext_bytes(m, k, 0x0010, alpn, sizeof(alpn));    /* ALPN */
	ext_bytes(m, k, 0x0005, status, sizeof(status)); /* status_request */
	ext_bytes(m, k, 0x000d, sigalgs, sizeof(sigalgs));
	ext_fill(m, k, 0x0012, 0, 0);                   /* signed_certificate_timestamp */
	ext = ext_open(m, k, 0x0033);                   /* key_share */
	list = open_len(m, 2);
	put16(m, grease(5));
	put16(m, 1);
	put8(m, 0);
	put16(m, 0x11ec);
	put16(m, 1216);                                 /* ML-KEM-768 ek + X25519 */
	for (unsigned i = 0; i < 1216; i++)
		put8(m, (i * 131 + 7) & 0xff);
	put16(m, 0x001d);
	put16(m, 32);
	fill(m, 0x42, 32);
	close_len(m, list, 2);
	close_len(m, ext, 2);
	ext_bytes(m, k, 0x002d, pskm, sizeof(pskm));    /* psk_key_exchange_modes */
	ext = ext_open(m, k, 0x002b);                   /* supported_versions */
	put_list16(m, 1, versions, 3);
	close_len(m, ext, 2);
	ext_bytes(m, k, 0x001b, compress, sizeof(compress));
	ext_bytes(m, k, 0x44cd, alps, sizeof(alps));    /* application_settings */
	ext = ext_open(m, k, 0xfe0d);                   /* encrypted_client_hello */
	put8(m, 0);                                     /* outer */
	put16(m, 0x0001);                               /* HKDF-SHA256 */
	put16(m, 0x0001);                               /* AES-128-GCM */
	put8(m, 0x5c);                                  /* config_id */
	put16(m, 32);
	fill(m, 0x33, 32);                              /* enc */
	put16(m, 208);
	fill(m, 0x77, 208);                             /* payload */
	close_len(m, ext, 2);
	ext_fill(m, k, grease(11), 0, 1);
	hello_end(m, k);
}

/* ---- tests ---- */

static void
test_openssl_captured(void **state)
{
	(void)state;
	assert_true(sizeof(ossl_alpn) > 2048);
	expect_hello("openssl", ossl_sni, sizeof(ossl_sni), TLSHELLO_DONE,
	    after(ossl_sni, sizeof(ossl_sni), "a.example"), "a.example");
	expect_hello("openssl -alpn", ossl_alpn, sizeof(ossl_alpn), TLSHELLO_DONE,
	    after(ossl_alpn, sizeof(ossl_alpn), "a.example"), "a.example");
	expect_hello("openssl -no_tls1_3", ossl_tls12, sizeof(ossl_tls12), TLSHELLO_DONE,
	    after(ossl_tls12, sizeof(ossl_tls12), "a.example"), "a.example");
	expect_hello("openssl -noservername", ossl_nosni, sizeof(ossl_nosni),
	    TLSHELLO_DONE, sizeof(ossl_nosni), NULL);
}

static void
test_chrome_like(void **state)
{
	static struct msg m;
	struct marks k;

	(void)state;
	build_chrome(&m, &k, "www.a.example");
	assert_true(m.n > 1500);
	/* GREASE first and last; server_name second. */
	assert_int_equal(m.b[k.exts_len + 2] & 0x0f, 0x0a);
	assert_int_equal(m.b[k.exts_len + 3] & 0x0f, 0x0a);
	assert_int_equal(k.sni_ext, k.exts_len + 2 + 4);
	assert_int_equal(m.b[k.last_ext + 1] & 0x0f, 0x0a);
	expect_hello("chrome-like", m.b, m.n, TLSHELLO_DONE, k.name_end, "www.a.example");
	/* Without server_name the whole of it is read, GREASE and all. */
	memcpy(&m.b[k.sni_ext], "\x7a\x7a", 2);         /* another GREASE */
	expect_hello("chrome-like, server_name as GREASE", m.b, m.n, TLSHELLO_DONE,
	    m.n, NULL);
}

/* A hello over 2 KB whose name comes after the padding (RFC 7685), and
 * one whose server_name is its last extension. */
static void
test_padded(void **state)
{
	static struct msg m;
	struct marks k;
	static const uint8_t versions[] = { 2, 0x03, 0x04 };

	(void)state;
	hello_begin(&m, &k, suites_plain, 5);
	ext_bytes(&m, &k, 0x002b, versions, sizeof(versions));
	ext_fill(&m, &k, 0x0015, 0, 2100);
	ext_sni(&m, &k, "pad.example");
	ext_fill(&m, &k, 0x0015, 0, 10);
	hello_end(&m, &k);
	assert_true(m.n > 2048);
	expect_hello("padded", m.b, m.n, TLSHELLO_DONE, k.name_end, "pad.example");

	hello_begin(&m, &k, suites_plain, 5);
	ext_fill(&m, &k, 0x0015, 0, 2100);
	ext_bytes(&m, &k, 0x002b, versions, sizeof(versions));
	ext_sni(&m, &k, "last.example");
	hello_end(&m, &k);
	assert_int_equal(k.name_end, m.n);
	expect_hello("server_name last", m.b, m.n, TLSHELLO_DONE, m.n, "last.example");
}

static void
test_no_name(void **state)
{
	/* server_name lists: an entry of name_type 7 ("abc"); one of type 1
	 * (empty), then host_name b.example. */
	static const uint8_t other_only[] = { 0, 6, 7, 0, 3, 'a', 'b', 'c' };
	static const uint8_t other_then_host[] = { 0, 15, 1, 0, 0, 0, 0, 9,
		'b', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e' };
	static struct msg m;
	struct marks k;

	(void)state;
	build_simple(&m, &k, NULL);
	expect_hello("no server_name", m.b, m.n, TLSHELLO_DONE, m.n, NULL);

	/* No extensions block at all (TLS 1.2 and before allow it). */
	hello_begin(&m, &k, suites_plain, 5);
	m.n -= 2;
	k.exts_open = 0;
	hello_end(&m, &k);
	expect_hello("no extensions", m.b, m.n, TLSHELLO_DONE, m.n, NULL);

	/* An empty extensions block. */
	hello_begin(&m, &k, suites_plain, 5);
	hello_end(&m, &k);
	expect_hello("empty extensions", m.b, m.n, TLSHELLO_DONE, m.n, NULL);

	/* server_name whose only entry is of an unknown type: skipped; a
	 * second server_name extension is not read. */
	hello_begin(&m, &k, suites_plain, 5);
	ext_bytes(&m, &k, 0, other_only, sizeof(other_only));
	ext_sni(&m, &k, "second.example");
	ext_fill(&m, &k, 0x0015, 0, 3);
	hello_end(&m, &k);
	expect_hello("server_name without host_name", m.b, m.n, TLSHELLO_DONE, m.n, NULL);

	/* An unknown entry, then a host_name: the host_name. */
	hello_begin(&m, &k, suites_plain, 5);
	ext_bytes(&m, &k, 0, other_then_host, sizeof(other_then_host));
	hello_end(&m, &k);
	expect_hello("host_name after another name_type", m.b, m.n, TLSHELLO_DONE,
	    m.n, "b.example");
}

static void
test_names(void **state)
{
	static struct msg m;
	struct marks k;
	char name[300], want[300];

	(void)state;
	build_simple(&m, &k, "WWW.Example.COM.");
	expect_hello("upper case, trailing dot", m.b, m.n, TLSHELLO_DONE, k.name_end,
	    "www.example.com");
	build_simple(&m, &k, "x");
	expect_hello("one byte", m.b, m.n, TLSHELLO_DONE, k.name_end, "x");
	build_simple(&m, &k, "!*_~.A-z9");
	expect_hello("0x21..0x7e", m.b, m.n, TLSHELLO_DONE, k.name_end, "!*_~.a-z9");

	/* 255 bytes: the longest; 255 with its trailing dot; 256: too long. */
	for (size_t i = 0; i < sizeof(name); i++)
		name[i] = i % 64 == 63 ? '.' : (char)('A' + i % 26);
	name[255] = '\0';
	for (size_t i = 0; i <= 255; i++)
		want[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	build_simple(&m, &k, name);
	expect_hello("255 bytes", m.b, m.n, TLSHELLO_DONE, k.name_end, want);
	name[254] = '.';
	want[254] = '\0';
	build_simple(&m, &k, name);
	expect_hello("255 bytes with a trailing dot", m.b, m.n, TLSHELLO_DONE,
	    k.name_end, want);
	name[254] = 'x';
	name[255] = 'y';
	name[256] = '\0';
	build_simple(&m, &k, name);
	expect_hello("256 bytes", m.b, m.n, TLSHELLO_INVALID, k.sni_entry + 3, NULL);

	build_simple(&m, &k, ".");
	expect_hello("\".\"", m.b, m.n, TLSHELLO_INVALID, k.name_end, NULL);
	build_simple(&m, &k, "a.");
	expect_hello("\"a.\"", m.b, m.n, TLSHELLO_DONE, k.name_end, "a");

	/* Each byte outside 0x21..0x7e, refused where it stands. */
	static const uint8_t badbytes[] = { 0x00, 0x09, 0x20, 0x7f, 0x80, 0xc3, 0xff };
	for (size_t i = 0; i < sizeof(badbytes); i++) {
		build_simple(&m, &k, "abcd.example");
		m.b[k.name + 2] = badbytes[i];
		snprintf(name, sizeof(name), "host_name byte 0x%02x", badbytes[i]);
		expect_hello(name, m.b, m.n, TLSHELLO_INVALID, k.name + 3, NULL);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl_captured),
		cmocka_unit_test(test_chrome_like),
		cmocka_unit_test(test_padded),
		cmocka_unit_test(test_no_name),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_invalid_records),
		cmocka_unit_test(test_invalid_fields),
		cmocka_unit_test(test_invalid_server_name),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_name_before_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
