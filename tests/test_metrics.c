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
#include <event2/buffer.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/relay.h"
#include "spliced/stats.h"
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

/* The Prometheus text of a config with one listener and a backend of two
 * servers, from a sample filled by hand: every family of DESIGN.md
 * section 6 once, series for a listener with no connection yet, one-hot
 * states, counts in their places, cumulative buckets. */
static void
test_prometheus(void **state)
{
	static const char *const families[] = {
		"spliced_build_info", "spliced_connections_total",
		"spliced_connections_active", "spliced_connections_closed_total",
		"spliced_bytes_total", "spliced_denied_connections_total",
		"spliced_handshake_total", "spliced_server_state",
		"spliced_server_weight", "spliced_server_connections_active",
		"spliced_server_connections_total",
		"spliced_server_connect_failures_total",
		"spliced_server_check_failures_total",
		"spliced_connect_duration_seconds",
		"spliced_connection_duration_seconds",
		"spliced_splice_fallbacks_total", "spliced_pipes_in_use",
		"spliced_pipes_pooled", "spliced_pipe_bytes_held",
		"spliced_log_lines_dropped_total", "process_open_fds",
		"process_max_fds", "process_resident_memory_bytes",
		"process_cpu_seconds_total", "process_start_time_seconds",
	};
	char err[CONFIG_ERR_MAX], *text;
	struct config *cfg = config_load_string("[listener web]\n"
	    "bind = 127.0.0.1:1\nbackend = app\n[listener idle]\n"
	    "bind = 127.0.0.1:2\nbackend = app\n[backend app]\n"
	    "server = a 127.0.0.1:3 weight=2\nserver = b 127.0.0.1:4\n",
	    "test.ini", err, sizeof(err));
	struct backend_set *bs;
	struct stats_worker *w = stats_worker_new();
	struct stats_listener *l;
	struct stats_sample sm;
	struct metrics_process mp;
	struct evbuffer *out = evbuffer_new();
	uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_] = { { 0 } };

	(void)state;
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_non_null(bs = backend_set_new(cfg, NULL));
	assert_non_null(w);
	assert_non_null(out);
	atomic_store(&bs->b[0].servers[1]->up, false);
	atomic_store(&bs->b[0].lines[1]->check_failures, 4);
	assert_non_null(l = stats_worker_listener(w, "web"));
	l->connections = 3;
	l->active = 2;
	bytes[STATS_UP][RELAY_MODE_SPLICE] = 1000;
	bytes[STATS_DOWN][RELAY_MODE_COPY] = 7;
	stats_conn_closed(l, CONN_CLIENT_EOF, bytes, 20000);   /* 20 ms */
	stats_worker_server(w, "app", "a")->connections = 5;
	stats_worker_server(w, "app", "b")->connect_failures = 6;
	stats_hist_add(&stats_worker_backend(w, "app")->connect,
	    stats_connect_le, 700);                 /* 0.7 ms */
	assert_int_equal(stats_sample_init(&sm, 0), 0);
	assert_int_equal(stats_sample_add_worker(&sm, w), 0);
	mp = (struct metrics_process){ .cfg = cfg, .bs = bs, .start_time = 1.5 };
	assert_int_equal(metrics_prometheus(out, &sm, &mp), 0);
	evbuffer_add(out, "", 1);
	text = (char *)evbuffer_pullup(out, -1);

	for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++) {
		char head[160];
		const char *at;

		snprintf(head, sizeof(head), "# TYPE %s ", families[i]);
		assert_non_null(at = strstr(text, head));
		assert_null(strstr(at + 1, head));      /* one block per family */
	}
	assert_non_null(strstr(text, "spliced_connections_total{listener=\"web\"} 3\n"));
	assert_non_null(strstr(text, "spliced_connections_total{listener=\"idle\"} 0\n"));
	assert_non_null(strstr(text, "spliced_connections_active{listener=\"web\"} 1\n"));
	assert_non_null(strstr(text, "spliced_connections_closed_total{listener=\"web\","
	    "reason=\"client_eof\"} 1\n"));
	assert_non_null(strstr(text, "spliced_bytes_total{listener=\"web\",direction=\"up\","
	    "mode=\"splice\"} 1000\n"));
	assert_non_null(strstr(text, "spliced_bytes_total{listener=\"web\",direction=\"down\","
	    "mode=\"copy\"} 7\n"));
	assert_non_null(strstr(text, "spliced_connection_duration_seconds_bucket{"
	    "listener=\"web\",le=\"0.01\"} 0\n"));
	assert_non_null(strstr(text, "spliced_connection_duration_seconds_bucket{"
	    "listener=\"web\",le=\"0.05\"} 1\n"));
	assert_non_null(strstr(text, "spliced_connection_duration_seconds_bucket{"
	    "listener=\"web\",le=\"+Inf\"} 1\n"));
	assert_non_null(strstr(text, "spliced_connection_duration_seconds_sum{"
	    "listener=\"web\"} 0.020000\n"));
	assert_non_null(strstr(text, "spliced_connect_duration_seconds_bucket{"
	    "backend=\"app\",le=\"0.0005\"} 0\n"));
	assert_non_null(strstr(text, "spliced_connect_duration_seconds_bucket{"
	    "backend=\"app\",le=\"0.001\"} 1\n"));
	assert_non_null(strstr(text, "spliced_server_state{backend=\"app\",server=\"a\","
	    "state=\"up\"} 1\n"));
	assert_non_null(strstr(text, "spliced_server_state{backend=\"app\",server=\"a\","
	    "state=\"down\"} 0\n"));
	assert_non_null(strstr(text, "spliced_server_state{backend=\"app\",server=\"b\","
	    "state=\"down\"} 1\n"));
	assert_non_null(strstr(text, "spliced_server_weight{backend=\"app\",server=\"a\"} 2\n"));
	assert_non_null(strstr(text, "spliced_server_connections_total{backend=\"app\","
	    "server=\"a\"} 5\n"));
	assert_non_null(strstr(text, "spliced_server_connect_failures_total{backend=\"app\","
	    "server=\"b\"} 6\n"));
	assert_non_null(strstr(text, "spliced_server_check_failures_total{backend=\"app\","
	    "server=\"b\"} 4\n"));
	assert_non_null(strstr(text, "process_start_time_seconds 1.500\n"));

	/* Drained at run time, with a weight of its own. */
	assert_int_equal(backend_server_set_admin(bs, "app", "a",
	    BACKEND_ADMIN_DRAIN, 7), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	assert_int_equal(metrics_prometheus(out, &sm, &mp), 0);
	evbuffer_add(out, "", 1);
	text = (char *)evbuffer_pullup(out, -1);
	assert_non_null(strstr(text, "spliced_server_state{backend=\"app\",server=\"a\","
	    "state=\"drain\"} 1\n"));
	assert_non_null(strstr(text, "spliced_server_state{backend=\"app\",server=\"a\","
	    "state=\"up\"} 0\n"));
	assert_non_null(strstr(text, "spliced_server_weight{backend=\"app\",server=\"a\"} 7\n"));

	stats_sample_cleanup(&sm);
	evbuffer_free(out);
	stats_worker_free(w);
	backend_set_unref(bs);
	config_unref(cfg);
}

