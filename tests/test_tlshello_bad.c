/* tests/test_tlshello_bad.c: ClientHellos the parser must not take:
 * not TLS (known from the first bytes), INVALID (each rule of RFC 8446
 * §4.1.2/§5.1 and RFC 6066 §3 it checks, at the byte that breaks it), and
 * TOO_LARGE (by declared length, at once, and by bytes). Part of the
 * test_tlshello program (test_tlshello.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "test_tlshello.h"

void
test_not_tls(void **state)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
	/* SSLv2-compatible CLIENT-HELLO (RFC 5246 E.2): 2-byte length with the
	 * high bit set, msg_type 1, version 3.1. */
	static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15,
		0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x2f, 0x00, 0x00, 0x35 };
	static const uint8_t appdata[] = { 0x17, 0x03, 0x03, 0x00, 0x01, 0x00 };
	static const uint8_t major2[] = { 0x16, 0x02, 0x00, 0x00, 0x10 };
	static const uint8_t major0x80[] = { 0x16, 0x80, 0x01 };
	struct outcome o;

	(void)state;
	vector = "http";
	o = expect((const uint8_t *)http, strlen(http), BIG, TLSHELLO_NOT_TLS, 1, NULL);
	assert_string_equal(o.why, "first byte is not 22, a TLS handshake record");
	vector = "sslv2";
	o = expect(sslv2, sizeof(sslv2), BIG, TLSHELLO_NOT_TLS, 1, NULL);
	assert_non_null(strstr(o.why, "SSLv2"));
	vector = "application_data first";
	expect(appdata, sizeof(appdata), BIG, TLSHELLO_NOT_TLS, 1, NULL);
	vector = "record major 2";
	expect(major2, sizeof(major2), BIG, TLSHELLO_NOT_TLS, 2, NULL);
	vector = "record major 0x80";
	expect(major0x80, sizeof(major0x80), BIG, TLSHELLO_NOT_TLS, 2, NULL);
	/* Not yet known: nothing, 0x16, 0x16 0x03. */
	vector = "prefixes";
	expect(major2, 0, BIG, TLSHELLO_MORE, 0, NULL);
	expect(major2, 1, BIG, TLSHELLO_MORE, 1, NULL);
	expect(ossl_sni, 2, BIG, TLSHELLO_MORE, 2, NULL);
	vector = NULL;
}

void
test_invalid_records(void **state)
{
	static const uint8_t len0[] = { 0x16, 0x03, 0x01, 0x00, 0x00, 0x01 };
	static const uint8_t len_max[] = { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01 };
	static const uint8_t len_over[] = { 0x16, 0x03, 0x01, 0x40, 0x01, 0x01 };
	static const uint8_t ctypes[] = { 20, 21, 23, 24, 0x80 };
	static struct msg m, f;
	struct marks k;
	const size_t rec2 = 2 * (REC + 7);  /* the third record, in records of 7 */
	struct outcome o;

	(void)state;
	vector = "record length 0";
	expect(len0, sizeof(len0), BIG, TLSHELLO_INVALID, 5, NULL);
	vector = "record length 2^14";
	expect(len_max, sizeof(len_max), BIG, TLSHELLO_MORE, sizeof(len_max), NULL);
	vector = "record length 2^14 + 1";
	expect(len_over, sizeof(len_over), BIG, TLSHELLO_INVALID, 5, NULL);

	build_simple(&m, &k, "a.example");
	reframe(m.b, m.n, 7, &f);
	vector = "records of 7";
	expect(f.b, f.n, BIG, TLSHELLO_DONE,
	    (k.name_end - REC) + REC * ((k.name_end - REC + 6) / 7), "a.example");
	/* A later record's minor version is not judged. */
	f.b[rec2 + 2] = 0x03;
	vector = "records of 7, one 3.3";
	expect(f.b, f.n, BIG, TLSHELLO_DONE,
	    (k.name_end - REC) + REC * ((k.name_end - REC + 6) / 7), "a.example");
	for (size_t i = 0; i < sizeof(ctypes); i++) {
		reframe(m.b, m.n, 7, &f);
		f.b[rec2] = ctypes[i];
		vector = "a record of another type inside the hello";
		o = expect(f.b, f.n, BIG, TLSHELLO_INVALID, rec2 + 1, NULL);
		if (ctypes[i] == 23)
			assert_string_equal(o.why, "record type 23 (application_data) "
			    "before the ClientHello ended");
	}
	reframe(m.b, m.n, 7, &f);
	f.b[rec2 + 1] = 0x02;
	vector = "a later record of major 2";
	expect(f.b, f.n, BIG, TLSHELLO_INVALID, rec2 + 2, NULL);
	reframe(m.b, m.n, 7, &f);
	f.b[rec2 + 3] = 0;
	f.b[rec2 + 4] = 0;
	vector = "a later record of length 0";
	expect(f.b, f.n, BIG, TLSHELLO_INVALID, rec2 + 5, NULL);
	reframe(m.b, m.n, 7, &f);
	f.b[rec2 + 3] = 0x40;
	f.b[rec2 + 4] = 0x01;
	vector = "a later record over 2^14";
	expect(f.b, f.n, BIG, TLSHELLO_INVALID, rec2 + 5, NULL);
	vector = NULL;
}

