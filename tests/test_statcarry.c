/* tests/test_statcarry.c: counters to bytes and back (statcarry.h), as a
 * binary upgrade carries them: a round trip keeps every figure (not the
 * gauges), and bytes that are not an encoding of this shape (every
 * truncation, a byte more, another array size, a forged count, a name
 * with a NUL) are refused with EINVAL and leave nothing behind. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/statcarry.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

/* A sample and totals with a distinct value in every counter. */
static void
fill(struct stats_sample *s, struct worker_totals *t)
{
	uint64_t v = 1;

	assert_int_equal(stats_sample_init(s, 0), 0);
	s->nl = 2;
	s->l = calloc(2, sizeof(*s->l));
	s->nb = 1;
	s->b = calloc(1, sizeof(*s->b));
	s->ns = 2;
	s->s = calloc(2, sizeof(*s->s));
	assert_non_null(s->l);
	assert_non_null(s->b);
	assert_non_null(s->s);
	s->l[0].name = strdup("web");
	s->l[1].name = strdup("tls");
	s->b[0].name = strdup("app");
	s->s[0].backend = strdup("app");
	s->s[0].name = strdup("a");
	s->s[1].backend = strdup("app");
	s->s[1].name = strdup("b");
	for (size_t i = 0; i < 2; i++) {
		struct stats_listener *l = &s->l[i];

		l->connections = v++;
		l->active = 1000 + v++;         /* a gauge: does not travel */
		for (int r = 0; r < CONN_REASON_MAX_; r++)
			l->closed[r] = v++;
		for (int r = 0; r < STATS_DENY_MAX_; r++)
			l->denied[r] = v++;
		for (int k = 0; k < STATS_HS_KIND_MAX_; k++)
			for (int r = 0; r < STATS_HS_RESULT_MAX_; r++)
				l->handshake[k][r] = v++;
		for (int d = 0; d < STATS_DIR_MAX_; d++)
			for (int m = 0; m < RELAY_MODE_MAX_; m++)
				l->bytes[d][m] = v++ << 33;
		for (int b = 0; b <= STATS_HIST_MAX; b++)
			l->duration.bucket[b] = v++;
		l->duration.count = v++;
		l->duration.sum_us = v++;
	}
	for (int b = 0; b <= STATS_HIST_MAX; b++)
		s->b[0].connect.bucket[b] = v++;
	s->b[0].connect.count = v++;
	s->s[0].connections = v++;
	s->s[1].connect_failures = v++;
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		s->fallbacks[f] = v++;
	memset(t, 0, sizeof(*t));
	t->conn.connections = v++;
	t->conn.connect_failures = v++;
	t->conn.handed = v++;
	t->conn.adopted = v++;
	for (int r = 0; r < CONN_REASON_MAX_; r++)
		t->conn.reasons[r] = v++;
	for (int m = 0; m < RELAY_MODE_MAX_; m++)
		t->relay.bytes[m] = v++;
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		t->relay.fallbacks[f] = v++;
}

static void
encode(uint8_t **buf, size_t *len)
{
	struct stats_sample s;
	struct worker_totals t;

	fill(&s, &t);
	assert_int_equal(statcarry_encode(&s, &t, buf, len), 0);
	stats_sample_cleanup(&s);
}

