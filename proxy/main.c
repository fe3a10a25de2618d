/* proxy/main.c: start-up, signals and the drain on shutdown; the command
 * line is cli.c's, reloads reload.c's, the totals at exit metrics.c's.
 *
 * The main thread binds every listener before any worker runs, so a config
 * that cannot be served fails at start with exit 1. It then runs what is
 * off the data path: signals, health checks, DNS, systemd's notifications
 * and the watchdog; the data path lives entirely in the workers.
 *
 * A reload (SIGHUP) is built whole before it is swapped in at one point
 * (reload.h); any failure leaves the process as it was. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proc.h"
#include "spliced/backend.h"
#include "spliced/check.h"
#include "spliced/cli.h"
#include "spliced/config.h"
#include "spliced/health.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/privs.h"
#include "spliced/reload.h"
#include "spliced/resolve.h"
#include "spliced/sdnotify.h"
#include "spliced/worker.h"
#include "spliced/zerocopy.h"

#define EXIT_USAGE 2

/* The pools' limits, shared out between the workers. Every pipe costs two
 * fds: at most an eighth of the fd limit goes to pipes. An unprivileged
 * user shares pipe-user-pages-soft among all its pipes (past it the kernel
 * hands out one-page pipes): the pools keep within 7/8 of it, shrinking
 * their pipes as more are out (pipepool.h), and the rest copy. A process
 * with CAP_SYS_RESOURCE or CAP_SYS_ADMIN is exempt from that budget, so
 * its pools hand out pipe_size every time. */
static void
derive_pipes(const struct config *cfg, unsigned nw, unsigned *max, size_t *budget)
{
	struct rlimit rl;
	unsigned long fds = 1024, pages = 0, total;
	FILE *f;

	*budget = 0;
	if (!privs_pipe_exempt() &&
	    (f = fopen("/proc/sys/fs/pipe-user-pages-soft", "r")) != NULL) {
		if (fscanf(f, "%lu", &pages) == 1 && pages > 0)
			*budget = (size_t)pages * 4096 / 8 * 7 / nw;
		fclose(f);
	}
	if (cfg->max_pipes > 0)
		total = cfg->max_pipes;
	else {
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
			fds = rl.rlim_cur;
		total = fds / 8;
		if (total > cfg->max_connections)
			total = cfg->max_connections;
	}
	total /= nw;
	*max = total > 0 ? (unsigned)total : 1;
}

static void
report_pipes(const struct config *cfg, unsigned per_worker, size_t budget)
{
	size_t got = cfg->pipe_size;
	int fds[2];

	if (!zc_splice_supported()) {
		if (cfg->splice != CONFIG_SPLICE_NEVER)
			log_info("this build cannot splice (zero-copy: %s): every byte is copied",
			    zc_backend_name());
		return;
	}
	if (zc_pipe_open(fds, &got) == 0) {
		zc_pipe_close(fds);
		if (got < cfg->pipe_size)
			log_warn("pipe_size %zu: the kernel granted %zu (see "
			    "/proc/sys/fs/pipe-max-size and pipe-user-pages-soft)",
			    cfg->pipe_size, got);
	}
	if (budget > 0)
		log_info("pipes: %zu bytes each (asked %zu), at most %u per worker, "
		    "smaller when more than %zu are out (pipe budget %zu KiB per worker)",
		    got, cfg->pipe_size, per_worker, budget / 2 / got, budget / 1024);
	else
		log_info("pipes: %zu bytes each (asked %zu), at most %u per worker",
		    got, cfg->pipe_size, per_worker);
}

/* Close every connection now; the workers then exit. */
static void
stop_all(struct proc *p)
{
	for (unsigned i = 0; i < p->nw; i++)
		worker_stop(p->w[i]);
}

/* "serving 12 connections on 3 listeners, 2 workers": STATUS= and logs. */
static const char *
status_text(const struct proc *p, char *buf, size_t n)
{
	unsigned c = listener_proc_active(p->lp);

	snprintf(buf, n, "%s %u connection%s on %zu listener%s, %u worker%s",
	    p->draining ? "draining" : "serving", c, c == 1 ? "" : "s",
	    p->cfg->nlisteners, p->cfg->nlisteners == 1 ? "" : "s", p->nw,
	    p->nw == 1 ? "" : "s");
	return buf;
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	char st[128];

	(void)fd, (void)what;
	sdnotify_status("%s", status_text(arg, st, sizeof(st)));
}

