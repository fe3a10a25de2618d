/* proxy/supervise.c: signals, the drain, the watchdog and the status line.
 *
 * Everything here is a callback of the main loop. The workers are only
 * ever told what to do through their thread-safe calls (worker_drain,
 * worker_stop, worker_ping); what they answer is read back with
 * worker_answered and worker_finished. */
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "spliced/clock.h"
#include "spliced/config.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/reload.h"
#include "spliced/sdnotify.h"
#include "spliced/supervise.h"
#include "spliced/worker.h"

/* How often STATUS= is sent. */
#define SUPERVISE_STATUS_S 2

static const int supervise_signums[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
#define SUPERVISE_NSIGS \
	(sizeof(supervise_signums) / sizeof(supervise_signums[0]))

struct supervise {
	struct proc *p;
	struct event *sigs[SUPERVISE_NSIGS];
	struct event *drain_timer, *exited, *watchdog, *status;
	unsigned ping;              /* the watchdog's last question */
	bool stuck;                 /* a worker has not answered it */
	bool draining, failed;
};

/* Close every connection now; the workers then exit. */
static void
supervise_stop_all(const struct supervise *sv)
{
	for (unsigned i = 0; i < sv->p->nw; i++)
		worker_stop(sv->p->w[i]);
}

/* "serving 12 connections on 3 listeners, 2 workers": STATUS= and logs. */
const char *
supervise_status(const struct supervise *sv, char *buf, size_t n)
{
	const struct proc *p = sv->p;
	unsigned c = listener_proc_active(p->lp);

	snprintf(buf, n, "%s %u connection%s on %zu listener%s, %u worker%s",
	    sv->draining ? "draining" : "serving", c, c == 1 ? "" : "s",
	    p->cfg->nlisteners, p->cfg->nlisteners == 1 ? "" : "s", p->nw,
	    p->nw == 1 ? "" : "s");
	return buf;
}

static void
supervise_status_cb(evutil_socket_t fd, short what, void *arg)
{
	char st[128];

	(void)fd, (void)what;
	sdnotify_status("%s", supervise_status(arg, st, sizeof(st)));
}

/* WATCHDOG=1 only when every worker answered the last ping from its loop:
 * a worker stuck in a callback must let systemd's watchdog fire, even
 * though this thread is well. */
static void
supervise_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervise *sv = arg;
	const struct proc *p = sv->p;
	unsigned late = p->nw;

	(void)fd, (void)what;
	for (unsigned i = 0; i < p->nw; i++)
		if (!worker_answered(p->w[i], sv->ping) &&
		    !worker_finished(p->w[i])) {
			late = i;
			break;
		}
	if (late == p->nw) {
		if (sv->stuck)
			log_warn("watchdog: every worker answers again");
		sv->stuck = false;
		sdnotify_watchdog();
	} else if (!sv->stuck) {
		sv->stuck = true;
		log_error("watchdog: worker %u has not answered for half a "
		    "watchdog period; systemd's watchdog is no longer fed", late);
	}
	sv->ping++;
	for (unsigned i = 0; i < p->nw; i++)
		worker_ping(p->w[i], sv->ping);
}

/* A worker's loop returned: after a drain that is the plan; otherwise the
 * worker failed and the process cannot serve as configured. */
static void
supervise_exited_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervise *sv = arg;
	const struct proc *p = sv->p;

	(void)fd, (void)what;
	if (!sv->draining) {
		log_error("a worker stopped unexpectedly; shutting down");
		sv->failed = sv->draining = true;
		supervise_stop_all(sv);
	}
	for (unsigned i = 0; i < p->nw; i++)
		if (!worker_finished(p->w[i]))
			return;
	event_base_loopbreak(p->base);
}

static void
supervise_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	log_warn("shutdown_timeout passed: closing the remaining connections");
	supervise_stop_all(arg);
}

/* SIGHUP, with systemd told around it. */
static void
supervise_reload(struct supervise *sv)
{
	char st[128], msg[256];

	sdnotify_reloading("reloading the configuration");
	if (reload_run(sv->p) == 0) {
		sdnotify_ready(supervise_status(sv, st, sizeof(st)));
		return;
	}
	snprintf(msg, sizeof(msg), "reload failed, see the log; %s",
	    supervise_status(sv, st, sizeof(st)));
	sdnotify_ready(msg);
}

