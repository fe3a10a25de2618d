/* tests/test_handshake.c: a PROXY header read off a real socket over
 * 127.0.0.1 by handshake.c: whole, one byte per loop turn, with payload
 * in the same segment (which must stay queued, byte for byte), stopping
 * short (timeout), closed early, and bad (invalid, too large). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/handshake.h"

struct fx {
	struct event_base *base;
	int cfd, afd;               /* client end (blocking), accepted end */
	int calls;
	struct handshake_done d;
	struct handshake *h;
};

static void
done_cb(const struct handshake_done *d, void *arg)
{
	struct fx *f = arg;

	f->calls++;
	f->d = *d;
	handshake_free(f->h);
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

	handshake_free(f->h);
	close(f->cfd);
	close(f->afd);
	event_base_free(f->base);
	return 0;
}

static void
start(struct fx *f, unsigned timeout_ms)
{
	f->h = handshake_start(f->base, f->afd, timeout_ms, done_cb, f);
	assert_non_null(f->h);
	assert_int_equal(f->calls, 0);      /* never from handshake_start */
}

/* Turn the loop until the handshake ended (bounded: 5 s). */
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

/* What is left on the socket, read without blocking (up to len). */
static size_t
rest(int fd, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);

	return n > 0 ? (size_t)n : 0;
}

static const char v1[] = "PROXY TCP4 192.0.2.7 198.51.100.1 50412 443\r\n";

static void
check_v1_result(const struct fx *f)
{
	const struct sockaddr_in *src = (const void *)&f->d.pp.src;
	const struct sockaddr_in *dst = (const void *)&f->d.pp.dst;
	char a[INET_ADDRSTRLEN];

	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_false(f->d.pp.local);
	assert_int_equal(src->sin_family, AF_INET);
	assert_string_equal(inet_ntop(AF_INET, &src->sin_addr, a, sizeof(a)),
	    "192.0.2.7");
	assert_int_equal(ntohs(src->sin_port), 50412);
	assert_string_equal(inet_ntop(AF_INET, &dst->sin_addr, a, sizeof(a)),
	    "198.51.100.1");
	assert_int_equal(ntohs(dst->sin_port), 443);
}

static void
test_v1_with_payload(void **state)
{
	struct fx *f = *state;
	char buf[256], got[64];

	/* Header and payload in one segment: the payload must stay. */
	snprintf(buf, sizeof(buf), "%sGET / HTTP/1.0\r\n\r\n", v1);
	send_all(f->cfd, buf, strlen(buf));
	start(f, 2000);
	run_until_done(f);
	check_v1_result(f);
	assert_int_equal(rest(f->afd, got, sizeof(got)), 18);
	assert_memory_equal(got, "GET / HTTP/1.0\r\n\r\n", 18);
}

static void
test_v2_one_byte_at_a_time(void **state)
{
	struct fx *f = *state;
	struct sockaddr_in6 src = { .sin6_family = AF_INET6 }, dst = src;
	uint8_t hdr[PROXYPROTO_ENCODE_MAX];
	ssize_t n;
	char got[8];

	inet_pton(AF_INET6, "2001:db8::7", &src.sin6_addr);
	src.sin6_port = htons(4000);
	inet_pton(AF_INET6, "2001:db8::1", &dst.sin6_addr);
	dst.sin6_port = htons(443);
	n = proxyproto_encode_v2(hdr, sizeof(hdr), (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, false);
	assert_true(n == 16 + 36);
	start(f, 5000);
	for (ssize_t i = 0; i < n; i++) {
		int queued = -1;

		send_all(f->cfd, hdr + i, 1);
		/* The byte is there: one turn reads it, and takes it. */
		event_base_loop(f->base, EVLOOP_ONCE);
		assert_int_equal(ioctl(f->afd, FIONREAD, &queued), 0);
		assert_int_equal(queued, 0);
		assert_int_equal(f->calls, i == n - 1 ? 1 : 0);
	}
	send_all(f->cfd, "x", 1);
	assert_int_equal(f->d.result, STATS_HS_OK);
	assert_int_equal(f->d.pp.src.ss_family, AF_INET6);
	assert_memory_equal(&((struct sockaddr_in6 *)&f->d.pp.src)->sin6_addr,
	    &src.sin6_addr, 16);
	assert_int_equal(rest(f->afd, got, sizeof(got)), 1);
	assert_int_equal(got[0], 'x');
}

static void
test_stops_short_times_out(void **state)
{
	struct fx *f = *state;
	struct timespec t0, t1;
	long ms;

	send_all(f->cfd, v1, 20);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	start(f, 200);
	run_until_done(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_int_equal(f->d.result, STATS_HS_TIMEOUT);
	assert_true(ms >= 190);
}

static void
test_closed_early(void **state)
{
	struct fx *f = *state;

	send_all(f->cfd, v1, 10);
	shutdown(f->cfd, SHUT_WR);
	start(f, 2000);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_INVALID);
	assert_non_null(f->d.why);
}

static void
test_no_header(void **state)
{
	struct fx *f = *state;
	char got[32];

	send_all(f->cfd, "GET / HTTP/1.0\r\n\r\n", 18);
	start(f, 2000);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_INVALID);
	/* Never guessed, and nothing taken. */
	assert_int_equal(rest(f->afd, got, sizeof(got)), 18);
}

static void
test_v1_too_large(void **state)
{
	struct fx *f = *state;
	char line[300];
	char got[300];

	/* UNKNOWN's rest is ignored up to CRLF, which never comes. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	send_all(f->cfd, line, sizeof(line));
	start(f, 2000);
	run_until_done(f);
	assert_int_equal(f->d.result, STATS_HS_TOO_LARGE);
	/* No more than 107 bytes were read. */
	assert_true(rest(f->afd, got, sizeof(got)) >= sizeof(line) - 107);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_v1_with_payload, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_v2_one_byte_at_a_time, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stops_short_times_out, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_closed_early, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_header, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_v1_too_large, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
