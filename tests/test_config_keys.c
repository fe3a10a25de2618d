/* tests/test_config_keys.c: every key, its defaults, its range, and the
 * syntax of values (sizes, durations, booleans, modes, tcp_keepalive). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "spliced/config.h"
#include "config_fixture.h"

/* [global] resolver and [backend] resolve_interval; how a server that
 * does not resolve is named in an error. */
static void
test_resolver_keys(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;

	(void)state;
	cfg = load_ok(BASE);
	assert_int_equal(cfg->resolver.len, 0);
	assert_int_equal(cfg->backends[0].resolve_interval_ms, 30 * 1000);
	assert_int_equal(config_dns_servers(cfg), 0);
	config_unref(cfg);

	cfg = load_ok("[global]\nresolver = 127.0.0.1:5353\n" BASE_LISTENER
	    BASE_BACKEND "resolve_interval = 1s\n"
	    "server = b app.example.test:9002 weight=3\n"
	    "server = c [::1]:9003\n");
	assert_int_equal(cfg->resolver.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->resolver), 5353);
	assert_int_equal(cfg->backends[0].resolve_interval_ms, 1000);
	assert_int_equal(config_dns_servers(cfg), 1);
	assert_string_equal(cfg->backends[0].servers[1].dnsname,
	    "app.example.test");
	assert_int_equal(cfg->backends[0].servers[1].weight, 3);
	assert_null(cfg->backends[0].servers[2].dnsname);
	config_server_error(cfg, &cfg->backends[0], &cfg->backends[0].servers[1],
	    "cannot resolve 'app.example.test': no such name", err,
	    sizeof(err));
	assert_string_equal(err, "t.ini:9: [backend app] server: cannot "
	    "resolve 'app.example.test': no such name");
	config_unref(cfg);

	cfg = load_ok("[global]\nresolver = [::1]:53\n" BASE_LISTENER
	    BASE_BACKEND);
	assert_int_equal(cfg->resolver.ss.ss_family, AF_INET6);
	config_unref(cfg);

	EXPECT_ERR("[global]\nresolver = dns.example:53\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:2: [global] resolver: 'dns.example:53': the "
	    "name server must be an IP address");
	EXPECT_ERR("[global]\nresolver = *:53\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:2: [global] resolver:", "must be an IP address");
	EXPECT_ERR("[global]\nresolver = 127.0.0.1\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:2: [global] resolver: missing port");
	EXPECT_ERR(BASE "resolve_interval = 30\n", "t.ini:8: [backend app] "
	    "resolve_interval: '30' needs a unit");
	EXPECT_ERR(BASE "resolve_interval = 50ms\n", "t.ini:8:",
	    "out of range (100ms..24h)");
	EXPECT_ERR(BASE "server = b 1.2.3:80\n", "t.ini:8:",
	    "'1.2.3' is not an IPv4 address");
}

/* tcp_keepalive: off | on | IDLE[,INTERVAL[,COUNT]], a listener's own or
 * [global]'s (set before or after the listener). */
