/* proxy/privs.c: the user to become, the fd limit, the pipe budget.
 *
 * No libcap: the capabilities that matter are two bits of CapEff in
 * /proc/self/status. Lookups go through NSS (getpwnam_r, getgrouplist), so
 * LDAP users and systemd's DynamicUser= names work as /etc/passwd ones do. */
#include "spliced/privs.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PW_BUF_MIN	1024
#define PW_BUF_MAX	(1u << 20)	/* no passwd entry is near this */
#define STATUS_MAX	8192

/* ---- the user ---- */

/* getpwnam_r with a buffer sized from sysconf, grown on ERANGE. 0 and
 * *found; or an errno value. */
static int
pw_lookup(const char *name, struct passwd *pw, char **buf, bool *found)
{
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t len = hint > PW_BUF_MIN ? (size_t)hint : 16384;
	struct passwd *res = NULL;
	char *b;
	int rc;

	for (;;) {
		if ((b = realloc(*buf, len)) == NULL)
			return ENOMEM;
		*buf = b;
		rc = getpwnam_r(name, pw, b, len, &res);
		if (rc != ERANGE || len >= PW_BUF_MAX)
			break;
		len *= 2;
	}
	/* getpwnam_r(3): not found may come as 0, ENOENT, ESRCH, EBADF or
	 * EPERM with a NULL result, depending on the NSS module. */
	if (res == NULL && (rc == 0 || rc == ENOENT || rc == ESRCH ||
	    rc == EBADF || rc == EPERM)) {
		*found = false;
		return 0;
	}
	if (res == NULL)
		return rc != 0 ? rc : EIO;
	*found = true;
	return 0;
}

/* Every group of name, gid among them, as initgroups(3) would set them. */
static int
groups_lookup(const char *name, gid_t gid, gid_t **out, size_t *nout)
{
	int n = 32, want;
	gid_t *g = NULL, *ng;

	for (int tries = 0; tries < 8; tries++) {
		if ((ng = realloc(g, (size_t)n * sizeof(*g))) == NULL)
			break;
		g = ng;
		want = n;
		if (getgrouplist(name, gid, g, &want) >= 0) {
			*out = g;
			*nout = (size_t)want;
			return 0;
		}
		/* glibc sets want to the count needed; grow at least 2x. */
		n = want > n ? want : n * 2;
	}
	free(g);
	return -1;
}

void
privs_user_cleanup(struct privs_user *u)
{
	free(u->name);
	free(u->groups);
	*u = (struct privs_user){ 0 };
}

int
privs_user_lookup(const struct config *cfg, struct privs_user *u, char *err,
    size_t errlen)
{
	char why[384], *buf = NULL;
	struct passwd pw;
	bool found = false;
	int rc;

	*u = (struct privs_user){ 0 };
	if (cfg->user == NULL) {
		config_global_error(cfg, "user", "not set", err, errlen);
		return -1;
	}
	if ((rc = pw_lookup(cfg->user, &pw, &buf, &found)) != 0 || !found) {
		if (rc != 0)
			snprintf(why, sizeof(why), "cannot look up user '%s': %s",
			    cfg->user, strerror(rc));
		else
			snprintf(why, sizeof(why), "no such user '%s'%s",
			    cfg->user, cfg->user[strspn(cfg->user,
			    "0123456789")] == '\0' ? " (user takes a name, "
			    "not a uid)" : "");
		config_global_error(cfg, "user", why, err, errlen);
		free(buf);
		return -1;
	}
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	u->name = strdup(pw.pw_name);
	free(buf);
	if (u->name == NULL ||
	    groups_lookup(u->name, u->gid, &u->groups, &u->ngroups) < 0) {
		snprintf(why, sizeof(why), "cannot list the groups of user "
		    "'%s': %s", cfg->user, u->name == NULL ? strerror(ENOMEM) :
		    "getgrouplist failed");
		config_global_error(cfg, "user", why, err, errlen);
		privs_user_cleanup(u);
		return -1;
	}
	return 0;
}

static bool
same_groups(const struct privs_user *u)
{
	int n = getgroups(0, NULL);
	gid_t *now;
	bool same;

	if (n < 0 || (size_t)n != u->ngroups)
		return false;
	if (n == 0)
		return true;
	if ((now = calloc((size_t)n, sizeof(*now))) == NULL ||
	    getgroups(n, now) != n) {
		free(now);
		return false;
	}
	same = true;
	for (size_t i = 0; same && i < u->ngroups; i++) {
		bool in = false;

		for (int k = 0; !in && k < n; k++)
			in = now[k] == u->groups[i];
		same = in;
	}
	free(now);
	return same;
}

static bool
ids_are(const struct privs_user *u)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	return getresuid(&r, &e, &s) == 0 && getresgid(&rg, &eg, &sg) == 0 &&
	    r == u->uid && e == u->uid && s == u->uid &&
	    rg == u->gid && eg == u->gid && sg == u->gid;
}

