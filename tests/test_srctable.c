/* tests/test_srctable.c: the per-source table: slots, token buckets, IPv6
 * prefixes, bounded memory under a flood of sources, stale tickets, resize,
 * and two threads at once. The allocator is wrapped (-Wl,--wrap) to count
 * what the table allocates after srctable_new and to refuse a resize. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "spliced/srctable.h"

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);

static atomic_uint allocs;              /* calls to the three below */
static atomic_bool calloc_refuse;       /* while set: NULL with ENOMEM */

void *
__wrap_malloc(size_t size)
{
	atomic_fetch_add(&allocs, 1);
	return __real_malloc(size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	atomic_fetch_add(&allocs, 1);
	if (atomic_load(&calloc_refuse)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t size)
{
	atomic_fetch_add(&allocs, 1);
	return __real_realloc(p, size);
}

/* The key of an IPv4 address (host order) in scope 1. */
static struct srckey
key4(uint32_t ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct srckey k;

	sin.sin_addr.s_addr = htonl(ip);
	assert_true(srckey_make(&k, 1, (struct sockaddr *)&sin, 64));
	return k;
}

static struct srckey
key6(const char *text, uint32_t scope, unsigned prefix)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct srckey k;

	assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
	assert_true(srckey_make(&k, scope, (struct sockaddr *)&sin6, prefix));
	return k;
}

static bool
same(const struct srckey *a, const struct srckey *b)
{
	return a->scope == b->scope && a->family == b->family &&
	    memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Whether x cut to px bits in scope sx and y cut to py in sy are one. */
static bool
same6(const char *x, uint32_t sx, unsigned px, const char *y, uint32_t sy,
    unsigned py)
{
	struct srckey a = key6(x, sx, px), b = key6(y, sy, py);

	return same(&a, &b);
}

static struct srctable_stats
stats_of(struct srctable *t)
{
	struct srctable_stats st;

	srctable_stats(t, &st);
	return st;
}

static void
test_new(void **state)
{
	struct srctable *t;
	struct srctable_stats st;

	(void)state;
	errno = 0;
	assert_null(srctable_new(0));
	assert_int_equal(errno, EINVAL);
	srctable_free(NULL);
	t = srctable_new(7);
	assert_non_null(t);
	st = stats_of(t);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.capacity, 7);
	assert_int_equal(st.evictions, 0);
	srctable_free(t);
}

/* max_conns 5: the 6th is refused and takes no slot; another source has
 * its own; a release gives the slot back, once. */
static void
test_per_source(void **state)
{
	struct srctable *t = srctable_new(16);
	struct srctable_ticket tk[6], other;
	struct srckey a = key4(0x0a000001), b = key4(0x0a000002);

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &tk[i]),
		    SRCTABLE_OK);
		assert_true(srctable_ticket_held(&tk[i]));
	}
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &tk[5]),
	    SRCTABLE_PER_SOURCE);
	assert_false(srctable_ticket_held(&tk[5]));
	assert_int_equal(srctable_active(t, &a), 5);
	assert_int_equal(srctable_admit(t, &b, 5, 0, 0, &other), SRCTABLE_OK);
	assert_int_equal(srctable_active(t, &b), 1);

	srctable_release(t, &tk[2]);
	assert_false(srctable_ticket_held(&tk[2]));
	assert_int_equal(srctable_active(t, &a), 4);
	srctable_release(t, &tk[2]);        /* cleared: nothing more */
	assert_int_equal(srctable_active(t, &a), 4);
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &tk[2]), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &tk[5]),
	    SRCTABLE_PER_SOURCE);
	for (int i = 0; i < 5; i++)
		srctable_release(t, &tk[i]);
	srctable_release(t, &tk[5]);        /* a refusal's ticket: nothing */
	srctable_release(t, &other);
	assert_int_equal(srctable_active(t, &a), 0);
	assert_int_equal(srctable_active(t, &b), 0);
	srctable_free(t);
}