static void
test_tcp_keepalive(void **state)
{
	char why[CONFIG_ERR_MAX], err[CONFIG_ERR_MAX];
	struct config_keepalive ka;
	const struct config_keepalive *k;
	struct config *cfg;

	(void)state;
	cfg = load_ok(BASE);
	assert_false(cfg->tcp_keepalive.on);
	assert_false(cfg->listeners[0].tcp_keepalive.on);
	config_unref(cfg);

	cfg = load_ok("[listener a]\nbind = 127.0.0.1:1\nbackend = app\n"
	    "[listener b]\nbind = 127.0.0.1:2\nbackend = app\n"
	    "tcp_keepalive = off\n"
	    "[listener c]\nbind = 127.0.0.1:3\nbackend = app\n"
	    "tcp_keepalive = 1s,1s,2\n"
	    "[listener d]\nbind = 127.0.0.1:4\nbackend = app\n"
	    "tcp_keepalive = on\n"
	    BASE_BACKEND "[global]\ntcp_keepalive = 10m,30s,4\n");
	k = &cfg->listeners[0].tcp_keepalive;
	assert_true(k->on);
	assert_int_equal(k->idle_s, 600);
	assert_int_equal(k->interval_s, 30);
	assert_int_equal(k->count, 4);
	assert_false(cfg->listeners[1].tcp_keepalive.on);
	k = &cfg->listeners[2].tcp_keepalive;
	assert_true(k->on);
	assert_int_equal(k->idle_s, 1);
	assert_int_equal(k->interval_s, 1);
	assert_int_equal(k->count, 2);
	/* on: the kernel's timing, not [global]'s numbers. */
	k = &cfg->listeners[3].tcp_keepalive;
	assert_true(k->on);
	assert_int_equal(k->idle_s + k->interval_s + k->count, 0);
	config_unref(cfg);

	/* Parts left out or empty are the kernel's; spaces are allowed. */
	assert_int_equal(config_parse_keepalive("2h", &ka, why, sizeof(why)), 0);
	assert_true(ka.on);
	assert_int_equal(ka.idle_s, 7200);
	assert_int_equal(ka.interval_s + ka.count, 0);
	assert_int_equal(config_parse_keepalive("60s,5s", &ka, why,
	    sizeof(why)), 0);
	assert_int_equal(ka.idle_s, 60);
	assert_int_equal(ka.interval_s, 5);
	assert_int_equal(ka.count, 0);
	assert_int_equal(config_parse_keepalive("60s, ,3", &ka, why,
	    sizeof(why)), 0);
	assert_int_equal(ka.idle_s, 60);
	assert_int_equal(ka.interval_s, 0);
	assert_int_equal(ka.count, 3);
	assert_int_equal(config_parse_keepalive(",,9", &ka, why, sizeof(why)), 0);
	assert_int_equal(ka.idle_s + ka.interval_s, 0);
	assert_int_equal(ka.count, 9);
	assert_int_equal(config_parse_keepalive("32767s,10h,127", &ka, why,
	    sizeof(why)), -1);
	assert_int_equal(config_parse_keepalive("32767s,1000ms,127", &ka, why,
	    sizeof(why)), 0);
	assert_int_equal(ka.idle_s, 32767);
	assert_int_equal(ka.interval_s, 1);
	assert_int_equal(ka.count, 127);
	assert_int_equal(config_parse_keepalive("YES", &ka, why, sizeof(why)), 0);
	assert_true(ka.on);
	assert_int_equal(config_parse_keepalive("Off", &ka, why, sizeof(why)), 0);
	assert_false(ka.on);

#define KA_ERR(v, ...) EXPECT_ERR(BASE_GLOBAL BASE_LISTENER \
	"tcp_keepalive = " v "\n" BASE_BACKEND, \
	"t.ini:6: [listener web] tcp_keepalive: ", __VA_ARGS__)
	KA_ERR("sometimes", "'sometimes' is not off, on or "
	    "IDLE[,INTERVAL[,COUNT]]");
	KA_ERR("60", "IDLE '60' needs a unit (ms, s, m or h)");
	KA_ERR("1", "IDLE '1' needs a unit");
	KA_ERR("0", "IDLE '0' is out of range (1s..32767s)");
	KA_ERR("500ms", "IDLE '500ms' is out of range (1s..32767s)");
	KA_ERR("1500ms", "IDLE '1500ms' is not whole seconds");
	KA_ERR("10h", "IDLE '10h' is out of range (1s..32767s)");
	KA_ERR("99999999999999999999s", "out of range (1s..32767s)");
	KA_ERR("60s,10x", "INTERVAL '10x' is not a duration");
	KA_ERR("60s,0s", "INTERVAL '0s' is out of range");
	KA_ERR("60s,2500ms,3", "INTERVAL '2500ms' is not whole seconds");
	KA_ERR("60s,10s,0", "COUNT '0' is out of range (1..127)");
	KA_ERR("60s,10s,128", "COUNT '128' is out of range (1..127)");
	KA_ERR("60s,10s,3s", "COUNT '3s' is not a number");
	KA_ERR("60s,10s,3,1", "more than IDLE,INTERVAL,COUNT");
	KA_ERR(",,", "',,' sets nothing (on: the kernel's defaults)");
