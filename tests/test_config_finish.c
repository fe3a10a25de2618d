/* tests/test_config_finish.c: the checks across keys once all are set
 * (config_finish): a listener, its binds and its backend, a backend's
 * servers, no address bound twice, and what listeners inherit from
 * [global]. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>


#include "spliced/config.h"
#include "config_fixture.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inheritance),
		cmocka_unit_test(test_validation_errors),
		cmocka_unit_test(test_binds_that_differ),
		cmocka_unit_test(test_builder_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
