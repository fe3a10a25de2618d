/* include/spliced/backend.h: choosing a server and connecting to it.
 *
 * Balancing state is per worker (no locks on the data path): each worker
 * keeps a struct backend_rr per backend of its config. */
#ifndef SPLICED_BACKEND_H
#define SPLICED_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spliced/config.h"

/* Smooth weighted round robin (the algorithm nginx uses): a server of weight
 * 3 among weight-1 servers gets its three picks spread out, not in a row. */
struct backend_rr {
	size_t n;
	int64_t *current;
};

int backend_rr_init(struct backend_rr *, const struct config_backend *);  /* 0 / -1 ENOMEM */
void backend_rr_cleanup(struct backend_rr *);
/* The next server's index. avoid: an index not to pick (the server that just
 * failed) unless it is the only one; -1 for none. */
size_t backend_rr_pick(struct backend_rr *, const struct config_backend *,
    ssize_t avoid);

/* A non-blocking connect to addr, TCP_NODELAY set. Returns the socket (the
 * connect may still be in progress: wait for it to be writable, then ask
 * backend_connect_error()), or -1 with errno. */
int backend_connect(const struct addr *);
/* 0 once connected, else the errno the connect failed with. */
int backend_connect_error(int fd);

#endif
