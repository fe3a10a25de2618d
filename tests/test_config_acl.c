/* tests/test_config_acl.c: a listener's keys of client identity and
 * admission (proxy_protocol, accept_proxy, accept_proxy_from,
 * timeout_handshake, allow / deny, the per-source limits,
 * source_prefix_v6) and [global] source_table_size: defaults, values,
 * the lists in file order with their lines, errors with file:line, and
 * the checks across keys. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "spliced/cidr.h"
#include "spliced/config.h"
#include "config_fixture.h"

/* BASE with lines added to [listener web], after its backend line: the
 * first added line is line 6. */
#define WEB(lines) BASE_GLOBAL BASE_LISTENER lines BASE_BACKEND

static const char *
net_text(const struct cidr *c)
{
	static char buf[CIDR_TEXT_MAX];

	return cidr_format(c, buf, sizeof(buf));
}

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok(BASE);
	const struct config_listener *l = &cfg->listeners[0];

	(void)state;
	assert_int_equal(l->proxy_protocol, CONFIG_PROXY_OFF);
	assert_false(l->accept_proxy);
	assert_null(l->accept_proxy_from);
	assert_int_equal(l->naccept_proxy_from, 0);
	assert_int_equal(l->timeout_handshake_ms, 5000);
	assert_null(l->rules);
	assert_int_equal(l->nrules, 0);
	assert_int_equal(l->max_connections_per_source, 0);
	assert_int_equal(l->connection_rate_per_source, 0);
	assert_int_equal(l->source_prefix_v6, 64);
	assert_int_equal(cfg->source_table_size, 100000);
	assert_int_equal(cfg->backends[0].check_proxy, CONFIG_PROXY_OFF);
	config_unref(cfg);

	/* The builder's listeners start from the same defaults. */
	assert_non_null(cfg = config_new(NULL));
	assert_int_equal(cfg->source_table_size, 100000);
	assert_int_equal(config_set(cfg, "listener cli", "bind", "127.0.0.1:1",
	    NULL, 0), 0);
	assert_int_equal(cfg->listeners[0].timeout_handshake_ms, 5000);
	assert_int_equal(cfg->listeners[0].source_prefix_v6, 64);
	config_unref(cfg);
}

static void
test_values(void **state)
{
	struct config *cfg = load_ok("[global]\nsource_table_size = 10000000\n"
	    BASE_LISTENER "proxy_protocol = V2\naccept_proxy = yes\n"
	    "accept_proxy_from = 10.0.0.0/8\ntimeout_handshake = 250ms\n"
	    "max_connections_per_source = 10000000\n"
	    "connection_rate_per_source = 1000000\nsource_prefix_v6 = 128\n"
	    BASE_BACKEND);
	const struct config_listener *l = &cfg->listeners[0];

	(void)state;
	assert_int_equal(cfg->source_table_size, 10000000);
	assert_int_equal(l->proxy_protocol, CONFIG_PROXY_V2);
	assert_true(l->accept_proxy);
	assert_int_equal(l->naccept_proxy_from, 1);
	assert_string_equal(net_text(&l->accept_proxy_from[0]), "10.0.0.0/8");
	assert_int_equal(l->timeout_handshake_ms, 250);
	assert_int_equal(l->max_connections_per_source, 10000000);
	assert_int_equal(l->connection_rate_per_source, 1000000);
	assert_int_equal(l->source_prefix_v6, 128);
	config_unref(cfg);

	/* The low ends, and v1. */
	cfg = load_ok("[global]\nsource_table_size = 1\n" BASE_LISTENER
	    "proxy_protocol = v1\naccept_proxy = off\ntimeout_handshake = 1ms\n"
	    "max_connections_per_source = 0\nconnection_rate_per_source = 0\n"
	    "source_prefix_v6 = 1\n" BASE_BACKEND);
	l = &cfg->listeners[0];
	assert_int_equal(cfg->source_table_size, 1);
	assert_int_equal(l->proxy_protocol, CONFIG_PROXY_V1);
	assert_false(l->accept_proxy);
	assert_int_equal(l->timeout_handshake_ms, 1);
	assert_int_equal(l->source_prefix_v6, 1);
	config_unref(cfg);

	cfg = load_ok(WEB("proxy_protocol = off\ntimeout_handshake = 24h\n"));
	assert_int_equal(cfg->listeners[0].proxy_protocol, CONFIG_PROXY_OFF);
	assert_int_equal(cfg->listeners[0].timeout_handshake_ms,
	    24u * 3600 * 1000);
	config_unref(cfg);

	assert_string_equal(config_proxy_protocol_name(CONFIG_PROXY_OFF), "off");
	assert_string_equal(config_proxy_protocol_name(CONFIG_PROXY_V1), "v1");
	assert_string_equal(config_proxy_protocol_name(CONFIG_PROXY_V2), "v2");
	assert_string_equal(config_proxy_protocol_name(
	    (enum config_proxy_protocol)3), "?");
}