#undef KA_ERR
	EXPECT_ERR("[global]\ntcp_keepalive = 1s,1s,200\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:2: [global] tcp_keepalive: COUNT '200' is "
	    "out of range (1..127)");
	EXPECT_ERR(BASE "tcp_keepalive = on\n", "t.ini:8: [backend app] "
	    "tcp_keepalive: unknown key (it belongs in [global])");

	/* The builder names the section and the key, without a line. */
	assert_non_null(cfg = config_new(NULL));
	assert_int_equal(config_set(cfg, "listener cli", "tcp_keepalive",
	    "45s,,", err, sizeof(err)), 0);
	assert_true(cfg->listeners[0].tcp_keepalive.on);
	assert_int_equal(cfg->listeners[0].tcp_keepalive.idle_s, 45);
	assert_int_equal(config_set(cfg, "listener cli2", "tcp_keepalive",
	    "45", err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli2] tcp_keepalive: IDLE '45' "
	    "needs a unit (ms, s, m or h)");
	config_unref(cfg);
}

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok(BASE_LISTENER BASE_BACKEND);
	const struct config_listener *l = &cfg->listeners[0];

	(void)state;
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->log_level, CONFIG_LOG_INFO);
	assert_int_equal(cfg->access_log, CONFIG_ACCESS_LOG_ON);
	assert_null(cfg->access_log_path);
	assert_int_equal(cfg->log_format, CONFIG_LOG_FORMAT_TEXT);
	assert_int_equal(cfg->splice, CONFIG_SPLICE_AUTO);
	assert_int_equal(cfg->splice_threshold, 64 * 1024);
	assert_int_equal(cfg->pipe_size, 1024 * 1024);
	assert_int_equal(cfg->buffer_size, 64 * 1024);
	assert_int_equal(cfg->max_pipes, 0);
	assert_int_equal(cfg->shutdown_timeout_ms, 30000);
	assert_int_equal(l->timeout_connect_ms, 5000);
	assert_int_equal(l->timeout_idle_ms, 5 * 60 * 1000);
	assert_int_equal(l->max_connections, 0);
	assert_int_equal(l->splice, CONFIG_SPLICE_AUTO);
	assert_int_equal(l->splice_threshold, 64 * 1024);
	assert_int_equal(cfg->backends[0].retries, 2);
	assert_int_equal(cfg->backends[0].balance, CONFIG_BALANCE_ROUNDROBIN);
	assert_int_equal(cfg->backends[0].health_check, CONFIG_HEALTH_OFF);
	assert_int_equal(cfg->backends[0].health_interval_ms, 2000);
	assert_int_equal(cfg->backends[0].health_timeout_ms, 1000);
	assert_int_equal(cfg->backends[0].rise, 2);
	assert_int_equal(cfg->backends[0].fall, 3);
	assert_int_equal(cfg->backends[0].servers[0].weight, 1);
	assert_int_equal(cfg->backends[0].servers[0].max_connections, 0);
	config_unref(cfg);
}