/* WATCHDOG=1 only when every worker answered the last ping from its loop:
 * a worker stuck in a callback must let systemd's watchdog fire, even
 * though this thread is well. */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	unsigned late = p->nw;

	(void)fd, (void)what;
	for (unsigned i = 0; i < p->nw; i++)
		if (!worker_answered(p->w[i], p->ping) &&
		    !worker_finished(p->w[i])) {
			late = i;
			break;
		}
	if (late == p->nw) {
		if (p->stuck)
			log_warn("watchdog: every worker answers again");
		p->stuck = false;
		sdnotify_watchdog();
	} else if (!p->stuck) {
		p->stuck = true;
		log_error("watchdog: worker %u has not answered for half a "
		    "watchdog period; systemd's watchdog is no longer fed", late);
	}
	p->ping++;
	for (unsigned i = 0; i < p->nw; i++)
		worker_ping(p->w[i], p->ping);
}

/* A worker's loop returned: after a drain that is the plan; otherwise the
 * worker failed and the process cannot serve as configured. */
static void
exited_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;

	(void)fd, (void)what;
	if (!p->draining) {
		log_error("a worker stopped unexpectedly; shutting down");
		p->failed = p->draining = true;
		stop_all(p);
	}
	for (unsigned i = 0; i < p->nw; i++)
		if (!worker_finished(p->w[i]))
			return;
	event_base_loopbreak(p->base);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;

	(void)fd, (void)what;
	log_warn("shutdown_timeout passed: closing the remaining connections");
	stop_all(p);
}

static void
unresolved_cb(const char *msg, void *arg)
{
	(void)arg;
	log_warn("%s; it stays down until it resolves", msg);
}

/* SIGHUP, with systemd told around it. */
static void
reload(struct proc *p)
{
	char st[128], msg[256];

	sdnotify_reloading("reloading the configuration");
	if (reload_run(p) == 0) {
		sdnotify_ready(status_text(p, st, sizeof(st)));
		return;
	}
	snprintf(msg, sizeof(msg), "reload failed, see the log; %s",
	    status_text(p, st, sizeof(st)));
	sdnotify_ready(msg);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proc *p = arg;
	unsigned ms = p->cfg->shutdown_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	char st[128];

	(void)what;
	if (sig == SIGHUP) {
		if (p->draining)
			log_warn("SIGHUP while shutting down: not reloading");
		else
			reload(p);
		return;
	}
	if (p->draining) {
		log_warn("%s again: closing every connection now", strsignal((int)sig));
		stop_all(p);
		return;
	}
	p->draining = true;
	sdnotify_stopping(status_text(p, st, sizeof(st)));
	if (ms == 0) {
		log_info("%s: shutdown_timeout is 0: closing every connection now",
		    strsignal((int)sig));
		stop_all(p);
		return;
	}
	log_info("%s: no longer accepting; draining connections for up to %u ms",
	    strsignal((int)sig), ms);
	for (unsigned i = 0; i < p->nw; i++)
		worker_drain(p->w[i]);
	evtimer_add(p->drain_timer, &tv);
}

/* The sockets systemd passed, and the process's listening state over
 * them. -1 (logged) on malformed variables or no memory. */
static int
take_sockets(struct proc *p)
{
	char err[CONFIG_ERR_MAX];
	struct sdnotify_fd *fds = NULL;
	size_t n = 0;

	if (sdnotify_listen_fds(&fds, &n, err, sizeof(err)) == -1) {
		log_error("socket activation: %s", err);
		return -1;
	}
	p->lp = listener_proc_new(p->nw, fds, n);
	sdnotify_fds_free(fds, n);
	if (p->lp == NULL) {
		log_error("out of memory");
		return -1;
	}
	return 0;
}

