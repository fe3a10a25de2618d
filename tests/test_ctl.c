/* tests/test_ctl.c: spliced ctl's command line: what each command takes,
 * usage errors naming the bad argument, and what wait-empty reads in an
 * answer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "spliced/ctl.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static void
parse_ok(char **argv, int argc, struct ctl_opts *o)
{
	char err[256] = "";

	if (ctl_parse(argc, argv, o, err, sizeof(err)) == -1)
		fail_msg("refused: %s", err);
}

static void
parse_bad(char **argv, int argc, const char *want)
{
	struct ctl_opts o;
	char err[256] = "";

	if (ctl_parse(argc, argv, &o, err, sizeof(err)) != -1)
		fail_msg("taken, expected '%s'", want);
	if (strcmp(err, want) != 0)
		fail_msg("'%s', expected '%s'", err, want);
}

#define PARSE_BAD(want, ...) do {					\
	char *argv_[] = { "ctl", __VA_ARGS__, NULL };			\
	parse_bad(argv_, ARGC(argv_), want);				\
} while (0)

static void
test_commands(void **state)
{
	char *status[] = { "ctl", "status", "--json", NULL };
	char *server[] = { "ctl", "--admin", "unix:/run/s.sock", "server",
	    "app/a", "drain", "--weight", "7", NULL };
	char *wait[] = { "ctl", "wait-empty", "all", "--timeout", "2s",
	    "--token-file", "/t", NULL };
	char *health[] = { "ctl", "health", "down", NULL };
	struct ctl_opts o;

	(void)state;
	unsetenv("SPLICED_ADMIN");
	unsetenv("SPLICED_ADMIN_TOKEN_FILE");
	parse_ok(status, ARGC(status), &o);
	assert_int_equal(o.cmd, CTL_STATUS);
	assert_true(o.json);
	assert_string_equal(o.admin, CTL_ADMIN_DEFAULT);
	assert_null(o.token_file);
	parse_ok(server, ARGC(server), &o);
	assert_int_equal(o.cmd, CTL_SERVER);
	assert_string_equal(o.admin, "unix:/run/s.sock");
	assert_string_equal(o.target, "app/a");
	assert_string_equal(o.state, "drain");
	assert_int_equal(o.weight, 7);
	parse_ok(wait, ARGC(wait), &o);
	assert_int_equal(o.cmd, CTL_WAIT_EMPTY);
	assert_string_equal(o.target, "all");
	assert_int_equal(o.timeout_ms, 2000);
	assert_string_equal(o.token_file, "/t");
	parse_ok(health, ARGC(health), &o);
	assert_int_equal(o.cmd, CTL_HEALTH);
	assert_string_equal(o.state, "down");
	/* The environment's address, unless --admin. */
	setenv("SPLICED_ADMIN", "[::1]:9", 1);
	parse_ok(health, ARGC(health), &o);
	assert_string_equal(o.admin, "[::1]:9");
	assert_int_equal(o.timeout_ms, CTL_WAIT_DEFAULT_MS);
	unsetenv("SPLICED_ADMIN");
}

static void
test_usage_errors(void **state)
{
	char *none[] = { "ctl", NULL };

	(void)state;
	parse_bad(none, ARGC(none), "ctl: a command is needed (status, "
	    "server, wait-empty or health)");
	PARSE_BAD("ctl: unknown command 'stats'", "stats");
	PARSE_BAD("ctl: unknown option '--bogus'", "status", "--bogus");
	PARSE_BAD("ctl: --admin needs a value", "status", "--admin");
	PARSE_BAD("ctl: --admin 'nowhere' is not ADDR:PORT or unix:PATH",
	    "--admin", "nowhere", "status");
	PARSE_BAD("ctl: --admin 'unix:' is not ADDR:PORT or unix:PATH",
	    "--admin", "unix:", "status");
	PARSE_BAD("ctl server: needs BACKEND/SERVER and ready, drain or maint",
	    "server", "app/a");
	PARSE_BAD("ctl server: 'app' is not BACKEND/SERVER", "server", "app",
	    "drain");
	PARSE_BAD("ctl server: 'sleep' is not ready, drain or maint", "server",
	    "app/a", "sleep");
	PARSE_BAD("ctl server: unexpected argument 'x'", "server", "app/a",
	    "drain", "x");
	PARSE_BAD("ctl: --weight '0' is not a number in 1..256", "server",
	    "app/a", "drain", "--weight", "0");
	PARSE_BAD("ctl: --weight '-1' is not a number in 1..256", "server",
	    "app/a", "drain", "--weight", "-1");
	PARSE_BAD("ctl: --weight goes with server", "status", "--weight", "2");
	PARSE_BAD("ctl: --json goes with status", "health", "up", "--json");
	PARSE_BAD("ctl wait-empty: needs BACKEND/SERVER or all", "wait-empty");
	PARSE_BAD("ctl wait-empty: 'a/b/c' is not BACKEND/SERVER",
	    "wait-empty", "a/b/c");
	PARSE_BAD("ctl: --timeout '2' is not a duration (use ms, s, m or h)",
	    "wait-empty", "all", "--timeout", "2");
	PARSE_BAD("ctl: --timeout goes with wait-empty", "status", "--timeout",
	    "2s");
	PARSE_BAD("ctl health: 'sideways' is not up or down", "health",
	    "sideways");
}

