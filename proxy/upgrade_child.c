/* proxy/upgrade_child.c: the new process's side of a binary upgrade
 * (upgrade.h). It runs on the main thread during start-up, before any
 * worker runs, so it may wait on the socket (bounded by deadlines): no
 * connection of this process exists yet to be held up. */
#include "spliced/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/backend.h"
#include "spliced/handover.h"
#include "spliced/log.h"
#include "spliced/sdnotify.h"
#include "spliced/statcarry.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

/* Before the old process has sent anything, how long to wait for it:
 * it answers at once, unless it died. */
#define UPGRADE_CHILD_WAIT_MS (60 * 1000)

/* A connection received, held until the commit. */
struct held {
	struct handover_conn rec;
	int fds[HANDOVER_CONN_FDS];
	uint8_t *data[2];
};

struct upgrade_child {
	int sock;
	pid_t parent;
	size_t nsocks;
	struct held *conns;
	size_t nconns, cap;
	uint8_t *stats;             /* the old process's counters */
	size_t nstats;
	struct handover_server *servers;    /* its servers' states */
	size_t nservers;
	bool health_down;           /* its /healthz was set down */
	/* A CONN message: room for HANDOVER_BATCH records. */
	_Alignas(struct handover_conn) uint8_t batch[HANDOVER_MAX_MSG];
};

/* SPLICED_UPGRADE_FAULT=stop:WHERE: stop here, for a test to kill us. */
static void
fault(const char *where)
{
	const char *f = getenv("SPLICED_UPGRADE_FAULT");

	if (f != NULL && strncmp(f, "stop:", 5) == 0 && strcmp(f + 5, where) == 0)
		raise(SIGSTOP);
}

int
upgrade_child_open(struct upgrade_child **out)
{
	const char *v = getenv("SPLICED_UPGRADE_FD");
	struct upgrade_child *c;
	char *end;
	long fd;
	int type = 0;
	socklen_t len = sizeof(type);

	*out = NULL;
	if (v == NULL)
		return 0;
	errno = 0;
	fd = strtol(v, &end, 10);
	unsetenv("SPLICED_UPGRADE_FD");
	if (errno != 0 || *end != '\0' || fd < 3 || fd > 65535 ||
	    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_SEQPACKET) {
		log_error("SPLICED_UPGRADE_FD=%s: not the upgrade's socket", v);
		return -1;
	}
	/* Never into a process this one starts (its own upgrade). */
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) == -1 ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		log_error("upgrade: %s", strerror(errno));
		return -1;
	}
	c->sock = (int)fd;
	c->parent = getppid();
	/* systemd's watchdog was the old process's (WATCHDOG_PID): it is
	 * this one's once it is the main process. */
	v = getenv("WATCHDOG_PID");
	if (v != NULL && strtol(v, NULL, 10) == (long)c->parent) {
		char pid[24];

		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		setenv("WATCHDOG_PID", pid, 1);
	}
	*out = c;
	return 0;
}

static int
send_msg(struct upgrade_child *c, enum handover_type t, const void *body,
    size_t len)
{
	if (handover_send(c->sock, t, body, len, NULL, 0,
	    handover_now_ms() + UPGRADE_CHILD_WAIT_MS) == 0)
		return 0;
	log_error("upgrade: cannot answer pid %ld: %s", (long)c->parent,
	    strerror(errno));
	return -1;
}

/* The next message; fds as received (the caller's). -1 logged. */
static int
recv_msg(struct upgrade_child *c, enum handover_type *t, void *body,
    size_t cap, size_t *len, int *fds, size_t *nfds, uint64_t deadline)
{
	unsigned version;

	if (handover_recv(c->sock, t, body, cap, len, fds, nfds, deadline,
	    &version) == 0)
		return 0;
	if (errno == EPROTO && version != 0)
		log_error("upgrade: pid %ld speaks handover version %u, this "
		    "build %d", (long)c->parent, version, HANDOVER_VERSION);
	else
		log_error("upgrade: reading from pid %ld: %s", (long)c->parent,
		    errno == ECONNRESET ? "it went away" : strerror(errno));
	return -1;
}