/* Admits n connections of k at now_ms (releasing each) and returns how many
 * were let in before the first refusal, which must be `why`. */
static int
burst(struct srctable *t, const struct srckey *k, unsigned max, unsigned rate,
    uint64_t now_ms, int n, enum srctable_verdict why)
{
	struct srctable_ticket tk;
	enum srctable_verdict v = SRCTABLE_OK;
	int ok = 0;

	while (ok < n && (v = srctable_admit(t, k, max, rate, now_ms, &tk)) ==
	    SRCTABLE_OK) {
		srctable_release(t, &tk);
		ok++;
	}
	if (ok < n)
		assert_int_equal(v, why);
	return ok;
}

/* rate 10: a burst of 10, then one every 100 ms; refusals take no token;
 * a long wait fills the bucket to the burst, no more. */
static void
test_rate(void **state)
{
	struct srctable *t = srctable_new(16);
	struct srckey a = key4(0x0a000001), b = key4(0x0a000002);
	struct srckey c = key4(0x0a000003);

	(void)state;
	assert_int_equal(burst(t, &a, 0, 10, 5000, 100, SRCTABLE_RATE), 10);
	assert_int_equal(burst(t, &a, 0, 10, 5000, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &b, 0, 10, 5000, 100, SRCTABLE_RATE), 10);
	assert_int_equal(burst(t, &a, 0, 10, 5099, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &a, 0, 10, 5100, 100, SRCTABLE_RATE), 1);
	assert_int_equal(burst(t, &a, 0, 10, 5150, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &a, 0, 10, 5200, 100, SRCTABLE_RATE), 1);
	/* 350 ms: 3.5 tokens; the half stays for later. */
	assert_int_equal(burst(t, &a, 0, 10, 5550, 100, SRCTABLE_RATE), 3);
	assert_int_equal(burst(t, &a, 0, 10, 5600, 100, SRCTABLE_RATE), 1);
	/* A clock read a little behind by another worker: no time passed. */
	assert_int_equal(burst(t, &a, 0, 10, 5500, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &a, 0, 10, 5700, 100, SRCTABLE_RATE), 1);
	/* A minute idle: a full bucket, no more. */
	assert_int_equal(burst(t, &a, 0, 10, 65700, 100, SRCTABLE_RATE), 10);
	/* A wait whose milli-tokens would wrap 64 bits (2^62 ms at 4 a
	 * second) is still a full bucket. */
	assert_int_equal(burst(t, &c, 0, 4, 0, 100, SRCTABLE_RATE), 4);
	assert_int_equal(burst(t, &c, 0, 4, (uint64_t)1 << 62, 100,
	    SRCTABLE_RATE), 4);
	srctable_free(t);
}

/* The rate of a listener changed by a reload applies to the bucket as it
 * stands: a higher rate gives its larger burst, a lower one caps the debt
 * at its own. */
static void
test_rate_changed(void **state)
{
	struct srctable *t = srctable_new(4);
	struct srckey a = key4(0x0a000001);

	(void)state;
	assert_int_equal(burst(t, &a, 0, 10, 1000, 100, SRCTABLE_RATE), 10);
	assert_int_equal(burst(t, &a, 0, 20, 1000, 100, SRCTABLE_RATE), 10);
	assert_int_equal(burst(t, &a, 0, 2, 1000, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &a, 0, 2, 1499, 100, SRCTABLE_RATE), 0);
	assert_int_equal(burst(t, &a, 0, 2, 1500, 100, SRCTABLE_RATE), 1);
	srctable_free(t);
}

