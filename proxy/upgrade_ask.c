/* proxy/upgrade_ask.c: the upgrade's questions to the workers.
 *
 * Each step runs on a worker's own loop through worker_query(), between
 * two callbacks, which is what makes every connection's state still
 * while it is described; the upgrade's thread waits for the answers on
 * a base of its own (u->base). */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>

#include "spliced/handover.h"
#include "spliced/worker.h"
#include "proc.h"
#include "upgrade_int.h"


static void
ask_fn(struct worker *w, void *arg)
{
	struct upgrade_ask *a = arg;

	a->fn(a, w);
}

static void
ask_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upgrade_ask *a = arg;

	(void)fd, (void)what;
	a->answered = true;
	atomic_fetch_sub(a->left, 1);
}

/* Past the deadline: take back the questions not yet asked of a worker
 * stuck in a callback (one being answered now is waited for). True
 * when any was taken back. */
static bool
ask_cancel(struct upgrade *u, struct upgrade_ask *a, unsigned n)
{
	bool any = false;

	for (unsigned i = 0; i < n; i++)
		if (!a[i].answered && worker_query_cancel(u->p->w[i], &a[i].q)) {
			a[i].answered = true;
			a[i].rc = -1;
			atomic_fetch_sub(a[i].left, 1);
			any = true;
		}
	return any;
}

/* Run fn on every worker's loop and wait for all of them. Workers answer
 * within a loop turn; one that does not by the upgrade's deadline (stuck
 * in a callback: the watchdog's business) fails the step, unless
 * `undoing`: the way back waits for every worker. The sum of their
 * answers; *failed when any returned -1 or did not answer. An event per
 * worker: two activations of one event before its callback runs make
 * one call. */
static unsigned
ask_all_(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *),
    bool undoing, bool *failed)
{
	struct timeval slice = { 0, 100 * 1000 };
	uint64_t deadline;
	unsigned nw = u->p->nw, sum = 0, asked = 0;
	struct upgrade_ask *a = u->asks;

	*failed = false;
	atomic_store(&u->left, nw);
	for (unsigned i = 0; i < nw; i++)
		a[i] = (struct upgrade_ask){ .u = u, .fn = fn, .index = i,
		    .left = &u->left, .done = a[i].done };
	for (; asked < nw; asked++) {
		a[asked].q = (struct worker_query){ .fn = ask_fn,
		    .arg = &a[asked], .done = a[asked].done };
		worker_query(u->p->w[asked], &a[asked].q);
	}
	/* A healthy worker answers within milliseconds: the grace second
	 * keeps the upgrade's own deadline checks (settle) first to say why. */
	deadline = u->deadline_ms > handover_now_ms() + 1000 ? u->deadline_ms :
	    handover_now_ms() + 1000;
	while (atomic_load(&u->left) > 0) {
		if (!undoing && handover_now_ms() >= deadline &&
		    ask_cancel(u, a, nw))
			upgrade_fail(u, "a worker did not answer within upgrade_timeout");
		if (atomic_load(&u->left) == 0)
			break;
		event_base_loopexit(u->base, &slice);
		event_base_loop(u->base, EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY);
	}
	for (unsigned i = 0; i < nw; i++) {
		sum += a[i].answer;
		*failed |= a[i].rc == -1;
	}
	return sum;
}

unsigned
upgrade_ask_all(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *),
    bool *failed)
{
	return ask_all_(u, fn, false, failed);
}

/* The way back (thaw, accept again): every worker, however long. */
void
upgrade_ask_undo(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *))
{
	bool failed;

	(void)ask_all_(u, fn, true, &failed);
}

void
upgrade_hold_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_hold(w, true);
}

void
upgrade_resume_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_hold(w, false);
}

void
upgrade_unsettled_fn(struct upgrade_ask *a, struct worker *w)
{
	a->answer = worker_unsettled(w);
}

void
upgrade_export_fn(struct upgrade_ask *a, struct worker *w)
{
	a->rc = worker_export(w, &a->u->items[a->index]);
	a->answer = (unsigned)a->u->items[a->index].n;
}

void
upgrade_thaw_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_thaw(w);
}

void
upgrade_counters_fn(struct upgrade_ask *a, struct worker *w)
{
	a->rc = worker_counters(w, &a->u->samples[a->index],
	    &a->u->totals[a->index]);
}

void
upgrade_abort_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_abort_frozen(w);
}

void
upgrade_release_fn(struct upgrade_ask *a, struct worker *w)
{
	a->answer = worker_release(w);
}

int
upgrade_asks_init(struct upgrade *u)
{
	for (unsigned i = 0; i < u->p->nw; i++)
		if ((u->asks[i].done = event_new(u->base, -1, 0, ask_done_cb,
		    &u->asks[i])) == NULL)
			return -1;
	return 0;
}