/* Timers of the main loop that talk to systemd. */
static int
start_timers(struct proc *p)
{
	struct timeval every = { 2, 0 };
	uint64_t usec = sdnotify_watchdog_usec();

	p->drain_timer = evtimer_new(p->base, drain_timeout_cb, p);
	p->exited = event_new(p->base, -1, 0, exited_cb, p);
	p->status = event_new(p->base, -1, EV_PERSIST, status_cb, p);
	if (p->drain_timer == NULL || p->exited == NULL || p->status == NULL ||
	    event_add(p->status, &every) == -1)
		return -1;
	if (usec == 0)
		return 0;
	/* Half the period, as sd_watchdog_enabled(3) advises. */
	every.tv_sec = (time_t)(usec / 2 / 1000000);
	every.tv_usec = (suseconds_t)(usec / 2 % 1000000);
	p->watchdog = event_new(p->base, -1, EV_PERSIST, watchdog_cb, p);
	if (p->watchdog == NULL || event_add(p->watchdog, &every) == -1)
		return -1;
	log_info("watchdog: pinging systemd every %" PRIu64 " ms while every "
	    "worker answers", usec / 2000);
	return 0;
}

/* After binding, before any thread: become [global] user. -1 (logged):
 * the process must not go on. */
static int
become_user(const struct proc *p, const struct privs_user *u)
{
	char err[CONFIG_ERR_MAX];
	int r;

	if (u->name == NULL)
		return 0;
	if ((r = privs_drop(p->cfg, u, err, sizeof(err))) == -1) {
		log_error("%s", err);
		return -1;
	}
	if (r == 1)
		log_info("dropped privileges to user %s (uid %ju, gid %ju)",
		    u->name, (uintmax_t)u->uid, (uintmax_t)u->gid);
	return 0;
}

static void
events_free(struct proc *p)
{
	struct event *ev[] = { p->drain_timer, p->exited, p->status, p->watchdog };

	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		if (ev[i] != NULL)
			event_free(ev[i]);
}