/* A length field of the hello set to v (bytes wide, big-endian). */
static void
set_len(struct msg *m, size_t at, int bytes, size_t v)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		m->b[at + (size_t)i] = (uint8_t)(v & 0xff);
}

static size_t
get16(const struct msg *m, size_t at)
{
	return (size_t)m->b[at] << 8 | m->b[at + 1];
}

void
test_invalid_fields(void **state)
{
	static const uint8_t hs0[] = { 0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00 };
	static const uint8_t hs10[] = { 0x16, 0x03, 0x01, 0x00, 0x0e, 0x01, 0x00, 0x00,
		0x0a, 0x03, 0x03, 1, 2, 3, 4, 5, 6, 7, 8 };
	static struct msg m;
	struct marks k;
	size_t pad;

	(void)state;
	build_simple(&m, &k, "a.example");
	m.b[REC] = 2;
	expect_hello("ServerHello", m.b, m.n, TLSHELLO_INVALID, REC + 1, NULL);
	expect_hello("hello of length 0", hs0, sizeof(hs0), TLSHELLO_INVALID, 9, NULL);
	expect_hello("hello of length 10", hs10, sizeof(hs10), TLSHELLO_INVALID, 11, NULL);

	build_simple(&m, &k, "a.example");
	m.b[k.version] = 2;
	expect_hello("version 2.3", m.b, m.n, TLSHELLO_INVALID, k.version + 2, NULL);
	build_simple(&m, &k, "a.example");
	m.b[k.sid_len] = 33;
	expect_hello("session_id 33", m.b, m.n, TLSHELLO_INVALID, k.sid_len + 1, NULL);
	build_simple(&m, &k, "a.example");
	set_len(&m, k.cs_len, 2, 9);
	expect_hello("cipher_suites odd", m.b, m.n, TLSHELLO_INVALID, k.cs_len + 2, NULL);
	set_len(&m, k.cs_len, 2, 0);
	expect_hello("cipher_suites empty", m.b, m.n, TLSHELLO_INVALID, k.cs_len + 2, NULL);
	set_len(&m, k.cs_len, 2, 0xfffe);
	expect_hello("cipher_suites overrun", m.b, m.n, TLSHELLO_INVALID, k.cs_len + 2, NULL);
	build_simple(&m, &k, "a.example");
	m.b[k.comp_len] = 0;
	expect_hello("compression_methods empty", m.b, m.n, TLSHELLO_INVALID,
	    k.comp_len + 1, NULL);
	m.b[k.comp_len] = 0xff;
	expect_hello("compression_methods overrun", m.b, m.n, TLSHELLO_INVALID,
	    k.comp_len + 1, NULL);

	/* The extensions block: exactly the rest of the hello. */
	build_simple(&m, &k, "a.example");
	set_len(&m, k.exts_len, 2, get16(&m, k.exts_len) + 1);
	expect_hello("extensions one byte long", m.b, m.n, TLSHELLO_INVALID,
	    k.exts_len + 2, NULL);
	set_len(&m, k.exts_len, 2, get16(&m, k.exts_len) - 2);
	expect_hello("extensions one byte short", m.b, m.n, TLSHELLO_INVALID,
	    k.exts_len + 2, NULL);
	/* One byte where the extensions length would be. */
	hello_begin(&m, &k, suites_plain, 5);
	m.n -= 1;
	k.exts_open = 0;
	hello_end(&m, &k);
	expect_hello("a stray byte after compression_methods", m.b, m.n,
	    TLSHELLO_INVALID, k.comp_len + 2, NULL);

	/* Extensions (no server_name, so every one is walked). */
	build_simple(&m, &k, NULL);
	set_len(&m, k.last_ext + 2, 2, get16(&m, k.last_ext + 2) + 1);
	expect_hello("an extension overrunning the block", m.b, m.n, TLSHELLO_INVALID,
	    k.last_ext + 4, NULL);
	for (size_t extra = 1; extra <= 3; extra++) {
		hello_begin(&m, &k, suites_plain, 5);
		ext_fill(&m, &k, 0x0015, 0, 4);
		fill(&m, 0xee, extra);
		hello_end(&m, &k);
		expect_hello("bytes after the last extension", m.b, m.n, TLSHELLO_INVALID,
		    m.n - extra, NULL);
	}
	/* Padding before server_name, its length past the block's end
	 * (server_name included): refused before the name is reached. */
	hello_begin(&m, &k, suites_plain, 5);
	ext_fill(&m, &k, 0x0015, 0, 3000);
	pad = k.last_ext;
	ext_sni(&m, &k, "a.example");
	hello_end(&m, &k);
	set_len(&m, pad + 2, 2, 3100);
	expect_hello("padding overrunning, then server_name", m.b, m.n,
	    TLSHELLO_INVALID, pad + 4, NULL);
}

