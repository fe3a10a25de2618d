/* tests/test_config.c: the config file, its units, its errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spliced/config.h"

/* A valid config the error tests add to. Its lines: 1 [global], 2 workers,
 * 3 [listener web], 4 bind, 5 backend, 6 [backend app], 7 server; a line
 * added after BASE is line 8, in [backend app]. */
#define BASE_GLOBAL "[global]\nworkers = 2\n"
#define BASE_LISTENER "[listener web]\nbind = 127.0.0.1:8080\nbackend = app\n"
#define BASE_BACKEND "[backend app]\nserver = a 127.0.0.1:9001\n"
#define BASE BASE_GLOBAL BASE_LISTENER BASE_BACKEND

static struct config *
load(const char *text, char *err)
{
	err[0] = '\0';
	return config_load_string(text, "t.ini", err, CONFIG_ERR_MAX);
}

static struct config *
load_ok(const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = load(text, err);

	if (cfg == NULL)
		fail_msg("expected a valid config, got: %s", err);
	return cfg;
}

/* The config is refused, and the message holds every piece given. */
static void
expect_err(const char *text, ...)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = load(text, err);
	const char *want;
	va_list ap;

	if (cfg != NULL) {
		config_unref(cfg);
		fail_msg("expected an error for:\n%s", text);
	}
	va_start(ap, text);
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (strstr(err, want) == NULL) {
			va_end(ap);
			fail_msg("error '%s' lacks '%s'", err, want);
		}
	}
	va_end(ap);
	if (strchr(err, '\n') != NULL)
		fail_msg("error is not one line: '%s'", err);
}

#define EXPECT_ERR(text, ...) expect_err(text, __VA_ARGS__, (const char *)NULL)

