/* proxy/conn_handover.c: a connection leaving for, or arriving from,
 * another spliced process (a binary upgrade: upgrade.h, handover.h).
 *
 * Only relaying connections travel: their state is two sockets, two
 * directions (relay.h) and a few fields, all still at any point between
 * two callbacks of the worker's loop, which is where these calls run.
 * The old process freezes a connection (no event armed, so nothing moves
 * and its description stays true) until the new one has taken it; then
 * it lets go of its copies of the fds, or, if the upgrade fails, thaws
 * it as if nothing had happened. The new process builds the connection
 * anew from the record under its own config: the same listener (by
 * name), backend and server (by name and address, for their slots), a
 * new id. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/handover.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/srctable.h"
#include "spliced/stats.h"
#include "spliced/worker.h"  /* struct worker_snap: data only */
#include "conn_int.h"

unsigned
conn_home_unsettled(const struct conn_home *h)
{
	const struct conn *c;
	unsigned n = 0;

	TAILQ_FOREACH(c, &h->conns, link)
		n += !c->relaying;
	return n;
}

void
conn_home_add_stats(struct conn_home *h, const struct conn_stats *st)
{
	conn_stats_add(&h->st, st);
}

static void
copy_name(char *to, size_t n, const char *from)
{
	snprintf(to, n, "%s", from != NULL ? from : "");
}

/* The server text conn.c logs: the one taken over, or the pick's. */
static void
describe_server(const struct conn *c, struct handover_conn *r)
{
	const struct addr *a;
	char text[ADDR_TEXT_MAX];

	if (c->srvtext != NULL) {
		copy_name(r->server_text, sizeof(r->server_text), c->srvtext);
		if (c->lb == NULL || c->server < 0)
			return;
	}
	a = &c->lb->shared[c->server]->addr;
	copy_name(r->server, sizeof(r->server), c->lb->entry[c->server]->name);
	memcpy(&r->server_addr, &a->ss, a->len);
	r->server_addrlen = a->len;
	if (c->srvtext == NULL)
		snprintf(r->server_text, sizeof(r->server_text), "%s/%s",
		    r->server, addr_format((const struct sockaddr *)&a->ss,
		    text, sizeof(text)));
}

static void
describe(struct conn *c, unsigned worker, struct handover_item *it)
{
	struct handover_conn *r = &it->rec;
	const struct relay_dir *dirs[2] = { &c->up, &c->down };

	memset(it, 0, sizeof(*it));
	copy_name(r->listener, sizeof(r->listener), c->l->cfg->name);
	copy_name(r->backend, sizeof(r->backend), c->bc != NULL ? c->bc->name : NULL);
	copy_name(r->sni, sizeof(r->sni), c->sni);
	describe_server(c, r);
	memcpy(&r->peer, &c->peer, c->peerlen);
	r->peerlen = c->peerlen;
	r->worker = worker;
	r->started_sec = c->started.tv_sec;
	r->started_nsec = c->started.tv_nsec;
	r->frozen_ms = c->frozen_ms;
	r->one_done = c->one_done;
	r->first_end = (uint8_t)c->first_end;
	relay_export(&c->up, &r->up);
	relay_export(&c->down, &r->down);
	it->fds[r->nfds++] = c->cfd;
	it->fds[r->nfds++] = c->bfd;
	for (int k = 0; k < 2; k++) {
		const struct relay_dir *d = dirs[k];

		if (d->pipe.rfd >= 0) {
			it->fds[r->nfds++] = d->pipe.rfd;
			it->fds[r->nfds++] = d->pipe.wfd;
		}
		it->data[k] = d->buf != NULL ? d->buf + d->off : NULL;
	}
}

static void
freeze(struct conn *c)
{
	relay_freeze(&c->up);
	relay_freeze(&c->down);
	event_del(&c->timer);
	c->frozen = true;
	c->frozen_ms = clock_coarse_ms();
}

/* Time spent frozen is not the peers' silence: the idle clock skips it. */
static void
unfreeze_clock(struct conn *c, uint64_t since)
{
	uint64_t now = clock_coarse_ms(), d = now > since ? now - since : 0;

	c->up.last_io_ms += d;
	c->down.last_io_ms += d;
}

/* Arm what a relaying connection waits on: its directions' events, and
 * its timer for the idle time left by the directions' stamps (half
 * closed: the next check of the finished side), as conn.c's idle
 * callback would have re-armed it; when it fires, it works the rest
 * out itself. False when it could not (c is closed then). */