/* allow and deny make one list in file order, each rule with its line;
 * accept_proxy_from repeats too. Other keys come between them. */
static void
test_lists(void **state)
{
	struct config *cfg = load_ok(WEB(
	    "deny = 192.0.2.7\n"                        /* 6 */
	    "allow = 192.0.2.0/24\n"                    /* 7 */
	    "accept_proxy = on\n"                       /* 8 */
	    "accept_proxy_from = 10.0.0.0/8\n"          /* 9 */
	    "  allow = 2001:db8::/32\n"                 /* 10 */
	    "accept_proxy_from = ::1\n"                 /* 11 */
	    "; a comment\n"                             /* 12 */
	    "deny = ALL\n"                              /* 13 */
	    "allow = 198.51.100.0/24 ; never reached\n" /* 14 */
	    "accept_proxy_from = 127.0.0.0/8\n"));      /* 15 */
	const struct config_listener *l = &cfg->listeners[0];
	static const struct { bool allow; const char *net; int line; } want[] = {
		{ false, "192.0.2.7/32", 6 },
		{ true, "192.0.2.0/24", 7 },
		{ true, "2001:db8::/32", 10 },
		{ false, "all", 13 },
		{ true, "198.51.100.0/24", 14 },
	};

	(void)state;
	assert_int_equal(l->nrules, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(l->rules[i].allow, want[i].allow);
		assert_string_equal(net_text(&l->rules[i].net), want[i].net);
		assert_int_equal(l->rules[i].line, want[i].line);
	}
	assert_int_equal(l->naccept_proxy_from, 3);
	assert_string_equal(net_text(&l->accept_proxy_from[0]), "10.0.0.0/8");
	assert_string_equal(net_text(&l->accept_proxy_from[1]), "::1/128");
	assert_string_equal(net_text(&l->accept_proxy_from[2]), "127.0.0.0/8");
	config_unref(cfg);

	/* Two listeners keep their own lists. */
	cfg = load_ok(WEB("allow = 192.0.2.0/24\n")
	    "[listener two]\nbind = 127.0.0.1:8081\nbackend = app\n"
	    "deny = 192.0.2.0/24\ndeny = 198.51.100.0/24\n");
	assert_int_equal(cfg->listeners[0].nrules, 1);
	assert_true(cfg->listeners[0].rules[0].allow);
	assert_int_equal(cfg->listeners[1].nrules, 2);
	assert_false(cfg->listeners[1].rules[0].allow);
	assert_int_equal(cfg->listeners[1].rules[0].line, 12);
	assert_int_equal(cfg->listeners[1].rules[1].line, 13);
	config_unref(cfg);
}

