/* include/spliced/keepalive.h: TCP keepalive on a connection's sockets.
 *
 * tcp_keepalive (config.h) set on one socket: the client's when it is
 * accepted, the backend's once its connect started. A peer that is gone
 * without an RST then fails the socket with ETIMEDOUT after
 * IDLE + INTERVAL x COUNT of silence, long before timeout_idle. */
#ifndef SPLICED_KEEPALIVE_H
#define SPLICED_KEEPALIVE_H

#include "spliced/config.h"

/* Off: nothing is done (sockets start without keepalive). On: SO_KEEPALIVE,
 * then TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT for those that are not
 * 0 (0 keeps the kernel's default). 0, or -1 with errno of the first
 * setsockopt that failed (ENOPROTOOPT where the system lacks an option);
 * the options before it stay set. Never fatal: the connection goes on. */
int keepalive_apply(int fd, const struct config_keepalive *);

#endif
