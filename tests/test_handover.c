/* tests/test_handover.c: the upgrade protocol's messages (handover.h)
 * over a real SOCK_SEQPACKET pair: a body and fds arrive whole (a pipe
 * still holds its bytes on the other side); a peer gone, a deadline, a
 * message of another version or too long for the reader each fail with
 * their errno and leak no fd. And relay_adopt() (relay.h) refuses a
 * direction record that no clean point could have produced. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/handover.h"
#include "spliced/relay.h"
#include "testutil.h"

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
	    sv), 0);
}

static uint64_t
soon(void)
{
	return handover_now_ms() + 5000;
}

static void
test_fds_travel(void **state)
{
	int sv[2], p[2], fds[HANDOVER_MAX_FDS], base = count_fds();
	struct handover_hello h = { 4242 }, got;
	enum handover_type t;
	size_t len, nfds;
	unsigned version;
	char buf[8];

	(void)state;
	pair(sv);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "abc", 3), 3);
	assert_int_equal(handover_send(sv[0], HANDOVER_HELLO, &h, sizeof(h), p,
	    2, soon()), 0);
	/* The sender's copies go; the pipe and its bytes live on. */
	close(p[0]);
	close(p[1]);
	assert_int_equal(handover_recv(sv[1], &t, &got, sizeof(got), &len, fds,
	    &nfds, soon(), &version), 0);
	assert_int_equal(t, HANDOVER_HELLO);
	assert_int_equal(len, sizeof(got));
	assert_int_equal(got.pid, 4242);
	assert_int_equal(nfds, 2);
	assert_int_equal(read(fds[0], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "abc", 3);
	close(fds[0]);
	close(fds[1]);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(count_fds(), base);
}

static void
test_peer_gone(void **state)
{
	int sv[2], fds[HANDOVER_MAX_FDS];
	enum handover_type t;
	size_t len, nfds;
	unsigned version;
	char b[4];

	(void)state;
	pair(sv);
	close(sv[0]);
	assert_int_equal(handover_recv(sv[1], &t, b, sizeof(b), &len, fds,
	    &nfds, soon(), &version), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(handover_send(sv[1], HANDOVER_COMMIT, NULL, 0, NULL,
	    0, soon()), -1);
	assert_int_equal(errno, EPIPE);
	close(sv[1]);
}

static void
test_deadline(void **state)
{
	int sv[2], fds[HANDOVER_MAX_FDS];
	enum handover_type t;
	size_t len, nfds;
	unsigned version;
	uint64_t t0 = handover_now_ms();
	char b[4];

	(void)state;
	pair(sv);
	assert_int_equal(handover_recv(sv[1], &t, b, sizeof(b), &len, fds,
	    &nfds, t0 + 50, &version), -1);
	assert_int_equal(errno, ETIMEDOUT);
	assert_true(handover_now_ms() >= t0 + 50);
	close(sv[0]);
	close(sv[1]);
}

/* A message of version 99 with an fd: refused, its fd closed. */
static void
test_other_version(void **state)
{
	struct handover_hdr h = { HANDOVER_MAGIC, 99, HANDOVER_HELLO };
	int sv[2], p[2], fds[HANDOVER_MAX_FDS], base;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	enum handover_type t;
	size_t len, nfds;
	unsigned version;
	char b[4];

	(void)state;
	pair(sv);
	assert_int_equal(pipe(p), 0);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
	assert_int_equal(sendmsg(sv[0], &m, 0), (ssize_t)sizeof(h));
	close(p[0]);
	close(p[1]);
	base = count_fds();
	assert_int_equal(handover_recv(sv[1], &t, b, sizeof(b), &len, fds,
	    &nfds, soon(), &version), -1);
	assert_int_equal(errno, EPROTO);
	assert_int_equal(version, 99);
	assert_int_equal(nfds, 0);
	assert_int_equal(count_fds(), base);
	close(sv[0]);
	close(sv[1]);
}

static void
test_too_long(void **state)
{
	int sv[2], fds[HANDOVER_MAX_FDS];
	enum handover_type t;
	size_t len, nfds;
	unsigned version;
	char big[100] = { 0 }, b[10];

	(void)state;
	pair(sv);
	assert_int_equal(handover_send(sv[0], HANDOVER_DATA, big, sizeof(big),
	    NULL, 0, soon()), 0);
	assert_int_equal(handover_recv(sv[1], &t, b, sizeof(b), &len, fds,
	    &nfds, soon(), &version), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_int_equal(handover_send(sv[0], HANDOVER_DATA, big,
	    HANDOVER_MAX_MSG + 1, NULL, 0, soon()), -1);
	assert_int_equal(errno, EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

static void
noop_cb(struct relay_dir *d, void *arg)
{
	(void)d, (void)arg;
}

/* Records no clean point produces are refused; a copy direction's held
 * bytes are taken over into a buffer of its own. */
static void
test_relay_adopt(void **state)
{
	struct event_base *base = event_base_new();
	struct relay_ctx ctx;
	struct relay_dir d;
	struct handover_dir hd = { .state = RELAY_WRITING,
	    .mode = RELAY_MODE_COPY };
	int sv[2];

	(void)state;
	assert_non_null(base);
	assert_int_equal(relay_ctx_init(&ctx, base, NULL, 16), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(relay_init(&d, &ctx, sv[0], sv[1], CONFIG_SPLICE_NEVER,
	    0, noop_cb, NULL), 0);
	/* WRITING with nothing held. */
	assert_int_equal(relay_adopt(&d, &hd, -1, -1, NULL), -1);
	assert_int_equal(errno, EINVAL);
	/* Bytes held while READING. */
	hd.state = RELAY_READING;
	hd.buf_len = 3;
	assert_int_equal(relay_adopt(&d, &hd, -1, -1, "abc"), -1);
	/* A pipe's bytes in copy mode; a pipe with no pool to take it. */
	hd = (struct handover_dir){ .state = RELAY_WRITING,
	    .mode = RELAY_MODE_COPY, .pipe_queued = 5, .has_pipe = 1 };
	assert_int_equal(relay_adopt(&d, &hd, 5, 6, NULL), -1);
	hd.mode = RELAY_MODE_SPLICE;
	assert_int_equal(relay_adopt(&d, &hd, 5, 6, NULL), -1);
	/* A state that does not exist. */
	hd = (struct handover_dir){ .state = RELAY_STATE_MAX_ };
	assert_int_equal(relay_adopt(&d, &hd, -1, -1, NULL), -1);
	/* More bytes than this process's buffer_size: a larger buffer. */
	hd = (struct handover_dir){ .state = RELAY_WRITING,
	    .mode = RELAY_MODE_COPY, .buf_len = 20, .bytes = { 7, 0 } };
	assert_int_equal(relay_adopt(&d, &hd, -1, -1,
	    "0123456789abcdefghij"), 0);
	assert_int_equal(d.state, RELAY_WRITING);
	assert_int_equal(d.len - d.off, 20);
	assert_memory_equal(d.buf + d.off, "0123456789abcdefghij", 20);
	assert_int_equal(d.bytes[RELAY_MODE_COPY], 7);
	relay_cleanup(&d);
	relay_ctx_cleanup(&ctx);
	close(sv[0]);
	close(sv[1]);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fds_travel),
		cmocka_unit_test(test_peer_gone),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_other_version),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_relay_adopt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
