/* proxy/upgrade_int.h: the old process's side of an upgrade, shared by
 * upgrade.c (the protocol, on the upgrade's thread) and upgrade_ask.c
 * (its questions to the workers). Not for other modules. */
#ifndef SPLICED_UPGRADE_INT_H
#define SPLICED_UPGRADE_INT_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "spliced/handover.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

struct admin;
struct proc;

struct upgrade;

/* One question to one worker. */
struct upgrade_ask {
	struct upgrade *u;
	struct worker_query q;
	struct event *done;         /* one each: activations do not add up */
	void (*fn)(struct upgrade_ask *, struct worker *);
	unsigned index;
	unsigned answer;
	int rc;
	bool answered;              /* done fired (the asking thread's) */
	atomic_uint *left;
};

struct upgrade {
	struct proc *p;
	struct admin *admin;
	struct event *finished;     /* the main loop's */
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool handed;         /* the commit point was passed */
	/* A cancel shuts the socket down, which ends any wait on it at
	 * once; not once COMMIT is sent: then only the new process's answer
	 * (COMMITTED, or its end) says who holds the connections. */
	pthread_mutex_t lock;
	bool committing;
	bool lost;                  /* the new process committed, then failed */
	pid_t child;
	int sock;
	uint64_t deadline_ms;
	struct event_base *base;    /* the thread's: query answers */
	/* The questions to the workers, made at the start: the way back
	 * (thaw, accept again) and the release after the commit must never
	 * fail for memory. */
	struct upgrade_ask *asks;   /* [p->nw], each with its done event */
	/* The servers' states, taken on the main thread at the start (the
	 * main thread alone may read p->bs). */
	struct handover_server *servers;
	size_t nservers;
	bool health_down;           /* the admin endpoint's /healthz, at the start */
	atomic_uint left;
	struct handover_items *items;       /* [p->nw] */
	struct stats_sample *samples;       /* [p->nw] */
	struct worker_totals *totals;       /* [p->nw] */
	bool frozen;
	char why[512];
};

/* u->why, once (the first reason stays); returns -1. */
int upgrade_fail(struct upgrade *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* upgrade_ask.c. The questions' done events, on u->base. 0 / -1. */
int upgrade_asks_init(struct upgrade *u);
/* fn on every worker's loop, waited for: the sum of the answers, with
 * *failed when one failed or did not answer by the deadline. */
unsigned upgrade_ask_all(struct upgrade *u,
    void (*fn)(struct upgrade_ask *, struct worker *), bool *failed);
/* The same on the way back: every worker, however long. */
void upgrade_ask_undo(struct upgrade *u,
    void (*fn)(struct upgrade_ask *, struct worker *));
/* The steps (worker.h's calls). */
void upgrade_hold_fn(struct upgrade_ask *, struct worker *);
void upgrade_resume_fn(struct upgrade_ask *, struct worker *);
void upgrade_unsettled_fn(struct upgrade_ask *, struct worker *);
void upgrade_export_fn(struct upgrade_ask *, struct worker *);
void upgrade_thaw_fn(struct upgrade_ask *, struct worker *);
void upgrade_counters_fn(struct upgrade_ask *, struct worker *);
void upgrade_abort_fn(struct upgrade_ask *, struct worker *);
void upgrade_release_fn(struct upgrade_ask *, struct worker *);

#endif
