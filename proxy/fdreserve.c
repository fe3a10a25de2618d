/* proxy/fdreserve.c: placeholder descriptors, opened while there are fds
 * to spare and closed one at a time when a connection needs one. */
#include "spliced/fdreserve.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void
fdreserve_init(struct fdreserve *r)
{
	r->n = 0;
}

bool
fdreserve_fill(struct fdreserve *r)
{
	int fd;

	while (r->n < FDRESERVE_FDS) {
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
			return false;
		r->fd[r->n++] = fd;
	}
	return true;
}

bool
fdreserve_take(struct fdreserve *r)
{
	if (r->n == 0)
		return false;
	close(r->fd[--r->n]);
	return true;
}

bool
fdreserve_full(const struct fdreserve *r)
{
	return r->n == FDRESERVE_FDS;
}

bool
fdreserve_shortage(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

void
fdreserve_cleanup(struct fdreserve *r)
{
	while (fdreserve_take(r))
		;
}
