/* proxy/zerocopy_linux.c: splice(2), sendfile(2) and sized pipes. */
#include "spliced/zerocopy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* Process-wide on purpose: a kernel that refuses splice for sockets refuses
 * it for every connection, so one worker's discovery spares the others. */
static atomic_bool splice_off;

const char *
zc_backend_name(void)
{
	return "sendfile+splice";
}

bool
zc_splice_supported(void)
{
	return !atomic_load_explicit(&splice_off, memory_order_relaxed);
}

bool
zc_splice_disable(void)
{
	return !atomic_exchange(&splice_off, true);
}

int
zc_pipe_open(int fds[2], size_t *size)
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	if (zc_pipe_resize(fds[1], size) == -1) {
		zc_pipe_close(fds);
		return -1;
	}
	return 0;
}

int
zc_pipe_resize(int pipe_w, size_t *size)
{
	int got;

	/* Past the per-user pipe budget (pipe-user-pages-soft) the kernel refuses
	 * to grow the pipe with EPERM and leaves it as it was (one page for a
	 * new pipe): not an error here, the caller sees the size and decides. */
	if (*size > 0 && (got = fcntl(pipe_w, F_SETPIPE_SZ, (int)*size)) > 0) {
		*size = (size_t)got;
		return 0;
	}
	if ((got = fcntl(pipe_w, F_GETPIPE_SZ)) <= 0)
		return -1;
	*size = (size_t)got;
	return 0;
}

void
zc_pipe_close(int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	fds[0] = fds[1] = -1;
}

ssize_t
zc_splice_in(int sock, int pipe_w, size_t len, bool *eof)
{
	ssize_t n;

	*eof = false;
	do
		n = splice(sock, NULL, pipe_w, NULL, len,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n == -1 && errno == EINTR);
	if (n == 0)
		*eof = true;
	if (n == -1 && errno == EAGAIN)
		return 0;
	return n;
}

ssize_t
zc_splice_out(int pipe_r, int sock, size_t len, bool more)
{
	unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
	ssize_t n;

	if (more)
		flags |= SPLICE_F_MORE;
	do
		n = splice(pipe_r, NULL, sock, NULL, len, flags);
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN)
		return 0;
	return n;
}

bool
zc_at_urgent_mark(int sock)
{
	int at = 0;

	return ioctl(sock, SIOCATMARK, &at) == 0 && at;
}

ssize_t
zc_queued(int sock)
{
	int n = 0;

	if (ioctl(sock, SIOCINQ, &n) == -1)
		return -1;
	return n;
}

ssize_t
zc_sendfile(int sock, int file, off_t *off, size_t len)
{
	ssize_t n;

	do
		n = sendfile(sock, file, off, len);
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN)
		return 0;
	return n;
}