/* The per-source limit is checked first, and its refusals take no token. */
static void
test_per_source_before_rate(void **state)
{
	struct srctable *t = srctable_new(4);
	struct srckey a = key4(0x0a000001);
	struct srctable_ticket held, tk, x;

	(void)state;
	assert_int_equal(srctable_admit(t, &a, 1, 3, 0, &held), SRCTABLE_OK);
	for (int i = 0; i < 20; i++)
		assert_int_equal(srctable_admit(t, &a, 1, 3, 0, &tk),
		    SRCTABLE_PER_SOURCE);
	srctable_release(t, &held);
	/* Two tokens are left of the three, whatever the 20 refusals did. */
	assert_int_equal(burst(t, &a, 1, 3, 0, 100, SRCTABLE_RATE), 2);
	/* Out of tokens and of slots: the slot is what is said. */
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &held), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &tk), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &x),
	    SRCTABLE_PER_SOURCE);
	srctable_release(t, &tk);
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &tk), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &x),
	    SRCTABLE_PER_SOURCE);
	srctable_release(t, &held);
	assert_int_equal(srctable_active(t, &a), 1);
	assert_int_equal(srctable_admit(t, &a, 2, 3, 1000, &x),
	    SRCTABLE_RATE);
	assert_int_equal(srctable_active(t, &a), 1);
	srctable_release(t, &tk);
	assert_int_equal(srctable_active(t, &a), 0);
	srctable_free(t);
}

/* IPv6 sources are their prefix; ports never count; other families are
 * not tracked. */
static void
test_keys(void **state)
{
	struct srckey a, b;
	struct sockaddr_in s1 = { .sin_family = AF_INET, .sin_port = 1 };
	struct sockaddr_in s2 = { .sin_family = AF_INET, .sin_port = 2 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	(void)state;
	assert_true(same6("2001:db8::1", 1, 64, "2001:db8::ffff", 1, 64));
	assert_false(same6("2001:db8::1", 1, 64, "2001:db8:0:1::", 1, 64));
	assert_false(same6("2001:db8::1", 1, 128, "2001:db8::ffff", 1, 128));
	assert_true(same6("2001:db8::1", 1, 64, "2001:db8::", 1, 128));
	/* A /60 cuts inside a byte. */
	assert_true(same6("2001:db8:0:f::", 1, 60, "2001:db8::", 1, 60));
	assert_false(same6("2001:db8:0:10::", 1, 60, "2001:db8::", 1, 60));
	assert_true(same6("2001:db8::8000:0:0:0", 1, 64, "2001:db8::", 1, 64));
	assert_false(same6("2001:db8::8000:0:0:0", 1, 65, "2001:db8::", 1, 65));
	/* Out of range: clamped to 1..128. */
	assert_true(same6("::", 1, 1, "7fff::1", 1, 0));
	assert_false(same6("::", 1, 0, "8000::", 1, 0));
	assert_false(same6("::1", 1, 200, "::2", 1, 200));
	/* Scopes are apart. */
	assert_false(same6("2001:db8::1", 1, 64, "2001:db8::1", 2, 64));

	s1.sin_addr.s_addr = s2.sin_addr.s_addr = htonl(0xc0000201);
	assert_true(srckey_make(&a, 3, (struct sockaddr *)&s1, 64));
	assert_true(srckey_make(&b, 3, (struct sockaddr *)&s2, 64));
	assert_true(same(&a, &b));
	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.addr, "\xc0\x00\x02\x01", 4);
	for (int i = 4; i < 16; i++)
		assert_int_equal(a.addr[i], 0);
	s2.sin_addr.s_addr = htonl(0xc0000202);
	assert_true(srckey_make(&b, 3, (struct sockaddr *)&s2, 64));
	assert_false(same(&a, &b));
	assert_false(srckey_make(&a, 3, (struct sockaddr *)&sun, 64));
}

