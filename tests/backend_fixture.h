/* tests/backend_fixture.h: a backend of a few servers, their shared state
 * and one worker's balancer, built in memory (no config file), for
 * test_balance.c and test_backend.c. Include after <cmocka.h>. */
#ifndef SPLICED_BACKEND_FIXTURE_H
#define SPLICED_BACKEND_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "spliced/backend.h"

#define MAX_SERVERS 8

/* A backend of n servers with the given weights, their shared state, and
 * one worker's balancer over them. */
struct fx_backend {
	struct config_server servers[MAX_SERVERS];
	char names[MAX_SERVERS][24];
	struct server_state st[MAX_SERVERS];
	struct server_state *stp[MAX_SERVERS];
	struct server_line line[MAX_SERVERS];   /* one per server: its record */
	struct server_line *lnp[MAX_SERVERS];
	const struct config_server *ent[MAX_SERVERS];
	struct config_backend b;
	struct backend_shared sh;
	struct backend_lb lb;
	uint64_t now;               /* the clock the picks see */
};

/* The fixture owns the balancer state, so that it is freed even when an
 * assertion fails half-way. */
static inline int
lb_setup(void **state)
{
	struct fx_backend *fb = calloc(1, sizeof(*fb));

	assert_non_null(fb);
	*state = fb;
	return 0;
}

static inline int
lb_teardown(void **state)
{
	struct fx_backend *fb = *state;

	backend_lb_cleanup(&fb->lb);
	free(fb);
	return 0;
}

/* Servers named s0, s1, ... (source hashes the name: a server keeps its
 * name when others are added). */
static inline void
fx_make(struct fx_backend *fb, enum config_balance balance,
    const unsigned *weights, size_t n)
{
	assert_true(n <= MAX_SERVERS);
	backend_lb_cleanup(&fb->lb);
	memset(fb, 0, sizeof(*fb));
	for (size_t i = 0; i < n; i++) {
		snprintf(fb->names[i], sizeof(fb->names[i]), "s%zu", i);
		fb->servers[i].name = fb->names[i];
		fb->servers[i].weight = weights[i];
		atomic_init(&fb->st[i].up, true);
		atomic_init(&fb->st[i].backoff_ms, BACKEND_BACKOFF_MIN_MS);
		fb->st[i].line = &fb->line[i];
		fb->lnp[i] = &fb->line[i];
		fb->stp[i] = &fb->st[i];
		fb->ent[i] = &fb->servers[i];
	}
	fb->b.name = "app";
	fb->b.servers = fb->servers;
	fb->b.nservers = n;
	fb->b.balance = balance;
	fb->b.fall = 3;
	fb->b.rise = 2;
	fb->sh.cfg = &fb->b;
	fb->sh.servers = fb->stp;
	fb->sh.entry = fb->ent;
	fb->sh.lines = fb->lnp;
	fb->sh.n = n;
	fb->now = 1000000;
	assert_int_equal(backend_lb_init(&fb->lb, &fb->sh, 42), 0);
}

/* A pick that connects: the slot stays taken until release(). */
static inline size_t
hold(struct fx_backend *fb, const struct sockaddr *peer, ssize_t avoid)
{
	enum backend_none why;
	bool trial;
	ssize_t i = backend_lb_pick(&fb->lb, peer, avoid, fb->now, &why, &trial);

	assert_true(i >= 0 && (size_t)i < fb->b.nservers);
	(void)backend_lb_connected(&fb->lb, (size_t)i);
	return (size_t)i;
}

static inline void
release(struct fx_backend *fb, size_t i)
{
	backend_lb_release(&fb->lb, i);
}

/* A connection that is over at once: nothing stays active. */
static inline size_t
pick(struct fx_backend *fb, ssize_t avoid)
{
	size_t i = hold(fb, NULL, avoid);

	release(fb, i);
	return i;
}

static inline unsigned
active(struct fx_backend *fb, size_t i)
{
	return atomic_load(&fb->st[i].active);
}

/* Every test of a struct fx_backend runs with the fixture as its state. */
#define LB_TEST(t) cmocka_unit_test_setup_teardown(t, lb_setup, lb_teardown)

static const enum config_balance all_algos[] = { CONFIG_BALANCE_ROUNDROBIN,
    CONFIG_BALANCE_LEASTCONN, CONFIG_BALANCE_SOURCE, CONFIG_BALANCE_RANDOM };

/* Client n of many, each with an IPv4 address of its own (what source
 * hashes; the port it leaves out). */
static inline struct sockaddr_in
client4(unsigned n, unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	sin.sin_addr.s_addr = htonl(0x0a000000u + n * 7919u);
	sin.sin_port = htons((uint16_t)port);
	return sin;
}

#endif