static void
supervise_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct supervise *sv = arg;
	unsigned ms = sv->p->cfg->shutdown_timeout_ms;
	struct timeval tv = clock_timeval_ms(ms);
	char st[128];

	(void)what;
	if (sig == SIGUSR1) {       /* logrotate moved the access log */
		log_reopen();
		return;
	}
	if (sig == SIGHUP) {
		if (sv->draining)
			log_warn("SIGHUP while shutting down: not reloading");
		else
			supervise_reload(sv);
		return;
	}
	if (sv->draining) {
		log_warn("%s again: closing every connection now", strsignal((int)sig));
		supervise_stop_all(sv);
		return;
	}
	sv->draining = true;
	sdnotify_stopping(supervise_status(sv, st, sizeof(st)));
	if (ms == 0) {
		log_info("%s: shutdown_timeout is 0: closing every connection now",
		    strsignal((int)sig));
		supervise_stop_all(sv);
		return;
	}
	log_info("%s: no longer accepting; draining connections for up to %u ms",
	    strsignal((int)sig), ms);
	for (unsigned i = 0; i < sv->p->nw; i++)
		worker_drain(sv->p->w[i]);
	evtimer_add(sv->drain_timer, &tv);
}

/* The timers, and the event the workers activate. 0 or -1. */
static int
supervise_timers(struct supervise *sv)
{
	struct event_base *base = sv->p->base;
	struct timeval every = { SUPERVISE_STATUS_S, 0 };
	uint64_t usec = sdnotify_watchdog_usec();

	sv->drain_timer = evtimer_new(base, supervise_drain_timeout_cb, sv);
	sv->exited = event_new(base, -1, 0, supervise_exited_cb, sv);
	sv->status = event_new(base, -1, EV_PERSIST, supervise_status_cb, sv);
	if (sv->drain_timer == NULL || sv->exited == NULL || sv->status == NULL ||
	    event_add(sv->status, &every) == -1)
		return -1;
	if (usec == 0)
		return 0;
	/* Half the period, as sd_watchdog_enabled(3) advises. */
	every.tv_sec = (time_t)(usec / 2 / 1000000);
	every.tv_usec = (suseconds_t)(usec / 2 % 1000000);
	sv->watchdog = event_new(base, -1, EV_PERSIST, supervise_watchdog_cb, sv);
	if (sv->watchdog == NULL || event_add(sv->watchdog, &every) == -1)
		return -1;
	log_info("watchdog: pinging systemd every %" PRIu64 " ms while every "
	    "worker answers", usec / 2000);
	return 0;
}

struct supervise *
supervise_new(struct proc *p)
{
	struct supervise *sv = calloc(1, sizeof(*sv));

	if (sv == NULL)
		return NULL;
	sv->p = p;
	if (supervise_timers(sv) == -1)
		goto fail;
	for (size_t i = 0; i < SUPERVISE_NSIGS; i++)
		if ((sv->sigs[i] = evsignal_new(p->base, supervise_signums[i],
		    supervise_signal_cb, sv)) == NULL ||
		    event_add(sv->sigs[i], NULL) == -1)
			goto fail;
	return sv;
fail:
	supervise_free(sv);
	return NULL;
}

void
supervise_free(struct supervise *sv)
{
	if (sv == NULL)
		return;
	for (size_t i = 0; i < SUPERVISE_NSIGS; i++)
		if (sv->sigs[i] != NULL)
			event_free(sv->sigs[i]);
	if (sv->drain_timer != NULL)
		event_free(sv->drain_timer);
	if (sv->exited != NULL)
		event_free(sv->exited);
	if (sv->status != NULL)
		event_free(sv->status);
	if (sv->watchdog != NULL)
		event_free(sv->watchdog);
	free(sv);
}

void
supervise_sigset(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < SUPERVISE_NSIGS; i++)
		sigaddset(set, supervise_signums[i]);
}

struct event *
supervise_exited_event(struct supervise *sv)
{
	return sv->exited;
}

bool
supervise_draining(const struct supervise *sv)
{
	return sv->draining;
}

bool
supervise_failed(const struct supervise *sv)
{
	return sv->failed;
}
