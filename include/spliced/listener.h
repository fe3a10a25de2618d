/* include/spliced/listener.h: listening sockets and connection limits.
 *
 * The main thread binds everything a config asks for (listener_set_bind), so
 * that bind errors surface before any worker runs, or, on a reload, before
 * anything changes. Each worker then accepts on its own sockets (one per
 * bind address per worker, SO_REUSEPORT, so the kernel spreads new
 * connections): accept.h.
 *
 * Sockets outlive configs. A bound address is a struct listener_sock,
 * shared by every listener_set whose config binds it: a reload that keeps
 * an address keeps its sockets, and the clients in their backlogs, so no
 * connection is refused while a config changes. Its sockets are closed when
 * the last set using it is freed, or, per worker, when that worker no
 * longer accepts on it (listener_close_own): it drains, or it moved to a
 * set that does not bind that address.
 *
 * Socket activation: the sockets systemd passed (sdnotify.h) belong to the
 * struct listener_proc for the process's whole life. A bind line whose
 * address a passed socket has (getsockname(); `*:P` also takes [::]:P or
 * 0.0.0.0:P) uses it instead of binding: every worker accepts on that one
 * socket. A passed socket that no bind line wants stays open, unused,
 * until a reload asks for its address. Draining never closes one: clients
 * that keep arriving wait in its backlog for the next start.
 *
 * Limits: [global] max_connections and [listener] max_connections count
 * client connections across all workers (atomics) and across reloads: the
 * global count is the process's, a listener's is carried by its name. A
 * slot is taken before a client becomes a connection (listener_admit) and
 * given back when it ends (listener_release); what a worker does at a
 * limit is accept.h's. */
#ifndef SPLICED_LISTENER_H
#define SPLICED_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/config.h"

struct sdnotify_fd;
struct srctable;
struct listener_sock;           /* listener.c */
struct listener_count;          /* listener.c: a listener's clients, by name */
struct listener_proc;           /* listener.c: what outlives every config */

struct listener {               /* one per [listener]; shared by the workers */
	const struct config_listener *cfg;
	struct listener_count *count;
	struct listener_sock **socks;   /* [cfg->nbinds] */
};

struct listener_set {           /* everything bound for one config */
	atomic_uint refs;
	struct config *cfg;         /* a reference */
	struct listener_proc *proc;
	unsigned gen;               /* 1, 2, ...: the order sets were bound in */
	struct listener *l;
	size_t n;
};

/* The process's listening state: nworkers sockets per bound address, and
 * the sockets systemd passed (taken over, names too; fds may be NULL).
 * NULL with errno. Free it after the last set. */
struct listener_proc *listener_proc_new(unsigned nworkers,
    const struct sdnotify_fd *fds, size_t nfds);
void listener_proc_free(struct listener_proc *);
/* Warn about each passed socket that no set has used (after the first bind). */
void listener_proc_report_unused(const struct listener_proc *);
/* All client connections now, every listener and generation. */
unsigned listener_proc_active(const struct listener_proc *);

/* Every bind address of cfg: with prev's sockets for an address prev
 * binds, else with a passed socket of that address, else bound now.
 * NULL with err ("spliced.ini:9: [listener web] bind: cannot bind
 * 127.0.0.1:80: Permission denied"); nothing of prev changes either way.
 * refs is 1. */
struct listener_set *listener_set_bind(struct listener_proc *, struct config *,
    const struct listener_set *prev, char *err, size_t errlen);
struct listener_set *listener_set_ref(struct listener_set *);
void listener_set_unref(struct listener_set *);   /* any thread; NULL is fine */
/* Listeners of ls, and of prev, whose names the other lacks: for the log. */
void listener_set_diff(const struct listener_set *ls,
    const struct listener_set *prev, size_t *added, size_t *removed);

/* Reserve a slot for one client of l (global and listener limits); false
 * when either is full. *wake is set when a global slot taken and given back
 * (l was full) may have made another worker pause: wake the workers. */
bool listener_admit(struct listener_set *, struct listener *, bool *wake);
/* A binary upgrade: a client the old process admitted takes a slot of l
 * whatever the limits say (it is connected already). */
void listener_adopt(struct listener_set *, struct listener *);
/* Give a slot back. True when a limit was reached before, i.e. someone may
 * be waiting for this slot and the workers should be woken. */
bool listener_release(struct listener_set *, struct listener *);

/* Whether the global limit is reached: no listener of ls has room. */
bool listener_set_full(const struct listener_set *);
/* Whether l (of ls) has room for one more client, globally and on its own. */
bool listener_room(const struct listener_set *, const struct listener *);

/* The table of the per-source limits (srctable.h), shared by every set
 * and worker: NULL until a config with a per-source limit was bound (that
 * bind makes it, at its source_table_size). Any thread. */
struct srctable *listener_proc_sources(struct listener_proc *);
/* A reload committed cfg: resize the table to its source_table_size
 * (logged when it cannot). Not in listener_set_bind(), since a reload
 * that fails after binding must leave the running table as it was. */
void listener_proc_sources_fit(struct listener_proc *, const struct config *);
/* l's scope in that table: the same for a listener name as long as some
 * set in use has it (counts carry over a reload). */
uint32_t listener_scope(const struct listener *);

/* Worker id's j-th socket of k (j = 0, 1, ... until -1): its own, the
 * passed one every worker shares, or the handed ones it accepts on. */
int listener_sock_fd(const struct listener_sock *, unsigned id, unsigned j);

/* A binary upgrade (upgrade.h). The old process: a copy (dup) of every
 * listening fd it has, the passed ones with their name (name NULL: bound
 * by spliced); *out malloc'd, free it with listener_fds_free() (which
 * closes the copies). 0, or -1 (out of memory or fds). Any thread. */
struct listener_fd {
	int fd;
	const char *name;
};
int listener_proc_fds(struct listener_proc *, struct listener_fd **out,
    size_t *n);
void listener_fds_free(struct listener_fd *, size_t n);
/* The new process, before its first bind: the sockets the old one bound
 * (one per worker it had), taken over (closed on failure). A bind line
 * of their address uses them, as if bound here. 0, or -1 (ENOMEM). */
int listener_proc_take_handed(struct listener_proc *, const int *fds,
    size_t n);
/* After the first bind: close the handed sockets no bind line took. */
void listener_proc_close_handed(struct listener_proc *);
/* Worker id will not accept on them again: close its own socket of every
 * address that keep (a set in use) no longer binds, of keep's generation
 * or an older one; keep NULL (a drain): of every address. Passed sockets
 * stay open. Any thread; serialised by p's lock. */
void listener_close_own(struct listener_proc *, unsigned id,
    const struct listener_set *keep);

#endif
