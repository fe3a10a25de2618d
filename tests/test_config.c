/* tests/test_config.c: reading a config: the INI file and its lines,
 * sections, errors with file:line, the builder (config_new, config_set) and
 * references. Keys and units: test_config_keys.c; the checks across keys:
 * test_config_finish.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spliced/config.h"
#include "config_fixture.h"

static void
test_full(void **state)
{
	static const char text[] =
	    "; every key\n"
	    "[global]\n"
	    "workers = 8\n"
	    "max_connections = 20000\n"
	    "log_level = debug\n"
	    "access_log = off\n"
	    "splice = always\n"
	    "splice_threshold = 128k\n"
	    "pipe_size = 1m\n"
	    "buffer_size = 32k\n"
	    "max_pipes = 500\n"
	    "shutdown_timeout = 10s\n"
	    "\n"
	    "[listener web]\n"
	    "bind = 127.0.0.1:8080\n"
	    "bind = [::1]:8080\n"
	    "backend = app\n"
	    "timeout_connect = 1500ms\n"
	    "timeout_idle = 2h\n"
	    "max_connections = 5000\n"
	    "splice = never\n"
	    "splice_threshold = 0\n"
	    "\n"
	    "[backend app]\n"
	    "balance = leastconn\n"
	    "server = a 127.0.0.1:9001 weight=2 max_connections=100\n"
	    "server = b localhost:9002\n"
	    "retries = 5\n"
	    "health_check = tcp\n"
	    "health_interval = 500ms\n"
	    "health_timeout = 200ms\n"
	    "rise = 4\n"
	    "fall = 5\n";
	struct config *cfg = load_ok(text);
	const struct config_listener *l;
	const struct config_backend *b;

	(void)state;
	assert_int_equal(atomic_load(&cfg->refs), 1);
	assert_string_equal(cfg->path, "t.ini");
	assert_int_equal(cfg->workers, 8);
	assert_int_equal(cfg->max_connections, 20000);
	assert_int_equal(cfg->log_level, CONFIG_LOG_DEBUG);
	assert_false(cfg->access_log);
	assert_int_equal(cfg->splice, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(cfg->splice_threshold, 128 * 1024);
	assert_int_equal(cfg->pipe_size, 1024 * 1024);
	assert_int_equal(cfg->buffer_size, 32 * 1024);
	assert_int_equal(cfg->max_pipes, 500);
	assert_int_equal(cfg->shutdown_timeout_ms, 10000);

	assert_int_equal(cfg->nlisteners, 1);
	l = &cfg->listeners[0];
	assert_string_equal(l->name, "web");
	assert_int_equal(l->line, 14);
	assert_int_equal(l->nbinds, 2);
	assert_int_equal(l->binds[0].ss.ss_family, AF_INET);
	assert_int_equal(port_of(&l->binds[0]), 8080);
	assert_false(l->binds[0].wildcard);
	assert_int_equal(l->binds[1].ss.ss_family, AF_INET6);
	assert_int_equal(port_of(&l->binds[1]), 8080);
	assert_string_equal(l->backend_name, "app");
	assert_ptr_equal(l->backend, &cfg->backends[0]);
	assert_int_equal(l->timeout_connect_ms, 1500);
	assert_int_equal(l->timeout_idle_ms, 2 * 3600 * 1000);
	assert_int_equal(l->max_connections, 5000);
	assert_int_equal(l->splice, CONFIG_SPLICE_NEVER);
	assert_int_equal(l->splice_threshold, 0);

	assert_int_equal(cfg->nbackends, 1);
	b = &cfg->backends[0];
	assert_string_equal(b->name, "app");
	assert_int_equal(b->line, 24);
	assert_int_equal(b->retries, 5);
	assert_int_equal(b->balance, CONFIG_BALANCE_LEASTCONN);
	assert_int_equal(b->health_check, CONFIG_HEALTH_TCP);
	assert_int_equal(b->health_interval_ms, 500);
	assert_int_equal(b->health_timeout_ms, 200);
	assert_int_equal(b->rise, 4);
	assert_int_equal(b->fall, 5);
	assert_int_equal(b->nservers, 2);
	assert_string_equal(b->servers[0].name, "a");
	assert_string_equal(b->servers[0].host, "127.0.0.1:9001");
	assert_int_equal(b->servers[0].weight, 2);
	assert_int_equal(b->servers[0].max_connections, 100);
	assert_int_equal(b->servers[0].line, 26);
	assert_int_equal(port_of(&b->servers[0].addr), 9001);
	assert_string_equal(b->servers[1].name, "b");
	assert_string_equal(b->servers[1].host, "localhost:9002");
	assert_int_equal(b->servers[1].weight, 1);
	assert_int_equal(b->servers[1].max_connections, 0);
	assert_int_equal(b->servers[1].line, 27);
	assert_int_equal(port_of(&b->servers[1].addr), 9002);
	/* A name is kept for resolve.c, never resolved while loading. */
	assert_null(b->servers[0].dnsname);
	assert_string_equal(b->servers[1].dnsname, "localhost");
	assert_int_equal(b->servers[1].addr.ss.ss_family, AF_UNSPEC);
	assert_int_equal(config_dns_servers(cfg), 1);
	config_unref(cfg);
}