static bool
run_again(struct conn *c)
{
	uint64_t now = clock_coarse_ms(), limit = c->l->cfg->timeout_idle_ms;
	uint64_t last = c->up.last_io_ms > c->down.last_io_ms ?
	    c->up.last_io_ms : c->down.last_io_ms;
	uint64_t left;
	struct timeval tv;

	/* One clock for the whole host: the old process's stamps are never
	 * ahead of it, but a stamp that were must not look like an age. */
	if (last > now)
		last = now;
	left = now - last >= limit ? 0 : limit - (now - last);
	if (c->one_done && left > CONN_HALF_CLOSED_CHECK_MS)
		left = CONN_HALF_CLOSED_CHECK_MS;
	tv = clock_timeval_ms(left);
	c->frozen = false;
	if (relay_thaw(&c->up) == -1 || relay_thaw(&c->down) == -1 ||
	    evtimer_add(&c->timer, &tv) == -1) {
		log_warn("listener %s: cannot poll a connection again: %s; "
		    "closing it", c->l->cfg->name, strerror(errno));
		conn_close(c, CONN_LOCAL_ERROR);
		return false;
	}
	return true;
}

int
conn_home_export(struct conn_home *h, unsigned worker,
    struct handover_items *items)
{
	size_t first = items->n;
	struct handover_item *it;
	struct conn *c;

	TAILQ_FOREACH(c, &h->conns, link) {
		/* The caller waited for none to be unsettled: one would have
		 * directions never set up. */
		if (!c->relaying) {
			errno = EAGAIN;
			goto undo;
		}
		if ((it = handover_items_add(items)) == NULL) {
			errno = ENOMEM;
			goto undo;
		}
		freeze(c);
		describe(c, worker, it);
	}
	return 0;
undo:
	items->n = first;
	conn_home_thaw(h);
	return -1;
}

void
conn_home_thaw(struct conn_home *h)
{
	struct conn *c, *next;

	/* run_again() may close c: take the next one first. */
	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->frozen) {
			unfreeze_clock(c, c->frozen_ms);
			(void)run_again(c);
		}
	}
}

void
conn_home_abort_frozen(struct conn_home *h)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (!c->frozen)
			continue;
		c->frozen = false;
		conn_reset_fd(c->cfd);
		conn_reset_fd(c->bfd);
		conn_close(c, CONN_LOCAL_ERROR);
	}
}

unsigned
conn_home_release(struct conn_home *h)
{
	struct conn *c, *next;
	unsigned n = 0;
	bool wake = false;

	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (!c->frozen)
			continue;
		/* Pipes holding bytes: the bytes are the new process's. */
		relay_forget_pipe(&c->up);
		relay_forget_pipe(&c->down);
		relay_cleanup(&c->up);
		relay_cleanup(&c->down);
		event_del(&c->timer);
		conn_ident_cleanup(c);
		/* No SO_LINGER, no shutdown: the new process holds the same
		 * sockets, and this close only drops a reference. */
		close(c->cfd);
		close(c->bfd);
		if (c->reserved)
			backend_lb_release(c->lb, (size_t)c->server);
		TAILQ_REMOVE(&h->conns, c, link);
		h->n--;
		h->st.handed++;
		c->sl->active--;
		wake |= listener_release(c->snap->conf->ls, c->l);
		c->snap->conns--;
		c->closed = true;
		conn_free(c);
		n++;
	}
	if (n > 0)
		h->hooks.ended(h->arg, wake);
	return n;
}

static struct listener *
find_listener(const struct worker_snap *snap, const char *name)
{
	for (size_t i = 0; i < snap->conf->ls->n; i++)
		if (strcmp(snap->conf->ls->l[i].cfg->name, name) == 0)
			return &snap->conf->ls->l[i];
	return NULL;
}

bool
conn_adopt_check(const struct worker_snap *snap, const struct handover_conn *r,
    char *err, size_t errlen)
{
	unsigned want = r->waiting ? 1 : 2 + 2 * (r->up.has_pipe != 0) +
	    2 * (r->down.has_pipe != 0);

	if (memchr(r->listener, 0, sizeof(r->listener)) == NULL ||
	    memchr(r->backend, 0, sizeof(r->backend)) == NULL ||
	    memchr(r->server, 0, sizeof(r->server)) == NULL ||
	    memchr(r->server_text, 0, sizeof(r->server_text)) == NULL ||
	    memchr(r->sni, 0, sizeof(r->sni)) == NULL ||
	    r->peerlen > sizeof(r->peer) ||
	    r->server_addrlen > sizeof(r->server_addr) || r->nfds != want ||
	    (!r->waiting && (!relay_adopt_ok(&r->up) ||
	    !relay_adopt_ok(&r->down)))) {
		snprintf(err, errlen, "a connection record that makes no sense");
		return false;
	}
	if (find_listener(snap, r->listener) == NULL) {
		snprintf(err, errlen, "listener %s, which has connections, is "
		    "not in the new config", r->listener);
		return false;
	}
	return true;
}

/* The new process's slots for c, as its limits count them: its
 * listener's, its source's (per-source limits) and its server's. */