/* The same cuts, as the table counts them. */
static void
test_ipv6_sources(void **state)
{
	struct srctable *t = srctable_new(16);
	struct srctable_ticket tk[5];
	struct srckey k;

	(void)state;
	k = key6("2001:db8::1", 1, 64);
	assert_int_equal(srctable_admit(t, &k, 1, 0, 0, &tk[0]), SRCTABLE_OK);
	k = key6("2001:db8::ffff", 1, 64);
	assert_int_equal(srctable_admit(t, &k, 1, 0, 0, &tk[1]),
	    SRCTABLE_PER_SOURCE);
	k = key6("2001:db8:0:1::", 1, 64);
	assert_int_equal(srctable_admit(t, &k, 1, 0, 0, &tk[1]), SRCTABLE_OK);
	k = key6("2001:db8::ffff", 1, 128);
	assert_int_equal(srctable_admit(t, &k, 1, 0, 0, &tk[2]), SRCTABLE_OK);
	k = key6("2001:db8::ffff", 2, 64);
	assert_int_equal(srctable_admit(t, &k, 1, 0, 0, &tk[3]), SRCTABLE_OK);
	k = key6("2001:db8::1", 1, 64);
	assert_int_equal(srctable_active(t, &k), 1);
	assert_int_equal(stats_of(t).entries, 4);
	for (int i = 0; i < 4; i++)
		srctable_release(t, &tk[i]);
	assert_int_equal(srctable_active(t, &k), 0);
	srctable_free(t);
}

/* No limit, or a family not tracked: admitted, nothing held, no entry. */
static void
test_untracked(void **state)
{
	struct srctable *t = srctable_new(4);
	struct srckey a = key4(0x0a000001), odd = a;
	struct srctable_ticket tk;

	(void)state;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(srctable_admit(t, &a, 0, 0, 0, &tk),
		    SRCTABLE_OK);
		assert_false(srctable_ticket_held(&tk));
	}
	odd.family = AF_UNIX;
	assert_int_equal(srctable_admit(t, &odd, 1, 1, 0, &tk), SRCTABLE_OK);
	assert_false(srctable_ticket_held(&tk));
	srctable_release(t, &tk);
	assert_int_equal(stats_of(t).entries, 0);
	assert_int_equal(srctable_active(t, &a), 0);
	srctable_free(t);
}

#define HELD (SRCTABLE_EVICT_LOOK - 3)

/* A table of 100 fed 10000 sources: never more than 100 entries, every
 * newcomer past the 100th an eviction, and not one allocation after
 * srctable_new. */
static void
test_flood(void **state)
{
	struct srctable *t = srctable_new(100);
	struct srctable_ticket tk, held[HELD];
	struct srctable_stats st;
	struct srckey k;
	unsigned before = atomic_load(&allocs);

	(void)state;
	for (uint32_t i = 0; i < 10000; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_admit(t, &k, 3, 5, i, &tk),
		    SRCTABLE_OK);
		srctable_release(t, &tk);
		assert_true(stats_of(t).entries <= 100);
	}
	st = stats_of(t);
	assert_int_equal(st.entries, 100);
	assert_int_equal(st.capacity, 100);
	assert_int_equal(st.evictions, 9900);
	assert_int_equal(st.evicted_busy, 0);
	/* The last 100 are the ones kept: the last knows its bucket (a token
	 * taken), the 101st from the end has a new, full one. */
	k = key4(0x0a000000 + 9999);
	assert_int_equal(burst(t, &k, 0, 5, 9999, 100, SRCTABLE_RATE), 4);
	k = key4(0x0a000000 + 9899);
	assert_int_equal(burst(t, &k, 0, 5, 9999, 100, SRCTABLE_RATE), 5);
	assert_int_equal(stats_of(t).evictions, 9901);

	/* Sources holding a connection each, fewer than the look, in a flood
	 * of 10000 more: they are kept, the idle ones go. */
	for (uint32_t i = 0; i < HELD; i++) {
		k = key4(0x0b000000 + i);
		assert_int_equal(srctable_admit(t, &k, 3, 0, 0, &held[i]),
		    SRCTABLE_OK);
	}
	for (uint32_t i = 0; i < 10000; i++) {
		k = key4(0x0c000000 + i);
		assert_int_equal(srctable_admit(t, &k, 3, 0, 0, &tk),
		    SRCTABLE_OK);
		srctable_release(t, &tk);
	}
	st = stats_of(t);
	assert_int_equal(st.entries, 100);
	assert_int_equal(st.evictions, 9901 + HELD + 10000);
	assert_int_equal(st.evicted_busy, 0);
	for (uint32_t i = 0; i < HELD; i++) {
		k = key4(0x0b000000 + i);
		assert_int_equal(srctable_active(t, &k), 1);
		srctable_release(t, &held[i]);
		assert_int_equal(srctable_active(t, &k), 0);
	}
	assert_int_equal(atomic_load(&allocs), before);
	srctable_free(t);
}

