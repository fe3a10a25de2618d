/* proxy/health.c: active TCP health checks, on the main thread.
 *
 *   WAITING --interval--> CONNECTING --connected / refused / timeout--> WAITING
 *
 * One struct check per checked server, with one timer that serves both
 * states: the wait for the next check, then health_timeout on the connect.
 * The next check is due health_interval after the last one started (or at
 * once if that one took longer), so checks keep their rhythm without ever
 * overlapping. The rise/fall streaks are the checks' own; the up/down
 * state is the server's shared atomic, which traffic may also take down
 * (backend_lb_failed): the check sees that and starts its rise streak
 * over.
 *
 * A check is for one address (struct server_state), not one server line:
 * a host-name server has one per address it resolves to. health_update()
 * keeps the check of every address still there (its streaks, its
 * rhythm), starts one for each new address (a spread start, like the
 * first ones) and stops those of addresses that went away. */
#include "spliced/health.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/log.h"

struct check {
	struct health *h;
	const struct config_backend *bc;
	const struct config_server *srv;
	struct server_state *st;
	struct event *timer, *io;
	int fd;                     /* -1 while waiting */
	uint64_t started_ms;        /* of the check in flight, or the last */
	unsigned passed, failed;    /* in a row */
	bool seen_up;               /* the state this check last knew */
};

struct health {
	struct event_base *base;
	struct backend_set *bs;
	struct check **checks;
	size_t n;
	unsigned long done;
	uint64_t seed;              /* spreads the first check of each */
};

static void
timer_in(struct check *k, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(k->timer, &tv);
}

static const char *
server_text(const struct check *k, char *buf, size_t n)
{
	char a[ADDR_TEXT_MAX];

	snprintf(buf, n, "%s/%s %s", k->bc->name, k->srv->name,
	    addr_format((const struct sockaddr *)&k->st->addr.ss, a, sizeof(a)));
	return buf;
}

/* Count one result against the streaks; change the state at rise / fall. */
static void
result(struct check *k, bool ok, const char *why)
{
	char name[ADDR_TEXT_MAX + 128];
	bool up = atomic_load(&k->st->up);

	k->h->done++;
	if (up != k->seen_up) {
		/* Traffic took it down (or a reload changed it): streaks
		 * counted for the old state mean nothing now. */
		k->passed = k->failed = 0;
		k->seen_up = up;
	}
	if (ok) {
		k->failed = 0;
		if (++k->passed >= k->bc->rise && !up &&
		    backend_server_set_up(k->st, true)) {
			log_info("server %s is up: %u checks passed",
			    server_text(k, name, sizeof(name)), k->passed);
			k->seen_up = true;
		}
		return;
	}
	k->passed = 0;
	if (++k->failed >= k->bc->fall && up &&
	    backend_server_set_up(k->st, false)) {
		log_warn("server %s is down: %u checks failed: %s",
		    server_text(k, name, sizeof(name)), k->failed, why);
		k->seen_up = false;
	}
}

static void
next_check(struct check *k)
{
	uint64_t now = clock_coarse_ms(), since = now - k->started_ms;
	unsigned every = k->bc->health_interval_ms;

	timer_in(k, since >= every ? 0 : every - since);
}

static void
finish(struct check *k, bool ok, const char *why)
{
	event_del(k->io);
	event_del(k->timer);
	close(k->fd);
	k->fd = -1;
	result(k, ok, why);
	next_check(k);
}

/* The connect completed, or health_timeout passed first. */
static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check *k = arg;
	int err;

	(void)fd;
	if (what & EV_TIMEOUT) {
		finish(k, false, "timed out");
		return;
	}
	err = backend_connect_error(k->fd);
	finish(k, err == 0, err == 0 ? NULL : strerror(err));
}

