/* proxy/supervise.c: signals, the drain, the watchdog and the status line.
 *
 * Everything here is a callback of the main loop. The workers are only
 * ever told what to do through their thread-safe calls (worker_drain,
 * worker_stop, worker_ping); what they answer is read back with
 * worker_answered and worker_finished. */
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/types.h>
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
#include "spliced/upgrade.h"
#include "spliced/worker.h"

/* How often STATUS= is sent. */
#define SUPERVISE_STATUS_S 2

static const int supervise_signums[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1,
    SIGUSR2 };
#define SUPERVISE_NSIGS \
	(sizeof(supervise_signums) / sizeof(supervise_signums[0]))

struct supervise {
	struct proc *p;
	struct event *sigs[SUPERVISE_NSIGS];
	struct event *drain_timer, *exited, *watchdog, *status;
	unsigned ping;              /* the watchdog's last question */
	bool stuck;                 /* a worker has not answered it */
	bool draining, failed;
	/* A binary upgrade (upgrade.h): running while up is set and
	 * up_done has not fired. */
	struct upgrade *up;
	struct event *up_done;
	bool upgrading;
	bool stop_later;            /* stop_all waits for the upgrade's end */
	int stop_sig;               /* a stop asked during the upgrade */
};

/* Close every connection now; the workers then exit. Not while an
 * upgrade runs: its thread still reads the frozen connections; asked to
 * stop, it gives up at its next step, and the stop follows (up_done). */
static void
supervise_stop_all(struct supervise *sv)
{
	if (sv->upgrading) {
		sv->stop_later = true;
		upgrade_cancel(sv->up);
		return;
	}
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

/* The upgrade's thread ended. Handed over: this process holds nothing
 * and exits 0 (a stop asked meanwhile goes to the new process). Failed:
 * everything runs as before (upgrade.c logged why). */
static void
supervise_upgrade_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervise *sv = arg;
	pid_t pid = upgrade_new_pid(sv->up);

	(void)fd, (void)what;
	sv->upgrading = false;
	if (upgrade_handed(sv->up)) {
		if (sv->stop_sig != 0) {
			log_info("upgrade: %s came during the handover: passed "
			    "on to pid %ld", strsignal(sv->stop_sig), (long)pid);
			kill(pid, sv->stop_sig);
		}
		sv->draining = true;
		evtimer_del(sv->drain_timer);
		for (unsigned i = 0; i < sv->p->nw; i++)
			worker_stop(sv->p->w[i]);
		return;
	}
	upgrade_free(sv->up);
	sv->up = NULL;
	if (sv->stop_later) {
		sv->stop_later = false;
		supervise_stop_all(sv);
	}
}

/* SIGUSR2. */
static void
supervise_upgrade(struct supervise *sv)
{
	if (sv->draining) {
		log_info("upgrade: SIGUSR2 while shutting down: ignored");
		return;
	}
	if (sv->up != NULL) {
		log_info("upgrade: one is running already: SIGUSR2 ignored");
		return;
	}
	if ((sv->up = upgrade_start(sv->p, sv->p->admin, sv->up_done)) != NULL)
		sv->upgrading = true;
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
	if (sig == SIGUSR2) {
		supervise_upgrade(sv);
		return;
	}
	if (sig == SIGHUP) {
		if (sv->draining)
			log_warn("SIGHUP while shutting down: not reloading");
		else if (sv->up != NULL)
			log_warn("SIGHUP during a binary upgrade: not reloading "
			    "(the new process reads the config itself)");
		else
			supervise_reload(sv);
		return;
	}
	if (sv->upgrading) {
		sv->stop_sig = (int)sig;
		upgrade_cancel(sv->up);
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
	sv->up_done = event_new(base, -1, 0, supervise_upgrade_done_cb, sv);
	if (sv->drain_timer == NULL || sv->exited == NULL || sv->status == NULL ||
	    sv->up_done == NULL ||
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
	/* Its thread may still run (a failed start): wait for it. */
	upgrade_free(sv->up);
	if (sv->up_done != NULL)
		event_free(sv->up_done);
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

void
supervise_upgrade_join(struct supervise *sv)
{
	if (sv == NULL || sv->up == NULL)
		return;
	upgrade_cancel(sv->up);
	upgrade_free(sv->up);
	sv->up = NULL;
	sv->upgrading = false;
}