static void
test_json_int(void **state)
{
	/* /status's shape: a listener's "active" comes later, and a name in
	 * a string, nested deeper or in an array does not count. */
	const char *status = "{\"version\": \"x \\\"active\\\": 9\", "
	    "\"workers\": 4, \"workers_answered\": 3, \"listeners\": [{\"name\": "
	    "\"active\", \"active\": 7}], \"connections\": {\"total\": 12, "
	    "\"active\": 5}, \"z\": {\"connections\": {\"active\": 8}}}\n";
	const char *server = "{\"backend\": \"app\", \"name\": \"a\", "
	    "\"state\": \"drain\", \"addresses\": [{\"address\": "
	    "\"127.0.0.1:1\", \"active\": 4}], \"active\": 2, \"workers\": 2, "
	    "\"workers_answered\": 2}\n";

	(void)state;
	assert_int_equal(ctl_json_int(status, "connections.active"), 5);
	assert_int_equal(ctl_json_int(status, "workers"), 4);
	assert_int_equal(ctl_json_int(status, "workers_answered"), 3);
	assert_int_equal(ctl_json_int(status, "active"), -1);
	assert_int_equal(ctl_json_int(status, "connections.none"), -1);
	assert_int_equal(ctl_json_int(status, "version"), -1);
	assert_int_equal(ctl_json_int(server, "active"), 2);
	assert_int_equal(ctl_json_int(server, "name"), -1);
	assert_int_equal(ctl_json_int("{\"active\": -1}", "active"), -1);
	assert_int_equal(ctl_json_int("{\"active\": 1.5}", "active"), -1);
	assert_int_equal(ctl_json_int("{\"active\": 3", "active"), -1);
	assert_int_equal(ctl_json_int("{\"a\": \"x", "active"), -1);
	assert_int_equal(ctl_json_int("{\"a\": [1, {\"b\": 2}, \"]\"], "
	    "\"active\": 0}", "active"), 0);
	assert_int_equal(ctl_json_int("[1]", "active"), -1);
	assert_int_equal(ctl_json_int("", "active"), -1);
}

static void
test_wait_verdict(void **state)
{
	long long active;

	(void)state;
	assert_int_equal(ctl_wait_verdict("{\"workers\": 2, \"workers_answered\": "
	    "2, \"connections\": {\"active\": 0}}", true, &active), 1);
	assert_int_equal(active, 0);
	assert_int_equal(ctl_wait_verdict("{\"workers\": 2, \"workers_answered\": "
	    "2, \"connections\": {\"active\": 3}}", true, &active), 0);
	assert_int_equal(active, 3);
	/* A worker late: its connections are not in the sum. */
	assert_int_equal(ctl_wait_verdict("{\"workers\": 2, \"workers_answered\": "
	    "1, \"connections\": {\"active\": 0}}", true, &active), 0);
	/* A server: its own "active", not an address's. */
	assert_int_equal(ctl_wait_verdict("{\"addresses\": [{\"active\": 0}], "
	    "\"active\": 1, \"workers\": 1, \"workers_answered\": 1}", false,
	    &active), 0);
	assert_int_equal(active, 1);
	assert_int_equal(ctl_wait_verdict("{\"addresses\": [{\"active\": 1}], "
	    "\"active\": 0, \"workers\": 1, \"workers_answered\": 1}", false,
	    &active), 1);
	assert_int_equal(ctl_wait_verdict("{\"active\": 0}", false, &active), -1);
	assert_int_equal(ctl_wait_verdict("{\"workers\": 1, \"workers_answered\": "
	    "1}", true, &active), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_json_int),
		cmocka_unit_test(test_wait_verdict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
