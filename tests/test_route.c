/* tests/test_route.c: a listener's routes by TLS server name: the route
 * and sni_max_bytes keys (values, defaults, errors with file:line, the
 * optional default backend, the checks' header) and route_match()
 * (exact first, then the longest wildcard, case-insensitive). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "spliced/config.h"
#include "spliced/route.h"
#include "config_fixture.h"

/* A listener "tls" with no backend line; the lines given follow its bind
 * (the first is line 3), then backends app, a and b. */
#define TLS(lines) "[listener tls]\nbind = 127.0.0.1:8443\n" lines \
	"[backend app]\nserver = s 127.0.0.1:9001\n" \
	"[backend a]\nserver = s 127.0.0.1:9002\n" \
	"[backend b]\nserver = s 127.0.0.1:9003\n"

/* The backend name routes to under cfg's first listener, or NULL. */
static const char *
routed(const struct config *cfg, const char *name)
{
	const struct config_listener *l = &cfg->listeners[0];
	const struct config_route *r = route_match(l->routes, l->nroutes, name);

	return r != NULL ? r->backend->name : NULL;
}

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok(BASE);

	(void)state;
	assert_int_equal(cfg->listeners[0].nroutes, 0);
	assert_null(cfg->listeners[0].routes);
	assert_int_equal(cfg->listeners[0].sni_max_bytes, 16384);
	assert_non_null(cfg->listeners[0].backend);
	config_unref(cfg);
}

static void
test_values(void **state)
{
	struct config *cfg = load_ok(TLS("backend = app\n"
	    "route = API.Example.COM a\nroute = *.b.example b\n"
	    "route = b.example. a\nsni_max_bytes = 1m\n"));
	const struct config_listener *l = &cfg->listeners[0];

	(void)state;
	assert_int_equal(l->nroutes, 3);
	assert_string_equal(l->routes[0].name, "api.example.com");
	assert_false(l->routes[0].wildcard);
	assert_string_equal(l->routes[0].backend->name, "a");
	assert_int_equal(l->routes[0].line, 4);
	assert_string_equal(l->routes[1].name, ".b.example");
	assert_true(l->routes[1].wildcard);
	assert_string_equal(l->routes[1].backend->name, "b");
	assert_int_equal(l->routes[1].line, 5);
	/* The root's dot goes, as the ClientHello's name never has it. */
	assert_string_equal(l->routes[2].name, "b.example");
	assert_int_equal(l->sni_max_bytes, 1 << 20);
	assert_string_equal(l->backend->name, "app");
	config_unref(cfg);

	/* Routes alone: no default backend. */
	cfg = load_ok(TLS("route = a.example a\n"));
	assert_null(cfg->listeners[0].backend);
	assert_null(cfg->listeners[0].backend_name);
	config_unref(cfg);
}

static void
test_match(void **state)
{
	struct config *cfg = load_ok(TLS("backend = app\n"
	    "route = *.example app\nroute = a.example a\n"
	    "route = *.b.example b\nroute = *.x.b.example a\n"
	    "route = b.example app\n"));

	(void)state;
	/* Exact wins over a wildcard listed before it. */
	assert_string_equal(routed(cfg, "a.example"), "a");
	assert_string_equal(routed(cfg, "A.EXAMPLE"), "a");
	/* The longest suffix wins, whatever the order. */
	assert_string_equal(routed(cfg, "y.b.example"), "b");
	assert_string_equal(routed(cfg, "z.y.b.example"), "b");
	assert_string_equal(routed(cfg, "q.x.b.example"), "a");
	assert_string_equal(routed(cfg, "x.b.example"), "b");
	assert_string_equal(routed(cfg, "c.example"), "app");
	assert_string_equal(routed(cfg, "b.example"), "app");
	/* A wildcard needs a label before its suffix. */
	assert_null(routed(cfg, "example"));
	assert_null(routed(cfg, "xb.example.org"));
	assert_null(routed(cfg, "a.example.org"));
	assert_null(routed(cfg, "aexample"));
	assert_null(routed(cfg, ""));
	config_unref(cfg);

	cfg = load_ok(TLS("route = *.b.example b\n"));
	assert_null(routed(cfg, "b.example"));
	assert_null(routed(cfg, "xb.example"));
	assert_string_equal(routed(cfg, "x.B.Example"), "b");
	config_unref(cfg);
}