static void
test_errors(void **state)
{
	(void)state;
	EXPECT_ERR(WEB("proxy_protocol = v3\n"), "t.ini:6: [listener web] "
	    "proxy_protocol: 'v3' is not a PROXY protocol version (off, v1 "
	    "or v2)");
	EXPECT_ERR(WEB("proxy_protocol = on\n"), "t.ini:6: [listener web] "
	    "proxy_protocol: 'on' is not a PROXY protocol version");
	EXPECT_ERR(WEB("proxy_protocol = v2\nproxy_protocol = v1\n"),
	    "t.ini:7: [listener web] proxy_protocol: set twice (first on "
	    "line 6)");
	EXPECT_ERR(WEB("accept_proxy = maybe\n"), "t.ini:6: [listener web] "
	    "accept_proxy: 'maybe' is not a boolean (on/off, yes/no, "
	    "true/false, 1/0)");
	EXPECT_ERR(WEB("accept_proxy = on\naccept_proxy = on\n"), "t.ini:7: "
	    "[listener web] accept_proxy: set twice (first on line 6)");
	EXPECT_ERR(WEB("accept_proxy = on\naccept_proxy_from = 10.1.2.3/8\n"),
	    "t.ini:7: [listener web] accept_proxy_from: '10.1.2.3/8': host "
	    "bits set (the block is 10.0.0.0/8)");
	EXPECT_ERR(WEB("accept_proxy_from =\n"), "t.ini:6: [listener web] "
	    "accept_proxy_from: empty value");
	EXPECT_ERR(WEB("allow = 10.0.0.0/8\nallow = 10.0.0.0/33\n"), "t.ini:7: "
	    "[listener web] allow: '10.0.0.0/33': prefix length out of range "
	    "(0..32)");
	EXPECT_ERR(WEB("deny = ::/129\n"), "t.ini:6: [listener web] deny: "
	    "'::/129': prefix length out of range (0..128)");
	EXPECT_ERR(WEB("deny = localhost\n"), "t.ini:6: [listener web] deny: "
	    "'localhost': not an IP address (names are not resolved)");
	EXPECT_ERR(WEB("allow = 10.0.0.0/8 192.0.2.0/24\n"), "t.ini:6: "
	    "[listener web] allow: '10.0.0.0/8 192.0.2.0/24': one address "
	    "block per line, without spaces");
	EXPECT_ERR(WEB("allow = 10.0.0.0/08\n"), "t.ini:6: [listener web] "
	    "allow: '10.0.0.0/08': prefix length with a leading zero");
	EXPECT_ERR(WEB("allow =\n"), "t.ini:6: [listener web] allow: empty "
	    "value");
	EXPECT_ERR(WEB("timeout_handshake = 0\n"), "t.ini:6: [listener web] "
	    "timeout_handshake: '0' is out of range (1ms..24h)");
	EXPECT_ERR(WEB("timeout_handshake = 25h\n"), "t.ini:6: [listener web] "
	    "timeout_handshake: '25h' is out of range (1ms..24h)");
	EXPECT_ERR(WEB("timeout_handshake = 5\n"), "t.ini:6: [listener web] "
	    "timeout_handshake: '5' needs a unit (ms, s, m or h)");
	EXPECT_ERR(WEB("max_connections_per_source = 10000001\n"), "t.ini:6: "
	    "[listener web] max_connections_per_source: '10000001' is out of "
	    "range (0..10000000)");
	EXPECT_ERR(WEB("max_connections_per_source = ten\n"), "t.ini:6: "
	    "[listener web] max_connections_per_source: 'ten' is not a number");
	EXPECT_ERR(WEB("connection_rate_per_source = 1000001\n"), "t.ini:6: "
	    "[listener web] connection_rate_per_source: '1000001' is out of "
	    "range (0..1000000)");
	EXPECT_ERR(WEB("connection_rate_per_source = -1\n"), "t.ini:6: "
	    "[listener web] connection_rate_per_source: '-1' is not a number");
	EXPECT_ERR(WEB("connection_rate_per_source = 5/s\n"), "t.ini:6: "
	    "[listener web] connection_rate_per_source: '5/s' is not a number");
	EXPECT_ERR(WEB("source_prefix_v6 = 0\n"), "t.ini:6: [listener web] "
	    "source_prefix_v6: '0' is out of range (1..128)");
	EXPECT_ERR(WEB("source_prefix_v6 = 129\n"), "t.ini:6: [listener web] "
	    "source_prefix_v6: '129' is out of range (1..128)");
	EXPECT_ERR(WEB("source_prefix_v6 = 64\nsource_prefix_v6 = 56\n"),
	    "t.ini:7: [listener web] source_prefix_v6: set twice (first on "
	    "line 6)");
	EXPECT_ERR("[global]\nsource_table_size = 0\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:2: [global] source_table_size: '0' is out of "
	    "range (1..10000000)");
	EXPECT_ERR("[global]\nsource_table_size = 10000001\n", "t.ini:2: "
	    "[global] source_table_size: '10000001' is out of range "
	    "(1..10000000)");
	EXPECT_ERR("[global]\nsource_table_size = 100k\n", "t.ini:2: "
	    "[global] source_table_size: '100k' is not a number");
	/* In the wrong section: where it belongs. */
	EXPECT_ERR(BASE "allow = all\n", "t.ini:8: [backend app] allow: "
	    "unknown key (it belongs in [listener NAME])");
	EXPECT_ERR(BASE "proxy_protocol = v2\n", "t.ini:8: [backend app] "
	    "proxy_protocol: unknown key (it belongs in [listener NAME])");
	EXPECT_ERR(WEB("source_table_size = 10\n"), "t.ini:6: [listener web] "
	    "source_table_size: unknown key (it belongs in [global])");
	EXPECT_ERR("[global]\nsource_prefix_v6 = 48\n", "t.ini:2: [global] "
	    "source_prefix_v6: unknown key (it belongs in [listener NAME])");
}

/* accept_proxy_from names the peers that may send a header: without
 * accept_proxy = on nothing would check it. The line named is the first
 * accept_proxy_from; where accept_proxy comes in the section does not
 * matter. */
