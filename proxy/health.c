/* proxy/health.c: active TCP health checks, on the main thread.
 *
 *   WAITING --interval--> CONNECTING --connected / refused / timeout--> WAITING
 *
 * One struct probe per checked server, with one timer that serves both
 * states: the wait for the next check, then health_timeout on the connect.
 * The next check is due health_interval after the last one started (or at
 * once if that one took longer), so checks keep their rhythm without ever
 * overlapping. The rise/fall streaks are the checks' own; the up/down
 * state is the server's shared atomic, which traffic may also take down
 * (backend_lb_failed): the probe sees that and starts its rise streak
 * over.
 *
 * A probe is for one address (struct server_state), not one server line:
 * a host-name server has one per address it resolves to. health_update()
 * keeps the probe of every address still there (its streaks, its
 * rhythm), starts one for each new address (a spread start, like the
 * first ones) and stops those of addresses that went away.
 *
 * A server in maint (backend.h) is not checked: its timer still fires
 * every interval, and start_cb() lets the turn go by, so checks resume
 * within an interval of the server being ready (or drained) again; a
 * check in flight when maint was set counts for nothing. Its streaks
 * start over then: what they counted before is old news. A drained
 * server is checked as usual. */
#include "spliced/health.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/log.h"
#include "spliced/proxyproto.h"

struct probe {
	struct health *h;
	const struct config_backend *bc;
	const struct config_server *srv;
	struct server_state *st;
	struct event *timer, *io;
	int fd;                     /* -1 while waiting */
	uint64_t started_ms;        /* of the check in flight, or the last */
	unsigned passed, failed;    /* in a row */
	bool seen_up;               /* the state this probe last knew */
	bool unwatched;             /* the last check could not watch its socket */
};

struct health {
	struct event_base *base;
	struct backend_set *bs;
	struct probe **probes;
	size_t n;
	unsigned long done;
	uint64_t seed;              /* spreads the first check of each */
};

/* 0, or -1 if libevent could not arm the timer (out of memory). */
static int
timer_in(struct probe *p, uint64_t ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	return evtimer_add(p->timer, &tv);
}

static const char *
server_text(const struct probe *p, char *buf, size_t n)
{
	char a[ADDR_TEXT_MAX];

	snprintf(buf, n, "%s/%s %s", p->bc->name, p->srv->name,
	    addr_format((const struct sockaddr *)&p->st->addr.ss, a, sizeof(a)));
	return buf;
}

/* Count one result against the streaks; change the state at rise / fall. */
static void
result(struct probe *p, bool ok, const char *why)
{
	char name[ADDR_TEXT_MAX + 128];
	bool up = atomic_load(&p->st->up);

	p->h->done++;
	if (!ok) {
		atomic_fetch_add_explicit(&p->st->check_failures, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&p->st->line->check_failures, 1,
		    memory_order_relaxed);
	}
	if (up != p->seen_up) {
		/* Traffic took it down (or a reload changed it): streaks
		 * counted for the old state mean nothing now. */
		p->passed = p->failed = 0;
		p->seen_up = up;
	}
	if (ok) {
		p->failed = 0;
		if (++p->passed >= p->bc->rise && !up &&
		    backend_server_set_up(p->st, true)) {
			log_info("server %s is up: %u checks passed",
			    server_text(p, name, sizeof(name)), p->passed);
			p->seen_up = true;
		}
		return;
	}
	p->passed = 0;
	if (++p->failed >= p->bc->fall && up &&
	    backend_server_set_up(p->st, false)) {
		log_warn("server %s is down: %u checks failed: %s",
		    server_text(p, name, sizeof(name)), p->failed, why);
		p->seen_up = false;
	}
}

/* A timer that cannot be armed would stop this server's checks without a
 * word: the server would keep the state it has now, whatever happens to
 * it. Said once, as an error: nothing here can restart them. */
static void
next_probe(struct probe *p)
{
	uint64_t now = clock_coarse_ms(), since = now - p->started_ms;
	unsigned every = p->bc->health_interval_ms;
	char name[ADDR_TEXT_MAX + 128];

	if (timer_in(p, since >= every ? 0 : every - since) == -1)
		log_error("server %s: health checks stopped: cannot arm their "
		    "timer", server_text(p, name, sizeof(name)));
}

static bool
in_maint(const struct probe *p)
{
	return atomic_load(&p->st->admin) == BACKEND_ADMIN_MAINT;
}

static void
finish(struct probe *p, bool ok, const char *why)
{
	event_del(p->io);
	event_del(p->timer);
	close(p->fd);
	p->fd = -1;
	if (!in_maint(p))
		result(p, ok, why);
	next_probe(p);
}

/* A server behind listeners that send it PROXY headers expects one on
 * every connection: a check says it is no client's (v2 LOCAL, v1
 * UNKNOWN), so the server neither logs a bad header nor takes the check
 * for a client. Best effort: a fresh socket takes these few bytes whole,
 * and the check is the connect, not what follows. */
