/* tests/test_resolve.c: answers into sorted address lists, and the
 * resolver end to end against libevent's own DNS server on 127.0.0.1 (in
 * this process, on the same loop): the first round, a change of answer
 * published as a new generation whose unchanged addresses keep their
 * state, NXDOMAIN keeping the addresses in use, a name that never
 * resolved reported the way `spliced -t` prints it, and (event_add()
 * wrapped) a name whose timer cannot be armed asked no more. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/config.h"
#include "spliced/resolve.h"

int __real_event_add(struct event *, const struct timeval *);
int __wrap_event_add(struct event *, const struct timeval *);

static bool refuse_add;         /* event_add() fails (resolve.c's only) */

int
__wrap_event_add(struct event *ev, const struct timeval *tv)
{
	if (refuse_add)
		return -1;
	return __real_event_add(ev, tv);
}

/* ---- answers into lists ---- */

static struct evutil_addrinfo *
ai_v4(const char *ip, struct evutil_addrinfo *next)
{
	struct evutil_addrinfo *ai = calloc(1, sizeof(*ai));
	struct sockaddr_in *sin = calloc(1, sizeof(*sin));

	assert_non_null(ai);
	assert_non_null(sin);
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	ai->ai_family = AF_INET;
	ai->ai_addr = (struct sockaddr *)sin;
	ai->ai_addrlen = sizeof(*sin);
	ai->ai_next = next;
	return ai;
}

static struct evutil_addrinfo *
ai_v6(const char *ip, struct evutil_addrinfo *next)
{
	struct evutil_addrinfo *ai = calloc(1, sizeof(*ai));
	struct sockaddr_in6 *sin6 = calloc(1, sizeof(*sin6));

	assert_non_null(ai);
	assert_non_null(sin6);
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	ai->ai_family = AF_INET6;
	ai->ai_addr = (struct sockaddr *)sin6;
	ai->ai_addrlen = sizeof(*sin6);
	ai->ai_next = next;
	return ai;
}

static void
ai_free(struct evutil_addrinfo *ai)
{
	while (ai != NULL) {
		struct evutil_addrinfo *next = ai->ai_next;

		free(ai->ai_addr);
		free(ai);
		ai = next;
	}
}

static const char *
text(const struct addr *a, char *buf)
{
	return addr_format((const struct sockaddr *)&a->ss, buf, ADDR_TEXT_MAX);
}

static void
test_addrs_sorted_unique(void **state)
{
	struct evutil_addrinfo *res = ai_v4("10.0.0.3", ai_v6("::1",
	    ai_v4("10.0.0.1", ai_v4("10.0.0.3", ai_v4("10.0.0.2", NULL)))));
	struct addr out[8], again[8];
	char buf[ADDR_TEXT_MAX];
	size_t n;

	(void)state;
	n = resolver_addrs(res, 9001, out, 8);
	assert_int_equal(n, 4);
	assert_string_equal(text(&out[0], buf), "10.0.0.1:9001");
	assert_string_equal(text(&out[1], buf), "10.0.0.2:9001");
	assert_string_equal(text(&out[2], buf), "10.0.0.3:9001");
	assert_string_equal(text(&out[3], buf), "[::1]:9001");
	/* The same records in another order: the same list. */
	ai_free(res);
	res = ai_v6("::1", ai_v4("10.0.0.2", ai_v4("10.0.0.1",
	    ai_v4("10.0.0.3", NULL))));
	assert_int_equal(resolver_addrs(res, 9001, again, 8), 4);
	assert_true(resolver_same(out, 4, again, 4));
	assert_false(resolver_same(out, 4, again, 3));
	assert_false(resolver_same(out, 3, again + 1, 3));
	/* Another port is another address. */
	assert_int_equal(resolver_addrs(res, 9002, again, 8), 4);
	assert_false(resolver_same(out, 4, again, 4));
	/* Capped: the smallest are kept, in order. */
	assert_int_equal(resolver_addrs(res, 9001, again, 2), 2);
	assert_string_equal(text(&again[0], buf), "10.0.0.1:9001");
	assert_string_equal(text(&again[1], buf), "10.0.0.2:9001");
	assert_int_equal(resolver_addrs(NULL, 9001, again, 2), 0);
	ai_free(res);
}

/* ---- the resolver against a DNS server ---- */

#define NAME "app.spliced.test"