static int
add_fd(int **v, size_t *n, int fd)
{
	int *g = realloc(*v, (*n + 1) * sizeof(*g));

	if (g == NULL)
		return -1;
	*v = g;
	(*v)[(*n)++] = fd;
	return 0;
}

static int
add_passed(struct sdnotify_fd **v, size_t *n, int fd, const char *name)
{
	struct sdnotify_fd *g = realloc(*v, (*n + 1) * sizeof(*g));
	char *s = strndup(name, sizeof(((struct handover_sock *)0)->name));

	if (g != NULL)
		*v = g;
	if (g == NULL || s == NULL) {
		free(s);
		return -1;
	}
	(*v)[(*n)++] = (struct sdnotify_fd){ fd, s };
	return 0;
}

int
upgrade_child_listeners(struct upgrade_child *c, int **bound, size_t *nbound,
    struct sdnotify_fd **passed, size_t *npassed, int *admin)
{
	struct handover_hello hello = { (uint32_t)getpid() };
	struct handover_sock kinds[HANDOVER_MAX_FDS];
	int fds[HANDOVER_MAX_FDS];
	uint64_t deadline = handover_now_ms() + UPGRADE_CHILD_WAIT_MS;
	enum handover_type t;
	size_t len, nfds;

	*bound = NULL;
	*passed = NULL;
	*nbound = *npassed = 0;
	*admin = -1;
	fault("hello");
	if (send_msg(c, HANDOVER_HELLO, &hello, sizeof(hello)) == -1)
		return -1;
	for (;;) {
		if (recv_msg(c, &t, kinds, sizeof(kinds), &len, fds, &nfds,
		    deadline) == -1)
			return -1;
		if (t == HANDOVER_LISTEN_END)
			break;
		if (t != HANDOVER_LISTEN || len != nfds * sizeof(*kinds)) {
			handover_close_fds(fds, nfds);
			log_error("upgrade: pid %ld sent message %d for the "
			    "listening sockets", (long)c->parent, (int)t);
			return -1;
		}
		for (size_t i = 0; i < nfds; i++) {
			int rc = 0;

			if (kinds[i].kind == HANDOVER_SOCK_ADMIN && *admin == -1)
				*admin = fds[i];
			else if (kinds[i].kind == HANDOVER_SOCK_PASSED)
				rc = add_passed(passed, npassed, fds[i],
				    kinds[i].name);
			else if (kinds[i].kind == HANDOVER_SOCK_BOUND)
				rc = add_fd(bound, nbound, fds[i]);
			else
				close(fds[i]);
			if (rc == -1) {
				handover_close_fds(fds + i, nfds - i);
				log_error("upgrade: out of memory");
				return -1;
			}
			c->nsocks++;
		}
	}
	fault("listeners");
	return 0;
}

static struct held *
held_add(struct upgrade_child *c)
{
	if (c->nconns == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct held *g = realloc(c->conns, cap * sizeof(*g));

		if (g == NULL)
			return NULL;
		c->conns = g;
		c->cap = cap;
	}
	memset(&c->conns[c->nconns], 0, sizeof(c->conns[0]));
	return &c->conns[c->nconns++];
}

/* Append DATA messages to *data until want bytes came. */
static int
take_data(struct upgrade_child *c, uint8_t **data, size_t want,
    uint64_t deadline)
{
	size_t got = 0, len, nfds;
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS];

	if (want == 0)
		return 0;
	if ((*data = malloc(want)) == NULL)
		return -1;
	while (got < want) {
		if (recv_msg(c, &t, *data + got, want - got, &len, fds, &nfds,
		    deadline) == -1)
			return -1;
		handover_close_fds(fds, nfds);
		if (t != HANDOVER_DATA || len == 0)
			return -1;
		got += len;
	}
	return 0;
}

