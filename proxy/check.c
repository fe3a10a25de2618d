/* proxy/check.c: spliced -t: what only this machine can tell about a config.
 *
 * Reads, never changes: the fd limit is planned (privs_nofile_plan), not
 * raised; the user is looked up, not become. The one side effect is a test
 * pipe, to read back the size the kernel grants. */
#include "spliced/check.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spliced/admin.h"
#include "spliced/backend.h"
#include "spliced/log.h"
#include "spliced/privs.h"
#include "spliced/resolve.h"
#include "spliced/zerocopy.h"

#define MIB (1024ull * 1024)

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

/* The admin token must be readable where spliced starts (as root, before
 * it drops privileges: so run -t as the service starts). 0 or -1
 * (printed). */
static int
check_admin_token(const struct config *cfg)
{
	char why[CONFIG_ERR_MAX], err[CONFIG_ERR_MAX];
	char *token;

	if (cfg->admin_token_file == NULL)
		return 0;
	if (admin_token_load(cfg->admin_token_file, &token, why,
	    sizeof(why)) == -1) {
		config_global_error(cfg, "admin_token_file", why, err, sizeof(err));
		fprintf(stderr, "spliced: %s\n", err);
		return -1;
	}
	free(token);
	return 0;
}

/* A number from a /proc/sys file. 0, or -1 with why ("cannot read
 * /proc/sys/fs/pipe-max-size: Permission denied"). */
static int
sysctl_read(const char *path, unsigned long long *v, char *why, size_t n)
{
	FILE *f = fopen(path, "r");
	int ok;

	if (f == NULL) {
		snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	ok = fscanf(f, "%llu", v) == 1;
	fclose(f);
	if (!ok) {
		snprintf(why, n, "%s does not hold a number", path);
		return -1;
	}
	return 0;
}

static void
check_pipes(const struct config *cfg)
{
	unsigned long long v;
	long page = sysconf(_SC_PAGESIZE);
	size_t got = cfg->pipe_size;
	char why[256];
	int fds[2];

	if (sysctl_read("/proc/sys/fs/pipe-max-size", &v, why, sizeof(why)) == 0)
		printf("pipe-max-size: %llu bytes\n", v);
	else
		printf("pipe-max-size: unknown (%s)\n", why);
	if (zc_splice_supported() && zc_pipe_open(fds, &got) == 0) {
		zc_pipe_close(fds);
		printf("pipe_size: asked %zu, granted %zu\n", cfg->pipe_size, got);
	}
	if (page <= 0)
		page = 4096;
	if (sysctl_read("/proc/sys/fs/pipe-user-pages-soft", &v, why,
	    sizeof(why)) < 0)
		printf("pipe-user-pages-soft: unknown (%s)\n", why);
	else if (v == 0)
		printf("pipe-user-pages-soft: 0 (no limit)\n");
	else if (v * (unsigned long long)page % MIB == 0)
		printf("pipe-user-pages-soft: %llu pages (%llu MiB)\n", v,
		    v * (unsigned long long)page / MIB);
	else
		printf("pipe-user-pages-soft: %llu pages (%.1f MiB)\n", v,
		    (double)v * (double)page / (double)MIB);
}

/* "root", "user NAME" or "uid N": who this process is now. */
static const char *
whoami(char *buf, size_t n)
{
	uid_t uid = geteuid();
	struct passwd pw, *res = NULL;
	char pwbuf[4096];

	if (uid == 0)
		return "root";
	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL)
		snprintf(buf, n, "user %s", pw.pw_name);
	else
		snprintf(buf, n, "uid %ju", (uintmax_t)uid);
	return buf;
}

/* Whether the process spliced will run as, after the switch to user (if
 * any), is exempt from the pipe budget. */
static void
check_exempt(const struct privs_user *u)
{
	char why[128], who[300];
	bool exempt;

	if (u->name != NULL && u->uid != 0 && u->uid != geteuid()) {
		/* setuid() from root to another uid clears every capability. */
		printf("pipe budget: as user %s: not exempt (no capabilities "
		    "after the switch)\n", u->name);
		return;
	}
	exempt = privs_pipe_exempt_why(why, sizeof(why));
	printf("pipe budget: as %s: %s (%s)\n", whoami(who, sizeof(who)),
	    exempt ? "exempt" : "not exempt", why);
}

/* The warnings go last, after every fact. */
static void
check_nofile(const struct config *cfg, char *warn, size_t n)
{
	struct privs_nofile nf;
	char s[24], h[24], at[24];

	warn[0] = '\0';
	if (privs_nofile_plan(cfg, config_workers(cfg), &nf) == -1) {
		printf("RLIMIT_NOFILE: unknown (getrlimit: %s)\n",
		    strerror(errno));
		return;
	}
	privs_rlim_text(nf.before, s, sizeof(s));
	privs_rlim_text(nf.hard, h, sizeof(h));
	privs_rlim_text(nf.now, at, sizeof(at));
	printf("RLIMIT_NOFILE: soft %s, hard %s, need %llu for "
	    "max_connections %u, at start %s\n", s, h, nf.need,
	    nf.max_connections, at);
	if (nf.now != RLIM_INFINITY && (unsigned long long)nf.now < nf.need)
		snprintf(warn, n, "RLIMIT_NOFILE: hard limit %s is below the "
		    "%llu fds that max_connections %u may need: at the limit "
		    "accepting pauses", h, nf.need, nf.max_connections);
}

int
check_run(struct config *cfg, const char *path)
{
	char err[CONFIG_ERR_MAX], nofile_warn[512], who[300];
	struct privs_user u = { 0 };

	if (check_names(cfg) == -1)
		return 1;
	if (cfg->user != NULL &&
	    privs_user_lookup(cfg, &u, err, sizeof(err)) == -1) {
		fprintf(stderr, "spliced: %s\n", err);
		return 1;
	}
	if (log_access_check(cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "spliced: %s\n", err);
		privs_user_cleanup(&u);
		return 1;
	}
	if (check_admin_token(cfg) == -1) {
		privs_user_cleanup(&u);
		return 1;
	}
	printf("configuration %s is valid: %zu listener(s), %zu backend(s)\n",
	    path, cfg->nlisteners, cfg->nbackends);
	printf("zero-copy: %s\n", zc_backend_name());
	check_pipes(cfg);
	check_exempt(&u);
	check_nofile(cfg, nofile_warn, sizeof(nofile_warn));
	if (u.name != NULL)
		printf("user: %s (uid %ju, gid %ju, %zu supplementary group%s)\n",
		    u.name, (uintmax_t)u.uid, (uintmax_t)u.gid, u.ngroups,
		    u.ngroups == 1 ? "" : "s");
	else
		printf("user: not set (runs as %s)\n", whoami(who, sizeof(who)));
	if (nofile_warn[0] != '\0')
		printf("warning: %s\n", nofile_warn);
	if (privs_stays_root(cfg))
		printf("warning: %s\n", PRIVS_ROOT_WARNING);
	privs_user_cleanup(&u);
	return 0;
}
