/* include/spliced/accept.h: one worker's accepting.
 *
 * An acceptor watches the worker's own socket of every bind address of
 * the current listener set (listener.h: one SO_REUSEPORT socket per
 * worker, or the one socket systemd passed) with evconnlistener, admits
 * each client against the limits (listener_admit) and hands it to the
 * worker's connections (conn_start).
 *
 * At a limit it stops accepting on the listeners concerned; a client it
 * had already accepted when another worker filled the last slot waits,
 * unread, in a short queue, exactly as it would have waited in the
 * kernel's backlog, and is admitted, in arrival order, when a slot frees
 * (accept_wake). An admission that found the global limit reached only
 * after taking a slot gives it back, and another worker may have paused
 * for that slot meanwhile: the acceptor then asks the worker to wake its
 * peers (the wake_peers hook).
 *
 * Accept failing for lack of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM), or a
 * connection short of fds (accept_pause), pauses accepting instead of
 * spinning; every ACCEPT_FD_PAUSE_MS it asks the connections whether fds
 * are back (conn_home_fds_ready: clients waiting for an fd are served
 * first, the reserve refilled) and resumes once they are.
 *
 * Not thread-safe: one per worker, on the worker's thread. */
#ifndef SPLICED_ACCEPT_H
#define SPLICED_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ACCEPT_FD_PAUSE_MS 200

struct acceptor;
struct conn_home;
struct event_base;
struct listener_set;

/* Accept on the sockets of ls (the set of home's current snap) for worker
 * id, clients going to home. wake_peers(arg): wake every worker to admit
 * waiting clients (may be called from any acceptor call). NULL (logged)
 * when out of memory. */
struct acceptor *accept_new(struct event_base *, unsigned id,
    struct conn_home *, struct listener_set *ls,
    void (*wake_peers)(void *arg), void *arg);
/* Stop accepting for good: close this worker's own listening sockets (not
 * the passed ones; listener_close_own) and the clients waiting for a
 * slot, which hold none. NULL is fine. */
void accept_free(struct acceptor *);
/* The home's current snap changed (conn_home_switch first). When its
 * listener set ls is another (a reload), accept on the new set's sockets
 * from now on: clients waiting for a slot move to the listener of the
 * same name (which stays paused while they wait), or are closed when it is
 * gone, and sockets no set in use binds are closed. 0, or -1 (logged, out
 * of memory): then nothing changed. */
int accept_switch(struct acceptor *, struct listener_set *ls);
/* A slot may have freed: admit waiting clients, resume paused listeners.
 * NULL (a worker no longer accepting) is fine. */
void accept_wake(struct acceptor *);
/* The worker ran short of fds (err, opening `what`): pause accepting
 * rather than take clients it cannot serve. Logged at most once a second. */
void accept_pause(struct acceptor *, int err, const char *what);
/* A binary upgrade: stop accepting, keeping the sockets (hold), or go on
 * (the upgrade failed). New clients wait in the kernel's backlog
 * meanwhile, which the new process reads once it commits. NULL is fine. */
void accept_hold(struct acceptor *, bool hold);
/* A binary upgrade. The old process, held: describe the clients waiting
 * for a slot (records with `waiting` set: listener, peer, their socket)
 * at the end of *items, 0 or -1 (ENOMEM); once the new process has them,
 * close this process's copies. The new process: such a client waits for
 * a slot of its listener here (closed with an RST when there is none of
 * that name). NULL acceptors are fine for export and release. */
struct handover_items;
int accept_export(struct acceptor *, unsigned worker,
    struct handover_items *);
void accept_release(struct acceptor *);
/* How many clients wait for a slot. NULL is fine. */
size_t accept_waiting_count(const struct acceptor *);
void accept_adopt(struct acceptor *, const char *listener, int fd,
    const struct sockaddr *peer, socklen_t peerlen);

#endif