/* CONN [DATA...] until CONN_END, each checked against this config. */
static int
take_conns(struct upgrade_child *c, struct worker *w, uint64_t deadline,
    char *why, size_t whylen)
{
	struct handover_end end;
	struct handover_conn *recs = (struct handover_conn *)c->batch;
	struct held *h;
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS];
	size_t len, nfds, n, used;

	for (;;) {
		if (recv_msg(c, &t, c->batch, sizeof(c->batch), &len, fds,
		    &nfds, deadline) == -1)
			return -1;
		if (t == HANDOVER_CONN_END && len == sizeof(end)) {
			memcpy(&end, c->batch, sizeof(end));
			break;
		}
		n = len / sizeof(*recs);
		used = 0;
		for (size_t i = 0; t == HANDOVER_CONN && i < n; i++)
			used += recs[i].nfds <= HANDOVER_CONN_FDS ?
			    recs[i].nfds : HANDOVER_MAX_FDS + 1;
		if (t != HANDOVER_CONN || n == 0 || len % sizeof(*recs) != 0 ||
		    used != nfds) {
			handover_close_fds(fds, nfds);
			snprintf(why, whylen, "message %d where connections "
			    "were due", (int)t);
			return -1;
		}
		used = 0;
		for (size_t i = 0; i < n; i++) {
			if ((h = held_add(c)) == NULL) {
				handover_close_fds(fds + used, nfds - used);
				snprintf(why, whylen, "out of memory");
				return -1;
			}
			h->rec = recs[i];
			memcpy(h->fds, fds + used, h->rec.nfds * sizeof(*fds));
			used += h->rec.nfds;
		}
		/* Held (theirs to close) before any check can fail. */
		for (size_t i = c->nconns - n; i < c->nconns; i++) {
			h = &c->conns[i];
			if (!worker_adopt_check(w, &h->rec, why, whylen))
				return -1;
			if (take_data(c, &h->data[0], h->rec.up.buf_len,
			    deadline) == -1 || take_data(c, &h->data[1],
			    h->rec.down.buf_len, deadline) == -1) {
				snprintf(why, whylen, "a connection's buffered "
				    "bytes did not come");
				return -1;
			}
		}
		if (c->nconns == n)
			fault("connections");   /* the first batch came */
	}
	c->health_down = end.health_down != 0;
	if (end.conns != c->nconns) {
		snprintf(why, whylen, "%zu connections came, %llu were sent",
		    c->nconns, (unsigned long long)end.conns);
		return -1;
	}
	return 0;
}

/* A SERVERS message's records, appended. -1 (logged). */
static int
take_servers(struct upgrade_child *c, const uint8_t *buf, size_t len)
{
	size_t n = len / sizeof(*c->servers);
	struct handover_server *g;

	if (len % sizeof(*c->servers) != 0) {
		log_error("upgrade: pid %ld sent a SERVERS message of %zu bytes",
		    (long)c->parent, len);
		return -1;
	}
	if ((g = realloc(c->servers, (c->nservers + n) * sizeof(*g))) == NULL)
		return -1;
	c->servers = g;
	memcpy(g + c->nservers, buf, len);
	c->nservers += n;
	return 0;
}

/* STATS and SERVERS messages until COMMIT. */
static int
take_stats(struct upgrade_child *c, uint64_t deadline)
{
	uint8_t buf[HANDOVER_MAX_MSG];
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS];
	size_t len, nfds;

	for (;;) {
		if (recv_msg(c, &t, buf, sizeof(buf), &len, fds, &nfds,
		    deadline) == -1)
			return -1;
		handover_close_fds(fds, nfds);
		if (t == HANDOVER_COMMIT)
			return 0;
		if (t == HANDOVER_SERVERS) {
			if (take_servers(c, buf, len) == -1)
				return -1;
			continue;
		}
		if (t != HANDOVER_STATS) {
			log_error("upgrade: pid %ld sent message %d before the "
			    "commit", (long)c->parent, (int)t);
			return -1;
		}
		uint8_t *g = realloc(c->stats, c->nstats + len);

		if (g == NULL)
			return -1;
		c->stats = g;
		memcpy(c->stats + c->nstats, buf, len);
		c->nstats += len;
	}
}

/* The old process's counters, continued by worker 0. */
static void
adopt_stats(struct upgrade_child *c, struct worker *w)
{
	struct stats_sample s;
	struct worker_totals t;

	if (stats_sample_init(&s, 0) == -1)
		return;
	if (statcarry_decode(c->stats, c->nstats, &s, &t) == -1 ||
	    worker_adopt_stats(w, &s, &t) == -1)
		log_warn("upgrade: the counters of pid %ld could not be taken "
		    "over (%s): they start again from 0", (long)c->parent,
		    errno == EINVAL ? "another shape" : strerror(errno));
	stats_sample_cleanup(&s);
}

