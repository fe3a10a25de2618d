/* proxy/backend.c: smooth weighted round robin and non-blocking connect. */
#include "spliced/backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int
backend_rr_init(struct backend_rr *rr, const struct config_backend *b)
{
	rr->n = b->nservers;
	rr->current = calloc(b->nservers ? b->nservers : 1, sizeof(*rr->current));
	return rr->current == NULL ? -1 : 0;
}

void
backend_rr_cleanup(struct backend_rr *rr)
{
	free(rr->current);
	rr->current = NULL;
	rr->n = 0;
}

size_t
backend_rr_pick(struct backend_rr *rr, const struct config_backend *b,
    ssize_t avoid)
{
	int64_t total = 0;
	size_t best = SIZE_MAX;

	if (rr->n == 1)
		return 0;
	/* Every server earns its weight each round; the richest is picked and
	 * pays the total back, which interleaves heavy and light servers. A
	 * server sat out (it just failed) earns nothing this round, or it would
	 * come back rich and be picked several times in a row. */
	for (size_t i = 0; i < rr->n; i++) {
		if ((ssize_t)i == avoid)
			continue;
		rr->current[i] += b->servers[i].weight;
		total += b->servers[i].weight;
		if (best == SIZE_MAX || rr->current[i] > rr->current[best])
			best = i;
	}
	rr->current[best] -= total;
	return best;
}

int
backend_connect(const struct addr *a)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* A relay must not add Nagle's delay to what the client already sent
	 * in small pieces: the client's own stack decided when to push. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == -1 &&
	    errno != EINPROGRESS) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int
backend_connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return errno;
	return err;
}
