/* tests/test_hello_read.c: a TLS ClientHello read off a real socket over
 * 127.0.0.1 by handshake.c (handshake_hello_start): whole with bytes after
 * it, one byte per loop turn, larger than the first buffer, split over
 * records, and each other end: no server name, not TLS, too large,
 * stopping short (timeout), closed and reset early. Every byte read is
 * handed back, in order, and none past what was read is taken. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/handshake.h"

struct fx {
	struct event_base *base;
	int cfd, afd;               /* client end (blocking), accepted end */
	int calls;
	struct handshake_hello_done d;
	char name[256];
	struct handshake_hello *h;
};

static void
done_cb(struct handshake_hello_done *d, void *arg)
{
	struct fx *f = arg;

	f->calls++;
	f->d = *d;
	snprintf(f->name, sizeof(f->name), "%s", d->name != NULL ? d->name : "");
	handshake_hello_free(f->h);
	f->h = NULL;
}

static int
fx_setup(void **state)
{
	static struct fx f;

	memset(&f, 0, sizeof(f));
	f.base = event_base_new();
	assert_non_null(f.base);
	tcp_connected_pair(&f.cfd, &f.afd, SOCK_NONBLOCK);
	*state = &f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	handshake_hello_free(f->h);
	free(f->d.held);
	if (f->cfd >= 0)
		close(f->cfd);
	close(f->afd);
	event_base_free(f->base);
	return 0;
}

static void
start(struct fx *f, unsigned timeout_ms, size_t max)
{
	f->h = handshake_hello_start(f->base, f->afd, timeout_ms, max,
	    done_cb, f);
	assert_non_null(f->h);
	assert_int_equal(f->calls, 0);
}

/* Turn the loop until the read ended (bounded: 5 s). */
static void
run_until_done(struct fx *f)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (f->calls == 0) {
		event_base_loop(f->base, EVLOOP_ONCE);
		clock_gettime(CLOCK_MONOTONIC, &now);
		assert_true(now.tv_sec - t0.tv_sec < 5);
	}
	assert_int_equal(f->calls, 1);
}

static void
send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A ClientHello in one record into out: TLS 1.2 fields, one cipher
 * suite, a padding extension of pad bytes first (0: none), then
 * server_name with name (NULL: none). Its length. */
static size_t
hello(uint8_t *out, const char *name, size_t pad)
{
	uint8_t *p = out + 9, *ext;
	size_t n, body;

	put16(p, 0x0303);
	memset(p + 2, 0x5a, 32);
	p += 34;
	*p++ = 0;                   /* no session id */
	put16(p, 2);
	put16(p + 2, 0x1301);
	p += 4;
	*p++ = 1;
	*p++ = 0;                   /* null compression */
	ext = p;
	p += 2;
	if (pad > 0) {
		put16(p, 21);           /* padding */
		put16(p + 2, pad);
		memset(p + 4, 0, pad);
		p += 4 + pad;
	}
	if (name != NULL) {
		n = strlen(name);
		put16(p, 0);            /* server_name */
		put16(p + 2, n + 5);
		put16(p + 4, n + 3);
		p[6] = 0;               /* host_name */
		put16(p + 7, n);
		memcpy(p + 9, name, n);
		p += 9 + n;
	}
	put16(ext, (size_t)(p - ext - 2));
	body = (size_t)(p - out) - 9;
	out[0] = 22;
	put16(out + 1, 0x0301);
	put16(out + 3, body + 4);
	out[5] = 1;
	out[6] = (uint8_t)(body >> 16);
	put16(out + 7, body);
	return body + 9;
}

/* The bytes handed back are sent[0..d.nheld), and the rest of sent is
 * still queued on the socket, in order. */
static void
check_held(struct fx *f, const uint8_t *sent, size_t len)
{
	uint8_t rest[8192];
	ssize_t n;

	assert_true(f->d.nheld <= len);
	if (f->d.nheld > 0)
		assert_memory_equal(f->d.held, sent, f->d.nheld);
	n = recv(f->afd, rest, sizeof(rest), MSG_DONTWAIT);
	if (f->d.nheld == len) {
		assert_true(n == -1 && errno == EAGAIN);
		return;
	}
	assert_int_equal(n, (ssize_t)(len - f->d.nheld));
	assert_memory_equal(rest, sent + f->d.nheld, (size_t)n);
}

static void
test_whole(void **state)
{
	struct fx *f = *state;
	uint8_t buf[600];
	size_t len = hello(buf, "App.Example.", 0);

	memcpy(buf + len, "\x17\x03\x03\x00\x03" "abc", 8);   /* and after */
	start(f, 2000, 16384);
	send_all(f->cfd, buf, len + 8);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_false(f->d.gone);
	assert_string_equal(f->name, "app.example");
	assert_true(f->d.nheld >= len);
	check_held(f, buf, len + 8);
}