static void
take_slots(struct conn *c, const struct handover_conn *r)
{
	const struct config_listener *lc = c->l->cfg;
	struct listener_set *ls = c->snap->conf->ls;
	struct srctable *t = listener_proc_sources(ls->proc);
	struct srckey k;

	listener_adopt(ls, c->l);
	if (t != NULL && (lc->max_connections_per_source > 0 ||
	    lc->connection_rate_per_source > 0) &&
	    srckey_make(&k, listener_scope(c->l),
	    (const struct sockaddr *)&c->peer, lc->source_prefix_v6))
		(void)srctable_admit(t, &k, 0, 0, clock_coarse_ms(), &c->ticket);
	for (size_t i = 0; i < ls->cfg->nbackends; i++) {
		if (strcmp(ls->cfg->backends[i].name, r->backend) != 0)
			continue;
		c->bc = &ls->cfg->backends[i];
		c->lb = &c->snap->lb[i];
		c->lbsnap = c->snap;
		c->server = backend_lb_adopt(c->lb, r->server,
		    (const struct sockaddr *)&r->server_addr, r->server_addrlen);
		c->reserved = c->server >= 0;
	}
}

/* The directions: set up, then given what the old process's held. */
static int
adopt_dirs(struct conn *c, const struct handover_conn *r, const int *fds,
    const void *const data[2])
{
	const struct config_listener *lc = c->l->cfg;
	struct relay_ctx *ctx = c->h->relay;
	int k = 2, up_r = -1, up_w = -1, dn_r = -1, dn_w = -1;

	if (r->up.has_pipe) {
		up_r = fds[k++];
		up_w = fds[k++];
	}
	if (r->down.has_pipe) {
		dn_r = fds[k++];
		dn_w = fds[k++];
	}
	if (relay_init(&c->up, ctx, c->cfd, c->bfd, lc->splice,
	    lc->splice_threshold, conn_dir_cb, c) == -1 ||
	    relay_init(&c->down, ctx, c->bfd, c->cfd, lc->splice,
	    lc->splice_threshold, conn_dir_cb, c) == -1)
		return -1;
	relay_pair(&c->up, &c->down);
	/* Once adopted, a pipe is the direction's, closed with it. */
	if (relay_adopt(&c->up, &r->up, up_r, up_w, data[0]) == -1)
		return -1;
	up_r = up_w = -1;
	if (relay_adopt(&c->down, &r->down, dn_r, dn_w, data[1]) == -1)
		return -1;
	return 0;
}

/* The fds of a record not taken: its peers see an RST. */
static void
close_fds(const int *fds, unsigned n, unsigned from)
{
	for (unsigned i = from; i < n; i++) {
		if (i < 2)
			conn_reset_fd(fds[i]);
		close(fds[i]);
	}
}

void
conn_adopt(struct conn_home *h, const struct handover_conn *r, const int *fds,
    const void *const data[2])
{
	struct worker_snap *snap = h->cur;
	struct listener *l = find_listener(snap, r->listener);
	struct conn *c;
	unsigned npipe_fds;

	if (l == NULL || (c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("upgrade: cannot take over a connection of listener "
		    "%s: %s; resetting it", r->listener, l == NULL ?
		    "no such listener" : strerror(ENOMEM));
		close_fds(fds, r->nfds, 0);
		return;
	}
	c->h = h;
	c->up.pipe.rfd = c->up.pipe.wfd = -1;
	c->down.pipe.rfd = c->down.pipe.wfd = -1;
	c->id = h->id_base | ++h->seq;
	c->snap = snap;
	snap->conns++;
	c->l = l;
	c->sl = snap->sl[l - snap->conf->ls->l];
	c->sl->active++;
	c->cfd = fds[0];
	c->bfd = fds[1];
	c->server = -1;
	memcpy(&c->peer, &r->peer, r->peerlen);
	c->peerlen = r->peerlen;
	c->started.tv_sec = (time_t)r->started_sec;
	c->started.tv_nsec = (long)r->started_nsec;
	c->one_done = r->one_done != 0;
	c->first_end = r->first_end == CONN_SERVER_EOF ? CONN_SERVER_EOF :
	    CONN_CLIENT_EOF;
	c->relaying = true;
	event_assign(&c->cev, h->base, -1, 0, conn_idle_cb, c);
	event_assign(&c->timer, h->base, -1, 0, conn_idle_cb, c);
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	h->n++;
	h->st.adopted++;
	take_slots(c, r);
	if ((c->srvtext = strdup(r->server_text)) == NULL ||
	    (r->sni[0] != '\0' && (c->sni = strdup(r->sni)) == NULL) ||
	    adopt_dirs(c, r, fds, data) == -1) {
		log_warn("listener %s: cannot take over a connection: %s; "
		    "resetting it", l->cfg->name, strerror(errno));
		/* Pipes not yet the directions' are still ours to close. */
		npipe_fds = 2 * (c->up.pipe.rfd < 0 && r->up.has_pipe) +
		    2 * (c->down.pipe.rfd < 0 && r->down.has_pipe);
		close_fds(fds, r->nfds, r->nfds - npipe_fds);
		conn_reset_fd(c->cfd);
		conn_reset_fd(c->bfd);
		conn_close(c, CONN_LOCAL_ERROR);
		return;
	}
	unfreeze_clock(c, r->frozen_ms);
	(void)run_again(c);
}