static void
test_round_trip(void **state)
{
	struct stats_sample s, back;
	struct worker_totals t, tback;
	uint8_t *buf;
	size_t len;

	(void)state;
	fill(&s, &t);
	assert_int_equal(statcarry_encode(&s, &t, &buf, &len), 0);
	assert_int_equal(stats_sample_init(&back, 0), 0);
	assert_int_equal(statcarry_decode(buf, len, &back, &tback), 0);
	assert_memory_equal(&t, &tback, sizeof(t));
	assert_int_equal(back.nl, 2);
	assert_int_equal(back.nb, 1);
	assert_int_equal(back.ns, 2);
	assert_memory_equal(back.fallbacks, s.fallbacks, sizeof(s.fallbacks));
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(back.l[i].name, s.l[i].name);
		assert_int_equal(back.l[i].active, 0);
		s.l[i].active = 0;
		/* Everything past the name pointer, gauge zeroed. */
		assert_memory_equal((char *)&back.l[i] + sizeof(char *),
		    (char *)&s.l[i] + sizeof(char *),
		    sizeof(s.l[i]) - sizeof(char *));
	}
	assert_string_equal(back.b[0].name, "app");
	assert_memory_equal(&back.b[0].connect, &s.b[0].connect,
	    sizeof(s.b[0].connect));
	assert_string_equal(back.s[1].backend, "app");
	assert_string_equal(back.s[1].name, "b");
	assert_int_equal(back.s[0].connections, s.s[0].connections);
	assert_int_equal(back.s[1].connect_failures, s.s[1].connect_failures);
	stats_sample_cleanup(&back);
	stats_sample_cleanup(&s);
	free(buf);
}

/* A process with no listener yet counted still encodes. */
static void
test_empty(void **state)
{
	struct stats_sample s, back;
	struct worker_totals t = { 0 }, tback;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(stats_sample_init(&s, 0), 0);
	assert_int_equal(statcarry_encode(&s, &t, &buf, &len), 0);
	assert_int_equal(stats_sample_init(&back, 0), 0);
	assert_int_equal(statcarry_decode(buf, len, &back, &tback), 0);
	assert_int_equal(back.nl + back.nb + back.ns, 0);
	stats_sample_cleanup(&back);
	stats_sample_cleanup(&s);
	free(buf);
}

static void
refused(const uint8_t *buf, size_t len)
{
	struct stats_sample back;
	struct worker_totals t;

	assert_int_equal(stats_sample_init(&back, 0), 0);
	errno = 0;
	assert_int_equal(statcarry_decode(buf, len, &back, &t), -1);
	assert_int_equal(errno, EINVAL);
	/* Refused: the totals stay zero, whatever was read. */
	assert_int_equal(t.conn.connections, 0);
	stats_sample_cleanup(&back);
}

static void
test_every_truncation(void **state)
{
	uint8_t *buf, *more;
	size_t len;

	(void)state;
	encode(&buf, &len);
	for (size_t n = 0; n < len; n++)
		refused(buf, n);
	assert_non_null(more = malloc(len + 1));
	memcpy(more, buf, len);
	more[len] = 0;
	refused(more, len + 1);
	free(more);
	free(buf);
}

static void
test_other_shape(void **state)
{
	uint8_t *buf;
	size_t len;

	(void)state;
	encode(&buf, &len);
	buf[0] ^= 1;            /* CONN_REASON_MAX_ of another build */
	refused(buf, len);
	free(buf);
}

/* The listener count sits after the shape and the totals: a count of
 * 2^32 - 1 must be refused before any allocation for it. */
static void
test_forged_count(void **state)
{
	uint8_t *buf;
	size_t len, at = 10 * 4 + 8 * (1 + CONN_REASON_MAX_ + 1 + 2 +
	    RELAY_MODE_MAX_ + 2 * RELAY_FALLBACK_MAX_);
	uint32_t n;

	(void)state;
	encode(&buf, &len);
	memcpy(&n, buf + at, sizeof(n));
	assert_int_equal(n, 2);
	n = UINT32_MAX;
	memcpy(buf + at, &n, sizeof(n));
	refused(buf, len);
	n = 3;
	memcpy(buf + at, &n, sizeof(n));
	refused(buf, len);
	free(buf);
}

static void
test_name_with_nul(void **state)
{
	uint8_t *buf;
	size_t len, at = 10 * 4 + 8 * (1 + CONN_REASON_MAX_ + 1 + 2 +
	    RELAY_MODE_MAX_ + 2 * RELAY_FALLBACK_MAX_) + 12;

	(void)state;
	encode(&buf, &len);
	assert_memory_equal(buf + at + 2, "web", 3);
	buf[at + 3] = 0;
	refused(buf, len);
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_other_shape),
		cmocka_unit_test(test_forged_count),
		cmocka_unit_test(test_name_with_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
