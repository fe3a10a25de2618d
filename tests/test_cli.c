/* tests/test_cli.c: the command line as cli.h promises it.
 *
 * cli_parse() on argument vectors, good and bad: which action, which
 * values, and for a bad one -1 with EINVAL and the message naming the
 * argument as written. cli_config() on the one-off relay's flags: the
 * config they make, and errors that name the flag, not the config key.
 * Each test parses several vectors in a row, which also checks that the
 * parse starts over every time (getopt's state is global). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "spliced/cli.h"
#include "spliced/config.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

/* Parse argv (NULL-terminated, program name first); expect success. */
static void
parse_ok(char **argv, int argc, struct cli_opts *o)
{
	char err[CONFIG_ERR_MAX] = "";

	if (cli_parse(argc, argv, o, err, sizeof(err)) != 0)
		fail_msg("%s: unexpected error: %s", argv[1], err);
}

/* Parse argv; expect a usage error saying exactly want. */
static void
parse_bad(char **argv, int argc, const char *want)
{
	char err[CONFIG_ERR_MAX] = "";
	struct cli_opts o;

	errno = 0;
	assert_int_equal(cli_parse(argc, argv, &o, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, want);
	cli_opts_cleanup(&o);
}

#define PARSE_BAD(want, ...) do {					\
	char *argv_[] = { "spliced", __VA_ARGS__, NULL };		\
	parse_bad(argv_, ARGC(argv_), want);				\
} while (0)

static void
test_config_file(void **state)
{
	char *run[] = { "spliced", "-c", "a.ini", NULL };
	char *check[] = { "spliced", "-t", "--config", "b.ini", NULL };
	char *cluster[] = { "spliced", "-tc", "c.ini", NULL };
	char *eq[] = { "spliced", "--config=d.ini", "--test", NULL };
	struct cli_opts o;

	(void)state;
	parse_ok(run, ARGC(run), &o);
	assert_int_equal(o.action, CLI_RUN);
	assert_string_equal(o.config, "a.ini");
	assert_int_equal(o.nlistens, 0);
	assert_null(o.splice);
	cli_opts_cleanup(&o);

	parse_ok(check, ARGC(check), &o);
	assert_int_equal(o.action, CLI_CHECK);
	assert_string_equal(o.config, "b.ini");
	cli_opts_cleanup(&o);

	parse_ok(cluster, ARGC(cluster), &o);
	assert_int_equal(o.action, CLI_CHECK);
	assert_string_equal(o.config, "c.ini");
	cli_opts_cleanup(&o);

	parse_ok(eq, ARGC(eq), &o);
	assert_int_equal(o.action, CLI_CHECK);
	assert_string_equal(o.config, "d.ini");
	cli_opts_cleanup(&o);
}

/* --listen and --backend repeat, in order; the tuning flags go with them. */
static void
test_one_off(void **state)
{
	char *argv[] = { "spliced", "--listen", "127.0.0.1:1", "--backend",
	    "127.0.0.1:2", "--listen=[::1]:3", "--backend", "h.example:4",
	    "--backend", "127.0.0.1:5", "--splice", "never",
	    "--splice-threshold", "1m", "--workers", "2", NULL };
	char *abbrev[] = { "spliced", "--lis", "127.0.0.1:1", "--back",
	    "127.0.0.1:2", NULL };
	struct cli_opts o;

	(void)state;
	parse_ok(argv, ARGC(argv), &o);
	assert_int_equal(o.action, CLI_RUN);
	assert_null(o.config);
	assert_int_equal(o.nlistens, 2);
	assert_string_equal(o.listens[0], "127.0.0.1:1");
	assert_string_equal(o.listens[1], "[::1]:3");
	assert_int_equal(o.nbackends, 3);
	assert_string_equal(o.backends[0], "127.0.0.1:2");
	assert_string_equal(o.backends[1], "h.example:4");
	assert_string_equal(o.backends[2], "127.0.0.1:5");
	assert_string_equal(o.splice, "never");
	assert_string_equal(o.threshold, "1m");
	assert_string_equal(o.workers, "2");
	cli_opts_cleanup(&o);
	assert_null(o.listens);
	assert_int_equal(o.nbackends, 0);

	/* Unambiguous prefixes of long options are the options. */
	parse_ok(abbrev, ARGC(abbrev), &o);
	assert_int_equal(o.nlistens, 1);
	assert_int_equal(o.nbackends, 1);
	cli_opts_cleanup(&o);
}