static unsigned
port_of(const struct addr *a)
{
	/* sin_port and sin6_port sit at the same offset */
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

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
	assert_true(cfg->access_log);
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

/* [global] last: the listeners still get its splice settings, unless they
 * have their own. */
static void
test_inheritance(void **state)
{
	struct config *cfg = load_ok(
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = app\n"
	    "[listener b]\nbind = 127.0.0.1:2\nbackend = app\n"
	    "splice = auto\nsplice_threshold = 1m\n"
	    "[listener c]\nbind = 127.0.0.1:3\nbackend = app\nsplice = always\n"
	    BASE_BACKEND
	    "[global]\nsplice = never\nsplice_threshold = 4k\n");

	(void)state;
	assert_int_equal(cfg->listeners[0].splice, CONFIG_SPLICE_NEVER);
	assert_int_equal(cfg->listeners[0].splice_threshold, 4096);
	assert_int_equal(cfg->listeners[1].splice, CONFIG_SPLICE_AUTO);
	assert_int_equal(cfg->listeners[1].splice_threshold, 1 << 20);
	assert_int_equal(cfg->listeners[2].splice, CONFIG_SPLICE_ALWAYS);
	assert_int_equal(cfg->listeners[2].splice_threshold, 4096);
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
	EXPECT_ERR("[global]\naccess_log = maybe\n", "t.ini:2:",
	    "access_log: 'maybe' is not a boolean");
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

static void
test_later_keys(void **state)
{
	static const char *const later[][2] = {
		{ "global", "admin = 127.0.0.1:9090" },
		{ "listener", "proxy_protocol = v2" },
		{ "listener", "accept_proxy = on" },
	};
	char text[1024], at[16], what[64];

	(void)state;
	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		const char *s = later[i][0];
		const char *line = later[i][1];


		snprintf(text, sizeof(text), "%s%s%s%s%s%s%s",
		    BASE_GLOBAL, s[0] == 'g' ? line : "", s[0] == 'g' ? "\n" : "",
		    BASE_LISTENER, s[0] == 'l' ? line : "",
		    s[0] == 'l' ? "\n" : "", BASE_BACKEND);
		if (s[0] == 'b')
			snprintf(text + strlen(text), sizeof(text) - strlen(text),
			    "%s\n", line);
		snprintf(at, sizeof(at), "t.ini:%d:",
		    s[0] == 'g' ? 3 : s[0] == 'l' ? 6 : 8);
		snprintf(what, sizeof(what), "[%s%s] %.*s: not supported yet",
		    s, s[0] == 'g' ? "" : s[0] == 'l' ? " web" : " app",
		    (int)strcspn(line, " "), line);
		EXPECT_ERR(text, at, what);
	}
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
test_validation_errors(void **state)
{
	(void)state;
	/* No line holds the problem: the last one is named, where a
	 * listener would go. */
#define NO_LISTENER(n) "t.ini:" #n ": end of the file, and no [listener " \
	"NAME] section: nothing to relay"
	EXPECT_ERR(BASE_GLOBAL BASE_BACKEND, NO_LISTENER(4));
	EXPECT_ERR(BASE_GLOBAL BASE_BACKEND "\n; later\n", NO_LISTENER(6));
	EXPECT_ERR("[global]\r\nworkers = 2\r\n", NO_LISTENER(2));
	EXPECT_ERR("[global]\nworkers = 2", NO_LISTENER(2));
	EXPECT_ERR("\n\n\n", NO_LISTENER(3));
	EXPECT_ERR("", NO_LISTENER(1));         /* no line at all: the first */
#undef NO_LISTENER
	EXPECT_ERR(BASE_GLOBAL "[listener web]\nbind = *:80\nbackend = nope\n"
	    BASE_BACKEND, "t.ini:5: [listener web] backend: "
	    "no [backend nope] section");
	EXPECT_ERR(BASE_GLOBAL "[listener web]\nbackend = app\n" BASE_BACKEND,
	    "t.ini:3: [listener web] bind: missing");
	EXPECT_ERR(BASE_GLOBAL "[listener web]\nbind = *:80\n" BASE_BACKEND,
	    "t.ini:3: [listener web] backend: missing");
	EXPECT_ERR(BASE "[backend empty]\nretries = 1\n",
	    "t.ini:8: [backend empty] server: missing");
	EXPECT_ERR(BASE "[backend empty]\n", "t.ini:8: [backend empty] server: "
	    "missing");
	EXPECT_ERR(BASE "[listener empty]\n", "t.ini:8: [listener empty] bind: "
	    "missing");
	/* the same address twice, in one listener and across two */
	EXPECT_ERR(BASE_GLOBAL BASE_LISTENER "bind = 127.0.0.1:8080\n"
	    BASE_BACKEND, "t.ini:6: [listener web] bind: 127.0.0.1:8080 is "
	    "already bound by [listener web] on line 4");
	EXPECT_ERR(BASE "[listener two]\nbind = 127.0.0.1:9\n"
	    "bind = 127.0.0.1:8080\nbackend = app\n",
	    "t.ini:10: [listener two] bind: 127.0.0.1:8080 is already bound "
	    "by [listener web] on line 4");
	EXPECT_ERR(BASE "[listener two]\nbind = 0.0.0.0:8080\nbackend = app\n"
	    "[listener three]\nbind = *:8080\nbackend = app\n",
	    "t.ini:12: [listener three] bind: *:8080 is already bound by "
	    "[listener two] on line 9");
	EXPECT_ERR(BASE "[listener two]\nbind = *:8080\nbackend = app\n"
	    "[listener three]\nbind = 0.0.0.0:8080\nbackend = app\n",
	    "t.ini:12: [listener three] bind: 0.0.0.0:8080 is already bound "
	    "by [listener two] on line 9");
	EXPECT_ERR(BASE "[listener two]\nbind = *:8080\nbackend = app\n"
	    "[listener three]\nbind = *:8080\nbackend = app\n",
	    "t.ini:12: [listener three] bind: *:8080 is already bound by "
	    "[listener two] on line 9");
}

static void
test_binds_that_differ(void **state)
{
	/* A wildcard and a specific address on one port; one address on two
	 * ports; a listener and a backend of the same name. */
	struct config *cfg = load_ok("[listener app]\nbind = *:8080\n"
	    "bind = 127.0.0.1:8080\nbind = 127.0.0.1:8081\nbackend = app\n"
	    "bind = *:8081\nbind = 0.0.0.0:8082\nbind = [::1]:8080\n"
	    BASE_BACKEND);

	(void)state;
	assert_int_equal(cfg->listeners[0].nbinds, 6);
	assert_true(cfg->listeners[0].binds[0].wildcard);
	assert_ptr_equal(cfg->listeners[0].backend, &cfg->backends[0]);
	config_unref(cfg);
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
	assert_int_equal(config_set(cfg, "global", "admin", "127.0.0.1:1",
	    err, sizeof(err)), -1);
	assert_string_equal(err, "[global] admin: not supported yet");

	assert_int_equal(config_finish(cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->nlisteners, 1);
	assert_int_equal(cfg->listeners[0].line, 0);
	assert_int_equal(cfg->listeners[0].splice, CONFIG_SPLICE_NEVER);
	assert_ptr_equal(cfg->listeners[0].backend, &cfg->backends[0]);
	assert_int_equal(cfg->backends[0].nservers, 2);
	config_unref(cfg);
}

static void
test_builder_errors(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_new(NULL);

	(void)state;
	assert_string_equal(cfg->path, "command line");
	assert_int_equal(config_finish(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "command line: no [listener NAME] section: "
	    "nothing to relay");
	assert_int_equal(config_set(cfg, "listener cli", "bind", "*:7000",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "backend", "cli",
	    err, sizeof(err)), 0);
	assert_int_equal(config_finish(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] backend: no [backend cli] "
	    "section");
	assert_int_equal(config_set(cfg, "listener cli", "bind", "*:7000",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "backend cli", "retries", "1",
	    err, sizeof(err)), 0);
	assert_int_equal(config_finish(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "[backend cli] server: missing (a backend "
	    "needs at least one 'server = NAME ADDRESS:PORT')");
	assert_int_equal(config_set(cfg, "backend cli", "server",
	    "s1 127.0.0.1:7001", err, sizeof(err)), 0);
	assert_int_equal(config_finish(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] bind: *:7000 is already "
	    "bound by [listener cli]");
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
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_inheritance),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_server_errors),
		cmocka_unit_test(test_later_keys),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_workers),
		cmocka_unit_test(test_resolver_keys),
		cmocka_unit_test(test_tcp_keepalive),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_validation_errors),
		cmocka_unit_test(test_binds_that_differ),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_case),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_bools_and_modes),
		cmocka_unit_test(test_builder),
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_nul_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
