/* tests/fuzz/fuzz_tlshello.c: the ClientHello parser over any split of
 * its bytes, any limit, and any re-framing of its records.
 *
 * Input: byte 0's low 3 bits give n, the number of pieces chosen by the
 * input, and its high 5 bits k, a record size for the re-framing below;
 * bytes 1 and 2 give max (big-endian; 0 means 1 MiB, so the limit is
 * sometimes out of the way); the next n bytes are the pieces' lengths
 * (0..255; a 0 is an empty feed); the rest is the stream, fed in those
 * pieces and its remainder in one last piece. The same stream is then fed
 * whole, and one byte at a time. What must hold (tlshello.h):
 *   - every way of feeding ends with the same status, the same bytes
 *     used, the same reason and the same name;
 *   - used is at most the bytes fed and at most max; with MORE every fed
 *     byte was taken;
 *   - an ended parser returns its status again and takes nothing;
 *   - NOT_TLS is decided within 2 bytes; a name is 1..255 bytes of
 *     0x21..0x7e, none upper case; no name before DONE.
 * Then, when the stream's first record held a hello that ended DONE, its
 * handshake bytes re-framed over records of k + 1 bytes end DONE too,
 * with the same name, at the same handshake byte. */
#include <string.h>

#include "spliced/tlshello.h"

#include "fuzz.h"

#define BIG (1u << 20)
#define REC 5

struct outcome {
	enum tlshello_status status;
	size_t used;                /* over all feeds */
	const char *why;
	char name[TLSHELLO_NAME_MAX + 1];
	bool has_name;
};

/* One feed, with the per-call promises checked. */
static enum tlshello_status
feed(struct tlshello_parser *p, const uint8_t *buf, size_t len, size_t *used,
    const char **why)
{
	enum tlshello_status st;

	*used = (size_t)-1;
	st = tlshello_feed(p, buf, len, used, why);
	FUZZ_CHECK(*used <= len);
	switch (st) {
	case TLSHELLO_MORE:
		FUZZ_CHECK(*used == len);
		FUZZ_CHECK(tlshello_name(p) == NULL);
		break;
	case TLSHELLO_DONE:
		break;
	case TLSHELLO_NOT_TLS:
	case TLSHELLO_TOO_LARGE:
	case TLSHELLO_INVALID:
		FUZZ_CHECK(*why != NULL && (*why)[0] != '\0');
		FUZZ_CHECK(tlshello_name(p) == NULL);
		break;
	default:
		FUZZ_CHECK(!"a status tlshello.h does not name");
	}
	return st;
}

/* The stream in the given pieces (the last taking the rest); stops at the
 * first end status, then checks that a further feed changes nothing. */
static void
run(const uint8_t *s, size_t len, size_t max, const size_t *pieces,
    size_t npieces, struct outcome *o)
{
	struct tlshello_parser p;
	const char *why = NULL, *again;
	size_t at = 0, used, k = 0;

	memset(o, 0, sizeof(*o));
	tlshello_init(&p, max);
	FUZZ_CHECK(tlshello_name(&p) == NULL);
	o->status = TLSHELLO_MORE;
	while (o->status == TLSHELLO_MORE && at < len) {
		size_t n = k < npieces ? pieces[k++] : len - at;

		if (n > len - at)
			n = len - at;
		o->status = feed(&p, s + at, n, &used, &why);
		o->used += used;
		at += n;
	}
	if (o->status != TLSHELLO_MORE) {
		again = NULL;
		FUZZ_CHECK(feed(&p, s, len, &used, &again) == o->status);
		FUZZ_CHECK(used == 0);
		if (o->status != TLSHELLO_DONE) {
			FUZZ_CHECK(again == why);
			o->why = why;
		}
	}
	if (o->status == TLSHELLO_DONE && tlshello_name(&p) != NULL) {
		FUZZ_CHECK(strlen(tlshello_name(&p)) <= TLSHELLO_NAME_MAX);
		strcpy(o->name, tlshello_name(&p));
		o->has_name = true;
	}
}