int
upgrade_child_take(struct upgrade_child *c, struct worker **w, unsigned nw,
    unsigned timeout_ms)
{
	uint64_t deadline = handover_now_ms() + timeout_ms;
	char why[512] = "";

	if (send_msg(c, HANDOVER_LISTENING, NULL, 0) == -1)
		return -1;
	if (take_conns(c, w[0], deadline, why, sizeof(why)) == -1) {
		if (why[0] != '\0') {
			log_error("upgrade: giving up: %s", why);
			upgrade_child_fail(c, why);
		}
		return -1;
	}
	if (send_msg(c, HANDOVER_RECEIVED, NULL, 0) == -1 ||
	    take_stats(c, deadline) == -1)
		return -1;
	fault("commit");
	if (send_msg(c, HANDOVER_COMMITTED, NULL, 0) == -1)
		return -1;
	/* The commit point: every connection is ours now. */
	for (size_t i = 0; i < c->nconns; i++) {
		struct held *h = &c->conns[i];
		const void *data[2] = { h->data[0], h->data[1] };

		worker_adopt(w[h->rec.worker % nw], &h->rec, h->fds, data);
		h->rec.nfds = 0;
		free(h->data[0]);
		free(h->data[1]);
		h->data[0] = h->data[1] = NULL;
	}
	adopt_stats(c, w[0]);
	return 0;
}

void
upgrade_child_servers(const struct upgrade_child *c, struct backend_set *bs)
{
	for (size_t i = 0; i < c->nservers; i++) {
		const struct handover_server *s = &c->servers[i];

		if (memchr(s->backend, 0, sizeof(s->backend)) == NULL ||
		    memchr(s->server, 0, sizeof(s->server)) == NULL ||
		    s->addrlen > sizeof(s->addr))
			continue;
		/* What the admin endpoint set, by name (a server gone from
		 * the config is not found: nothing to carry). */
		if (s->admin != BACKEND_ADMIN_READY || s->weight != 0)
			(void)backend_server_set_admin(bs, s->backend, s->server,
			    s->admin < BACKEND_ADMIN_MAX_ ? s->admin : -1,
			    s->weight <= 256 ? s->weight : 0);
		for (size_t b = 0; b < bs->n; b++) {
			const struct backend_shared *sh = &bs->b[b];

			if (strcmp(sh->cfg->name, s->backend) != 0)
				continue;
			for (size_t k = 0; k < sh->n; k++)
				if (strcmp(sh->entry[k]->name, s->server) == 0 &&
				    sh->servers[k]->addr.len == s->addrlen &&
				    memcmp(&sh->servers[k]->addr.ss, &s->addr,
				    s->addrlen) == 0)
					(void)backend_server_set_up(
					    sh->servers[k], s->up != 0);
		}
	}
}

bool
upgrade_child_health_down(const struct upgrade_child *c)
{
	return c->health_down;
}

void
upgrade_child_report(const struct upgrade_child *c, pid_t *pid, size_t *socks,
    size_t *conns)
{
	*pid = c->parent;
	*socks = c->nsocks;
	*conns = c->nconns;
}

void
upgrade_child_running(struct upgrade_child *c)
{
	(void)handover_send(c->sock, HANDOVER_RUNNING, NULL, 0, NULL, 0,
	    handover_now_ms() + 1000);
}

void
upgrade_child_fail(struct upgrade_child *c, const char *why)
{
	if (c == NULL)
		return;
	(void)handover_send(c->sock, HANDOVER_FAIL, why, strlen(why), NULL, 0,
	    handover_now_ms() + 1000);
}

void
upgrade_child_free(struct upgrade_child *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nconns; i++) {
		handover_close_fds(c->conns[i].fds, c->conns[i].rec.nfds);
		free(c->conns[i].data[0]);
		free(c->conns[i].data[1]);
	}
	free(c->conns);
	free(c->stats);
	free(c->servers);
	close(c->sock);
	free(c);
}