static void
start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check *k = arg;
	unsigned ms = k->bc->health_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	(void)fd, (void)what;
	k->started_ms = clock_coarse_ms();
	if ((k->fd = backend_connect(&k->st->addr)) == -1) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/* Our shortage says nothing about the server. */
			next_check(k);
			return;
		}
		result(k, false, strerror(errno));
		next_check(k);
		return;
	}
	event_del(k->io);
	event_assign(k->io, k->h->base, k->fd, EV_WRITE, io_cb, k);
	event_add(k->io, &tv);
}

static void
check_free(struct check *k)
{
	if (k == NULL)
		return;
	if (k->timer != NULL)
		event_free(k->timer);
	if (k->io != NULL)
		event_free(k->io);
	if (k->fd >= 0)
		close(k->fd);
	free(k);
}

static struct check *
check_new(struct health *h, const struct config_backend *bc,
    const struct config_server *srv, struct server_state *st)
{
	struct check *k = calloc(1, sizeof(*k));

	if (k == NULL)
		return NULL;
	k->h = h;
	k->bc = bc;
	k->srv = srv;
	k->st = st;
	k->fd = -1;
	k->seen_up = atomic_load(&st->up);
	k->timer = evtimer_new(h->base, start_cb, k);
	/* Assigned for real when a check starts. */
	k->io = event_new(h->base, -1, 0, io_cb, k);
	if (k->timer == NULL || k->io == NULL) {
		check_free(k);
		return NULL;
	}
	/* A spread start; LCG steps are plenty for that. */
	h->seed = h->seed * 6364136223846793005ULL + 1442695040888963407ULL;
	timer_in(k, (h->seed >> 33) % bc->health_interval_ms);
	return k;
}

/* The check h has for st, taken out of h's list, or NULL. */
static struct check *
check_take(struct health *h, const struct server_state *st)
{
	for (size_t i = 0; i < h->n; i++) {
		struct check *k = h->checks[i];

		if (k != NULL && k->st == st) {
			h->checks[i] = NULL;
			return k;
		}
	}
	return NULL;
}

int
health_update(struct health *h, struct backend_set *bs)
{
	struct check **checks;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < bs->n; i++)
		if (bs->b[i].cfg->health_check != CONFIG_HEALTH_OFF)
			n += bs->b[i].n;
	if ((checks = calloc(n ? n : 1, sizeof(*checks))) == NULL)
		return -1;
	/* New addresses first: what may fail, while nothing has moved. */
	for (size_t i = 0; i < bs->n; i++) {
		const struct backend_shared *sh = &bs->b[i];

		for (size_t j = 0; sh->cfg->health_check != CONFIG_HEALTH_OFF &&
		    j < sh->n; j++, k++) {
			bool have = false;

			for (size_t q = 0; q < h->n && !have; q++)
				have = h->checks[q] != NULL &&
				    h->checks[q]->st == sh->servers[j];
			if (have)
				continue;
			if ((checks[k] = check_new(h, sh->cfg, sh->entry[j],
			    sh->servers[j])) == NULL)
				goto fail;
		}
	}
	k = 0;
	for (size_t i = 0; i < bs->n; i++) {
		const struct backend_shared *sh = &bs->b[i];

		for (size_t j = 0; sh->cfg->health_check != CONFIG_HEALTH_OFF &&
		    j < sh->n; j++, k++) {
			if (checks[k] != NULL)
				continue;
			checks[k] = check_take(h, sh->servers[j]);
			checks[k]->bc = sh->cfg;
			checks[k]->srv = sh->entry[j];
		}
	}
	/* What is left is for addresses that went away. */
	for (size_t i = 0; i < h->n; i++)
		check_free(h->checks[i]);
	free(h->checks);
	h->checks = checks;
	h->n = n;
	backend_set_unref(h->bs);
	h->bs = backend_set_ref(bs);
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		check_free(checks[i]);
	free(checks);
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
	for (size_t i = 0; h->checks != NULL && i < h->n; i++)
		check_free(h->checks[i]);
	free(h->checks);
	backend_set_unref(h->bs);
	free(h);
}

unsigned long
health_checks_done(const struct health *h)
{
	return h->done;
}