static void
test_value_errors(void **state)
{
	(void)state;
	EXPECT_ERR(BASE "timeout_idle = 30\n", "t.ini:8: [backend app] "
	    "timeout_idle: unknown key (it belongs in [listener NAME])");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "timeout_idle = 30\n" BASE_BACKEND,
	    "t.ini:6: [listener web] timeout_idle: '30' needs a unit");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "timeout_connect = 0\n"
	    BASE_BACKEND, "t.ini:6:", "timeout_connect: '0' is out of range");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "timeout_connect = 25h\n"
	    BASE_BACKEND, "t.ini:6:", "'25h' is out of range (1ms..24h)");
	EXPECT_ERR("[global]\nworkers = 0\n", "t.ini:2: [global] workers: "
	    "'0' is out of range (1..1024 or auto)");
	EXPECT_ERR("[global]\nworkers = 1025\n", "t.ini:2:", "out of range");
	EXPECT_ERR("[global]\nworkers = many\n", "t.ini:2:",
	    "'many' is not a number or auto");
	EXPECT_ERR("[global]\nmax_connections = 0\n", "t.ini:2:",
	    "[global] max_connections", "out of range");
	EXPECT_ERR("[global]\nmax_connections = 10000001\n", "t.ini:2:",
	    "out of range");
	EXPECT_ERR("[global]\nmax_connections = -5\n", "t.ini:2:",
	    "'-5' is not a number");
	EXPECT_ERR("[global]\nlog_level = loud\n", "t.ini:2: [global] "
	    "log_level: 'loud' is not a log level");
	EXPECT_ERR("[global]\naccess_log = maybe\n", "t.ini:2: [global] "
	    "access_log: 'maybe' is not on, off or an absolute file path");
	EXPECT_ERR("[global]\nlog_level = warn\naccess_log = logs/a.log\n",
	    "t.ini:3: [global] access_log: 'logs/a.log' is not on, off or an "
	    "absolute file path");
	EXPECT_ERR("[global]\naccess_log = /a\naccess_log = /b\n", "t.ini:3:",
	    "access_log");
	EXPECT_ERR("[global]\nlog_format = xml\n", "t.ini:2: [global] "
	    "log_format: 'xml' is not a log format (text or json)");
	EXPECT_ERR("[global]\nsplice = sometimes\n", "t.ini:2:",
	    "splice: 'sometimes' is not a splice mode");
	EXPECT_ERR("[global]\nsplice_threshold = 2g\n", "t.ini:2:",
	    "'2g' is out of range (0..1g)");
	EXPECT_ERR("[global]\npipe_size = 1k\n", "t.ini:2:",
	    "pipe_size: '1k' is out of range (4k..1g)");
	EXPECT_ERR("[global]\npipe_size = 64q\n", "t.ini:2:",
	    "'64q' is not a size");
	EXPECT_ERR("[global]\nbuffer_size = 128m\n", "t.ini:2:",
	    "buffer_size: '128m' is out of range (1k..64m)");
	EXPECT_ERR("[global]\nbuffer_size = 99999999999999999999k\n",
	    "t.ini:2:", "out of range");
	EXPECT_ERR("[global]\nmax_pipes = 10000001\n", "t.ini:2:",
	    "max_pipes", "out of range");
	EXPECT_ERR("[global]\nshutdown_timeout = 30\n", "t.ini:2:",
	    "shutdown_timeout: '30' needs a unit (ms, s, m or h)");
	EXPECT_ERR("[global]\nshutdown_timeout = 1.5s\n", "t.ini:2:",
	    "is not a duration");
	EXPECT_ERR("[global]\nworkers =\n", "t.ini:2: [global] workers: "
	    "empty value");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "max_connections = x\n"
	    BASE_BACKEND, "t.ini:6: [listener web] max_connections:");
	EXPECT_ERR(BASE "retries = 101\n", "t.ini:8: [backend app] retries: "
	    "'101' is out of range (0..100)");
	EXPECT_ERR(BASE "balance = fastest\n", "t.ini:8: [backend app] "
	    "balance: 'fastest' is not a balance algorithm (roundrobin, "
	    "leastconn, source or random)");
	EXPECT_ERR(BASE "health_check = http\n", "t.ini:8: [backend app] "
	    "health_check: 'http' is not a health check (tcp or off)");
	EXPECT_ERR(BASE "health_interval = 2\n", "t.ini:8:",
	    "health_interval: '2' needs a unit");
	EXPECT_ERR(BASE "health_interval = 5ms\n", "t.ini:8:",
	    "out of range (10ms..24h)");
	EXPECT_ERR(BASE "health_timeout = 0\n", "t.ini:8:",
	    "out of range (1ms..24h)");
	EXPECT_ERR(BASE "rise = 0\n", "t.ini:8: [backend app] rise: "
	    "'0' is out of range (1..100)");
	EXPECT_ERR(BASE "fall = 101\n", "t.ini:8:", "out of range (1..100)");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "bind = 127.0.0.1\n" BASE_BACKEND,
	    "t.ini:6: [listener web] bind: missing port in '127.0.0.1'");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "bind = 127.0.0.1:0\n"
	    BASE_BACKEND, "t.ini:6:", "port out of range");
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "backend = b2\n" BASE_BACKEND,
	    "t.ini:6: [listener web] backend: set twice (first on line 5)");
	EXPECT_ERR(BASE_GLOBAL "[listener web]\nbind = *:80\nbackend = a/b\n",
	    "t.ini:5: [listener web] backend: 'a/b' is not a valid name");
}