static void
test_accept_proxy_from_needs_accept_proxy(void **state)
{
	struct config *cfg;

	(void)state;
	EXPECT_ERR(WEB("allow = all\naccept_proxy_from = 10.0.0.0/8\n"
	    "accept_proxy_from = ::1\n"), "t.ini:7: [listener web] "
	    "accept_proxy_from: needs accept_proxy = on (it names the peers "
	    "that may send a PROXY header)");
	EXPECT_ERR(WEB("accept_proxy = off\naccept_proxy_from = ::1\n"),
	    "t.ini:7: [listener web] accept_proxy_from: needs accept_proxy = on");
	/* Only the listener without it is named. */
	EXPECT_ERR(WEB("accept_proxy = on\naccept_proxy_from = ::1\n")
	    "[listener two]\nbind = 127.0.0.1:8081\nbackend = app\n"
	    "accept_proxy_from = 10.0.0.0/8\n", "t.ini:13: [listener two] "
	    "accept_proxy_from: needs accept_proxy = on");
	cfg = load_ok(WEB("accept_proxy_from = ::1\naccept_proxy = true\n"));
	assert_true(cfg->listeners[0].accept_proxy);
	assert_int_equal(cfg->listeners[0].naccept_proxy_from, 1);
	config_unref(cfg);
	/* accept_proxy alone: any peer may send one. */
	cfg = load_ok(WEB("accept_proxy = on\n"));
	assert_int_equal(cfg->listeners[0].naccept_proxy_from, 0);
	config_unref(cfg);
}

/* A backend's health checks send the header of the first listener in
 * file order that uses it and sends one. */
static void
test_check_proxy(void **state)
{
	struct config *cfg = load_ok(
	    "[listener a]\nbind = 127.0.0.1:1\nbackend = app\n"
	    "[listener b]\nbind = 127.0.0.1:2\nbackend = app\n"
	    "proxy_protocol = v2\n"
	    "[listener c]\nbind = 127.0.0.1:3\nbackend = app\n"
	    "proxy_protocol = v1\n"
	    "[listener d]\nbind = 127.0.0.1:4\nbackend = one\n"
	    "proxy_protocol = v1\n"
	    "[listener e]\nbind = 127.0.0.1:5\nbackend = one\n"
	    "proxy_protocol = v2\n"
	    "[listener f]\nbind = 127.0.0.1:6\nbackend = plain\n"
	    "proxy_protocol = off\n"
	    BASE_BACKEND
	    "[backend one]\nserver = a 127.0.0.1:9002\n"
	    "[backend plain]\nserver = a 127.0.0.1:9003\n"
	    "[backend unused]\nserver = a 127.0.0.1:9004\n");

	(void)state;
	assert_string_equal(cfg->backends[0].name, "app");
	assert_int_equal(cfg->backends[0].check_proxy, CONFIG_PROXY_V2);
	assert_int_equal(cfg->backends[1].check_proxy, CONFIG_PROXY_V1);
	assert_int_equal(cfg->backends[2].check_proxy, CONFIG_PROXY_OFF);
	assert_int_equal(cfg->backends[3].check_proxy, CONFIG_PROXY_OFF);
	config_unref(cfg);
}

/* config_set(): the lists repeat there too, their rules without a line,
 * and the cross-key error names the section and key without one. */
static void
test_builder(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_new(NULL);

	(void)state;
	assert_int_equal(config_set(cfg, "listener cli", "bind", "127.0.0.1:7000",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "backend", "cli",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "backend cli", "server",
	    "s1 127.0.0.1:7001", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "allow",
	    "127.0.0.0/8", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "deny", "all",
	    err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "allow", "::3/127",
	    err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] allow: '::3/127': host bits "
	    "set (the block is ::2/127)");
	assert_int_equal(config_set(cfg, "listener cli", "proxy_protocol",
	    "v2", err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "listener cli", "proxy_protocol",
	    "v1", err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] proxy_protocol: set twice "
	    "(first)");
	assert_int_equal(config_set(cfg, "listener cli", "accept_proxy_from",
	    "10.0.0.0/8", err, sizeof(err)), 0);
	assert_int_equal(config_finish(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "[listener cli] accept_proxy_from: needs "
	    "accept_proxy = on (it names the peers that may send a PROXY "
	    "header)");
	assert_int_equal(config_set(cfg, "listener cli", "accept_proxy", "on",
	    err, sizeof(err)), 0);
	assert_int_equal(config_finish(cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->listeners[0].nrules, 2);
	assert_int_equal(cfg->listeners[0].rules[0].line, 0);
	assert_true(cfg->listeners[0].rules[0].allow);
	assert_false(cfg->listeners[0].rules[1].allow);
	assert_int_equal(cfg->backends[0].check_proxy, CONFIG_PROXY_V2);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_accept_proxy_from_needs_accept_proxy),
		cmocka_unit_test(test_check_proxy),
		cmocka_unit_test(test_builder),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