static int
drop_fail(const struct config *cfg, const struct privs_user *u,
    const char *step, int e, char *err, size_t errlen)
{
	char why[384];

	snprintf(why, sizeof(why), "cannot switch to user '%s' (uid %ju, gid "
	    "%ju): %s%s%s%s", u->name, (uintmax_t)u->uid, (uintmax_t)u->gid,
	    step, e != 0 ? ": " : "", e != 0 ? strerror(e) : "",
	    e == EPERM ? " (only root can switch users: start spliced as "
	    "root, or leave user unset)" : "");
	config_global_error(cfg, "user", why, err, errlen);
	return -1;
}

int
privs_drop(const struct config *cfg, const struct privs_user *u, char *err,
    size_t errlen)
{
	/* Root on purpose, or started as the user already (systemd's User=
	 * with the same name): nothing to change. */
	if (u->uid == 0 || ids_are(u))
		return 0;
	/* Groups first: once the uid is not root, they cannot be changed. */
	if (setgroups(u->ngroups, u->groups) == -1)
		return drop_fail(cfg, u, "setgroups", errno, err, errlen);
	if (setgid(u->gid) == -1)
		return drop_fail(cfg, u, "setgid", errno, err, errlen);
	if (setuid(u->uid) == -1)
		return drop_fail(cfg, u, "setuid", errno, err, errlen);
	/* Trust, but check: every id, the groups, and no way back. */
	if (!ids_are(u))
		return drop_fail(cfg, u, "the real, effective and saved ids "
		    "did not all change", 0, err, errlen);
	if (!same_groups(u))
		return drop_fail(cfg, u, "the supplementary groups did not "
		    "change", 0, err, errlen);
	if (setuid(0) != -1 || (u->gid != 0 && setgid(0) != -1))
		return drop_fail(cfg, u, "root could be regained after the "
		    "switch", 0, err, errlen);
	return 1;
}

bool
privs_stays_root(const struct config *cfg)
{
	return geteuid() == 0 && cfg->user == NULL;
}

/* ---- RLIMIT_NOFILE ---- */

/* Whether [global] or any listener may splice: then pipes count in the
 * need. */
static bool
nofile_splices(const struct config *cfg)
{
	if (cfg->splice != CONFIG_SPLICE_NEVER)
		return true;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (cfg->listeners[i].splice != CONFIG_SPLICE_NEVER)
			return true;
	return false;
}

unsigned long long
privs_nofile_need(const struct config *cfg, unsigned nworkers)
{
	unsigned long long mc = cfg->max_connections, binds = 0, servers = 0;
	unsigned long long pipes = nofile_splices(cfg) ? 2 * mc : 0;

	if (cfg->max_pipes > 0 && cfg->max_pipes < pipes)
		pipes = cfg->max_pipes;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		binds += cfg->listeners[i].nbinds;
	for (size_t i = 0; i < cfg->nbackends; i++)
		servers += cfg->backends[i].nservers;
	if (nworkers == 0)
		nworkers = 1;
	return 2 * mc + 2 * pipes + (binds + PRIVS_NOFILE_PER_WORKER) *
	    nworkers + servers + PRIVS_NOFILE_SPARE;
}

rlim_t
privs_nofile_target(rlim_t soft, rlim_t hard, unsigned long long need)
{
	if (soft == RLIM_INFINITY || need <= (unsigned long long)soft)
		return soft;
	if (hard != RLIM_INFINITY && need > (unsigned long long)hard)
		return hard;
	return (rlim_t)need;
}

int
privs_nofile_plan(const struct config *cfg, unsigned nworkers,
    struct privs_nofile *nf)
{
	struct rlimit rl;

	*nf = (struct privs_nofile){ .max_connections = cfg->max_connections };
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return -1;
	nf->before = rl.rlim_cur;
	nf->hard = rl.rlim_max;
	nf->need = privs_nofile_need(cfg, nworkers);
	nf->now = privs_nofile_target(rl.rlim_cur, rl.rlim_max, nf->need);
	return 0;
}

int
privs_nofile_raise(const struct config *cfg, unsigned nworkers,
    struct privs_nofile *nf)
{
	struct rlimit rl;

	if (privs_nofile_plan(cfg, nworkers, nf) == -1)
		return -1;
	if (nf->now == nf->before)
		return 0;
	rl.rlim_cur = nf->now;
	rl.rlim_max = nf->hard;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		nf->err = errno;
		nf->now = nf->before;
	}
	return 0;
}

const char *
privs_rlim_text(rlim_t v, char *buf, size_t n)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, n, "unlimited");
	else
		snprintf(buf, n, "%llu", (unsigned long long)v);
	return buf;
}