static void
test_server_errors(void **state)
{
	(void)state;
	EXPECT_ERR(BASE "server = b\n", "t.ini:8: [backend app] server: "
	    "'b': expected NAME ADDRESS:PORT");
	EXPECT_ERR(BASE "server = a 127.0.0.1:9002\n", "t.ini:8: [backend app] "
	    "server: server name 'a' is already used on line 7");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 weight=0\n", "t.ini:8:",
	    "weight must be 1..256");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 weight=257\n", "t.ini:8:",
	    "weight must be 1..256");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 weight=2 weight=3\n",
	    "t.ini:8:", "weight given twice");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 max_connections=x\n",
	    "t.ini:8: [backend app] server: 'max_connections=x': "
	    "max_connections must be 0..10000000");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 max_connections=10000001\n",
	    "t.ini:8:", "max_connections must be 0..10000000");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 max_connections=1 "
	    "max_connections=2\n", "t.ini:8:", "max_connections given twice");
	EXPECT_ERR(BASE "server = b 127.0.0.1:9002 backup\n", "t.ini:8:",
	    "unknown server option 'backup'");
	EXPECT_ERR(BASE "server = b 127.0.0.1\n", "t.ini:8:",
	    "missing port in '127.0.0.1'");
	EXPECT_ERR(BASE "server = b/c 127.0.0.1:1\n", "t.ini:8:",
	    "'b/c' is not a valid server name");
}

/* [global] user: a name, kept as written; whether it exists is not the
 * parser's business (privs.c looks it up at start and for -t). */