static void
run_bytes(const uint8_t *s, size_t len, size_t max, struct outcome *o)
{
	struct tlshello_parser p;
	const char *why = NULL;
	size_t used;

	memset(o, 0, sizeof(*o));
	tlshello_init(&p, max);
	o->status = TLSHELLO_MORE;
	for (size_t at = 0; o->status == TLSHELLO_MORE && at < len; at++) {
		o->status = feed(&p, s + at, 1, &used, &why);
		o->used += used;
	}
	if (o->status != TLSHELLO_MORE && o->status != TLSHELLO_DONE)
		o->why = why;
	if (tlshello_name(&p) != NULL) {
		strcpy(o->name, tlshello_name(&p));
		o->has_name = true;
	}
}

static void
same(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->status == b->status);
	FUZZ_CHECK(a->used == b->used);
	FUZZ_CHECK(a->why == b->why);
	FUZZ_CHECK(a->has_name == b->has_name);
	FUZZ_CHECK(strcmp(a->name, b->name) == 0);
}

static void
check(const uint8_t *s, size_t len, size_t max, const struct outcome *o)
{
	FUZZ_CHECK(o->used <= len && o->used <= max);
	if (o->status == TLSHELLO_MORE)
		FUZZ_CHECK(o->used == len);
	if (o->status == TLSHELLO_NOT_TLS) {
		FUZZ_CHECK(o->used >= 1 && o->used <= 2);
		FUZZ_CHECK(s[0] != 0x16 || (o->used == 2 && s[1] != 0x03));
	}
	if (o->status == TLSHELLO_DONE) {
		FUZZ_CHECK(s[0] == 0x16 && s[1] == 0x03);
		/* Record header, handshake header, and 41 bytes of fields at least. */
		FUZZ_CHECK(o->used >= REC + 4 + 41);
	}
	if (!o->has_name)
		return;
	FUZZ_CHECK(o->status == TLSHELLO_DONE);
	FUZZ_CHECK(o->name[0] != '\0');
	for (const char *c = o->name; *c != '\0'; c++) {
		FUZZ_CHECK(*c >= 0x21 && *c <= 0x7e);
		FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
	}
}

/* A DONE hello within its first record, its handshake bytes re-framed
 * over records of k bytes: DONE, the same name, at the same handshake
 * byte. */
static void
reframe(const uint8_t *s, size_t len, size_t k, const struct outcome *whole)
{
	static uint8_t out[TLSHELLO_RECORD_MAX * (REC + 1) + REC];
	static const size_t none[1];
	struct outcome o;
	size_t reclen, hs, n = 0;

	if (whole->status != TLSHELLO_DONE)
		return;
	reclen = (size_t)s[3] << 8 | s[4];
	if (whole->used > REC + reclen || len < REC + reclen)
		return;
	for (size_t at = REC; at < REC + reclen; at += k) {
		size_t chunk = REC + reclen - at < k ? REC + reclen - at : k;

		memcpy(out + n, s, 3);
		out[n + 3] = (uint8_t)(chunk >> 8);
		out[n + 4] = (uint8_t)chunk;
		memcpy(out + n + REC, s + at, chunk);
		n += REC + chunk;
	}
	/* No limit: records of k cost more headers than the declared
	 * length check allowed for at max. */
	run(out, n, (size_t)-1, none, 0, &o);
	hs = whole->used - REC;
	FUZZ_CHECK(o.status == TLSHELLO_DONE);
	FUZZ_CHECK(o.used == hs + REC * ((hs + k - 1) / k));
	FUZZ_CHECK(o.has_name == whole->has_name);
	FUZZ_CHECK(strcmp(o.name, whole->name) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome split, whole, bytes;
	size_t pieces[8], npieces, i, max, k;
	static const size_t none[1];
	const uint8_t *s;
	size_t len;

	if (size < 3)
		return 0;
	npieces = data[0] & 7;
	k = (size_t)(data[0] >> 3) + 1;
	max = (size_t)data[1] << 8 | data[2];
	if (max == 0)
		max = BIG;
	if (size < 3 + npieces)
		return 0;
	for (i = 0; i < npieces; i++)
		pieces[i] = data[3 + i];
	s = data + 3 + npieces;
	len = size - 3 - npieces;

	run(s, len, max, pieces, npieces, &split);
	run(s, len, max, none, 0, &whole);
	run_bytes(s, len, max, &bytes);
	same(&split, &whole);
	same(&bytes, &whole);
	check(s, len, max, &whole);
	reframe(s, len, k, &whole);
	return 0;
}