static void
test_dribbled(void **state)
{
	struct fx *f = *state;
	uint8_t buf[600];
	size_t len = hello(buf, "a.example", 0);

	start(f, 4000, 16384);
	for (size_t i = 0; i < len && f->calls == 0; i++) {
		send_all(f->cfd, buf + i, 1);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_string_equal(f->name, "a.example");
	assert_int_equal(f->d.nheld, len);
	check_held(f, buf, len);
}

/* Past the first buffer (4 KiB): it grows, and the name after 6000 bytes
 * of padding is found. */
static void
test_large(void **state)
{
	struct fx *f = *state;
	static uint8_t buf[8192];
	size_t len = hello(buf, "big.example", 6000);

	start(f, 2000, 16384);
	send_all(f->cfd, buf, len);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_string_equal(f->name, "big.example");
	check_held(f, buf, len);
	assert_int_equal(f->d.nheld, len);
}

/* The same hello framed as records of 100 bytes of the message each. */
static void
test_records(void **state)
{
	struct fx *f = *state;
	uint8_t one[600], framed[1200];
	size_t len = hello(one, "r.example", 0), n = 0;

	for (size_t off = 5; off < len; off += 100) {
		size_t k = len - off < 100 ? len - off : 100;

		framed[n] = 22;
		put16(framed + n + 1, 0x0301);
		put16(framed + n + 3, k);
		memcpy(framed + n + 5, one + off, k);
		n += 5 + k;
	}
	start(f, 2000, 16384);
	send_all(f->cfd, framed, n);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_string_equal(f->name, "r.example");
	check_held(f, framed, n);
}

static void
test_no_sni(void **state)
{
	struct fx *f = *state;
	uint8_t buf[600];
	size_t len = hello(buf, NULL, 10);

	start(f, 2000, 16384);
	send_all(f->cfd, buf, len);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_NO_SNI);
	assert_null(f->d.name);
	check_held(f, buf, len);
}

static void
test_not_tls(void **state)
{
	struct fx *f = *state;
	static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

	start(f, 2000, 16384);
	send_all(f->cfd, get, sizeof(get) - 1);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_NOT_TLS);
	assert_false(f->d.gone);
	assert_non_null(f->d.why);
	check_held(f, (const uint8_t *)get, sizeof(get) - 1);
}

/* max 1024 and a 2000-byte hello: refused by its declared length, with
 * no more than max read. */
static void
test_too_large(void **state)
{
	struct fx *f = *state;
	static uint8_t buf[4096];
	size_t len = hello(buf, "a.example", 1900);

	start(f, 2000, 1024);
	send_all(f->cfd, buf, len);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_TOO_LARGE);
	assert_true(f->d.nheld <= 1024);
	check_held(f, buf, len);
}

static void
test_timeout(void **state)
{
	struct fx *f = *state;
	uint8_t buf[600];
	size_t len = hello(buf, "a.example", 0);
	struct timespec t0, t1;
	long ms;

	(void)len;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	start(f, 200, 16384);
	send_all(f->cfd, buf, 40);
	run_until_done(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_int_equal(f->d.result, STATS_HS_TIMEOUT);
	assert_false(f->d.gone);
	assert_true(ms >= 100);     /* libevent's coarse clock may lag */
	assert_int_equal(f->d.nheld, 40);
	check_held(f, buf, 40);
}

static void
test_closed_early(void **state)
{
	struct fx *f = *state;
	uint8_t buf[600];

	(void)hello(buf, "a.example", 0);
	start(f, 2000, 16384);
	send_all(f->cfd, buf, 30);
	assert_int_equal(shutdown(f->cfd, SHUT_WR), 0);
	run_until_done(f);
	assert_true(f->d.gone);
	assert_int_equal(f->d.err, 0);
	assert_int_equal(f->d.result, STATS_HS_INVALID);
	assert_int_equal(f->d.nheld, 30);
}

static void
test_reset_early(void **state)
{
	struct fx *f = *state;
	struct linger lg = { 1, 0 };
	uint8_t buf[600];

	(void)hello(buf, "a.example", 0);
	start(f, 2000, 16384);
	assert_int_equal(setsockopt(f->cfd, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof(lg)), 0);
	assert_int_equal(close(f->cfd), 0);
	f->cfd = -1;
	run_until_done(f);
	assert_true(f->d.gone);
	assert_int_equal(f->d.err, ECONNRESET);
	assert_null(f->d.held);
}

int
main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_whole), T(test_dribbled), T(test_large), T(test_records),
		T(test_no_sni), T(test_not_tls), T(test_too_large),
		T(test_timeout), T(test_closed_early), T(test_reset_early),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
