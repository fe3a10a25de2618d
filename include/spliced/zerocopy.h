/* include/spliced/zerocopy.h: the platform's zero-copy primitives.
 *
 * The rest of spliced never calls splice(2), sendfile(2) or pipe2(2) directly:
 * zerocopy_linux.c implements this on Linux, zerocopy_portable.c everywhere else
 * (and in the SPLICED_PORTABLE build), where every primitive fails with ENOSYS
 * and zc_splice_supported() is false, so callers copy instead.
 *
 * Movers return ssize_t: >0 bytes moved, 0 would block (EAGAIN), -1 error
 * (errno set). End of input is reported separately through *eof. */
#ifndef SPLICED_ZEROCOPY_H
#define SPLICED_ZEROCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* "sendfile+splice", "sendfile" or "none". */
const char *zc_backend_name(void);

/* Whether socket-to-socket splicing may be used. Starts true on Linux; the
 * first ENOSYS/EINVAL from a splice turns it off for the whole process (one
 * warning is logged by whoever calls zc_splice_disable()). Thread-safe. */
bool zc_splice_supported(void);
/* Returns true for the caller that actually turned it off (so it logs once). */
bool zc_splice_disable(void);

/* A pipe for splicing: non-blocking, close-on-exec, resized to *size with
 * F_SETPIPE_SZ. On return *size is what the kernel granted (it may be less,
 * e.g. one page past the per-user pipe budget). 0, or -1 with errno. */
int zc_pipe_open(int fds[2], size_t *size);
/* Resize an empty pipe (its write end) to *size; *size becomes what the
 * kernel granted, which may be the old size. 0, or -1 with errno. */
int zc_pipe_resize(int pipe_w, size_t *size);
void zc_pipe_close(int fds[2]);

/* Socket -> pipe: up to len bytes from sock into the pipe's write end.
 * *eof is set when sock reached end of stream (return 0). */
ssize_t zc_splice_in(int sock, int pipe_w, size_t len, bool *eof);
/* Pipe -> socket: up to len bytes from the pipe's read end into sock.
 * more: the caller has more to send right after (SPLICE_F_MORE, which like
 * MSG_MORE lets TCP hold a partial segment back for it). The relay passes
 * false: it writes out all it has read before it reads again, so when it
 * flushes it cannot know that more is coming, and a tail held back would
 * delay the end of every reply. */
ssize_t zc_splice_out(int pipe_r, int sock, size_t len, bool more);

/* Whether sock's read position is at a TCP urgent mark. splice(2) stops
 * there (tcp_read_sock does not step over urgent data) and reports EAGAIN,
 * or 0 as if at end of stream, while recv(2) steps over it: a splice that
 * moved nothing must ask this before believing it. */
bool zc_at_urgent_mark(int sock);

/* Bytes queued for reading on sock (SIOCINQ), or -1 with errno (ENOSYS
 * where nothing splices: only the choice to splice needs it). */
ssize_t zc_queued(int sock);

/* File -> socket from *off, advancing it (sendfile on Linux; read+write in the
 * portable build, so it works everywhere). */
ssize_t zc_sendfile(int sock, int file, off_t *off, size_t len);

#endif
