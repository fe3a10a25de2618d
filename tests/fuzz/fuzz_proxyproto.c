/* tests/fuzz/fuzz_proxyproto.c: the PROXY header parser over any split of
 * its bytes, and encode -> parse round trips.
 *
 * Input: byte 0's low 3 bits give n, the number of pieces chosen by the
 * input; the next n bytes are their lengths (0..255; a 0 is an empty
 * feed); the rest is the stream, fed in those pieces and its remainder in
 * one last piece. The same stream is then fed whole, and once more one
 * byte at a time within proxyproto_want(), as conn.c's peeks would. What
 * must hold (proxyproto.h):
 *   - every way of feeding ends with the same status, the same header
 *     length and the same result;
 *   - the header length is at most the bytes fed; with MORE every fed
 *     byte was taken; with DONE the header is at most 107 bytes (v1) or
 *     16 + 65535 (v2), is a v1 line ending in CRLF or a v2 header exactly
 *     16 + its length field long;
 *   - an ended parser returns its status again and takes nothing;
 *   - want is 0 once ended, and not 0 before.
 * Then addresses made from the input's first bytes are encoded (v1, v2,
 * v2 LOCAL) and parsed back to the same addresses. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "spliced/proxyproto.h"

#include "fuzz.h"

static const uint8_t v2sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

struct outcome {
	enum proxyproto_status status;
	size_t used;                /* header bytes, over all feeds */
	struct proxyproto_result res;
};

/* One feed, with the per-call promises checked. */
static enum proxyproto_status
feed(struct proxyproto_parser *p, const uint8_t *buf, size_t len,
    size_t *used, struct proxyproto_result *res)
{
	enum proxyproto_status st;
	const char *why = NULL;

	*used = (size_t)-1;
	st = proxyproto_feed(p, buf, len, used, res, &why);
	FUZZ_CHECK(*used <= len);
	switch (st) {
	case PROXYPROTO_MORE:
		FUZZ_CHECK(*used == len);
		FUZZ_CHECK(proxyproto_want(p) > 0);
		break;
	case PROXYPROTO_DONE:
		FUZZ_CHECK(proxyproto_want(p) == 0);
		break;
	case PROXYPROTO_INVALID:
	case PROXYPROTO_TOO_LARGE:
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		FUZZ_CHECK(proxyproto_want(p) == 0);
		break;
	default:
		FUZZ_CHECK(!"a status proxyproto.h does not name");
	}
	return st;
}

/* The stream in the given pieces (the last taking the rest); stops at the
 * first end status, then checks that a further feed changes nothing. */
static void
run(const uint8_t *s, size_t len, const size_t *pieces, size_t npieces,
    struct outcome *o)
{
	struct proxyproto_parser p;
	struct proxyproto_result again;
	size_t at = 0, used, k = 0;

	memset(o, 0, sizeof(*o));
	proxyproto_init(&p);
	FUZZ_CHECK(proxyproto_want(&p) > 0);
	o->status = PROXYPROTO_MORE;
	while (o->status == PROXYPROTO_MORE && at < len) {
		size_t n = k < npieces ? pieces[k++] : len - at;

		if (n > len - at)
			n = len - at;
		o->status = feed(&p, s + at, n, &used, &o->res);
		o->used += used;
		at += n;
	}
	if (o->status != PROXYPROTO_MORE) {
		FUZZ_CHECK(feed(&p, s, len, &used, &again) == o->status);
		FUZZ_CHECK(used == 0);
	}
}

/* As conn.c reads: never more than the parser wants, here a byte at a
 * time up to that. */
static void
run_wanted(const uint8_t *s, size_t len, struct outcome *o)
{
	struct proxyproto_parser p;
	size_t at = 0, used, want;

	memset(o, 0, sizeof(*o));
	proxyproto_init(&p);
	o->status = PROXYPROTO_MORE;
	while (o->status == PROXYPROTO_MORE && at < len) {
		want = proxyproto_want(&p);
		FUZZ_CHECK(want > 0);
		o->status = feed(&p, s + at, 1, &used, &o->res);
		o->used += used;
		at++;
	}
}

static bool
same_sa(const struct sockaddr_storage *a, socklen_t alen,
    const struct sockaddr_storage *b, socklen_t blen)
{
	return alen == blen && alen <= sizeof(*a) && memcmp(a, b, alen) == 0;
}

static void
same(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->status == b->status);
	if (a->status == PROXYPROTO_MORE)
		return;         /* the stream ran out: used is all of it */
	if (a->status != PROXYPROTO_DONE)
		return;         /* where an error is seen may differ */
	FUZZ_CHECK(a->used == b->used);
	FUZZ_CHECK(a->res.version == b->res.version);
	FUZZ_CHECK(a->res.local == b->res.local);
	if (!a->res.local) {
		FUZZ_CHECK(same_sa(&a->res.src, a->res.srclen,
		    &b->res.src, b->res.srclen));
		FUZZ_CHECK(same_sa(&a->res.dst, a->res.dstlen,
		    &b->res.dst, b->res.dstlen));
	}
}