/* Fills a table of cap with one held connection per source 0..cap-1
 * (source 0 the least recently used). */
static void
fill_held(struct srctable *t, unsigned cap, struct srctable_ticket *tk)
{
	for (unsigned i = 0; i < cap; i++) {
		struct srckey k = key4(0x0a000000 + i);

		assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &tk[i]),
		    SRCTABLE_OK);
	}
}

/* A busy entry goes only when every one looked at is busy; an idle one
 * beyond the look does not save the least recently used. */
static void
test_evict_order(void **state)
{
	struct srctable *t = srctable_new(10);
	struct srctable_ticket tk[10], nt, x;
	struct srckey k;

	(void)state;
	_Static_assert(SRCTABLE_EVICT_LOOK == 8, "the sources below assume 8");
	fill_held(t, 10, tk);
	srctable_release(t, &tk[5]);        /* idle, inside the look */
	k = key4(0x0b000001);
	assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &nt), SRCTABLE_OK);
	assert_int_equal(stats_of(t).evictions, 1);
	assert_int_equal(stats_of(t).evicted_busy, 0);
	for (unsigned i = 0; i < 10; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), i == 5 ? 0 : 1);
	}
	/* Source 0 is used again, so the order from the least recently used
	 * is 1 2 3 4 6 7 8 9 newcomer 0. The newcomer goes idle, 9th: past
	 * the look, which finds 8 busy and takes source 1. */
	k = key4(0x0a000000);
	assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &x), SRCTABLE_OK);
	srctable_release(t, &x);
	srctable_release(t, &nt);
	k = key4(0x0b000002);
	assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &x), SRCTABLE_OK);
	assert_int_equal(stats_of(t).evictions, 2);
	assert_int_equal(stats_of(t).evicted_busy, 1);
	k = key4(0x0a000001);
	assert_int_equal(srctable_active(t, &k), 0);     /* forgotten */
	k = key4(0x0a000000);
	assert_int_equal(srctable_active(t, &k), 1);     /* moved up: kept */
	k = key4(0x0a000002);
	assert_int_equal(srctable_active(t, &k), 1);
	assert_int_equal(stats_of(t).entries, 10);
	/* Its slot is gone with it: the ticket changes nothing. */
	srctable_release(t, &tk[1]);
	k = key4(0x0a000001);
	assert_int_equal(srctable_active(t, &k), 0);
	srctable_free(t);
}

/* A ticket whose entry went to another source, or came back as a new
 * entry for its own, changes nothing when released. */