/* Label values are escaped as the text format asks. */
static void
test_label_escaping(void **state)
{
	struct stats_sample sm;
	struct stats_listener l = { .name = (char *)"a\"b\\c\nd" };
	char err[CONFIG_ERR_MAX], *text;
	struct config *cfg = config_load_string("[listener web]\n"
	    "bind = 127.0.0.1:1\nbackend = app\n[backend app]\n"
	    "server = a 127.0.0.1:3\n", "test.ini", err, sizeof(err));
	struct backend_set *bs;
	struct metrics_process mp;
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_non_null(cfg);
	assert_non_null(bs = backend_set_new(cfg, NULL));
	assert_int_equal(stats_sample_init(&sm, 0), 0);
	sm.l = &l;                  /* a name a reload dropped */
	sm.nl = 1;
	mp = (struct metrics_process){ .cfg = cfg, .bs = bs };
	assert_int_equal(metrics_prometheus(out, &sm, &mp), 0);
	evbuffer_add(out, "", 1);
	text = (char *)evbuffer_pullup(out, -1);
	assert_non_null(strstr(text, "spliced_connections_total{listener=\"a\\\"b\\\\c\\nd\"} 0\n"));
	evbuffer_free(out);
	backend_set_unref(bs);
	config_unref(cfg);
}

/* Two workers' samples summed: counters by name, and of their open
 * connections the conn_limit newest, newest first. */
static void
test_sample_merge(void **state)
{
	struct stats_sample a, b, sum;
	struct stats_worker *w = stats_worker_new();
	struct stats_conn c = { 0 };

	(void)state;
	assert_non_null(w);
	stats_worker_listener(w, "web")->connections = 2;
	stats_worker_server(w, "app", "a")->connect_failures = 3;
	assert_int_equal(stats_sample_init(&a, 3), 0);
	assert_int_equal(stats_sample_init(&b, 3), 0);
	assert_int_equal(stats_sample_init(&sum, 3), 0);
	assert_int_equal(stats_sample_add_worker(&a, w), 0);
	assert_int_equal(stats_sample_add_worker(&b, w), 0);
	a.workers = b.workers = 1;
	for (uint64_t i = 0; i < 5; i++) {     /* ages 0, 10, ... 40 ms */
		c.id = i;
		c.age_ms = 10 * i;
		stats_sample_add_conn(i % 2 ? &a : &b, &c);
	}
	assert_int_equal(a.nc, 2);              /* ids 1, 3 */
	assert_int_equal(b.nc, 3);              /* ids 0, 2, 4 */
	c.id = 9;
	stats_sample_add_conn(&b, &c);          /* b is full */
	assert_int_equal(b.nc, 3);
	assert_int_equal(stats_sample_merge(&sum, &a), 0);
	assert_int_equal(stats_sample_merge(&sum, &b), 0);
	stats_sample_sort_conns(&sum);
	assert_int_equal(sum.workers, 2);
	assert_int_equal(stats_sample_listener(&sum, "web")->connections, 4);
	assert_int_equal(stats_sample_server(&sum, "app", "a")->connect_failures, 6);
	assert_int_equal(sum.nc, 3);
	assert_int_equal(sum.c[0].id, 0);
	assert_int_equal(sum.c[1].id, 1);
	assert_int_equal(sum.c[2].id, 2);
	stats_sample_cleanup(&a);
	stats_sample_cleanup(&b);
	stats_sample_cleanup(&sum);
	stats_worker_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_totals_line),
		cmocka_unit_test(test_totals_line_cut),
		cmocka_unit_test(test_server_lines),
		cmocka_unit_test(test_prometheus),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_sample_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
