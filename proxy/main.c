/* proxy/main.c: start-up and the main loop.
 *
 * main() reads the command line (cli.h) and the config, then either checks
 * it (-t, check.h) or serves it. Serving starts in an order that matters:
 * the fd limit is raised and every listener bound before any thread runs,
 * so a config that cannot be served fails at start with exit 1, and the
 * process becomes [global] user after binding and before any thread
 * exists (privs.h); then the pipe budget is shared out, the servers'
 * host names get a first round of resolving, and the workers are made,
 * linked to the supervision (supervise.h) and started with its signals
 * blocked. The main loop then runs what is off the data path: signals,
 * health checks, DNS, reloads (reload.h), systemd's notifications and the
 * watchdog; the data path lives entirely in the workers. At the end the
 * workers are joined and what they counted is logged (metrics.h). */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proc.h"
#include "spliced/admin.h"
#include "spliced/backend.h"
#include "spliced/check.h"
#include "spliced/cli.h"
#include "spliced/config.h"
#include "spliced/ctl.h"
#include "spliced/health.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/privs.h"
#include "spliced/reload.h"
#include "spliced/resolve.h"
#include "spliced/sdnotify.h"
#include "spliced/supervise.h"
#include "spliced/upgrade.h"
#include "spliced/worker.h"
#include "spliced/zerocopy.h"

#define MAIN_EXIT_USAGE 2

/* The pools' limits, shared out between the workers. Every pipe costs two
 * fds: at most an eighth of the fd limit goes to pipes. An unprivileged
 * user shares pipe-user-pages-soft among all its pipes (past it the kernel
 * hands out one-page pipes): the pools keep within 7/8 of it, shrinking
 * their pipes as more are out (pipepool.h), and the rest copy. A process
 * with CAP_SYS_RESOURCE or CAP_SYS_ADMIN is exempt from that budget, so
 * its pools hand out pipe_size every time. */
static void
main_pipes_derive(const struct config *cfg, unsigned nw, unsigned *max,
    size_t *budget)
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
main_pipes_report(const struct config *cfg, unsigned per_worker, size_t budget)
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

static void
main_unresolved_cb(const char *msg, void *arg)
{
	(void)arg;
	log_warn("%s; it stays down until it resolves", msg);
}

/* A binary upgrade's new process: the sockets the old one handed over. */
struct main_handed {
	struct upgrade_child *uc;   /* NULL: not an upgrade */
	int *bound;
	size_t nbound;
	struct sdnotify_fd *passed;
	size_t npassed;
	int admin;
};

/* The sockets systemd passed (or, after an upgrade, the old process),
 * and the process's listening state over them. -1 (logged) on
 * malformed variables or no memory. */