static void
test_errors(void **state)
{
	(void)state;
	EXPECT_ERR(TLS("route = a.example nosuch\n"), "t.ini:3:",
	    "[listener tls]", "route", "no [backend nosuch] section");
	EXPECT_ERR(TLS("route = a.example a\nroute = c.example nosuch\n"),
	    "t.ini:4:", "no [backend nosuch]");
	EXPECT_ERR(TLS("route = a.example\n"), "t.ini:3:", "route",
	    "not NAME BACKEND");
	EXPECT_ERR(TLS("route = a.example a b\n"), "t.ini:3:",
	    "not NAME BACKEND");
	EXPECT_ERR(TLS("route = a.example a\nroute = A.example. b\n"),
	    "t.ini:4:", "routed twice (first at line 3)");
	EXPECT_ERR(TLS("route = *.b.example a\nroute = *.B.example b\n"),
	    "t.ini:4:", "routed twice");
	EXPECT_ERR(TLS("route = * a\n"), "t.ini:3:", "not a server name");
	EXPECT_ERR(TLS("route = *. a\n"), "t.ini:3:", "not a server name");
	EXPECT_ERR(TLS("route = a.*.example a\n"), "t.ini:3:",
	    "not a server name");
	EXPECT_ERR(TLS("route = a..example a\n"), "t.ini:3:",
	    "not a server name");
	EXPECT_ERR(TLS("route = .example a\n"), "t.ini:3:",
	    "not a server name");
	EXPECT_ERR(TLS("route = a.exa/mple a\n"), "t.ini:3:",
	    "not a server name");
	EXPECT_ERR(TLS("route = a.example a/b\n"), "t.ini:3:",
	    "not a backend name");
	EXPECT_ERR(TLS("route = a.example a\nsni_max_bytes = 2k\n"),
	    "t.ini:4:", "sni_max_bytes", "4k..1m");
	EXPECT_ERR(TLS("route = a.example a\nsni_max_bytes = 2m\n"),
	    "t.ini:4:", "4k..1m");
	EXPECT_ERR(TLS("backend = app\nsni_max_bytes = 4k\n"), "t.ini:4:",
	    "sni_max_bytes", "needs route lines");
	EXPECT_ERR(TLS(""), "t.ini:1:", "[listener tls]", "backend",
	    "missing", "route");
	EXPECT_ERR(TLS("backend = nosuch\nroute = a.example a\n"), "t.ini:3:",
	    "backend", "no [backend nosuch]");
	/* In [global] or a backend it is not a key. */
	EXPECT_ERR("[global]\nroute = a.example a\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:2:", "unknown key");
}

/* 255 bytes is the longest a ClientHello's name may be; a config line
 * holds 199 (inih), so such a route comes from config_set(). */
static void
test_long_name(void **state)
{
	char name[300], err[CONFIG_ERR_MAX];
	struct config *cfg;

	(void)state;
	memset(name, 'a', sizeof(name));
	for (size_t i = 63; i < 255; i += 64)
		name[i] = '.';
	name[255] = '\0';
	assert_non_null(cfg = config_new(NULL));
	assert_int_equal(config_set(cfg, "backend a", "server", "s "
	    "127.0.0.1:9002", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener tls", "bind",
	    "127.0.0.1:8443", err, sizeof(err)), 0);
	strcat(name, " a");
	assert_int_equal(config_set(cfg, "listener tls", "route", name, err,
	    sizeof(err)), 0);
	name[255] = '\0';
	name[0] = 'b';
	strcat(name, "a a");        /* 256 bytes */
	assert_int_equal(config_set(cfg, "listener tls", "route", name, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "not a server name"));
	assert_int_equal(config_finish(cfg, err, sizeof(err)), 0);
	name[0] = 'a';
	name[255] = '\0';
	assert_string_equal(routed(cfg, name), "a");
	name[0] = 'b';
	assert_null(routed(cfg, name));
	config_unref(cfg);
}

/* The health checks of a routed backend send the header its listener
 * sends: its servers expect one. */
static void
test_check_header(void **state)
{
	struct config *cfg = load_ok(TLS("proxy_protocol = v1\n"
	    "route = a.example a\nbackend = app\n"));

	(void)state;
	assert_int_equal(cfg->backends[0].check_proxy, CONFIG_PROXY_V1);
	assert_int_equal(cfg->backends[1].check_proxy, CONFIG_PROXY_V1);
	assert_int_equal(cfg->backends[2].check_proxy, CONFIG_PROXY_OFF);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_name),
		cmocka_unit_test(test_check_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