static void
test_format(void **state)
{
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_null(load("[global]\n[backend app]\nserver = a 127.0.0.1:1\n"
	    "[listener web]\nbind = *:80\nbackend = app\ntimeout_idle = 5x\n",
	    err));
	assert_string_equal(err, "t.ini:7: [listener web] timeout_idle: "
	    "'5x' is not a duration (use ms, s, m or h)");
	/* A message longer than the buffer is cut, not overrun. */
	assert_null(config_load_string("bogus\n", "t.ini", err, 8));
	assert_string_equal(err, "t.ini:1");
}

static void
test_structure_errors(void **state)
{
	(void)state;
	EXPECT_ERR("workers = 2\n" BASE, "t.ini:1: workers: key outside "
	    "any section");
	EXPECT_ERR(BASE "[frontend x]\nbind = *:80\n", "t.ini:8: [frontend x]: "
	    "unknown section");
	EXPECT_ERR(BASE "colour = blue\n", "t.ini:8: [backend app] colour: "
	    "unknown key");
	EXPECT_ERR(BASE "[global]\n", "t.ini:8: [global]: duplicate section "
	    "(first on line 1)");
	EXPECT_ERR(BASE "[listener web]\n", "t.ini:8: [listener web]: "
	    "duplicate section (first on line 3)");
	EXPECT_ERR(BASE "[backend app]\n", "t.ini:8: [backend app]: "
	    "duplicate section (first on line 6)");
	EXPECT_ERR(BASE "[listener]\n", "t.ini:8: [listener]: missing name");
	EXPECT_ERR(BASE "[backend a b]\n", "t.ini:8:", "not a valid name");
	EXPECT_ERR(BASE "[listener w*b]\n", "t.ini:8:", "not a valid name");
	EXPECT_ERR(BASE "[global x]\n", "t.ini:8:", "takes no name");
	EXPECT_ERR(BASE "[listener x\n", "t.ini:8:", "without ']'");
	EXPECT_ERR(BASE "[listener x] junk\n", "t.ini:8:",
	    "unexpected text after ']'");
	EXPECT_ERR(BASE "just words\n", "t.ini:8: expected 'key = value'");
	EXPECT_ERR(BASE "server a 127.0.0.1:9002\n", "t.ini:8:", "not a key");
	EXPECT_ERR(BASE "= value\n", "t.ini:8:", "not a key");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER BASE_BACKEND
	    "server = b 127.0.0.1:9002\n  127.0.0.1:9003\n",
	    "t.ini:9: [backend app] server: continuation lines are not "
	    "supported; put the value on one line");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "timeout_idle = 5\n  m\n"
	    BASE_BACKEND, "t.ini:6: [listener web] timeout_idle: '5' needs a "
	    "unit");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER BASE_BACKEND "retries = 1 ; x\n"
	    "    more\n", "t.ini:9: [backend app] retries: continuation lines");
	EXPECT_ERR("[global]\n  more\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:2: expected 'key = value', '[section]' or a comment");
	EXPECT_ERR(BASE "retries = 1\nretries = 2\n", "t.ini:9: [backend app] "
	    "retries: set twice (first on line 8)");
	/* After a bad header its keys are not reported again. */
	EXPECT_ERR(BASE "[nope]\nx = 1\n", "t.ini:8: [nope]: unknown section");
	/* The first error is the one reported. */
	EXPECT_ERR("[global]\nworkers = x\nlog_level = y\n", "t.ini:2:",
	    "workers");
}