static void
test_stale_after_eviction(void **state)
{
	struct srctable *t = srctable_new(1);
	struct srckey a = key4(0x0a000001), b = key4(0x0a000002);
	struct srctable_ticket ta, tb, ta2, copy;

	(void)state;
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &ta), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &b, 5, 0, 0, &tb), SRCTABLE_OK);
	assert_int_equal(stats_of(t).evicted_busy, 1);
	assert_int_equal(srctable_active(t, &a), 0);
	/* a comes back: a new entry, which ta's release must not touch. */
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &ta2), SRCTABLE_OK);
	assert_int_equal(stats_of(t).evicted_busy, 2);
	assert_int_equal(srctable_active(t, &a), 1);
	srctable_release(t, &ta);
	assert_int_equal(srctable_active(t, &a), 1);
	srctable_release(t, &tb);           /* b is gone */
	assert_int_equal(srctable_active(t, &a), 1);
	assert_int_equal(srctable_admit(t, &a, 5, 0, 0, &tb), SRCTABLE_OK);
	assert_int_equal(srctable_active(t, &a), 2);
	srctable_release(t, &tb);
	copy = ta2;
	srctable_release(t, &ta2);
	assert_int_equal(srctable_active(t, &a), 0);
	/* A ticket released twice (a copy kept by mistake): no wrap round. */
	srctable_release(t, &copy);
	assert_int_equal(srctable_active(t, &a), 0);
	assert_int_equal(srctable_admit(t, &a, 1, 0, 0, &ta), SRCTABLE_OK);
	assert_int_equal(srctable_admit(t, &a, 1, 0, 0, &tb),
	    SRCTABLE_PER_SOURCE);
	srctable_release(t, &ta);
	srctable_free(t);
}

/* A shrink drops the least recently used; their tickets go stale, also
 * once the source has an entry again; the kept ones keep their counts. */
static void
test_shrink(void **state)
{
	struct srctable *t = srctable_new(10);
	struct srctable_ticket tk[10], old, nt;
	struct srckey k;

	(void)state;
	fill_held(t, 10, tk);
	assert_int_equal(srctable_resize(t, 4), 0);
	assert_int_equal(stats_of(t).entries, 4);
	assert_int_equal(stats_of(t).capacity, 4);
	assert_int_equal(stats_of(t).evictions, 0);
	for (unsigned i = 0; i < 10; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), i >= 6 ? 1 : 0);
	}
	/* Source 0 comes back: a new entry, its old ticket is not its. */
	k = key4(0x0a000000);
	assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &nt), SRCTABLE_OK);
	old = tk[0];
	srctable_release(t, &tk[0]);
	assert_int_equal(srctable_active(t, &k), 1);
	srctable_release(t, &nt);
	assert_int_equal(srctable_active(t, &k), 0);
	srctable_release(t, &old);
	assert_int_equal(srctable_active(t, &k), 0);
	for (unsigned i = 1; i < 10; i++)
		srctable_release(t, &tk[i]);
	for (unsigned i = 0; i < 10; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), 0);
	}
	assert_true(stats_of(t).entries <= 4);
	srctable_free(t);
}

/* A grow keeps every entry, its count, its bucket and its place in the
 * LRU order; a failed one leaves the table as it was. */
static void
test_grow(void **state)
{
	struct srctable *t = srctable_new(4);
	struct srctable_ticket tk[4], more[3], nt;
	struct srckey k;

	(void)state;
	fill_held(t, 4, tk);
	for (unsigned i = 1; i < 4; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &more[i - 1]),
		    SRCTABLE_OK);
	}
	k = key4(0x0a000003);
	assert_int_equal(burst(t, &k, 0, 5, 0, 100, SRCTABLE_RATE), 5);

	atomic_store(&calloc_refuse, true);
	errno = 0;
	assert_int_equal(srctable_resize(t, 1000), -1);
	atomic_store(&calloc_refuse, false);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(stats_of(t).capacity, 4);
	assert_int_equal(srctable_resize(t, 4), 0);
	errno = 0;
	assert_int_equal(srctable_resize(t, 0), -1);
	assert_int_equal(errno, EINVAL);

	assert_int_equal(srctable_resize(t, 1000), 0);
	assert_int_equal(stats_of(t).capacity, 1000);
	assert_int_equal(stats_of(t).entries, 4);
	for (unsigned i = 0; i < 4; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), i == 0 ? 1 : 2);
	}
	k = key4(0x0a000003);
	assert_int_equal(burst(t, &k, 0, 5, 0, 100, SRCTABLE_RATE), 0);
	/* Tickets taken before the grow still give their slots back. */
	for (unsigned i = 0; i < 4; i++)
		srctable_release(t, &tk[i]);
	for (unsigned i = 0; i < 3; i++)
		srctable_release(t, &more[i]);
	for (unsigned i = 0; i < 4; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), 0);
	}
	/* The order survived: shrunk to 2, the two most recently used stay
	 * (3, admitted last, then 2). */
	assert_int_equal(srctable_resize(t, 2), 0);
	k = key4(0x0a000003);
	assert_int_equal(burst(t, &k, 0, 5, 0, 100, SRCTABLE_RATE), 0);
	k = key4(0x0a000002);
	assert_int_equal(srctable_admit(t, &k, 10, 0, 0, &nt), SRCTABLE_OK);
	srctable_release(t, &nt);
	assert_int_equal(stats_of(t).entries, 2);
	assert_int_equal(stats_of(t).evictions, 0);
	srctable_free(t);
}

