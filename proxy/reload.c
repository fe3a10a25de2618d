/* proxy/reload.c: SIGHUP and new server addresses: build the new
 * generation, then swap it in at one point.
 *
 * reload_run() takes the steps that can fail first (config, listeners,
 * servers' state, health checks, resolver, the workers' conf), each into a
 * local; the first failure frees what was built and logs why. Publishing
 * the conf to the workers is the switch; what follows it cannot fail. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/health.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/privs.h"
#include "spliced/reload.h"
#include "spliced/resolve.h"
#include "spliced/worker.h"

/* Hand the workers ls and bs (both of p->cfg) for their new connections.
 * -1 when out of memory: nothing changed. */
static int
reload_publish(struct proc *p, struct listener_set *ls, struct backend_set *bs)
{
	struct worker_conf *conf = worker_conf_new(ls, bs);

	if (conf == NULL)
		return -1;
	worker_conf_unref(p->conf);
	p->conf = conf;
	for (unsigned i = 0; p->w != NULL && i < p->nw; i++)
		if (p->w[i] != NULL)
			worker_publish(p->w[i], conf);
	return 0;
}

/* A new generation of server addresses (resolve.c): the checks and the
 * workers move to it. During the first round neither runs yet. */
void
reload_addresses_cb(struct backend_set *bs, void *arg)
{
	struct proc *p = arg;

	if (p->conf != NULL && reload_publish(p, p->ls, bs) == -1) {
		log_error("out of memory: the workers keep the addresses they had");
		return;
	}
	backend_set_unref(p->bs);
	p->bs = backend_set_ref(bs);
	if (p->health != NULL && health_update(p->health, bs) == -1)
		log_error("health checks: out of memory: the checks keep the "
		    "addresses they had");
}

void
reload_raise_nofile(struct proc *p, const struct config *cfg)
{
	struct privs_nofile nf;
	char line[512];

	if (privs_nofile_raise(cfg, p->nw, &nf) == -1) {
		log_warn("RLIMIT_NOFILE: getrlimit: %s", strerror(errno));
		return;
	}
	/* The need moves with every bind and server a reload adds or
	 * removes; comparing it made most reloads repeat the warning. A need
	 * is never 0, so 0 is "not logged yet". */
	if (p->nofile.need != 0 && !privs_nofile_news(&p->nofile, &nf))
		return;
	p->nofile = nf;
	if (privs_nofile_text(&nf, line, sizeof(line)))
		log_warn("%s", line);
	else
		log_info("%s", line);
}

static bool
reload_str_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* The admin endpoint keeps its socket and token until a restart (its
 * socket may need the privileges the process dropped). */
static void
reload_admin_changed(const struct config *cfg, const struct config *cur)
{
	if (reload_str_differ(cfg->admin.unix_path, cur->admin.unix_path) ||
	    cfg->admin.addr.len != cur->admin.addr.len ||
	    (cfg->admin.addr.len > 0 &&
	    !addr_equal(&cfg->admin.addr, &cur->admin.addr)))
		log_warn("reload: [global] admin changed: it takes effect at "
		    "the next restart; the admin endpoint stays where it is");
	if (reload_str_differ(cfg->admin_token_file, cur->admin_token_file))
		log_warn("reload: [global] admin_token_file changed: it takes "
		    "effect at the next restart; the token stays as it was");
}

/* Keys that size what the workers and pools were built with, or who the
 * process is: a reload keeps the running values and says so. -1: out of
 * memory. */