static int
main_take_sockets(struct proc *p, struct main_handed *hd)
{
	char err[CONFIG_ERR_MAX];
	struct sdnotify_fd *fds = NULL, *all;
	size_t n = 0;
	int rc;

	if (sdnotify_listen_fds(&fds, &n, err, sizeof(err)) == -1) {
		log_error("socket activation: %s", err);
		return -1;
	}
	/* After an upgrade, systemd's sockets come from the old process. */
	if (hd->npassed > 0) {
		if ((all = realloc(fds, (n + hd->npassed) * sizeof(*all))) == NULL) {
			sdnotify_fds_free(fds, n);
			log_error("out of memory");
			return -1;
		}
		fds = all;
		memcpy(fds + n, hd->passed, hd->npassed * sizeof(*fds));
		n += hd->npassed;
		free(hd->passed);
		hd->passed = NULL;
		hd->npassed = 0;
	}
	p->lp = listener_proc_new(p->nw, fds, n);
	sdnotify_fds_free(fds, n);
	if (p->lp == NULL) {
		log_error("out of memory");
		return -1;
	}
	/* Taken, or closed by it on failure: no longer ours either way. */
	rc = listener_proc_take_handed(p->lp, hd->bound, hd->nbound);
	free(hd->bound);
	hd->bound = NULL;
	hd->nbound = 0;
	if (rc == -1) {
		log_error("upgrade: cannot take the listening sockets: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* After binding, before any thread: become [global] user. -1 (logged):
 * the process must not go on. */
static int
main_become_user(const struct proc *p, const struct privs_user *u)
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

static int
main_serve(struct proc *p)
{
	char err[CONFIG_ERR_MAX], st[128];
	struct supervise *sv = NULL;
	struct admin *admin = NULL;
	sigset_t block, old;
	struct privs_user user = { 0 };
	struct main_handed hd = { .admin = -1 };
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
	if (upgrade_child_open(&hd.uc) == -1 || (hd.uc != NULL &&
	    upgrade_child_listeners(hd.uc, &hd.bound, &hd.nbound, &hd.passed,
	    &hd.npassed, &hd.admin) == -1))
		goto out;
	if (main_take_sockets(p, &hd) == -1)
		goto out;
	if ((p->ls = listener_set_bind(p->lp, p->cfg, NULL, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		upgrade_child_fail(hd.uc, err);
		goto out;
	}
	listener_proc_report_unused(p->lp);
	listener_proc_close_handed(p->lp);
	/* As who started spliced: SIGUSR1 reopens it as [global] user. */
	if (log_access_start(p->cfg, err, sizeof(err)) == -1) {
		log_error("%s", err);
		goto out;
	}
	/* Bound as the listeners are: before privileges drop. */
	admin_take_handed(hd.admin);
	hd.admin = -1;
	if (admin_bind(p->cfg, &admin, err, sizeof(err)) == -1) {
		log_error("%s", err);
		upgrade_child_fail(hd.uc, err);
		goto out;
	}
	/* Until the commit the old process serves on it too: a failed
	 * upgrade must not remove its unix socket's file. */
	admin_handed(admin, hd.uc != NULL);
	p->admin = admin;
	if (main_become_user(p, &user) == -1)
		goto out;
	/* The first thread: from here on no log line blocks on stderr. */
	if (log_writer_start() == -1) {
		log_error("cannot start the log writer: %s", strerror(errno));
		goto out;
	}
	main_pipes_derive(p->cfg, p->nw, &per_worker, &budget);
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
	resolver_first_round(p->res, main_unresolved_cb, p);
	if ((p->conf = worker_conf_new(p->ls, p->bs)) == NULL ||
	    (p->w = calloc(p->nw, sizeof(*p->w))) == NULL)
		goto out;
	for (unsigned i = 0; i < p->nw; i++)
		if ((p->w[i] = worker_new(i, p->conf, per_worker, budget, err,
		    sizeof(err))) == NULL) {
			log_error("%s", err);
			goto out;
		}
	/* Its signal handlers first, so a signal that comes while workers
	 * start is ours. */
	if ((sv = supervise_new(p)) == NULL)
		goto out;
	for (unsigned i = 0; i < p->nw; i++)
		worker_link(p->w[i], p->w, p->nw, supervise_exited_event(sv));
	main_pipes_report(p->cfg, per_worker, budget);
	/* The old process's connections, before any worker runs: they start
	 * with it. */
	if (hd.uc != NULL) {
		if (upgrade_child_take(hd.uc, p->w, p->nw,
		    p->cfg->upgrade_timeout_ms) == -1)
			goto out;
		upgrade_child_servers(hd.uc, p->bs);
		if (upgrade_child_health_down(hd.uc)) {
			admin_health_set_down(admin);
			log_info("upgrade: /healthz stays down, as pid %ld had it "
			    "(spliced ctl health up to change it)", (long)getppid());
		}
		admin_handed(admin, false);
	}
	/* The workers never see those signals: only this thread does. */
	supervise_sigset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (unsigned i = 0; i < p->nw; i++)
		if (worker_start(p->w[i]) == -1) {
			log_error("cannot start worker %u: %s", i, strerror(errno));
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			goto out;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (hd.uc != NULL)
		upgrade_child_running(hd.uc);
	/* Checks run here, on the main thread, never on a worker. */
	if ((p->health = health_new(p->base, p->bs)) == NULL) {
		log_error("cannot start health checks: %s", strerror(errno));
		goto out;
	}
	/* Before READY=1: a deploy script may ask it right after. On this
	 * loop until the loop ends, so it answers while connections drain. */
	if (admin != NULL && admin_start(admin, p, sv) == -1) {
		log_error("cannot start the admin endpoint: %s", strerror(errno));
		goto out;
	}
	log_info("ready: %zu listener%s, %u worker%s, zero-copy %s, splice %s",
	    p->cfg->nlisteners, p->cfg->nlisteners == 1 ? "" : "s", p->nw,
	    p->nw == 1 ? "" : "s", zc_backend_name(),
	    config_splice_name(p->cfg->splice));
	if (hd.uc != NULL) {
		pid_t from;
		size_t socks, conns;

		upgrade_child_report(hd.uc, &from, &socks, &conns);
		log_info("upgrade: took %zu listening sockets and %zu "
		    "connections from pid %ld", socks, conns, (long)from);
		upgrade_child_free(hd.uc);
		hd.uc = NULL;
		sdnotify_mainpid_ready((long)getpid(),
		    supervise_status(sv, st, sizeof(st)));
	} else
		sdnotify_ready(supervise_status(sv, st, sizeof(st)));
	event_base_dispatch(p->base);
	rc = supervise_failed(sv) ? 1 : 0;
out:
	supervise_upgrade_join(sv);
	/* First: its requests may be waiting on the workers. */
	admin_free(admin);
	p->admin = NULL;
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
	supervise_free(sv);
	if (p->base != NULL)
		event_base_free(p->base);
	listener_set_unref(p->ls);
	listener_proc_free(p->lp);
	privs_user_cleanup(&user);
	upgrade_child_free(hd.uc);
	for (size_t i = 0; i < hd.nbound; i++)
		close(hd.bound[i]);
	free(hd.bound);
	for (size_t i = 0; i < hd.npassed; i++)
		close(hd.passed[i].fd);
	sdnotify_fds_free(hd.passed, hd.npassed);
	if (hd.admin != -1)
		close(hd.admin);
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
	return MAIN_EXIT_USAGE;
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

	/* The admin endpoint's client: its own options and exit codes. */
	if (argc > 1 && strcmp(argv[1], "ctl") == 0)
		return ctl_main(argc - 1, argv + 1);
	upgrade_remember(argc, argv);
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
	log_set_format(p.cfg->log_format);
	log_route_libevent();
	if (evthread_use_pthreads() == -1) {
		log_error("libevent has no pthreads support");
		return 1;
	}
	rc = main_serve(&p);
	if (rc == 0)
		log_info("stopped");
	log_writer_stop();
	config_unref(p.cfg);
	return rc;
}