static void
send_header(const struct probe *p)
{
	uint8_t buf[PROXYPROTO_ENCODE_MAX];
	ssize_t n;

	if (p->bc->check_proxy == CONFIG_PROXY_OFF)
		return;
	n = p->bc->check_proxy == CONFIG_PROXY_V1 ?
	    proxyproto_encode_v1((char *)buf, sizeof(buf), NULL, NULL) :
	    proxyproto_encode_v2(buf, sizeof(buf), NULL, NULL, true);
	if (n > 0)
		(void)send(p->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The connect completed, or health_timeout passed first. */
static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	int err;

	(void)fd;
	if (what & EV_TIMEOUT) {
		finish(p, false, "timed out");
		return;
	}
	err = backend_connect_error(p->fd);
	if (err == 0)
		send_header(p);
	finish(p, err == 0, err == 0 ? NULL : strerror(err));
}

static void
start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	unsigned ms = p->bc->health_timeout_ms;
	struct timeval tv = clock_timeval_ms(ms);

	(void)fd, (void)what;
	p->started_ms = clock_coarse_ms();
	if (in_maint(p)) {
		p->passed = p->failed = 0;
		next_probe(p);
		return;
	}
	if ((p->fd = backend_connect(&p->st->addr)) == -1) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/* Our shortage says nothing about the server. */
			next_probe(p);
			return;
		}
		result(p, false, strerror(errno));
		next_probe(p);
		return;
	}
	event_del(p->io);
	event_assign(p->io, p->h->base, p->fd, EV_WRITE, io_cb, p);
	if (event_add(p->io, &tv) == -1) {
		char name[ADDR_TEXT_MAX + 128];

		/* Unwatched, the connect would never finish and the checks
		 * would stop; like a shortage of ours, it says nothing about
		 * the server: the next check tries again. Said once a run. */
		if (!p->unwatched)
			log_warn("server %s: health checks not run: cannot "
			    "watch their socket", server_text(p, name,
			    sizeof(name)));
		p->unwatched = true;
		close(p->fd);
		p->fd = -1;
		next_probe(p);
		return;
	}
	p->unwatched = false;
}

static void
probe_free(struct probe *p)
{
	if (p == NULL)
		return;
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->io != NULL)
		event_free(p->io);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

static struct probe *
probe_new(struct health *h, const struct config_backend *bc,
    const struct config_server *srv, struct server_state *st)
{
	struct probe *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->h = h;
	p->bc = bc;
	p->srv = srv;
	p->st = st;
	p->fd = -1;
	p->seen_up = atomic_load(&st->up);
	p->timer = evtimer_new(h->base, start_cb, p);
	/* Assigned for real when a check starts. */
	p->io = event_new(h->base, -1, 0, io_cb, p);
	if (p->timer == NULL || p->io == NULL) {
		probe_free(p);
		return NULL;
	}
	/* A spread start; LCG steps are plenty for that. */
	h->seed = h->seed * 6364136223846793005ULL + 1442695040888963407ULL;
	if (timer_in(p, (h->seed >> 33) % bc->health_interval_ms) == -1) {
		probe_free(p);
		return NULL;
	}
	return p;
}

/* The probe h has for st, taken out of h's list, or NULL. */
static struct probe *
probe_take(struct health *h, const struct server_state *st)
{
	for (size_t i = 0; i < h->n; i++) {
		struct probe *p = h->probes[i];

		if (p != NULL && p->st == st) {
			h->probes[i] = NULL;
			return p;
		}
	}
	return NULL;
}

int
health_update(struct health *h, struct backend_set *bs)
{
	struct probe **probes;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < bs->n; i++)
		if (bs->b[i].cfg->health_check != CONFIG_HEALTH_OFF)
			n += bs->b[i].n;
	if ((probes = calloc(n ? n : 1, sizeof(*probes))) == NULL)
		return -1;
	/* New addresses first: what may fail, while nothing has moved. */
	for (size_t i = 0; i < bs->n; i++) {
		const struct backend_shared *sh = &bs->b[i];

		for (size_t j = 0; sh->cfg->health_check != CONFIG_HEALTH_OFF &&
		    j < sh->n; j++, k++) {
			bool have = false;

			for (size_t q = 0; q < h->n && !have; q++)
				have = h->probes[q] != NULL &&
				    h->probes[q]->st == sh->servers[j];
			if (have)
				continue;
			if ((probes[k] = probe_new(h, sh->cfg, sh->entry[j],
			    sh->servers[j])) == NULL)
				goto fail;
		}
	}
	k = 0;
	for (size_t i = 0; i < bs->n; i++) {
		const struct backend_shared *sh = &bs->b[i];

		for (size_t j = 0; sh->cfg->health_check != CONFIG_HEALTH_OFF &&
		    j < sh->n; j++, k++) {
			if (probes[k] != NULL)
				continue;
			probes[k] = probe_take(h, sh->servers[j]);
			probes[k]->bc = sh->cfg;
			probes[k]->srv = sh->entry[j];
		}
	}
	/* What is left is for addresses that went away. */
	for (size_t i = 0; i < h->n; i++)
		probe_free(h->probes[i]);
	free(h->probes);
	h->probes = probes;
	h->n = n;
	backend_set_unref(h->bs);
	h->bs = backend_set_ref(bs);
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		probe_free(probes[i]);
	free(probes);
	errno = ENOMEM;
	return -1;
}

struct health *
health_new(struct event_base *base, struct backend_set *bs)
{
	struct health *h;
	struct timespec ts;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->base = base;
	clock_gettime(CLOCK_REALTIME, &ts);
	h->seed = (uint64_t)ts.tv_nsec | 1;
	if (health_update(h, bs) == -1) {
		health_free(h);
		errno = ENOMEM;
		return NULL;
	}
	return h;
}

void
health_free(struct health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; h->probes != NULL && i < h->n; i++)
		probe_free(h->probes[i]);
	free(h->probes);
	backend_set_unref(h->bs);
	free(h);
}

unsigned long
health_checks_done(const struct health *h)
{
	return h->done;
}