/* Parse argv; expect success and the action want. */
static void
parse_action(char **argv, int argc, enum cli_action want)
{
	struct cli_opts o;

	parse_ok(argv, argc, &o);
	assert_int_equal(o.action, want);
	cli_opts_cleanup(&o);
}

/* --version and --help end the parse where they stand. */
static void
test_version_help(void **state)
{
	char *version[] = { "spliced", "--version", NULL };
	char *first[] = { "spliced", "--version", "--bogus", NULL };
	char *help[] = { "spliced", "-t", "-h", "extra", NULL };
	char *longhelp[] = { "spliced", "--help", NULL };

	(void)state;
	parse_action(version, ARGC(version), CLI_VERSION);
	parse_action(first, ARGC(first), CLI_VERSION);
	parse_action(help, ARGC(help), CLI_HELP);
	parse_action(longhelp, ARGC(longhelp), CLI_HELP);
	/* What comes before it is parsed as usual. */
	PARSE_BAD("unknown option '--bogus'", "--bogus", "--version");
}

/* Options getopt refuses, named as the user wrote them. */
static void
test_bad_options(void **state)
{
	(void)state;
	PARSE_BAD("unknown option '-x'", "-x");
	/* Inside a cluster: the letter, not the cluster or the program. */
	PARSE_BAD("unknown option '-x'", "-xt");
	PARSE_BAD("unknown option '-x'", "-tx");
	PARSE_BAD("unknown option '-x'", "-c", "a.ini", "-x");
	PARSE_BAD("-c needs a value", "-c");
	PARSE_BAD("--config needs a value", "--config");
	PARSE_BAD("--listen needs a value", "--listen");
	/* Long options without their =VALUE. */
	PARSE_BAD("unknown option '--bogus'", "--bogus=3");
	PARSE_BAD("option '--version' takes no value", "--version=3");
	PARSE_BAD("option '--test' takes no value", "--test=1");
	PARSE_BAD("ambiguous option '--s'", "--s", "always");
	PARSE_BAD("unexpected argument 'extra'", "-c", "a.ini", "extra");
	PARSE_BAD("unexpected argument '--backend'", "--listen", "127.0.0.1:1",
	    "--", "--backend", "127.0.0.1:2");
}

/* Flags that do not go together. */
static void
test_bad_mix(void **state)
{
	char *none[] = { "spliced", NULL };

	(void)state;
	parse_bad(none, ARGC(none),
	    "nothing to do: give -c FILE, or --listen and --backend");
	PARSE_BAD("-c and --listen/--backend do not mix", "-c", "a.ini",
	    "--listen", "127.0.0.1:1");
	PARSE_BAD("-c and --listen/--backend do not mix", "--backend",
	    "127.0.0.1:1", "-c", "a.ini");
	PARSE_BAD("--listen and at least one --backend go together",
	    "--listen", "127.0.0.1:1");
	PARSE_BAD("--listen and at least one --backend go together",
	    "--backend", "127.0.0.1:1", "--workers", "2");
	PARSE_BAD("--splice, --splice-threshold, --workers and --admin go with "
	    "--listen and --backend", "--splice", "never");
	PARSE_BAD("--splice, --splice-threshold, --workers and --admin go with "
	    "--listen and --backend", "--admin", "127.0.0.1:9");
	PARSE_BAD("--splice, --splice-threshold, --workers and --admin go with "
	    "--listen; use the config file's keys with -c", "-c", "a.ini",
	    "--workers", "2");
}

