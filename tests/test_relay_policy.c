/* tests/test_relay_policy.c: the auto policy's decisions, without sockets.
 *
 * relay_policy() decides from the counters; struct relay_policy_state and
 * its functions keep them, as relay.c calls them: a read, a wait for `in`,
 * a burst that could not have a pipe. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "spliced/relay_policy.h"

#define T (64 * 1024u)                  /* the default splice_threshold */

static void
test_policy(void **state)
{
	static const enum config_splice all[] = { CONFIG_SPLICE_AUTO,
	    CONFIG_SPLICE_ALWAYS, CONFIG_SPLICE_NEVER };
	const size_t t = T;
	const unsigned s = RELAY_STREAMER_READS;

	(void)state;
	assert_int_equal(relay_policy(CONFIG_SPLICE_NEVER, t, 0, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_NEVER, t, 10 * t, 10 * s, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_ALWAYS, t, 0, 0, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_ALWAYS, t, 10 * t, 10 * s, true), RELAY_MODE_SPLICE);
	/* Without a pipe to try, every policy copies. */
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(relay_policy(all[i], t, 0, 0, false), RELAY_MODE_COPY);
		assert_int_equal(relay_policy(all[i], t, 10 * t, 10 * s, false), RELAY_MODE_COPY);
	}
	/* auto: by the bytes of the burst ... */
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t - 1, 0, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t, 0, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t + 1, 0, true), RELAY_MODE_SPLICE);
	/* ... or by consecutive full reads. */
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s - 1, true), RELAY_MODE_COPY);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, 0, s + 1, true), RELAY_MODE_SPLICE);
	assert_int_equal(relay_policy(CONFIG_SPLICE_AUTO, t, t - 1, s - 1, true), RELAY_MODE_COPY);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy),
	};

	return cmocka_run_group_tests_name("test_relay_policy", tests, NULL, NULL);
}
