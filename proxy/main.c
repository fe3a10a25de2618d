/* proxy/main.c: command line, start-up, signals and the drain on shutdown.
 *
 * The main thread binds every listener before any worker runs, so a config
 * that cannot be served fails at start with exit 1. It then only waits for
 * signals; the data path lives entirely in the workers. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/health.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/resolve.h"
#include "spliced/worker.h"
#include "spliced/zerocopy.h"

#define EXIT_USAGE 2

struct opts {
	const char *config;
	bool check;
	const char *listen;
	const char **backends;
	size_t nbackends;
	const char *splice, *threshold, *workers;
};

struct proc {
	struct config *cfg;
	struct listener_set *ls;
	struct backend_set *bs;     /* the servers' shared state: the newest */
	struct resolver *res;       /* host-name servers, on this thread's base */
	struct health *health;      /* checks, on this thread's base */
	struct worker **w;
	unsigned nw;
	struct event_base *base;
	struct event *drain_timer, *exited;
	bool draining, failed;
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: spliced -c FILE              run with a config file\n"
	    "       spliced -t -c FILE           check the config and the kernel's zero-copy support\n"
	    "       spliced --listen ADDR:PORT --backend ADDR:PORT [--backend ...]\n"
	    "               [--splice auto|always|never] [--splice-threshold SIZE] [--workers N]\n"
	    "       spliced --version\n"
	    "ADDR:PORT is 127.0.0.1:8080, [::1]:8080, *:8080 or host.name:8080.\n");
}

static void
bad_usage(const char *fmt, const char *what)
{
	fprintf(stderr, "spliced: ");
	fprintf(stderr, fmt, what);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(EXIT_USAGE);
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'L' },
		{ "backend", required_argument, NULL, 'B' },
		{ "splice", required_argument, NULL, 'S' },
		{ "splice-threshold", required_argument, NULL, 'T' },
		{ "workers", required_argument, NULL, 'W' },
		{ "admin", required_argument, NULL, 'A' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:th", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 't': o->check = true; break;
		case 'L': o->listen = optarg; break;
		case 'B':
			o->backends = realloc(o->backends,
			    (o->nbackends + 1) * sizeof(*o->backends));
			if (o->backends == NULL)
				exit(1);
			o->backends[o->nbackends++] = optarg;
			break;
		case 'S': o->splice = optarg; break;
		case 'T': o->threshold = optarg; break;
		case 'W': o->workers = optarg; break;
		case 'A':
			bad_usage("--admin: not supported yet (%s)", optarg);
			break;
		case 'V':
			printf("spliced %s (zero-copy: %s)\n", SPLICED_VERSION,
			    zc_backend_name());
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_usage("%s needs a value", argv[optind - 1]);
			break;
		default:
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (o->config != NULL && (o->listen != NULL || o->nbackends > 0))
		bad_usage("%s", "-c and --listen/--backend do not mix");
	if (o->config == NULL && o->listen == NULL && o->nbackends == 0 &&
	    (o->splice || o->threshold || o->workers))
		bad_usage("%s", "--splice, --splice-threshold and --workers go with "
		    "--listen and --backend");
	if (o->config == NULL && o->listen == NULL && o->nbackends == 0)
		bad_usage("%s", "nothing to do: give -c FILE, or --listen and --backend");
	if (o->config == NULL && (o->listen == NULL || o->nbackends == 0))
		bad_usage("%s", "--listen and at least one --backend go together");
	if (o->config != NULL && (o->splice || o->threshold || o->workers))
		bad_usage("%s", "--splice, --splice-threshold and --workers go with --listen; "
		    "use the config file's keys with -c");
}

/* config_set() names "[section] key: "; on the command line the flag is
 * what the user wrote, so name that instead. */
static void
bad_flag(const char *flag, const char *err)
{
	const char *why = strstr(err, ": ");

	fprintf(stderr, "spliced: %s: %s\n", flag, why != NULL ? why + 2 : err);
	usage(stderr);
	exit(EXIT_USAGE);
}

/* The one-off relay: the same keys as a file, so the same validation. */
static struct config *
config_from_args(const struct opts *o)
{
	char err[CONFIG_ERR_MAX], name[32];
	struct config *cfg = config_new("command line");
	struct { const char *flag, *section, *key, *value; } set[] = {
		{ "--workers", "global", "workers", o->workers },
		{ "--splice", "global", "splice", o->splice },
		{ "--splice-threshold", "global", "splice_threshold", o->threshold },
		{ "--listen", "listener cli", "bind", o->listen },
		{ "--backend", "listener cli", "backend", "cli" },
	};

	if (cfg == NULL)
		exit(1);
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		if (set[i].value != NULL && config_set(cfg, set[i].section,
		    set[i].key, set[i].value, err, sizeof(err)) == -1)
			bad_flag(set[i].flag, err);
	for (size_t i = 0; i < o->nbackends; i++) {
		char line[300];

		snprintf(name, sizeof(name), "s%zu", i + 1);
		snprintf(line, sizeof(line), "%s %s", name, o->backends[i]);
		if (config_set(cfg, "backend cli", "server", line, err, sizeof(err)) == -1)
			bad_flag("--backend", err);
	}
	if (config_finish(cfg, err, sizeof(err)) == -1)
		bad_usage("%s", err);
	return cfg;
}

