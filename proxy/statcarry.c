/* proxy/statcarry.c: counters to bytes and back (statcarry.h).
 *
 *   shape:  u32 x 10   the array sizes this build counts with, and a
 *                      hash of its histograms' bounds
 *   totals: u64 ...    connections, reasons, connect failures, handed,
 *                      adopted, bytes by mode, fallbacks by reason
 *   u64 fallbacks of the sample
 *   u32 nl, nb, ns, then each listener, backend and server: names as
 *                      u16 length + bytes, then their u64 counters
 * Host byte order: both ends run on one host. */
#include "spliced/statcarry.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/stats.h"
#include "spliced/worker.h"

#define SHAPE_N 10

/* FNV-1a of the histograms' bucket bounds: other bounds with the same
 * count would file counts under the wrong `le`. */
static uint32_t
bounds_hash(void)
{
	const double *le[2] = { stats_connect_le, stats_duration_le };
	uint32_t h = 2166136261u;

	for (int k = 0; k < 2; k++) {
		const unsigned char *b = (const unsigned char *)le[k];

		for (size_t i = 0; i < STATS_HIST_MAX * sizeof(double); i++)
			h = (h ^ b[i]) * 16777619u;
	}
	return h;
}

static void
shape(uint32_t v[SHAPE_N])
{
	const uint32_t s[SHAPE_N] = { CONN_REASON_MAX_, RELAY_MODE_MAX_,
	    RELAY_FALLBACK_MAX_, STATS_DENY_MAX_, STATS_HS_KIND_MAX_,
	    STATS_HS_RESULT_MAX_, STATS_DIR_MAX_, STATS_HIST_MAX + 1,
	    (uint32_t)sizeof(uint64_t), bounds_hash() };

	memcpy(v, s, sizeof(s));
}

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static void
put(struct wbuf *b, const void *v, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *g;

		while (cap < b->len + n)
			cap *= 2;
		if ((g = realloc(b->p, cap)) == NULL) {
			b->failed = true;
			return;
		}
		b->p = g;
		b->cap = cap;
	}
	memcpy(b->p + b->len, v, n);
	b->len += n;
}

static void
put_u64s(struct wbuf *b, const uint64_t *v, size_t n)
{
	put(b, v, n * sizeof(*v));
}

static void
put_str(struct wbuf *b, const char *s)
{
	size_t n = strlen(s);
	uint16_t len = n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;

	put(b, &len, sizeof(len));
	put(b, s, len);
}

static void
put_hist(struct wbuf *b, const struct stats_hist *h)
{
	put_u64s(b, h->bucket, STATS_HIST_MAX + 1);
	put_u64s(b, &h->count, 1);
	put_u64s(b, &h->sum_us, 1);
}

