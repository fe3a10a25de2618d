/* tests/test_metrics.c: the text of the `totals:` lines, exactly.
 *
 * People and scripts parse these lines (the README shows them), so
 * their text is pinned here: the process's line from a struct
 * worker_totals filled by hand (every counter a different number, so a
 * counter printed in another's place shows), and a server's line from a
 * struct backend_shared built by hand: a server given by address, and an
 * address of a host-name server, which names it. Summing over running
 * workers is worker.c's (worker_totals_add), tested with the daemon. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/relay.h"
#include "spliced/worker.h"

static void
test_totals_line(void **state)
{
	struct worker_totals t = { 0 };
	char line[LOG_LINE_MAX];

	(void)state;
	t.conn.connections = 1;
	t.conn.connect_failures = 2;
	t.conn.reasons[CONN_CLIENT_EOF] = 99;   /* not on the line */
	t.relay.bytes[RELAY_MODE_SPLICE] = 3;
	t.relay.bytes[RELAY_MODE_COPY] = 4;
	t.relay.fallbacks[RELAY_FALLBACK_POOL_FULL] = 5;
	t.relay.fallbacks[RELAY_FALLBACK_PIPE_BUDGET] = 6;
	t.relay.fallbacks[RELAY_FALLBACK_PIPE_ERROR] = 7;
	t.relay.fallbacks[RELAY_FALLBACK_UNSUPPORTED] = 18446744073709551615u;
	assert_string_equal(metrics_totals_text(&t, line, sizeof(line)),
	    "totals: connections=1 connect_failures=2 bytes_splice=3 "
	    "bytes_copy=4 splice_fallbacks pool_full=5 pipe_budget=6 "
	    "pipe_error=7 unsupported=18446744073709551615");
}

/* A buffer too small cuts the line; it never overruns. */
static void
test_totals_line_cut(void **state)
{
	struct worker_totals t = { 0 };
	char line[32 + 1];

	(void)state;
	memset(line, 'x', sizeof(line));
	metrics_totals_text(&t, line, sizeof(line) - 1);
	assert_string_equal(line, "totals: connections=0 connect_f");
	assert_int_equal(line[sizeof(line) - 1], 'x');
}

static void
test_server_lines(void **state)
{
	struct config_backend cb = { .name = "app" };
	struct config_server a = { .name = "a", .host = "127.0.0.1:9001" };
	struct config_server b = { .name = "b", .host = "b.example:9001",
	    .dnsname = "b.example" };
	struct server_state sa = { 0 }, sb = { 0 };
	struct server_state *servers[] = { &sa, &sb };
	const struct config_server *entry[] = { &a, &b };
	struct backend_shared sh = { .cfg = &cb, .servers = servers,
	    .entry = entry, .n = 2 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&sb.addr.ss;
	struct server_stats st = { .connections = 12, .connect_failures = 3,
	    .active = 1 };
	char line[LOG_LINE_MAX];

	(void)state;
	atomic_store(&sa.up, true);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(9001);
	assert_int_equal(inet_pton(AF_INET, "10.0.0.7", &sin->sin_addr), 1);
	sb.addr.len = sizeof(*sin);
	assert_string_equal(metrics_server_text(&sh, 0, &st, line, sizeof(line)),
	    "totals: server app/a connections=12 connect_failures=3 up=1");
	assert_string_equal(metrics_server_text(&sh, 1, &st, line, sizeof(line)),
	    "totals: server app/b 10.0.0.7:9001 connections=12 "
	    "connect_failures=3 up=0");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_totals_line),
		cmocka_unit_test(test_totals_line_cut),
		cmocka_unit_test(test_server_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
