/* tests/test_privs.c: the fd need, the soft limit chosen, CapEff, the user. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spliced/config.h"
#include "spliced/privs.h"

static struct config *
load(const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load_string(text, "t.ini", err, sizeof(err));

	if (cfg == NULL)
		fail_msg("expected a valid config, got: %s", err);
	return cfg;
}

/* 2 sockets and up to 2 pipes (2 fds each) per connection, each bind once
 * per worker, a health check socket per server, a little per worker, and
 * the spare. */
static void
test_need(void **state)
{
	struct config *cfg;
	unsigned long long base;

	(void)state;
	cfg = load("[global]\nmax_connections = 10000\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbind = 127.0.0.1:2\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	base = 2 * PRIVS_NOFILE_PER_WORKER + 1 + PRIVS_NOFILE_SPARE;
	assert_int_equal(privs_nofile_need(cfg, 1), 60000 + 2 + 1 +
	    PRIVS_NOFILE_PER_WORKER + PRIVS_NOFILE_SPARE);
	assert_int_equal(privs_nofile_need(cfg, 2), 60000 + 4 + base);
	/* 0 workers is taken as 1, never as none. */
	assert_int_equal(privs_nofile_need(cfg, 0), privs_nofile_need(cfg, 1));
	config_unref(cfg);

	/* max_pipes caps the pipes... */
	cfg = load("[global]\nmax_connections = 1000\nmax_pipes = 100\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\nserver = t 127.0.0.1:4\n");
	assert_int_equal(privs_nofile_need(cfg, 1), 2000 + 200 + 1 + 2 +
	    PRIVS_NOFILE_PER_WORKER + PRIVS_NOFILE_SPARE);
	config_unref(cfg);
	/* ...but a max_pipes above 2 per connection counts as 2 per
	 * connection. */
	cfg = load("[global]\nmax_connections = 10\nmax_pipes = 1000\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_nofile_need(cfg, 1), 60 + 1 + 1 +
	    PRIVS_NOFILE_PER_WORKER + PRIVS_NOFILE_SPARE);
	config_unref(cfg);

	/* Nothing splices: no pipes. */
	cfg = load("[global]\nmax_connections = 100\nsplice = never\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_nofile_need(cfg, 1), 200 + 1 + 1 +
	    PRIVS_NOFILE_PER_WORKER + PRIVS_NOFILE_SPARE);
	config_unref(cfg);
	/* One listener that splices is enough to count them. */
	cfg = load("[global]\nmax_connections = 100\nsplice = never\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[listener c]\nbind = 127.0.0.1:2\nbackend = b\nsplice = auto\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_nofile_need(cfg, 1), 600 + 2 + 1 +
	    PRIVS_NOFILE_PER_WORKER + PRIVS_NOFILE_SPARE);
	config_unref(cfg);
}

static void
test_target(void **state)
{
	(void)state;
	/* Raised to the need, within the hard limit. */
	assert_int_equal(privs_nofile_target(1024, 524288, 60084), 60084);
	/* Never above the hard limit. */
	assert_int_equal(privs_nofile_target(1024, 4096, 12084), 4096);
	assert_int_equal(privs_nofile_target(4096, 4096, 12084), 4096);
	/* Never lowered. */
	assert_int_equal(privs_nofile_target(65536, 524288, 684), 65536);
	assert_int_equal(privs_nofile_target(684, 4096, 684), 684);
	/* No limit. */
	assert_int_equal(privs_nofile_target(1024, RLIM_INFINITY, 60084), 60084);
	assert_true(privs_nofile_target(RLIM_INFINITY, RLIM_INFINITY, 9) ==
	    RLIM_INFINITY);
}

static void
test_text(void **state)
{
	struct privs_nofile nf = { .before = 1024, .now = 60084, .hard = 524288,
	    .need = 60084, .max_connections = 10000 };
	char buf[512];

	(void)state;
	assert_false(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_string_equal(buf, "RLIMIT_NOFILE: raised the soft limit from "
	    "1024 to 60084 (needed 60084 for max_connections 10000; hard "
	    "limit 524288)");
	nf.before = nf.now = 65536;
	assert_false(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_string_equal(buf, "RLIMIT_NOFILE: soft limit 65536 (needed "
	    "60084 for max_connections 10000; hard limit 524288)");
	nf = (struct privs_nofile){ .before = 1024, .now = 20000, .hard = 20000,
	    .need = 60084, .max_connections = 10000 };
	assert_true(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_string_equal(buf, "RLIMIT_NOFILE: hard limit 20000 is below "
	    "the 60084 fds that max_connections 10000 may need; raised the "
	    "soft limit from 1024 to 20000: at the limit accepting pauses");
	nf.before = 20000;
	assert_true(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_non_null(strstr(buf, "the soft limit stays 20000"));
	nf = (struct privs_nofile){ .before = 1024, .now = 1024, .hard = 20000,
	    .need = 600, .max_connections = 10, .err = EPERM };
	assert_true(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_non_null(strstr(buf, "cannot raise the soft limit from 1024"));
	assert_non_null(strstr(buf, strerror(EPERM)));
	nf = (struct privs_nofile){ .before = RLIM_INFINITY, .now = RLIM_INFINITY,
	    .hard = RLIM_INFINITY, .need = 600, .max_connections = 10 };
	assert_false(privs_nofile_text(&nf, buf, sizeof(buf)));
	assert_non_null(strstr(buf, "soft limit unlimited"));
}

/* What a reload logs: only a change of state, not a need that moved a few
 * fds (a listener more or fewer) under the same verdict. */
static void
test_news(void **state)
{
	const struct privs_nofile last = { .before = 4096, .now = 4096,
	    .hard = 4096, .need = 12075, .max_connections = 2000 };
	struct privs_nofile nf = last, room;

	(void)state;
	assert_false(privs_nofile_news(&last, &nf));
	nf.need = 12077;                /* a bind more: still short */
	assert_false(privs_nofile_news(&last, &nf));
	nf.need = 4000;                 /* fits now: the warning goes */
	assert_true(privs_nofile_news(&last, &nf));
	nf = last;
	nf.max_connections = 2001;
	nf.need = 12081;
	assert_true(privs_nofile_news(&last, &nf));
	nf = last;
	nf.hard = nf.now = 8192;        /* raised now (prlimit on the hard) */
	nf.before = 4096;
	assert_true(privs_nofile_news(&last, &nf));
	nf.before = 8192;               /* or by someone else, since */
	assert_true(privs_nofile_news(&last, &nf));
	nf = last;
	nf.err = EPERM;
	assert_true(privs_nofile_news(&last, &nf));
	assert_false(privs_nofile_news(&nf, &nf));
	/* Room enough, the need moves within it: nothing new. */
	nf = (struct privs_nofile){ .before = 65536, .now = 65536,
	    .hard = 65536, .need = 60075, .max_connections = 10000 };
	room = nf;
	room.need = 60077;
	assert_false(privs_nofile_news(&nf, &room));
}

/* plan changes nothing; raise sets what plan said, and never lowers. */
static void
test_plan_and_raise(void **state)
{
	struct config *cfg = load("[global]\nmax_connections = 10\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	struct rlimit before, after;
	struct privs_nofile nf;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
	assert_int_equal(privs_nofile_plan(cfg, 1, &nf), 0);
	assert_int_equal(nf.before, before.rlim_cur);
	assert_int_equal(nf.hard, before.rlim_max);
	assert_int_equal(nf.need, privs_nofile_need(cfg, 1));
	assert_int_equal(nf.max_connections, 10);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
	assert_int_equal(after.rlim_cur, before.rlim_cur);

	/* A low soft limit, then raise: to the need (130 < hard). */
	if (before.rlim_max != RLIM_INFINITY && before.rlim_max < 200) {
		config_unref(cfg);
		skip();
	}
	after.rlim_cur = 100;
	after.rlim_max = before.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &after), 0);
	assert_int_equal(privs_nofile_raise(cfg, 1, &nf), 0);
	assert_int_equal(nf.err, 0);
	assert_int_equal(nf.before, 100);
	assert_int_equal(nf.now, nf.need);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
	assert_int_equal(after.rlim_cur, nf.need);
	/* Already higher: kept. */
	after.rlim_cur = nf.need + 50;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &after), 0);
	assert_int_equal(privs_nofile_raise(cfg, 1, &nf), 0);
	assert_int_equal(nf.now, nf.before);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
	assert_int_equal(after.rlim_cur, nf.need + 50);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &before), 0);
	config_unref(cfg);
}

static void
test_capeff(void **state)
{
	uint64_t caps = 0;

	(void)state;
	assert_int_equal(privs_capeff_parse("Name:\tx\nCapInh:\t0000000000000000\n"
	    "CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n"
	    "CapBnd:\t000001ffffffffff\n", &caps), 0);
	assert_true(caps == 0x1fffeffffffull);
	/* That set (root in a container without CAP_SYS_RESOURCE) has
	 * CAP_SYS_ADMIN, which exempts too. */
	assert_false(caps & (1ull << PRIVS_CAP_SYS_RESOURCE));
	assert_true(caps & (1ull << PRIVS_CAP_SYS_ADMIN));
	assert_int_equal(privs_capeff_parse("CapEff:\t0000000000000000", &caps),
	    0);
	assert_true(caps == 0);
	assert_int_equal(privs_capeff_parse("CapEff: 1000000\n", &caps), 0);
	assert_true(caps == (1ull << PRIVS_CAP_SYS_RESOURCE));
	/* Not CapPrm, not a look-alike, not garbage. */
	assert_int_equal(privs_capeff_parse("CapPrm:\tffff\n", &caps), -1);
	assert_int_equal(privs_capeff_parse("XCapEff:\tffff\n", &caps), -1);
	assert_int_equal(privs_capeff_parse("CapEff:\tzz\n", &caps), -1);
	assert_int_equal(privs_capeff_parse("CapEff:\t12zz\n", &caps), -1);
	assert_int_equal(privs_capeff_parse("", &caps), -1);
}

/* The answer for this process agrees with its CapEff. */
static void
test_exempt_here(void **state)
{
	char why[128], status[8192];
	FILE *f = fopen("/proc/self/status", "r");
	uint64_t caps;
	size_t n;
	bool exempt;

	(void)state;
	if (f == NULL)
		skip();
	n = fread(status, 1, sizeof(status) - 1, f);
	fclose(f);
	status[n] = '\0';
	assert_int_equal(privs_capeff_parse(status, &caps), 0);
	exempt = privs_pipe_exempt_why(why, sizeof(why));
	assert_int_equal(exempt, privs_pipe_exempt());
	if (!(caps & ((1ull << PRIVS_CAP_SYS_RESOURCE) |
	    (1ull << PRIVS_CAP_SYS_ADMIN)))) {
		assert_false(exempt);
		assert_string_equal(why, "no CAP_SYS_RESOURCE or CAP_SYS_ADMIN");
	} else if (exempt)
		assert_non_null(strstr(why, "CAP_SYS_"));
}

static void
test_lookup(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct privs_user u;
	struct passwd *pw = getpwnam("nobody");

	(void)state;
	cfg = load("[global]\nworkers = 1\nuser = nosuchuser-spliced\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_user_lookup(cfg, &u, err, sizeof(err)), -1);
	assert_string_equal(err, "t.ini:3: [global] user: no such user "
	    "'nosuchuser-spliced'");
	assert_null(u.name);
	privs_user_cleanup(&u);
	config_unref(cfg);

	cfg = load("[global]\nuser = 4242424\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_user_lookup(cfg, &u, err, sizeof(err)), -1);
	assert_string_equal(err, "t.ini:2: [global] user: no such user "
	    "'4242424' (user takes a name, not a uid)");
	config_unref(cfg);

	if (pw == NULL)
		skip();
	cfg = load("[global]\nuser = nobody\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_false(privs_stays_root(cfg));
	assert_int_equal(privs_user_lookup(cfg, &u, err, sizeof(err)), 0);
	assert_string_equal(u.name, "nobody");
	assert_int_equal(u.uid, pw->pw_uid);
	assert_int_equal(u.gid, pw->pw_gid);
	assert_true(u.ngroups >= 1);
	{
		bool has_gid = false;

		for (size_t i = 0; i < u.ngroups; i++)
			has_gid |= u.groups[i] == u.gid;
		assert_true(has_gid);
	}
	privs_user_cleanup(&u);
	assert_null(u.name);
	privs_user_cleanup(&u);
	config_unref(cfg);
}

/* As root: a child drops to nobody and checks every id; the parent keeps
 * root. */
static void
test_drop(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct privs_user u;
	pid_t pid;
	int status;

	(void)state;
	if (geteuid() != 0 || getpwnam("nobody") == NULL)
		skip();
	cfg = load("[global]\nuser = nobody\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_user_lookup(cfg, &u, err, sizeof(err)), 0);
	fflush(NULL);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		uid_t r, e, s;
		gid_t g[64];
		int rc = privs_drop(cfg, &u, err, sizeof(err)), n;

		if (rc != 1) {
			fprintf(stderr, "privs_drop: %d: %s\n", rc, err);
			_exit(10);
		}
		if (getresuid(&r, &e, &s) != 0 || r != u.uid || e != u.uid ||
		    s != u.uid)
			_exit(11);
		if (getegid() != u.gid || getgid() != u.gid)
			_exit(12);
		if ((n = getgroups(64, g)) != (int)u.ngroups)
			_exit(13);
		if (setuid(0) == 0 || seteuid(0) == 0)
			_exit(14);
		if (privs_pipe_exempt() && u.uid != 0)
			_exit(15);
		/* Again: already nobody, nothing to do. */
		if (privs_drop(cfg, &u, err, sizeof(err)) != 0)
			_exit(16);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(geteuid(), 0);
	privs_user_cleanup(&u);
	config_unref(cfg);
}

/* Not root, and a user that is not us: refused with the key named. */
static void
test_drop_refused(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct privs_user u;
	pid_t pid;
	int status;

	(void)state;
	if (geteuid() != 0 || getpwnam("nobody") == NULL ||
	    getpwnam("root") == NULL)
		skip();
	cfg = load("[global]\nuser = nobody\n"
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:3\n");
	assert_int_equal(privs_user_lookup(cfg, &u, err, sizeof(err)), 0);
	fflush(NULL);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		/* Become some other unprivileged uid first. */
		if (setgroups(0, NULL) != 0 || setgid(u.gid + 1) != 0 ||
		    setuid(u.uid - 1) != 0)
			_exit(20);
		if (privs_drop(cfg, &u, err, sizeof(err)) != -1)
			_exit(21);
		if (strncmp(err, "t.ini:2: [global] user: cannot switch to "
		    "user 'nobody'", 52) != 0 ||
		    strstr(err, "only root can switch users") == NULL) {
			fprintf(stderr, "%s\n", err);
			_exit(22);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	privs_user_cleanup(&u);
	config_unref(cfg);
}

static void
test_stays_root(void **state)
{
	struct config *cfg = load("[listener a]\nbind = 127.0.0.1:1\n"
	    "backend = b\n[backend b]\nserver = s 127.0.0.1:3\n");

	(void)state;
	assert_int_equal(privs_stays_root(cfg), geteuid() == 0);
	config_unref(cfg);
	cfg = load("[global]\nuser = root\n[listener a]\nbind = 127.0.0.1:1\n"
	    "backend = b\n[backend b]\nserver = s 127.0.0.1:3\n");
	assert_false(privs_stays_root(cfg));
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_need),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_news),
		cmocka_unit_test(test_plan_and_raise),
		cmocka_unit_test(test_capeff),
		cmocka_unit_test(test_exempt_here),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_drop),
		cmocka_unit_test(test_drop_refused),
		cmocka_unit_test(test_stays_root),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