static void
test_lines(void **state)
{
	char text[1024], err[CONFIG_ERR_MAX];
	struct config *cfg;
	size_t n;

	(void)state;
	/* 199 characters are fine, 200 are not, wherever the line is. */
	n = (size_t)snprintf(text, sizeof(text), "%s", BASE "retries = 1");
	memset(text + n, ' ', 199 - strlen("retries = 1"));
	n += 199 - strlen("retries = 1");
	snprintf(text + n, sizeof(text) - n, "\n");
	cfg = load_ok(text);
	config_unref(cfg);
	snprintf(text + n, sizeof(text) - n, " \nretries = x\n");
	assert_null(load(text, err));
	assert_string_equal(err, "t.ini:8: line too long (max 199 characters)");
	/* Comments too: inih would parse the rest of a cut line as a line. */
	memset(text, 'x', 500);
	text[500] = '\0';
	{
		char big[2048];

		snprintf(big, sizeof(big), BASE "; %s\nretries = 1\n", text);
		assert_null(load(big, err));
		assert_string_equal(err,
		    "t.ini:8: line too long (max 199 characters)");
	}

	/* CRLF, a BOM, comments, indentation, ':' for '=' */
	cfg = load_ok("\xEF\xBB\xBF[global] ; the defaults, mostly\r\n"
	    "# hash comment\r\n"
	    "  ; indented comment\r\n"
	    "    workers = 3   ; inline comment\r\n"
	    "\r\n"
	    "[listener web]\r\n"
	    "  bind: 127.0.0.1:8080\r\n"
	    "  backend = app\r\n"
	    BASE_BACKEND
	    "retries = 0");   /* no final newline */
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->listeners[0].line, 6);
	assert_int_equal(cfg->backends[0].retries, 0);
	config_unref(cfg);
}

static void
test_case(void **state)
{
	/* Keywords take any case; names do not. */
	struct config *cfg = load_ok("[GLOBAL]\nLog_Level = WARN\n"
	    "access_log = Yes\nsplice = Never\nworkers = AUTO\n"
	    "[Listener Web]\nbind = 127.0.0.1:1\nbackend = App\n"
	    "[backend App]\nserver = a 127.0.0.1:2\nBalance = RoundRobin\n");

	(void)state;
	assert_int_equal(cfg->log_level, CONFIG_LOG_WARN);
	assert_true(cfg->access_log);
	assert_int_equal(cfg->splice, CONFIG_SPLICE_NEVER);
	assert_string_equal(cfg->listeners[0].name, "Web");
	config_unref(cfg);
	EXPECT_ERR("[listener web]\nbind = 127.0.0.1:1\nbackend = App\n"
	    "[backend app]\nserver = a 127.0.0.1:2\n", "t.ini:3:",
	    "no [backend App] section");
}

