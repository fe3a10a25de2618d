/* include/spliced/listener.h: listening sockets, accepting, connection limits.
 *
 * The main thread binds everything a config asks for (listener_set_bind), so
 * that bind errors surface before any worker runs. Each worker then accepts
 * on its own sockets (one per bind address per worker, SO_REUSEPORT, so the
 * kernel spreads new connections) with listener_accept_start().
 *
 * Limits: [global] max_connections and [listener] max_connections count
 * client connections across all workers (atomics). At a limit a worker stops
 * accepting on the listeners concerned; a client it had already accepted
 * when another worker filled the last slot waits, unread, in a short queue,
 * exactly as it would have waited in the kernel's backlog. When a slot frees,
 * every worker is woken to admit waiting clients and resume accepting.
 * Accept failing for lack of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses
 * accepting for LISTENER_FD_PAUSE_MS instead of spinning, logged at most once
 * a second per worker. */
#ifndef SPLICED_LISTENER_H
#define SPLICED_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "spliced/config.h"

#define LISTENER_FD_PAUSE_MS 200

struct worker;

struct listener {               /* one per [listener]; shared by the workers */
	const struct config_listener *cfg;
	atomic_uint active;         /* its client connections, all workers */
	int *fds;                   /* [bind * nworkers + worker]; -1 once handed over */
};

struct listener_set {           /* everything bound for one config */
	struct config *cfg;         /* a reference */
	unsigned nworkers;
	struct listener *l;
	size_t n;
	atomic_uint active;         /* all client connections */
};

/* Bind and listen on every bind address of cfg, nworkers sockets each.
 * NULL with err ("listener web: cannot bind 127.0.0.1:80: Permission denied"). */
struct listener_set *listener_set_bind(struct config *, unsigned nworkers,
    char *err, size_t errlen);
void listener_set_free(struct listener_set *);  /* closes sockets not handed over */

/* Reserve a slot for one client of l (global and listener limits); false
 * when either is full. *wake is set when a global slot taken and given back
 * (l was full) may have made another worker pause: wake the workers. */
bool listener_admit(struct listener_set *, struct listener *, bool *wake);
/* Give a slot back. True when a limit was reached before, i.e. someone may
 * be waiting for this slot and the workers should be woken. */
bool listener_release(struct listener_set *, struct listener *);

/* Worker side, on the worker's thread. */
int listener_accept_start(struct worker *);   /* 0, or -1 (logged) */
/* Stop accepting for good: close this worker's listening sockets, and close
 * the clients waiting for a slot. */
void listener_accept_stop(struct worker *);
/* A slot may have freed: admit waiting clients, resume paused listeners. */
void listener_accept_wake(struct worker *);
/* The worker ran out of fds or memory (err): pause accepting for
 * LISTENER_FD_PAUSE_MS rather than take clients it cannot serve. */
void listener_accept_pause(struct worker *, int err);

#endif