struct fx {
	struct event_base *base;
	int dnsfd;
	unsigned dnsport;
	struct evdns_server_port *port;
	/* What the server answers for NAME. */
	const char *v4[4], *v6[4];
	int rcode;                  /* DNS_ERR_NONE, or e.g. DNS_ERR_NOTEXIST */
	unsigned queries;
	struct config *cfg;
	struct backend_set *bs;
	struct resolver *r;
	unsigned published;
	char reported[CONFIG_ERR_MAX];
};

static void
server_cb(struct evdns_server_request *req, void *arg)
{
	struct fx *f = arg;

	f->queries++;
	for (int q = 0; q < req->nquestions; q++) {
		const struct evdns_server_question *qq = req->questions[q];

		/* evdns randomizes the case of what it asks (0x20). */
		if (strcasecmp(qq->name, NAME) != 0 || f->rcode != DNS_ERR_NONE)
			continue;
		for (int i = 0; i < 4; i++) {
			unsigned char a[16];

			if (qq->type == EVDNS_TYPE_A && f->v4[i] != NULL) {
				assert_int_equal(inet_pton(AF_INET, f->v4[i], a), 1);
				evdns_server_request_add_a_reply(req, qq->name, 1,
				    a, 1);
			}
			if (qq->type == EVDNS_TYPE_AAAA && f->v6[i] != NULL) {
				assert_int_equal(inet_pton(AF_INET6, f->v6[i], a), 1);
				evdns_server_request_add_aaaa_reply(req,
				    qq->name, 1, a, 1);
			}
		}
	}
	evdns_server_request_respond(req, f->rcode);
}

static void
publish_cb(struct backend_set *bs, void *arg)
{
	struct fx *f = arg;

	(void)bs;
	f->published++;
}

static void
report_cb(const char *msg, void *arg)
{
	struct fx *f = arg;

	snprintf(f->reported, sizeof(f->reported), "%s", msg);
}

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	assert_non_null(f);
	refuse_add = false;
	f->base = event_base_new();
	assert_non_null(f->base);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->dnsfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->dnsfd >= 0);
	assert_int_equal(bind(f->dnsfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->dnsfd, (struct sockaddr *)&sin, &len), 0);
	f->dnsport = ntohs(sin.sin_port);
	f->port = evdns_add_server_port_with_base(f->base, f->dnsfd, 0,
	    server_cb, f);
	assert_non_null(f->port);
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	resolver_free(f->r);
	backend_set_unref(f->bs);
	config_unref(f->cfg);
	evdns_close_server_port(f->port);
	close(f->dnsfd);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void
start(struct fx *f, const char *interval)
{
	char cfgtext[512], err[CONFIG_ERR_MAX];

	snprintf(cfgtext, sizeof(cfgtext), "[global]\nresolver = 127.0.0.1:%u\n"
	    "[listener l]\nbind = 127.0.0.1:1\nbackend = app\n"
	    "[backend app]\nresolve_interval = %s\n"
	    "server = a 127.0.0.1:9001\nserver = b " NAME ":9002 weight=2\n",
	    f->dnsport, interval);
	f->cfg = config_load_string(cfgtext, "t.ini", err, sizeof(err));
	assert_non_null(f->cfg);
	f->bs = backend_set_new(f->cfg, NULL);
	assert_non_null(f->bs);
	f->r = resolver_new(f->base, f->bs, publish_cb, f, err, sizeof(err));
	assert_non_null(f->r);
}

/* The addresses of server b in the resolver's current set, as text. */
static void
addrs_of_b(struct fx *f, char *out, size_t n)
{
	const struct backend_shared *sh = &resolver_set(f->r)->b[0];
	char one[ADDR_TEXT_MAX];

	out[0] = '\0';
	for (size_t i = 0; i < sh->n; i++) {
		if (sh->entry[i] != &f->cfg->backends[0].servers[1])
			continue;
		snprintf(out + strlen(out), n - strlen(out), "%s%s",
		    out[0] ? " " : "", text(&sh->servers[i]->addr, one));
	}
}

/* Run the loop until the server has had `more` more queries answered and
 * the resolver has taken them in. */