/* ---- threads ---- */

#define HAMMER_ROUNDS 20000
#define HAMMER_HOLD 6
#define HAMMER_KEYS 5

struct hammer {
	struct srctable *t;
	unsigned seed;
	unsigned admitted, failed;
};

/* Admits and releases in batches of up to HAMMER_HOLD held at once, over a
 * few sources, so both threads' counts overlap on the same entries. */
static void *
hammer(void *arg)
{
	struct hammer *h = arg;
	struct srctable_ticket tk[HAMMER_HOLD];
	unsigned r = h->seed;

	for (unsigned round = 0; round < HAMMER_ROUNDS; round++) {
		unsigned n = 0;

		for (unsigned i = 0; i < HAMMER_HOLD; i++) {
			struct srckey k;

			r = r * 1103515245u + 12345u;
			k = key4(0x0a000000 + (r >> 16) % HAMMER_KEYS);
			if (srctable_admit(h->t, &k, 8, 0, 0, &tk[n]) ==
			    SRCTABLE_OK) {
				n++;
				h->admitted++;
			}
		}
		while (n > 0)
			srctable_release(h->t, &tk[--n]);
	}
	return NULL;
}

/* Resizes between 2 and HAMMER_KEYS + 1 while the hammers run, so tickets
 * go stale under them. */
static void *
resizer(void *arg)
{
	struct hammer *h = arg;

	for (unsigned i = 0; i < HAMMER_ROUNDS / 10; i++)
		if (srctable_resize(h->t, 2 + i % HAMMER_KEYS) != 0)
			h->failed++;
	return NULL;
}

static void
run_hammers(struct srctable *t, bool resize)
{
	struct hammer h[3] = {
		{ .t = t, .seed = 1 }, { .t = t, .seed = 2 }, { .t = t },
	};
	pthread_t th[3];
	struct srckey k;
	int n = resize ? 3 : 2;

	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL,
		    i == 2 ? resizer : hammer, &h[i]), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (unsigned i = 0; i < HAMMER_KEYS; i++) {
		k = key4(0x0a000000 + i);
		assert_int_equal(srctable_active(t, &k), 0);
	}
	/* 6 held by one thread never fill a source of 8 alone: each thread
	 * had at least its own share in. */
	assert_true(h[0].admitted >= HAMMER_ROUNDS * HAMMER_HOLD / 2);
	assert_true(h[1].admitted >= HAMMER_ROUNDS * HAMMER_HOLD / 2);
	assert_int_equal(h[2].failed, 0);
}

static void
test_threads(void **state)
{
	struct srctable *t = srctable_new(64);

	(void)state;
	run_hammers(t, false);
	assert_int_equal(stats_of(t).entries, HAMMER_KEYS);
	run_hammers(t, true);
	srctable_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new),
		cmocka_unit_test(test_per_source),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_rate_changed),
		cmocka_unit_test(test_per_source_before_rate),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_ipv6_sources),
		cmocka_unit_test(test_untracked),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_evict_order),
		cmocka_unit_test(test_stale_after_eviction),
		cmocka_unit_test(test_shrink),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