/* Below the need: accepting pauses at the limit. */
static bool
nofile_short(const struct privs_nofile *nf)
{
	return nf->now != RLIM_INFINITY && (unsigned long long)nf->now < nf->need;
}

bool
privs_nofile_text(const struct privs_nofile *nf, char *buf, size_t n)
{
	char b[24], w[24], h[24];
	bool short_of = nofile_short(nf);

	privs_rlim_text(nf->before, b, sizeof(b));
	privs_rlim_text(nf->now, w, sizeof(w));
	privs_rlim_text(nf->hard, h, sizeof(h));
	if (nf->err != 0) {
		snprintf(buf, n, "RLIMIT_NOFILE: cannot raise the soft limit "
		    "from %s to the %llu fds that max_connections %u may need: "
		    "%s; at the limit accepting pauses", b, nf->need,
		    nf->max_connections, strerror(nf->err));
		return true;
	}
	if (short_of) {
		if (nf->now != nf->before)
			snprintf(buf, n, "RLIMIT_NOFILE: hard limit %s is below "
			    "the %llu fds that max_connections %u may need; "
			    "raised the soft limit from %s to %s: at the limit "
			    "accepting pauses", h, nf->need,
			    nf->max_connections, b, w);
		else
			snprintf(buf, n, "RLIMIT_NOFILE: hard limit %s is below "
			    "the %llu fds that max_connections %u may need; the "
			    "soft limit stays %s: at the limit accepting pauses",
			    h, nf->need, nf->max_connections, w);
		return true;
	}
	if (nf->now != nf->before)
		snprintf(buf, n, "RLIMIT_NOFILE: raised the soft limit from %s "
		    "to %s (needed %llu for max_connections %u; hard limit %s)",
		    b, w, nf->need, nf->max_connections, h);
	else
		snprintf(buf, n, "RLIMIT_NOFILE: soft limit %s (needed %llu for "
		    "max_connections %u; hard limit %s)", w, nf->need,
		    nf->max_connections, h);
	return false;
}

bool
privs_nofile_news(const struct privs_nofile *last,
    const struct privs_nofile *nf)
{
	return nf->now != nf->before || nf->now != last->now ||
	    nf->hard != last->hard || nf->err != last->err ||
	    nofile_short(nf) != nofile_short(last) ||
	    nf->max_connections != last->max_connections;
}

/* ---- the pipe budget ---- */

int
privs_capeff_parse(const char *status, uint64_t *caps)
{
	const char *p = status;
	char *end;
	unsigned long long v;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, "CapEff:", 7) == 0) {
			p += 7;
			p += strspn(p, " \t");
			if (strspn(p, "0123456789abcdefABCDEF") == 0)
				return -1;
			errno = 0;
			v = strtoull(p, &end, 16);
			if (errno != 0 || (*end != '\n' && *end != '\0'))
				return -1;
			*caps = (uint64_t)v;
			return 0;
		}
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

static ssize_t
read_small(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got;

	if (f == NULL)
		return -1;
	got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = '\0';
	return (ssize_t)got;
}

/* capable() checks against the initial user namespace, whose uid_map is
 * the identity over every uid. Unreadable: assume the initial one. */
static bool
in_child_userns(void)
{
	char map[256];
	unsigned long long in, out, count;

	if (read_small("/proc/self/uid_map", map, sizeof(map)) < 0)
		return false;
	return sscanf(map, "%llu %llu %llu", &in, &out, &count) != 3 ||
	    in != 0 || out != 0 || count != 4294967295ull ||
	    strchr(map, '\n') != strrchr(map, '\n');
}

bool
privs_pipe_exempt_why(char *why, size_t n)
{
	char status[STATUS_MAX], dummy[1];
	uint64_t caps;
	const char *which = NULL;

	if (why == NULL) {
		why = dummy;
		n = sizeof(dummy);
	}
	if (read_small("/proc/self/status", status, sizeof(status)) < 0 ||
	    privs_capeff_parse(status, &caps) < 0) {
		snprintf(why, n, "%s (CapEff unknown)", geteuid() == 0 ?
		    "root" : "not root");
		return geteuid() == 0;
	}
	if (caps & (1ull << PRIVS_CAP_SYS_RESOURCE))
		which = "CAP_SYS_RESOURCE";
	else if (caps & (1ull << PRIVS_CAP_SYS_ADMIN))
		which = "CAP_SYS_ADMIN";
	if (which == NULL) {
		snprintf(why, n, "no CAP_SYS_RESOURCE or CAP_SYS_ADMIN");
		return false;
	}
	if (in_child_userns()) {
		snprintf(why, n, "%s only inside a user namespace", which);
		return false;
	}
	snprintf(why, n, "%s", which);
	return true;
}

bool
privs_pipe_exempt(void)
{
	return privs_pipe_exempt_why(NULL, 0);
}