/* The one-off relay's config: the keys a file would set. */
static void
test_config_from_flags(void **state)
{
	char *argv[] = { "spliced", "--listen", "127.0.0.1:1", "--listen",
	    "127.0.0.1:3", "--backend", "127.0.0.1:2", "--backend",
	    "127.0.0.1:4", "--splice", "always", "--splice-threshold", "1m",
	    "--workers", "3", NULL };
	char err[CONFIG_ERR_MAX] = "";
	struct cli_opts o;
	struct config *cfg;

	(void)state;
	parse_ok(argv, ARGC(argv), &o);
	cfg = cli_config(&o, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("cli_config: %s", err);
	cli_opts_cleanup(&o);
	assert_string_equal(cfg->path, "command line");
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->splice, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(cfg->splice_threshold, 1024 * 1024);
	assert_int_equal(cfg->nlisteners, 1);
	assert_string_equal(cfg->listeners[0].name, "cli");
	assert_int_equal(cfg->listeners[0].nbinds, 2);
	assert_int_equal(cfg->listeners[0].splice, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(cfg->nbackends, 1);
	assert_ptr_equal(cfg->listeners[0].backend, &cfg->backends[0]);
	assert_string_equal(cfg->backends[0].name, "cli");
	assert_int_equal(cfg->backends[0].nservers, 2);
	assert_string_equal(cfg->backends[0].servers[0].name, "s1");
	assert_string_equal(cfg->backends[0].servers[0].host, "127.0.0.1:2");
	assert_string_equal(cfg->backends[0].servers[1].name, "s2");
	assert_string_equal(cfg->backends[0].servers[1].host, "127.0.0.1:4");
	config_unref(cfg);
}

/* Parse argv, build its config; expect a usage error saying want. */
static void
config_bad(char **argv, int argc, const char *want)
{
	char err[CONFIG_ERR_MAX] = "";
	struct cli_opts o;

	parse_ok(argv, argc, &o);
	errno = 0;
	assert_null(cli_config(&o, err, sizeof(err)));
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, want);
	cli_opts_cleanup(&o);
}

#define CONFIG_BAD(want, ...) do {					\
	char *argv_[] = { "spliced", "--listen", "127.0.0.1:1",		\
	    "--backend", "127.0.0.1:2", __VA_ARGS__, NULL };		\
	config_bad(argv_, ARGC(argv_), want);				\
} while (0)

/* Errors name the flag the user wrote, never [listener cli]. */
static void
test_config_bad_flags(void **state)
{
	(void)state;
	CONFIG_BAD("--workers: 'x' is not a number or auto", "--workers", "x");
	CONFIG_BAD("--splice: 'sometimes' is not a splice mode (auto, always "
	    "or never)", "--splice", "sometimes");
	CONFIG_BAD("--splice-threshold: '12q' is not a size (a number, "
	    "optionally with k, m or g)", "--splice-threshold", "12q");
	CONFIG_BAD("--listen: missing port in 'bogus' (write HOST:PORT)",
	    "--listen", "bogus");
	CONFIG_BAD("--backend: missing port in 'bogus' (write HOST:PORT)",
	    "--backend", "bogus");
	CONFIG_BAD("--listen 127.0.0.1:1: given twice", "--listen",
	    "127.0.0.1:1");
	CONFIG_BAD("--admin: missing port in 'bogus' (write HOST:PORT)",
	    "--admin", "bogus");
	CONFIG_BAD("--admin: *:9 is not a loopback address: set "
	    "admin_token_file too (a bearer token every request must carry)",
	    "--admin", "*:9");
}

/* --admin sets [global] admin: an address or a unix socket. */
static void
test_config_admin_flag(void **state)
{
	char *tcp[] = { "spliced", "--listen", "127.0.0.1:1", "--backend",
	    "127.0.0.1:2", "--admin", "127.0.0.1:9", NULL };
	char *unx[] = { "spliced", "--listen", "127.0.0.1:1", "--backend",
	    "127.0.0.1:2", "--admin", "unix:/run/x.sock", NULL };
	char err[CONFIG_ERR_MAX] = "";
	struct cli_opts o;
	struct config *cfg;

	(void)state;
	parse_ok(tcp, ARGC(tcp), &o);
	assert_non_null(cfg = cli_config(&o, err, sizeof(err)));
	cli_opts_cleanup(&o);
	assert_int_equal(addr_port(&cfg->admin.addr), 9);
	assert_null(cfg->admin.unix_path);
	config_unref(cfg);
	parse_ok(unx, ARGC(unx), &o);
	assert_non_null(cfg = cli_config(&o, err, sizeof(err)));
	cli_opts_cleanup(&o);
	assert_string_equal(cfg->admin.unix_path, "/run/x.sock");
	assert_int_equal(cfg->admin.addr.len, 0);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_file),
		cmocka_unit_test(test_one_off),
		cmocka_unit_test(test_version_help),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_bad_mix),
		cmocka_unit_test(test_config_from_flags),
		cmocka_unit_test(test_config_bad_flags),
		cmocka_unit_test(test_config_admin_flag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