static void
check_done(const uint8_t *s, size_t len, const struct outcome *o)
{
	const struct proxyproto_result *r = &o->res;

	if (o->status != PROXYPROTO_DONE)
		return;
	FUZZ_CHECK(o->used <= len);
	if (r->version == 1) {
		FUZZ_CHECK(o->used <= PROXYPROTO_V1_MAX);
		FUZZ_CHECK(o->used >= 8 && memcmp(s, "PROXY ", 6) == 0);
		FUZZ_CHECK(s[o->used - 2] == '\r' && s[o->used - 1] == '\n');
	} else {
		FUZZ_CHECK(r->version == 2);
		FUZZ_CHECK(o->used >= PROXYPROTO_V2_HEAD &&
		    o->used <= PROXYPROTO_V2_MAX);
		FUZZ_CHECK(memcmp(s, v2sig, sizeof(v2sig)) == 0);
		FUZZ_CHECK(o->used == PROXYPROTO_V2_HEAD +
		    (((size_t)s[14] << 8) | s[15]));
	}
	if (!r->local) {
		FUZZ_CHECK(r->src.ss_family == AF_INET ||
		    r->src.ss_family == AF_INET6);
		FUZZ_CHECK(r->dst.ss_family == r->src.ss_family);
		FUZZ_CHECK(r->srclen == (r->src.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
		FUZZ_CHECK(r->dstlen == r->srclen);
	}
}

/* A sockaddr of family (AF_INET, AF_INET6, or AF_UNIX: "anything else")
 * from 18 bytes: address, then port. */
static socklen_t
make_sa(struct sockaddr_storage *ss, int family, const uint8_t *b)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, b, 4);
		memcpy(&sin->sin_port, b + 16, 2);
		return sizeof(*sin);
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, b, 16);
		memcpy(&sin6->sin6_port, b + 16, 2);
		return sizeof(*sin6);
	}
	ss->ss_family = AF_UNIX;
	return sizeof(sa_family_t);
}

/* The address part of a result equal to what was encoded. */
static bool
same_addr(const struct sockaddr_storage *want, const struct sockaddr_storage *got)
{
	if (want->ss_family != got->ss_family)
		return false;
	if (want->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)want, *b = (const void *)got;

		return a->sin_port == b->sin_port &&
		    a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *a = (const void *)want, *b = (const void *)got;

	return a->sin6_port == b->sin6_port &&
	    memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0;
}

/* What was written parses back whole, to the addresses given. */
static void
parse_back(const uint8_t *hdr, size_t len, int version, bool local,
    const struct sockaddr_storage *src, const struct sockaddr_storage *dst)
{
	struct outcome whole, bytes;
	static const size_t none[1];

	run(hdr, len, none, 0, &whole);
	run_wanted(hdr, len, &bytes);
	FUZZ_CHECK(whole.status == PROXYPROTO_DONE);
	FUZZ_CHECK(whole.used == len);
	same(&whole, &bytes);
	check_done(hdr, len, &whole);
	FUZZ_CHECK(whole.res.version == version);
	FUZZ_CHECK(whole.res.local == local);
	if (!local) {
		FUZZ_CHECK(same_addr(src, &whole.res.src));
		FUZZ_CHECK(same_addr(dst, &whole.res.dst));
	}
}

static void
round_trip(const uint8_t *d, size_t size)
{
	static const int fams[4] = { AF_INET, AF_INET6, AF_UNIX, AF_INET };
	uint8_t b[1 + 36 + 1], buf[PROXYPROTO_ENCODE_MAX], *tight;
	struct sockaddr_storage src, dst;
	bool same_family, tcp;
	size_t cut;
	ssize_t n;

	memset(b, 0, sizeof(b));
	if (size > 0)
		memcpy(b, d, size < sizeof(b) ? size : sizeof(b));
	make_sa(&src, fams[b[0] & 3], b + 1);
	make_sa(&dst, fams[(b[0] >> 2) & 3], b + 19);
	same_family = src.ss_family == dst.ss_family;
	tcp = same_family && src.ss_family != AF_UNIX;

	n = proxyproto_encode_v1((char *)buf, sizeof(buf),
	    (struct sockaddr *)&src, (struct sockaddr *)&dst);
	FUZZ_CHECK(n > 0 && (size_t)n <= PROXYPROTO_V1_MAX);
	parse_back(buf, (size_t)n, 1, !tcp, &src, &dst);

	n = proxyproto_encode_v2(buf, sizeof(buf), (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, false);
	FUZZ_CHECK(n >= PROXYPROTO_V2_HEAD && (size_t)n <= sizeof(buf));
	parse_back(buf, (size_t)n, 2, !tcp, &src, &dst);

	n = proxyproto_encode_v2(buf, sizeof(buf), NULL, NULL, true);
	FUZZ_CHECK(n == PROXYPROTO_V2_HEAD);
	parse_back(buf, (size_t)n, 2, true, &src, &dst);

	/* A buffer cut short, to a length the input chooses: -1 EINVAL, or
	 * the header within it (ASan sees a byte written past the end). */
	cut = b[37] % (PROXYPROTO_V1_MAX + 8);
	if ((tight = malloc(cut ? cut : 1)) == NULL)
		return;
	errno = 0;
	n = proxyproto_encode_v1((char *)tight, cut, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst);
	FUZZ_CHECK(n == -1 ? errno == EINVAL : (size_t)n <= cut);
	errno = 0;
	n = proxyproto_encode_v2(tight, cut, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, b[0] & 0x10);
	FUZZ_CHECK(n == -1 ? errno == EINVAL : (size_t)n <= cut);
	free(tight);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome split, whole, bytes;
	size_t pieces[8], npieces, i;
	const uint8_t *s;
	size_t len;

	if (size == 0)
		return 0;
	npieces = data[0] & 7;
	if (size < 1 + npieces)
		return 0;
	for (i = 0; i < npieces; i++)
		pieces[i] = data[1 + i];
	s = data + 1 + npieces;
	len = size - 1 - npieces;

	run(s, len, pieces, npieces, &split);
	run(s, len, pieces, 0, &whole);
	run_wanted(s, len, &bytes);
	same(&split, &whole);
	same(&bytes, &whole);
	check_done(s, len, &whole);

	round_trip(s, len);
	return 0;
}
