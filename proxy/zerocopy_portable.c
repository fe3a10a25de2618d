/* proxy/zerocopy_portable.c: the zero-copy layer where there is none.
 * Splicing is never offered, so relays copy; sendfile is emulated with
 * pread+write so tools that serve files work everywhere. */
#include "spliced/zerocopy.h"

#include <errno.h>
#include <unistd.h>

const char *
zc_backend_name(void)
{
	return "none";
}

bool
zc_splice_supported(void)
{
	return false;
}

bool
zc_splice_disable(void)
{
	return false;
}

int
zc_pipe_open(int fds[2], size_t *size)
{
	(void)size;
	fds[0] = fds[1] = -1;
	errno = ENOSYS;
	return -1;
}

int
zc_pipe_resize(int pipe_w, size_t *size)
{
	(void)pipe_w, (void)size;
	errno = ENOSYS;
	return -1;
}

void
zc_pipe_close(int fds[2])
{
	fds[0] = fds[1] = -1;
}

ssize_t
zc_splice_in(int sock, int pipe_w, size_t len, bool *eof)
{
	(void)sock, (void)pipe_w, (void)len;
	*eof = false;
	errno = ENOSYS;
	return -1;
}

ssize_t
zc_splice_out(int pipe_r, int sock, size_t len, bool more)
{
	(void)pipe_r, (void)sock, (void)len, (void)more;
	errno = ENOSYS;
	return -1;
}

bool
zc_at_urgent_mark(int sock)
{
	(void)sock;
	return false;                   /* nothing splices here */
}

ssize_t
zc_queued(int sock)
{
	(void)sock;
	errno = ENOSYS;
	return -1;
}

ssize_t
zc_sendfile(int sock, int file, off_t *off, size_t len)
{
	char buf[16384];
	ssize_t r, w;

	if (len > sizeof(buf))
		len = sizeof(buf);
	r = pread(file, buf, len, *off);
	if (r <= 0)
		return r;
	/* Only what the socket takes counts: the rest is read again next time. */
	w = write(sock, buf, (size_t)r);
	if (w == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	*off += w;
	return w;
}