int
statcarry_encode(const struct stats_sample *s, const struct worker_totals *t,
    uint8_t **out, size_t *len)
{
	struct wbuf b = { 0 };
	uint32_t sh[SHAPE_N], n[3] = { (uint32_t)s->nl, (uint32_t)s->nb,
	    (uint32_t)s->ns };

	shape(sh);
	put(&b, sh, sizeof(sh));
	put_u64s(&b, &t->conn.connections, 1);
	put_u64s(&b, t->conn.reasons, CONN_REASON_MAX_);
	put_u64s(&b, &t->conn.connect_failures, 1);
	put_u64s(&b, &t->conn.handed, 1);
	put_u64s(&b, &t->conn.adopted, 1);
	put_u64s(&b, t->relay.bytes, RELAY_MODE_MAX_);
	put_u64s(&b, t->relay.fallbacks, RELAY_FALLBACK_MAX_);
	put_u64s(&b, s->fallbacks, RELAY_FALLBACK_MAX_);
	put(&b, n, sizeof(n));
	for (size_t i = 0; i < s->nl; i++) {
		const struct stats_listener *l = &s->l[i];

		put_str(&b, l->name);
		put_u64s(&b, &l->connections, 1);
		put_u64s(&b, l->closed, CONN_REASON_MAX_);
		put_u64s(&b, l->denied, STATS_DENY_MAX_);
		put_u64s(&b, &l->handshake[0][0],
		    STATS_HS_KIND_MAX_ * STATS_HS_RESULT_MAX_);
		put_u64s(&b, &l->bytes[0][0], STATS_DIR_MAX_ * RELAY_MODE_MAX_);
		put_hist(&b, &l->duration);
	}
	for (size_t i = 0; i < s->nb; i++) {
		put_str(&b, s->b[i].name);
		put_hist(&b, &s->b[i].connect);
	}
	for (size_t i = 0; i < s->ns; i++) {
		put_str(&b, s->s[i].backend);
		put_str(&b, s->s[i].name);
		put_u64s(&b, &s->s[i].connections, 1);
		put_u64s(&b, &s->s[i].connect_failures, 1);
	}
	if (b.failed) {
		free(b.p);
		errno = ENOMEM;
		return -1;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static void
get(struct rbuf *r, void *v, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		memset(v, 0, n);
		return;
	}
	memcpy(v, r->p + r->off, n);
	r->off += n;
}

static void
get_u64s(struct rbuf *r, uint64_t *v, size_t n)
{
	get(r, v, n * sizeof(*v));
}

/* A name: malloc'd, NUL-terminated; NULL when short, empty or holding a
 * NUL, or out of memory (*nomem). */
static char *
get_str(struct rbuf *r, bool *nomem)
{
	uint16_t n;
	char *s;

	get(r, &n, sizeof(n));
	if (r->bad || n == 0 || r->len - r->off < n ||
	    memchr(r->p + r->off, 0, n) != NULL) {
		r->bad = true;
		return NULL;
	}
	if ((s = malloc((size_t)n + 1)) == NULL) {
		*nomem = true;
		return NULL;
	}
	memcpy(s, r->p + r->off, n);
	s[n] = '\0';
	r->off += n;
	return s;
}

static void
get_hist(struct rbuf *r, struct stats_hist *h)
{
	get_u64s(r, h->bucket, STATS_HIST_MAX + 1);
	get_u64s(r, &h->count, 1);
	get_u64s(r, &h->sum_us, 1);
}

/* Room for n entries of size sz, each counted as it is filled: an entry
 * not reached stays zeroed, so the sample's cleanup frees what is there.
 * The count is checked against the bytes left first: a forged count
 * must not allocate more than the bytes could describe. */
static void *
entries(struct rbuf *r, uint32_t n, size_t sz, size_t min_bytes, bool *nomem)
{
	void *v;

	if (n == 0)
		return NULL;
	if ((r->len - r->off) / min_bytes < n) {
		r->bad = true;
		return NULL;
	}
	if ((v = calloc(n, sz)) == NULL)
		*nomem = true;
	return v;
}

int
statcarry_decode(const uint8_t *in, size_t len, struct stats_sample *s,
    struct worker_totals *t)
{
	struct rbuf r = { in, len, 0, false };
	uint32_t sh[SHAPE_N], want[SHAPE_N], n[3];
	bool nomem = false;

	memset(t, 0, sizeof(*t));
	shape(want);
	get(&r, sh, sizeof(sh));
	if (r.bad || memcmp(sh, want, sizeof(sh)) != 0)
		goto bad;
	get_u64s(&r, &t->conn.connections, 1);
	get_u64s(&r, t->conn.reasons, CONN_REASON_MAX_);
	get_u64s(&r, &t->conn.connect_failures, 1);
	get_u64s(&r, &t->conn.handed, 1);
	get_u64s(&r, &t->conn.adopted, 1);
	get_u64s(&r, t->relay.bytes, RELAY_MODE_MAX_);
	get_u64s(&r, t->relay.fallbacks, RELAY_FALLBACK_MAX_);
	get_u64s(&r, s->fallbacks, RELAY_FALLBACK_MAX_);
	get(&r, n, sizeof(n));
	/* The smallest entry: a one-byte name and its counters. */
	s->l = entries(&r, n[0], sizeof(*s->l), 3 + 8 * (1 + CONN_REASON_MAX_),
	    &nomem);
	for (uint32_t i = 0; s->l != NULL && i < n[0] && !r.bad && !nomem; i++) {
		struct stats_listener *l = &s->l[i];

		if ((l->name = get_str(&r, &nomem)) == NULL)
			break;
		s->nl++;
		get_u64s(&r, &l->connections, 1);
		get_u64s(&r, l->closed, CONN_REASON_MAX_);
		get_u64s(&r, l->denied, STATS_DENY_MAX_);
		get_u64s(&r, &l->handshake[0][0],
		    STATS_HS_KIND_MAX_ * STATS_HS_RESULT_MAX_);
		get_u64s(&r, &l->bytes[0][0], STATS_DIR_MAX_ * RELAY_MODE_MAX_);
		get_hist(&r, &l->duration);
	}
	s->b = entries(&r, n[1], sizeof(*s->b), 3 + 8 * (STATS_HIST_MAX + 3),
	    &nomem);
	for (uint32_t i = 0; s->b != NULL && i < n[1] && !r.bad && !nomem; i++) {
		if ((s->b[i].name = get_str(&r, &nomem)) == NULL)
			break;
		s->nb++;
		get_hist(&r, &s->b[i].connect);
	}
	s->s = entries(&r, n[2], sizeof(*s->s), 6 + 16, &nomem);
	for (uint32_t i = 0; s->s != NULL && i < n[2] && !r.bad && !nomem; i++) {
		struct stats_server *v = &s->s[i];

		if ((v->backend = get_str(&r, &nomem)) == NULL)
			break;
		if ((v->name = get_str(&r, &nomem)) == NULL) {
			free(v->backend);
			v->backend = NULL;
			break;
		}
		s->ns++;
		get_u64s(&r, &v->connections, 1);
		get_u64s(&r, &v->connect_failures, 1);
	}
	if (nomem) {
		errno = ENOMEM;
		return -1;
	}
	if (r.bad || r.off != r.len || s->nl != n[0] || s->nb != n[1] ||
	    s->ns != n[2])
		goto bad;
	return 0;
bad:
	memset(t, 0, sizeof(*t));
	errno = EINVAL;
	return -1;
}