static int
serve(struct proc *p)
{
	char err[CONFIG_ERR_MAX], st[128];
	struct event *sigs[3] = { NULL };
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	sigset_t block, old;
	struct privs_user user = { 0 };
	unsigned per_worker;
	size_t budget;
	int rc = 1;

	p->nw = config_workers(p->cfg);
	if (p->cfg->user != NULL &&
	    privs_user_lookup(p->cfg, &user, err, sizeof(err)) == -1) {
		log_error("%s", err);
		return 1;
	}
	/* One-off mode has no user to name: setpriv or runuser do that. */
	if (p->path != NULL && privs_stays_root(p->cfg))
		log_warn("%s", PRIVS_ROOT_WARNING);
	reload_raise_nofile(p, p->cfg);
	if (take_sockets(p) == -1)
		goto out;
	if ((p->ls = listener_set_bind(p->lp, p->cfg, NULL, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	listener_proc_report_unused(p->lp);
	if (become_user(p, &user) == -1)
		goto out;
	/* The first thread: from here on no log line blocks on stderr. */
	if (log_writer_start() == -1) {
		log_error("cannot start the log writer: %s", strerror(errno));
		goto out;
	}
	derive_pipes(p->cfg, p->nw, &per_worker, &budget);
	if ((p->base = event_base_new()) == NULL ||
	    (p->bs = backend_set_new(p->cfg, NULL)) == NULL)
		goto out;
	if ((p->res = resolver_new(p->base, p->bs, reload_addresses_cb, p, err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	/* Host names first, so that the workers start with their
	 * addresses; one that does not resolve is down until it does. */
	resolver_first_round(p->res, unresolved_cb, p);
	if ((p->conf = worker_conf_new(p->ls, p->bs)) == NULL ||
	    (p->w = calloc(p->nw, sizeof(*p->w))) == NULL)
		goto out;
	for (unsigned i = 0; i < p->nw; i++)
		if ((p->w[i] = worker_new(i, p->conf, per_worker, budget, err,
		    sizeof(err))) == NULL) {
			log_error("%s", err);
			goto out;
		}
	if (start_timers(p) == -1)
		goto out;
	for (unsigned i = 0; i < p->nw; i++)
		worker_link(p->w[i], p->w, p->nw, p->exited);
	report_pipes(p->cfg, per_worker, budget);
	/* Handlers first, so a signal that comes while workers start is ours;
	 * the workers never see these signals: only this thread does. */
	for (int i = 0; i < 3; i++)
		if ((sigs[i] = evsignal_new(p->base, signums[i], signal_cb, p)) == NULL ||
		    event_add(sigs[i], NULL) == -1)
			goto out;
	sigemptyset(&block);
	for (int i = 0; i < 3; i++)
		sigaddset(&block, signums[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (unsigned i = 0; i < p->nw; i++)
		if (worker_start(p->w[i]) == -1) {
			log_error("cannot start worker %u: %s", i, strerror(errno));
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			goto out;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* Checks run here, on the main thread, never on a worker. */
	if ((p->health = health_new(p->base, p->bs)) == NULL) {
		log_error("cannot start health checks: %s", strerror(errno));
		goto out;
	}
	log_info("ready: %zu listener%s, %u worker%s, zero-copy %s, splice %s",
	    p->cfg->nlisteners, p->cfg->nlisteners == 1 ? "" : "s", p->nw,
	    p->nw == 1 ? "" : "s", zc_backend_name(),
	    config_splice_name(p->cfg->splice));
	sdnotify_ready(status_text(p, st, sizeof(st)));
	event_base_dispatch(p->base);
	rc = p->failed ? 1 : 0;
out:
	/* On a failed start, the workers that run are stopped the same way. */
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		if (p->w[i] != NULL)
			worker_stop(p->w[i]);
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		if (p->w[i] != NULL)
			worker_join(p->w[i]);
	if (p->w != NULL && rc == 0)
		metrics_log_totals(p->w, p->nw, p->bs);
	/* Its last callbacks run the loop: the workers must still exist. */
	resolver_free_retired(&p->retired);
	resolver_free(p->res);
	p->res = NULL;
	health_free(p->health);
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		worker_free(p->w[i]);
	free(p->w);
	worker_conf_unref(p->conf);
	backend_set_unref(p->bs);
	for (int i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	events_free(p);
	if (p->base != NULL)
		event_base_free(p->base);
	listener_set_unref(p->ls);
	listener_proc_free(p->lp);
	privs_user_cleanup(&user);
	return rc;
}

/* A usage error from cli.h: the message and the usage on stderr, exit 2.
 * Out of memory: exit 1, without a word, as the parse always did. */
static int
main_usage_error(int err, const char *msg)
{
	if (err == ENOMEM)
		return 1;
	fprintf(stderr, "spliced: %s\n", msg);
	cli_usage(stderr);
	return EXIT_USAGE;
}

/* The config of -c FILE or of the one-off relay's flags; NULL: *rc is
 * the exit status (the problem is on stderr). */
static struct config *
main_config(const struct cli_opts *o, int *rc)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;

	if (o->config == NULL) {
		if ((cfg = cli_config(o, err, sizeof(err))) == NULL)
			*rc = main_usage_error(errno, err);
		return cfg;
	}
	if ((cfg = config_load(o->config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "spliced: %s\n", err);
		*rc = 1;
	}
	return cfg;
}

int
main(int argc, char **argv)
{
	char err[CONFIG_ERR_MAX];
	struct cli_opts o;
	struct proc p = { 0 };
	int rc = 0;

	log_init();
	if (cli_parse(argc, argv, &o, err, sizeof(err)) == -1) {
		rc = main_usage_error(errno, err);
		cli_opts_cleanup(&o);
		return rc;
	}
	if (o.action == CLI_VERSION || o.action == CLI_HELP) {
		if (o.action == CLI_VERSION)
			cli_version(stdout);
		else
			cli_usage(stdout);
		cli_opts_cleanup(&o);
		return 0;
	}
	p.path = o.config;
	p.cfg = main_config(&o, &rc);
	cli_opts_cleanup(&o);
	if (p.cfg == NULL)
		return rc;
	if (o.action == CLI_CHECK) {
		rc = check_run(p.cfg, o.config ? o.config : "command line");
		config_unref(p.cfg);
		return rc;
	}
	/* A peer that went away must not kill the process: write errors are
	 * handled per connection. */
	signal(SIGPIPE, SIG_IGN);
	log_set_level(p.cfg->log_level);
	log_route_libevent();
	if (evthread_use_pthreads() == -1) {
		log_error("libevent has no pthreads support");
		return 1;
	}
	rc = serve(&p);
	if (rc == 0)
		log_info("stopped");
	log_writer_stop();
	config_unref(p.cfg);
	return rc;
}
