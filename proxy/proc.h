/* proxy/proc.h: the main thread's state, for main.c, supervise.c and
 * reload.c only (not under include/: no other module and no test has any
 * business with it).
 *
 * What the process serves now: a config with everything built for it (the
 * generation: listening sockets, the servers' shared state, the conf the
 * workers were given, the resolver and the health checks), and the
 * workers serving it. Everything here is touched on the main thread only,
 * and each part has one writer:
 *  - main.c builds all of it at start-up and frees it at exit;
 *  - in between, only reload.c changes the generation: a reload (SIGHUP)
 *    swaps it whole, new addresses from the resolver swap bs and conf;
 *  - supervise.c reads it (the workers, the config's shutdown_timeout,
 *    the counts in the status line) and keeps its own state in struct
 *    supervise. */
#ifndef SPLICED_PROC_H
#define SPLICED_PROC_H

#include "spliced/privs.h"

struct admin;
struct backend_set;
struct config;
struct event_base;
struct health;
struct listener_proc;
struct listener_set;
struct resolver;
struct worker;
struct worker_conf;

struct proc {
	const char *path;           /* the config file; NULL: the command line */
	struct event_base *base;    /* the main loop */
	struct listener_proc *lp;   /* sockets that outlive every config */
	struct worker **w;          /* [nw] */
	unsigned nw;
	/* The generation: reload.c swaps it. */
	struct config *cfg;         /* the newest of everything below */
	struct listener_set *ls;
	struct backend_set *bs;     /* the servers' shared state */
	struct worker_conf *conf;   /* what the workers were last given */
	struct resolver *res;       /* host-name servers, on the main loop */
	struct resolver *retired;   /* earlier ones, until their queries end */
	struct health *health;      /* checks, on the main loop */
	struct privs_nofile nofile; /* RLIMIT_NOFILE, as last logged */
	struct admin *admin;        /* the admin endpoint, or NULL */
};

#endif