static int
reload_keep_restart_keys(struct config *cfg, const struct config *cur)
{
	char was[32], now[32];

#define KEEP(key, fmt)							\
	if (cfg->key != cur->key) {					\
		snprintf(was, sizeof(was), fmt, cur->key);		\
		snprintf(now, sizeof(now), fmt, cfg->key);		\
		log_warn("reload: [global] " #key " changed (%s -> %s): it "	\
		    "takes effect at the next restart; keeping %s", was, now, \
		    was);						\
		cfg->key = cur->key;					\
	}
	/* auto and the count it gives are the same: compare what runs. */
	if (config_workers(cfg) != config_workers(cur)) {
		log_warn("reload: [global] workers changed (%u -> %u): it takes "
		    "effect at the next restart; keeping %u", config_workers(cur),
		    config_workers(cfg), config_workers(cur));
		cfg->workers = cur->workers;
	}
	KEEP(pipe_size, "%zu")
	KEEP(buffer_size, "%zu")
	KEEP(max_pipes, "%u")
#undef KEEP
	if ((cfg->user == NULL) != (cur->user == NULL) || (cfg->user != NULL &&
	    strcmp(cfg->user, cur->user) != 0)) {
		log_warn("reload: [global] user changed (%s -> %s): it takes "
		    "effect at the next restart; keeping %s",
		    cur->user ? cur->user : "none", cfg->user ? cfg->user : "none",
		    cur->user ? cur->user : "none");
		free(cfg->user);
		cfg->user = NULL;
		if (cur->user != NULL && (cfg->user = strdup(cur->user)) == NULL)
			return -1;
	}
	reload_admin_changed(cfg, cur);
	return 0;
}

/* Everything the new config needs is built before anything changes; the
 * first failure logs why and leaves all as it was. */
int
reload_run(struct proc *p)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = NULL;
	struct listener_set *ls = NULL;
	struct backend_set *bs = NULL;
	struct resolver *res = NULL;
	struct health *health = NULL;
	struct log_access_file af = { .fd = -1 };
	size_t added, removed;

	if (p->path == NULL) {
		log_warn("SIGHUP: started from the command line, there is no "
		    "config file to read again; carrying on unchanged");
		return 0;
	}
	log_info("SIGHUP: reloading %s", p->path);
	if ((cfg = config_load(p->path, err, sizeof(err))) == NULL) {
		log_error("reload failed: %s; carrying on unchanged", err);
		goto fail;
	}
	if (reload_keep_restart_keys(cfg, p->cfg) == -1) {
		log_error("reload failed: out of memory; carrying on unchanged");
		goto fail;
	}
	if ((ls = listener_set_bind(p->lp, cfg, p->ls, err, sizeof(err))) == NULL) {
		log_error("reload failed: %s; carrying on unchanged", err);
		goto fail;
	}
	if ((bs = backend_set_new(cfg, p->bs)) == NULL ||
	    (health = health_new(p->base, bs)) == NULL) {
		log_error("reload failed: out of memory; carrying on unchanged");
		goto fail;
	}
	if ((res = resolver_new(p->base, bs, reload_addresses_cb, p, err,
	    sizeof(err))) == NULL) {
		log_error("reload failed: %s; carrying on unchanged", err);
		goto fail;
	}
	if (log_access_open(&af, cfg, err, sizeof(err)) == -1) {
		log_error("reload failed: %s; carrying on unchanged", err);
		goto fail;
	}
	if (reload_publish(p, ls, bs) == -1) {
		log_error("reload failed: out of memory; carrying on unchanged");
		goto fail;
	}
	/* Committed: from here on nothing fails. */
	listener_set_diff(ls, p->ls, &added, &removed);
	listener_proc_sources_fit(p->lp, cfg);
	resolver_retire(p->res, &p->retired);
	p->res = res;
	health_free(p->health);
	p->health = health;
	backend_set_unref(p->bs);
	p->bs = bs;
	listener_set_unref(p->ls);
	p->ls = ls;
	config_unref(p->cfg);
	p->cfg = cfg;
	log_set_level(cfg->log_level);
	log_set_format(cfg->log_format);
	log_access_use(&af);
	reload_raise_nofile(p, cfg);
	resolver_start(res);
	log_info("reloaded %s: %zu listener%s (%zu added, %zu removed), %zu "
	    "backend%s; connections already open finish as they started",
	    p->path, cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s", added,
	    removed, cfg->nbackends, cfg->nbackends == 1 ? "" : "s");
	return 0;
fail:
	log_access_cleanup(&af);
	resolver_free(res);
	health_free(health);
	backend_set_unref(bs);
	listener_set_unref(ls);
	config_unref(cfg);
	return -1;
}