/* The one-off command line: the same keys, no file, no lines. */
static void
test_builder(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_new("command line");

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(atomic_load(&cfg->refs), 1);
	assert_int_equal(cfg->buffer_size, 65536);
	assert_int_equal(config_set(cfg, "global", "splice", "never", err,
	    sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "bind",
	    "127.0.0.1:7000", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "backend", "cli",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "backend cli", "server",
	    "s1 127.0.0.1:7001", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "backend cli", "server",
	    "s2 [::1]:7002", err, sizeof(err)), 0);

	assert_int_equal(config_set(cfg, "listener cli", "bind", "nowhere",
	    err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] bind: missing port in "
	    "'nowhere' (write HOST:PORT)");
	assert_int_equal(config_set(cfg, "global", "splice_threshold", "9x",
	    err, sizeof(err)), -1);
	assert_string_equal(err, "[global] splice_threshold: '9x' is not a "
	    "size (a number, optionally with k, m or g)");
	assert_int_equal(config_set(cfg, "global", "splice", "auto", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "[global] splice: set twice (first)");
	assert_int_equal(config_set(cfg, "backend cli", "server",
	    "s1 127.0.0.1:7003", err, sizeof(err)), -1);
	assert_string_equal(err, "[backend cli] server: server name 's1' is "
	    "already used");
	assert_int_equal(config_set(cfg, "frontend x", "bind", "*:1", err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "[frontend x]: unknown section"));
	assert_int_equal(config_set(cfg, "listener cli", "accept_proxy",
	    "maybe", err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] accept_proxy: 'maybe' is not "
	    "a boolean (on/off, yes/no, true/false, 1/0)");

	assert_int_equal(config_finish(cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->nlisteners, 1);
	assert_int_equal(cfg->listeners[0].line, 0);
	assert_int_equal(cfg->listeners[0].splice, CONFIG_SPLICE_NEVER);
	assert_ptr_equal(cfg->listeners[0].backend, &cfg->backends[0]);
	assert_int_equal(cfg->backends[0].nservers, 2);
	config_unref(cfg);
}

static void
test_refs(void **state)
{
	struct config *cfg = load_ok(BASE);

	(void)state;
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(atomic_load(&cfg->refs), 2);
	config_unref(cfg);
	assert_int_equal(atomic_load(&cfg->refs), 1);
	config_unref(cfg);      /* freed: LSan would tell otherwise */
	config_unref(NULL);
	assert_null(config_ref(NULL));
}

static void
test_files(void **state)
{
	char dir[] = "/tmp/test_config.XXXXXX", path[64], err[CONFIG_ERR_MAX];
	struct config *cfg;
	FILE *f;

	(void)state;
	assert_null(config_load("/nonexistent/spliced.ini", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/spliced.ini: cannot open: "
	    "No such file or directory");

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spliced.ini", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(BASE "retries = 3\n", f);
	fclose(f);
	assert_non_null(cfg = config_load(path, err, sizeof(err)));
	assert_string_equal(cfg->path, path);
	assert_int_equal(cfg->workers, 2);
	assert_int_equal(cfg->backends[0].retries, 3);
	config_unref(cfg);

	assert_non_null(f = fopen(path, "w"));
	fputs(BASE "retries = lots\n", f);
	fclose(f);
	assert_null(config_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, ":8: [backend app] retries:"));

	assert_non_null(f = fopen(path, "w"));
	fwrite(BASE "\0x", 1, sizeof(BASE) + 1, f);
	fclose(f);
	assert_null(config_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, ":8: contains a NUL byte"));

	assert_null(config_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, dir));
	unlink(path);
	rmdir(dir);
}

/* A NUL byte is refused on its line: the newlines before it, plus one. */
static void
test_nul_line(void **state)
{
#define T(text, line) { text, sizeof(text) - 1, line }
	static const struct { const char *text; size_t len; int line; } t[] = {
		T("\0[global]\n", 1),
		T("[global]\nwork\0ers = 2\n", 2),
		T("[global]\r\n\r\n\0", 3),
		T(BASE "\n\n\0", 10),
	};
#undef T
	char dir[] = "/tmp/test_config.XXXXXX", path[64], err[CONFIG_ERR_MAX];
	char want[160];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/nul.ini", dir);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_non_null(f = fopen(path, "w"));
		assert_int_equal(fwrite(t[i].text, 1, t[i].len, f), t[i].len);
		fclose(f);
		assert_null(config_load(path, err, sizeof(err)));
		snprintf(want, sizeof(want), "%s:%d: contains a NUL byte (not a "
		    "text file?)", path, t[i].line);
		assert_string_equal(err, want);
	}
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_case),
		cmocka_unit_test(test_builder),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_nul_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
