/* include/spliced/fdreserve.h: a few file descriptors held back for the
 * connections a worker has already accepted.
 *
 * When the process nears RLIMIT_NOFILE, accept(2) would otherwise take the
 * last free descriptor and leave the accepted client without a backend
 * socket. A worker therefore holds FDRESERVE_FDS descriptors of
 * /dev/null: accepting fails with EMFILE (and pauses) while these are
 * still free to hand out, and a connection whose socket(2) failed for lack
 * of fds closes one (fdreserve_take) and tries again. The reserve is
 * refilled before accepting resumes (fdreserve_fill), so accepting pauses
 * before the limit rather than at it.
 *
 * /dev/null because it needs no network state, exists in every sandbox
 * (systemd's PrivateDevices keeps it) and costs one struct file.
 * Not thread-safe: each worker owns one. */
#ifndef SPLICED_FDRESERVE_H
#define SPLICED_FDRESERVE_H

#include <stdbool.h>

/* Backend sockets: one for the client accepted as the limit is reached
 * (accepting then pauses until the reserve is whole again), and a few
 * more for when other workers take the fds freed meanwhile. Pipes are not
 * reserved: a direction that cannot get one copies (counted). */
#define FDRESERVE_FDS 4

struct fdreserve {
	int fd[FDRESERVE_FDS];
	unsigned n;                 /* held: fd[0..n) */
};

void fdreserve_init(struct fdreserve *);        /* holds none yet */
/* Open descriptors until FDRESERVE_FDS are held: true when they are, false
 * when the process is out of fds (errno set), keeping what it got. */
bool fdreserve_fill(struct fdreserve *);
/* Close one held descriptor, freeing it for the caller's next open: false
 * when none was held. */
bool fdreserve_take(struct fdreserve *);
bool fdreserve_full(const struct fdreserve *);
/* Whether errno err from opening an fd is the process's own shortage
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM), not the peer's doing: accepting
 * pauses for it. */
bool fdreserve_shortage(int err);
void fdreserve_cleanup(struct fdreserve *);     /* closes what is held */

#endif