static void
run_queries(struct fx *f, unsigned more)
{
	unsigned until = f->queries + more;

	for (int i = 0; i < 5000 && f->queries < until; i++)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_true(f->queries >= until);
	/* The answer is read on the next turns. */
	for (int i = 0; i < 20; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static void
test_resolve_and_change(void **state)
{
	struct fx *f = *state;
	char have[512];
	struct server_state *kept;

	f->v4[0] = "127.0.0.2";
	f->v6[0] = "::1";
	start(f, "100ms");
	assert_int_equal(resolver_first_round(f->r, report_cb, f), 0);
	assert_string_equal(f->reported, "");
	assert_int_equal(f->published, 1);
	addrs_of_b(f, have, sizeof(have));
	assert_string_equal(have, "127.0.0.2:9002 [::1]:9002");
	assert_int_equal(resolver_set(f->r)->b[0].n, 3);
	assert_int_equal(resolver_set(f->r)->b[0].entry[1]->weight, 2);
	kept = resolver_set(f->r)->b[0].servers[2];      /* [::1] */
	atomic_store(&kept->active, 5);

	/* The same answer again: no new generation. */
	run_queries(f, 2);
	assert_int_equal(f->published, 1);

	/* 127.0.0.2 goes, 127.0.0.3 comes; [::1] keeps its state. */
	f->v4[0] = "127.0.0.3";
	run_queries(f, 2);
	assert_int_equal(f->published, 2);
	addrs_of_b(f, have, sizeof(have));
	assert_string_equal(have, "127.0.0.3:9002 [::1]:9002");
	assert_ptr_equal(resolver_set(f->r)->b[0].servers[2], kept);
	assert_int_equal(atomic_load(&kept->active), 5);

	/* NXDOMAIN: the addresses in use stay. */
	f->rcode = DNS_ERR_NOTEXIST;
	run_queries(f, 4);
	assert_int_equal(f->published, 2);
	addrs_of_b(f, have, sizeof(have));
	assert_string_equal(have, "127.0.0.3:9002 [::1]:9002");

	/* Back, with the same addresses: still nothing new to publish. */
	f->rcode = DNS_ERR_NONE;
	run_queries(f, 4);
	assert_int_equal(f->published, 2);
	atomic_store(&kept->active, 0);
}

static void
test_first_round_failure(void **state)
{
	struct fx *f = *state;
	char have[512];

	f->rcode = DNS_ERR_NOTEXIST;
	start(f, "30s");
	assert_int_equal(resolver_first_round(f->r, report_cb, f), 1);
	assert_string_equal(f->reported, "t.ini:9: [backend app] server: "
	    "cannot resolve '" NAME "': no such name");
	assert_int_equal(f->published, 0);
	addrs_of_b(f, have, sizeof(have));
	assert_string_equal(have, "");
	/* The literal server is there all along. */
	assert_int_equal(resolver_set(f->r)->b[0].n, 1);
}

static void
test_no_names_no_dns(void **state)
{
	struct fx *f = *state;
	char err[CONFIG_ERR_MAX];
	int fds = count_fds();

	f->cfg = config_load_string("[listener l]\nbind = 127.0.0.1:1\n"
	    "backend = app\n[backend app]\nserver = a 127.0.0.1:9001\n",
	    "t.ini", err, sizeof(err));
	assert_non_null(f->cfg);
	f->bs = backend_set_new(f->cfg, NULL);
	f->r = resolver_new(f->base, f->bs, publish_cb, f, err, sizeof(err));
	assert_non_null(f->r);
	assert_int_equal(resolver_first_round(f->r, report_cb, f), 0);
	assert_int_equal(f->queries, 0);
	assert_int_equal(count_fds(), fds);
	assert_ptr_equal(resolver_set(f->r), f->bs);
}

/* The next query of a name is due on its timer: one that cannot be armed
 * is an error in the log, and the name keeps what it resolved to. */
static void
test_timer_refused(void **state)
{
	struct fx *f = *state;
	char have[512];
	unsigned asked;

	f->v4[0] = "127.0.0.2";
	start(f, "100ms");
	refuse_add = true;
	assert_int_equal(resolver_first_round(f->r, report_cb, f), 0);
	asked = f->queries;
	f->v4[0] = "127.0.0.3";
	usleep(300 * 1000);
	for (int i = 0; i < 20; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(f->queries, asked);
	addrs_of_b(f, have, sizeof(have));
	assert_string_equal(have, "127.0.0.2:9002");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addrs_sorted_unique),
		cmocka_unit_test_setup_teardown(test_resolve_and_change,
		    fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_first_round_failure,
		    fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_names_no_dns,
		    fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_refused,
		    fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
