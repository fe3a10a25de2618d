/* proxy/handover.c: one message of the upgrade protocol over a
 * SOCK_SEQPACKET unix socket, with its fds, bounded by a deadline. Only
 * the upgrade's own thread (old process) or the start-up of the new one
 * calls these, never a worker: they may wait, up to the deadline. */
#include "spliced/handover.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

uint64_t
handover_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until sock is ready for `events`, or the deadline. 0 / -1. */
static int
wait_ready(int sock, short events, uint64_t deadline_ms)
{
	struct pollfd pfd = { .fd = sock, .events = events };

	for (;;) {
		uint64_t now = handover_now_ms();
		int r;

		if (now >= deadline_ms) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&pfd, 1, (int)(deadline_ms - now > 1000 ? 1000 :
		    deadline_ms - now));
		if (r > 0)
			return 0;
		if (r == -1 && errno != EINTR)
			return -1;
	}
}

int
handover_send(int sock, enum handover_type type, const void *body, size_t len,
    const int *fds, size_t nfds, uint64_t deadline_ms)
{
	struct handover_hdr h = { HANDOVER_MAGIC, HANDOVER_VERSION, (uint16_t)type };
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)body, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len > 0 ? 2 : 1 };
	struct cmsghdr *cm;

	if (nfds > HANDOVER_MAX_FDS || len > HANDOVER_MAX_MSG) {
		errno = EMSGSIZE;
		return -1;
	}
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	for (;;) {
		if (sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			return -1;
		/* ENOBUFS: out of kernel memory, and POLLOUT would not wait
		 * for it to come back: a millisecond, then again. */
		if (errno == ENOBUFS)
			nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
		if (handover_now_ms() >= deadline_ms) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (wait_ready(sock, POLLOUT, deadline_ms) == -1)
			return -1;
	}
}

void
handover_close_fds(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

int
handover_recv(int sock, enum handover_type *type, void *body, size_t cap,
    size_t *len, int *fds, size_t *nfds, uint64_t deadline_ms,
    unsigned *version)
{
	struct handover_hdr h;
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { &h, sizeof(h) }, { body, cap } };
	struct msghdr m;
	struct cmsghdr *cm;
	ssize_t n;
	size_t got = 0;

	*nfds = 0;
	*len = 0;
	*version = 0;
	for (;;) {
		m = (struct msghdr){ .msg_iov = iov, .msg_iovlen = 2,
		    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_ready(sock, POLLIN, deadline_ms) == -1)
			return -1;
	}
	for (cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			const unsigned char *p = CMSG_DATA(cm);

			/* Past what the caller has room for: closed here. */
			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, p + i * sizeof(int), sizeof(int));
				if (got < HANDOVER_MAX_FDS)
					fds[got++] = fd;
				else
					close(fd);
			}
		}
	if (n == 0) {
		handover_close_fds(fds, got);
		errno = ECONNRESET;
		return -1;
	}
	if ((size_t)n < sizeof(h) || h.magic != HANDOVER_MAGIC ||
	    h.version != HANDOVER_VERSION) {
		if ((size_t)n >= sizeof(h) && h.magic == HANDOVER_MAGIC)
			*version = h.version;
		handover_close_fds(fds, got);
		errno = EPROTO;
		return -1;
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		handover_close_fds(fds, got);
		errno = EMSGSIZE;
		return -1;
	}
	*type = (enum handover_type)h.type;
	*len = (size_t)n - sizeof(h);
	*nfds = got;
	return 0;
}

struct handover_item *
handover_items_add(struct handover_items *it)
{
	if (it->n == it->cap) {
		size_t cap = it->cap ? it->cap * 2 : 64;
		struct handover_item *v = realloc(it->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		it->v = v;
		it->cap = cap;
	}
	return &it->v[it->n++];
}

void
handover_items_cleanup(struct handover_items *it)
{
	free(it->v);
	*it = (struct handover_items){ 0 };
}