static unsigned
count_workers(const struct config *cfg)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (cfg->workers > 0)
		return cfg->workers;
	return n > 0 ? (unsigned)n : 1;
}

/* The pools' limits, shared out between the workers. Every pipe costs two
 * fds: at most an eighth of the fd limit goes to pipes. An unprivileged
 * user shares pipe-user-pages-soft among all its pipes (past it the kernel
 * hands out one-page pipes): the pools keep within 7/8 of it, shrinking
 * their pipes as more are out (pipepool.h), and the rest copy. Root is
 * exempt from that budget, so its pools hand out pipe_size every time. */
static void
derive_pipes(const struct config *cfg, unsigned nw, unsigned *max, size_t *budget)
{
	struct rlimit rl;
	unsigned long fds = 1024, pages = 0, total;
	FILE *f;

	*budget = 0;
	if (geteuid() != 0 &&
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
		if (!atomic_load(&p->w[i]->finished))
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
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proc *p = arg;
	unsigned ms = p->cfg->shutdown_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	(void)what;
	if (sig == SIGHUP) {
		log_warn("SIGHUP: reloading is not supported yet; carrying on unchanged");
		return;
	}
	if (p->draining) {
		log_warn("%s again: closing every connection now", strsignal((int)sig));
		stop_all(p);
		return;
	}
	p->draining = true;
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

/* Per server address, summed over the workers (each counts in the
 * generation it balances over; the counts follow an address from one
 * generation to the next). */
static void
log_server_totals(const struct proc *p)
{
	char a[ADDR_TEXT_MAX + 1];

	for (size_t b = 0; b < p->bs->n; b++) {
		const struct backend_shared *sh = &p->bs->b[b];

		for (size_t s = 0; s < sh->n; s++) {
			struct server_stats st = { 0 };

			for (unsigned i = 0; i < p->nw; i++) {
				const struct backend_lb *lb = &p->w[i]->lb[b];
				ssize_t k = backend_lb_index(lb, sh->servers[s]);

				if (k < 0)
					continue;
				st.connections += lb->stats[k].connections;
				st.connect_failures +=
				    lb->stats[k].connect_failures;
			}
			a[0] = ' ';
			if (sh->entry[s]->dnsname != NULL)
				addr_format((const struct sockaddr *)
				    &sh->servers[s]->addr.ss, a + 1, sizeof(a) - 1);
			else
				a[0] = '\0';
			log_info("totals: server %s/%s%s connections=%" PRIu64
			    " connect_failures=%" PRIu64 " up=%d", sh->cfg->name,
			    sh->entry[s]->name, a, st.connections,
			    st.connect_failures,
			    (int)atomic_load(&sh->servers[s]->up));
		}
	}
}

/* A new generation of server addresses (resolve.c): the checks and the
 * workers move to it. During the first round neither runs yet. */
static void
publish_cb(struct backend_set *bs, void *arg)
{
	struct proc *p = arg;

	backend_set_unref(p->bs);
	p->bs = backend_set_ref(bs);
	if (p->health != NULL && health_update(p->health, bs) == -1)
		log_error("health checks: out of memory: the checks keep the "
		    "addresses they had");
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		if (p->w[i] != NULL)
			worker_set_backends(p->w[i], bs);
}

static void
unresolved_cb(const char *msg, void *arg)
{
	(void)arg;
	log_warn("%s; it stays down until it resolves", msg);
}

static void
log_totals(const struct proc *p)
{
	struct worker_stats st = { 0 };
	struct relay_stats rs = { 0 };

	for (unsigned i = 0; i < p->nw; i++) {
		st.connections += p->w[i]->st.connections;
		st.connect_failures += p->w[i]->st.connect_failures;
		for (int m = 0; m < RELAY_MODE_MAX_; m++)
			rs.bytes[m] += p->w[i]->relay.stats.bytes[m];
		for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
			rs.fallbacks[f] += p->w[i]->relay.stats.fallbacks[f];
	}
	log_info("totals: connections=%" PRIu64 " connect_failures=%" PRIu64
	    " bytes_splice=%" PRIu64 " bytes_copy=%" PRIu64
	    " splice_fallbacks pool_full=%" PRIu64 " pipe_budget=%" PRIu64
	    " pipe_error=%" PRIu64 " unsupported=%" PRIu64,
	    st.connections, st.connect_failures, rs.bytes[RELAY_MODE_SPLICE],
	    rs.bytes[RELAY_MODE_COPY], rs.fallbacks[RELAY_FALLBACK_POOL_FULL],
	    rs.fallbacks[RELAY_FALLBACK_PIPE_BUDGET],
	    rs.fallbacks[RELAY_FALLBACK_PIPE_ERROR],
	    rs.fallbacks[RELAY_FALLBACK_UNSUPPORTED]);
	log_server_totals(p);
}

static int
serve(struct proc *p)
{
	char err[CONFIG_ERR_MAX];
	struct event *sigs[3] = { NULL };
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	sigset_t block, old;
	unsigned per_worker;
	size_t budget;
	int rc = 1;

	p->nw = count_workers(p->cfg);
	derive_pipes(p->cfg, p->nw, &per_worker, &budget);
	if ((p->ls = listener_set_bind(p->cfg, p->nw, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		return 1;
	}
	if ((p->base = event_base_new()) == NULL ||
	    (p->bs = backend_set_new(p->cfg, NULL)) == NULL)
		goto out;
	if ((p->res = resolver_new(p->base, p->bs, publish_cb, p, err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	/* Host names first, so that the workers start with their
	 * addresses; one that does not resolve is down until it does. */
	resolver_first_round(p->res, unresolved_cb, p);
	if ((p->w = calloc(p->nw, sizeof(*p->w))) == NULL)
		goto out;
	for (unsigned i = 0; i < p->nw; i++)
		if ((p->w[i] = worker_new(i, p->cfg, p->ls, p->bs, per_worker,
		    budget, err, sizeof(err))) == NULL) {
			log_error("%s", err);
			goto out;
		}
	p->drain_timer = evtimer_new(p->base, drain_timeout_cb, p);
	p->exited = event_new(p->base, -1, 0, exited_cb, p);
	if (p->drain_timer == NULL || p->exited == NULL)
		goto out;
	for (unsigned i = 0; i < p->nw; i++) {
		p->w[i]->peers = p->w;
		p->w[i]->npeers = p->nw;
		p->w[i]->exited = p->exited;
	}
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
		log_totals(p);
	/* Its last callbacks run the loop: the workers must still exist. */
	resolver_free(p->res);
	p->res = NULL;
	health_free(p->health);
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		worker_free(p->w[i]);
	free(p->w);
	backend_set_unref(p->bs);
	for (int i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (p->drain_timer != NULL)
		event_free(p->drain_timer);
	if (p->exited != NULL)
		event_free(p->exited);
	if (p->base != NULL)
		event_base_free(p->base);
	listener_set_free(p->ls);
	return rc;
}

static void
check_report_cb(const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "spliced: %s\n", msg);
}

static void
check_publish_cb(struct backend_set *bs, void *arg)
{
	(void)bs, (void)arg;
}

/* Every host-name server must resolve, through the resolver the config
 * names. 0, or -1 when one does not (each is printed). */
static int
check_names(struct config *cfg)
{
	char err[CONFIG_ERR_MAX];
	struct event_base *base = NULL;
	struct backend_set *bs = NULL;
	struct resolver *res = NULL;
	int rc = -1;

	if (config_dns_servers(cfg) == 0)
		return 0;
	/* Only what fails is news here; the resolver's info lines are not. */
	log_set_level(CONFIG_LOG_WARN);
	if ((base = event_base_new()) == NULL ||
	    (bs = backend_set_new(cfg, NULL)) == NULL) {
		fprintf(stderr, "spliced: out of memory\n");
		goto out;
	}
	if ((res = resolver_new(base, bs, check_publish_cb, NULL, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "spliced: %s\n", err);
		goto out;
	}
	if (resolver_first_round(res, check_report_cb, NULL) == 0)
		rc = 0;
out:
	resolver_free(res);
	backend_set_unref(bs);
	if (base != NULL)
		event_base_free(base);
	return rc;
}

static int
check(struct config *cfg, const char *path)
{
	size_t got = cfg->pipe_size;
	int fds[2];

	if (check_names(cfg) == -1)
		return 1;
	printf("configuration %s is valid: %zu listener(s), %zu backend(s)\n",
	    path, cfg->nlisteners, cfg->nbackends);
	printf("zero-copy: %s\n", zc_backend_name());
	if (zc_splice_supported() && zc_pipe_open(fds, &got) == 0) {
		zc_pipe_close(fds);
		printf("pipe_size: asked %zu, granted %zu\n", cfg->pipe_size, got);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	char err[CONFIG_ERR_MAX];
	struct opts o = { 0 };
	struct proc p = { 0 };
	int rc;

	parse_args(argc, argv, &o);
	if (o.config != NULL) {
		if ((p.cfg = config_load(o.config, err, sizeof(err))) == NULL) {
			fprintf(stderr, "spliced: %s\n", err);
			return 1;
		}
	} else
		p.cfg = config_from_args(&o);
	free(o.backends);
	if (o.check) {
		rc = check(p.cfg, o.config ? o.config : "command line");
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
	config_unref(p.cfg);
	return rc;
}