void
test_invalid_server_name(void **state)
{
	static struct msg m;
	struct marks k;
	/* server_name extensions as raw bytes, refused at byte `at` of it. */
	static const struct {
		const char *what;
		uint8_t data[5];
		size_t len, at;
	} raw[] = {
		{ "server_name of 0 bytes", { 0 }, 0, 4 },
		{ "server_name of 1 byte", { 0 }, 1, 4 },
		{ "server_name list empty", { 0, 0 }, 2, 6 },
		{ "server_name entry cut short", { 0, 2, 0, 0 }, 4, 6 },
		{ "host_name empty", { 0, 3, 0, 0, 0 }, 5, 9 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		hello_begin(&m, &k, suites_plain, 5);
		k.sni_ext = m.n;
		ext_bytes(&m, &k, 0, raw[i].data, raw[i].len);
		ext_fill(&m, &k, 0x0015, 0, 4);
		hello_end(&m, &k);
		expect_hello(raw[i].what, m.b, m.n, TLSHELLO_INVALID,
		    k.sni_ext + raw[i].at, NULL);
	}

	build_simple(&m, &k, "a.example");
	set_len(&m, k.sni_list, 2, get16(&m, k.sni_list) + 1);
	expect_hello("server_name list overrunning its extension", m.b, m.n,
	    TLSHELLO_INVALID, k.sni_list + 2, NULL);
	set_len(&m, k.sni_list, 2, get16(&m, k.sni_list) - 2);
	expect_hello("server_name list short of its extension", m.b, m.n,
	    TLSHELLO_INVALID, k.sni_list + 2, NULL);
	build_simple(&m, &k, "a.example");
	set_len(&m, k.sni_entry + 1, 2, 10);
	expect_hello("host_name overrunning its list", m.b, m.n, TLSHELLO_INVALID,
	    k.sni_entry + 3, NULL);
	build_simple(&m, &k, "a.example");
	set_len(&m, k.sni_ext + 2, 2, get16(&m, k.sni_ext + 2) + 100);
	expect_hello("server_name overrunning the block", m.b, m.n, TLSHELLO_INVALID,
	    k.sni_ext + 4, NULL);
}

void
test_too_large(void **state)
{
	/* A hello declared 20,000 bytes in a first record of 2^14: at least
	 * 9 + 20,000 + one more record header (5). */
	static const uint8_t big[] = { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x4e,
		0x20, 0x03, 0x03 };
	/* The same in a first record of 100: two more records at least. */
	static const uint8_t big100[] = { 0x16, 0x03, 0x01, 0x00, 0x64, 0x01, 0x00,
		0x4e, 0x20, 0x03, 0x03 };
	static const uint8_t huge[] = { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff,
		0xff, 0xff };
	static struct msg m, f;
	struct marks k;
	struct outcome o;
	size_t h, framed;

	(void)state;
	vector = "declared 20000";
	o = expect(big, sizeof(big), 20013, TLSHELLO_TOO_LARGE, 9, NULL);
	assert_non_null(strstr(o.why, "declared"));
	expect(big, sizeof(big), 20014, TLSHELLO_MORE, sizeof(big), NULL);
	vector = "declared 20000, first record 100";
	expect(big100, sizeof(big100), 20018, TLSHELLO_TOO_LARGE, 9, NULL);
	expect(big100, sizeof(big100), 20019, TLSHELLO_MORE, sizeof(big100), NULL);
	vector = "declared 2^24 - 1";
	expect(huge, sizeof(huge), BIG, TLSHELLO_TOO_LARGE, 9, NULL);

	/* A hello exactly max long is read; one byte less is refused at its
	 * handshake header. */
	vector = "openssl, max = its length";
	expect(ossl_nosni, sizeof(ossl_nosni), sizeof(ossl_nosni), TLSHELLO_DONE,
	    sizeof(ossl_nosni), NULL);
	expect(ossl_sni, sizeof(ossl_sni), sizeof(ossl_sni), TLSHELLO_DONE,
	    after(ossl_sni, sizeof(ossl_sni), "a.example"), "a.example");
	vector = "openssl, max = its length - 1";
	expect(ossl_sni, sizeof(ossl_sni), sizeof(ossl_sni) - 1, TLSHELLO_TOO_LARGE,
	    9, NULL);

	/* By bytes: before the handshake header, and when small records
	 * cost more than the declared length allowed for. */
	vector = "max 5";
	o = expect(ossl_sni, sizeof(ossl_sni), 5, TLSHELLO_TOO_LARGE, 5, NULL);
	assert_null(strstr(o.why, "declared"));
	vector = "max 1";
	expect(ossl_sni, sizeof(ossl_sni), 1, TLSHELLO_TOO_LARGE, 1, NULL);
	vector = "max 1, http";
	expect((const uint8_t *)"GET /", 5, 1, TLSHELLO_NOT_TLS, 1, NULL);
	vector = "max 0";
	expect(ossl_sni, sizeof(ossl_sni), 0, TLSHELLO_TOO_LARGE, 0, NULL);
	expect(ossl_sni, 0, 0, TLSHELLO_MORE, 0, NULL);

	hello_begin(&m, &k, suites_plain, 5);
	ext_fill(&m, &k, 0x0015, 0, 2100);
	ext_sni(&m, &k, "pad.example");
	hello_end(&m, &k);
	reframe(m.b, m.n, 100, &f);
	h = k.name_end - REC;
	framed = h + REC * ((h + 99) / 100);
	assert_true(framed > m.n + 5);
	vector = "padded, records of 100, max = its length + 5";
	expect(f.b, f.n, m.n + 5, TLSHELLO_TOO_LARGE, m.n + 5, NULL);
	vector = "padded, records of 100, max = where its name ends";
	expect(f.b, f.n, framed, TLSHELLO_DONE, framed, "pad.example");
	vector = NULL;
}

void
test_name_before_done(void **state)
{
	struct tlshello_parser p;
	size_t used;
	const char *why = "untouched";

	(void)state;
	tlshello_init(&p, BIG);
	assert_int_equal(tlshello_feed(&p, ossl_sni, 100, &used, &why), TLSHELLO_MORE);
	assert_int_equal(used, 100);
	assert_null(tlshello_name(&p));
	assert_string_equal(why, "untouched");
	assert_int_equal(tlshello_feed(&p, ossl_sni + 100, sizeof(ossl_sni) - 100, &used,
	    NULL), TLSHELLO_DONE);
	assert_string_equal(tlshello_name(&p), "a.example");
	/* An INVALID with why NULL is fine. */
	tlshello_init(&p, BIG);
	assert_int_equal(tlshello_feed(&p, (const uint8_t *)"\x16\x03\x01\x00\x00", 5,
	    &used, NULL), TLSHELLO_INVALID);
	assert_null(tlshello_name(&p));
}