static void
test_user(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;

	(void)state;
	cfg = load_ok(BASE);
	assert_null(cfg->user);
	config_global_error(cfg, "user", "no such user 'x'", err, sizeof(err));
	assert_string_equal(err, "[global] user: no such user 'x'");
	config_unref(cfg);

	cfg = load_ok(BASE_GLOBAL "user = nobody\n" BASE_LISTENER BASE_BACKEND);
	assert_string_equal(cfg->user, "nobody");
	config_global_error(cfg, "user", "no such user 'nobody'", err,
	    sizeof(err));
	assert_string_equal(err, "t.ini:3: [global] user: no such user "
	    "'nobody'");
	config_global_error(cfg, "workers", "why", err, sizeof(err));
	assert_string_equal(err, "t.ini:2: [global] workers: why");
	config_unref(cfg);

	/* Names the password database may hold, even if useradd would not
	 * make them; a number is a name too (looked up as one). */
	cfg = load_ok(BASE_GLOBAL "user = Svc.Proxy_1$\n" BASE_LISTENER
	    BASE_BACKEND);
	assert_string_equal(cfg->user, "Svc.Proxy_1$");
	config_unref(cfg);
	cfg = load_ok(BASE_GLOBAL "user = 65534\n" BASE_LISTENER BASE_BACKEND);
	assert_string_equal(cfg->user, "65534");
	config_unref(cfg);

	EXPECT_ERR(BASE_GLOBAL "user =\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3: [global] user: empty value");
	EXPECT_ERR(BASE_GLOBAL "user = a b\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3: [global] user: 'a b' is not a user name");
	EXPECT_ERR(BASE_GLOBAL "user = a:b\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3:", "'a:b' is not a user name");
	EXPECT_ERR(BASE_GLOBAL "user = ../x\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3:", "not a user name");
	EXPECT_ERR(BASE_GLOBAL "user = -x\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3:", "'-x' is not a user name");
	EXPECT_ERR(BASE_GLOBAL "user = a\nuser = b\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:4: [global] user: set twice (first on "
	    "line 3)");
	EXPECT_ERR(BASE "[global]\nuser = x\n", "duplicate section");
	EXPECT_ERR(BASE "user = nobody\n", "t.ini:8: [backend app] user: "
	    "unknown key (it belongs in [global])");

	/* From the builder: no line. */
	cfg = config_new(NULL);
	assert_int_equal(config_set(cfg, "global", "user", "nobody", err,
	    sizeof(err)), 0);
	assert_string_equal(cfg->user, "nobody");
	assert_int_equal(config_set(cfg, "global", "user", "", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "[global] user: set twice (first)");
	config_global_error(cfg, "user", "no such user 'nobody'", err,
	    sizeof(err));
	assert_string_equal(err, "[global] user: no such user 'nobody'");
	config_unref(cfg);      /* frees user: LSan would tell otherwise */
}

/* workers = auto is one per online CPU. */
static void
test_workers(void **state)
{
	struct config *cfg = load_ok(BASE);
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	assert_int_equal(config_workers(cfg), 2);
	config_unref(cfg);
	cfg = load_ok(BASE_LISTENER BASE_BACKEND);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(config_workers(cfg), n > 0 ? (unsigned)n : 1);
	config_unref(cfg);
}

static void
test_sizes(void **state)
{
	size_t v;

	(void)state;
	assert_int_equal(config_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(config_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_parse_size("64k", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(config_parse_size("64K", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(config_parse_size("1m", &v), 0);
	assert_int_equal(v, 1 << 20);
	assert_int_equal(config_parse_size("1M", &v), 0);
	assert_int_equal(config_parse_size("1g", &v), 0);
	assert_int_equal(v, 1 << 30);
	assert_int_equal(config_parse_size("3G", &v), 0);
	assert_int_equal(v, 3ull << 30);
	assert_int_equal(config_parse_size("18446744073709551615", &v), 0);
	assert_int_equal(v, SIZE_MAX);

	errno = 0;
	assert_int_equal(config_parse_size("18446744073709551616", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(config_parse_size("17179869184g", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(config_parse_size("-1", &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(config_parse_size("", &v), -1);
	assert_int_equal(config_parse_size("k", &v), -1);
	assert_int_equal(config_parse_size("1kb", &v), -1);
	assert_int_equal(config_parse_size("1 k", &v), -1);
	assert_int_equal(config_parse_size(" 1k", &v), -1);
	assert_int_equal(config_parse_size("+1", &v), -1);
	assert_int_equal(config_parse_size("1.5m", &v), -1);
	assert_int_equal(config_parse_size("0x10", &v), -1);
	assert_int_equal(config_parse_size("1t", &v), -1);
	assert_int_equal(config_parse_size(NULL, &v), -1);
}

static void
test_durations(void **state)
{
	unsigned v;

	(void)state;
	assert_int_equal(config_parse_duration_ms("500ms", &v), 0);
	assert_int_equal(v, 500);
	assert_int_equal(config_parse_duration_ms("5s", &v), 0);
	assert_int_equal(v, 5000);
	assert_int_equal(config_parse_duration_ms("5m", &v), 0);
	assert_int_equal(v, 300000);
	assert_int_equal(config_parse_duration_ms("1h", &v), 0);
	assert_int_equal(v, 3600000);
	assert_int_equal(config_parse_duration_ms("2H", &v), 0);
	assert_int_equal(v, 7200000);
	assert_int_equal(config_parse_duration_ms("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_parse_duration_ms("0s", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_parse_duration_ms("4294967295ms", &v), 0);
	assert_int_equal(v, UINT_MAX);

	errno = 0;
	assert_int_equal(config_parse_duration_ms("4294967296ms", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(config_parse_duration_ms("1194h", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(config_parse_duration_ms("99999999999999999999s",
	    &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(config_parse_duration_ms("30", &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(config_parse_duration_ms("-1s", &v), -1);
	assert_int_equal(config_parse_duration_ms("", &v), -1);
	assert_int_equal(config_parse_duration_ms("s", &v), -1);
	assert_int_equal(config_parse_duration_ms("5x", &v), -1);
	assert_int_equal(config_parse_duration_ms("5 s", &v), -1);
	assert_int_equal(config_parse_duration_ms("1.5s", &v), -1);
	assert_int_equal(config_parse_duration_ms("1d", &v), -1);
	assert_int_equal(config_parse_duration_ms("5sec", &v), -1);
	assert_int_equal(config_parse_duration_ms(NULL, &v), -1);
}

/* access_log = on | off | PATH; log_format = text | json. */
static void
test_log_keys(void **state)
{
	static const struct {
		const char *value;
		enum config_access_log mode;
		const char *path;
	} cases[] = {
		{ "on", CONFIG_ACCESS_LOG_ON, NULL },
		{ "Yes", CONFIG_ACCESS_LOG_ON, NULL },
		{ "off", CONFIG_ACCESS_LOG_OFF, NULL },
		{ "0", CONFIG_ACCESS_LOG_OFF, NULL },
		{ "/var/log/spliced/access.log", CONFIG_ACCESS_LOG_FILE,
		  "/var/log/spliced/access.log" },
		{ "/on", CONFIG_ACCESS_LOG_FILE, "/on" },
	};
	char text[512];
	struct config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[global]\naccess_log = %s\n"
		    BASE_LISTENER BASE_BACKEND, cases[i].value);
		cfg = load_ok(text);
		assert_int_equal(cfg->access_log, cases[i].mode);
		if (cases[i].path == NULL)
			assert_null(cfg->access_log_path);
		else
			assert_string_equal(cfg->access_log_path, cases[i].path);
		config_unref(cfg);
	}
	cfg = load_ok("[global]\nlog_format = JSON\n" BASE_LISTENER BASE_BACKEND);
	assert_int_equal(cfg->log_format, CONFIG_LOG_FORMAT_JSON);
	config_unref(cfg);
	cfg = load_ok("[global]\nlog_format = text\n" BASE_LISTENER BASE_BACKEND);
	assert_int_equal(cfg->log_format, CONFIG_LOG_FORMAT_TEXT);
	config_unref(cfg);
}

static void
test_bools_and_modes(void **state)
{
	static const char *const yes[] = { "on", "yes", "true", "1", "ON", "True" };
	static const char *const no[] = { "off", "no", "false", "0", "OFF", "No" };
	static const char *const bad[] = { "", "2", "y", "n", "enable", " on" };
	enum config_splice s;
	bool b;

	(void)state;
	for (size_t i = 0; i < 6; i++) {
		b = false;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_true(b);
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_false(b);
		assert_int_equal(config_parse_bool(bad[i], &b), -1);
	}
	assert_int_equal(config_parse_splice("auto", &s), 0);
	assert_int_equal(s, CONFIG_SPLICE_AUTO);
	assert_int_equal(config_parse_splice("always", &s), 0);
	assert_int_equal(s, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(config_parse_splice("never", &s), 0);
	assert_int_equal(s, CONFIG_SPLICE_NEVER);
	assert_int_equal(config_parse_splice("sometimes", &s), -1);
	assert_string_equal(config_splice_name(CONFIG_SPLICE_AUTO), "auto");
	assert_string_equal(config_splice_name(CONFIG_SPLICE_ALWAYS), "always");
	assert_string_equal(config_splice_name(CONFIG_SPLICE_NEVER), "never");
	assert_string_equal(config_splice_name((enum config_splice)7), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_server_errors),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_workers),
		cmocka_unit_test(test_resolver_keys),
		cmocka_unit_test(test_tcp_keepalive),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_bools_and_modes),
		cmocka_unit_test(test_log_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
