/* proxy/upgrade.c: the old process's side of a binary upgrade (upgrade.h).
 *
 * It runs on a thread of its own, so that the protocol's waits (for the
 * new process to start, to read its config, to take thousands of fds)
 * never hold up the main loop, let alone a worker. It talks to the
 * workers only through worker_query(): each step (hold accepting, count
 * what has not settled, freeze and describe, thaw, let go) runs on the
 * worker's own loop, between two callbacks, which is what makes every
 * connection's state still while it travels. */
#include "spliced/upgrade.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "spliced/admin.h"
#include "spliced/backend.h"
#include "spliced/handover.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/statcarry.h"
#include "spliced/stats.h"
#include "spliced/worker.h"
#include "upgrade_int.h"

extern char **environ;

/* How often the thread asks whether every connection has settled. */
#define UPGRADE_SETTLE_POLL_MS 5
/* After the commit: how long to wait for the new process to say its
 * workers run (only the pause figure depends on it). */
#define UPGRADE_RUNNING_WAIT_MS 5000

static char upgrade_exe[PATH_MAX];
static char **upgrade_argv;

/* argv[0] in PATH, as execvp would find it, into upgrade_exe. */
static bool
upgrade_search_path(const char *name)
{
	const char *path = getenv("PATH"), *p, *end;

	for (p = path; p != NULL && *p != '\0'; p = *end ? end + 1 : end) {
		int n;

		end = strchrnul(p, ':');
		n = snprintf(upgrade_exe, sizeof(upgrade_exe), "%.*s/%s",
		    (int)(end - p), p, name);
		if (end > p && n > 0 && (size_t)n < sizeof(upgrade_exe) &&
		    access(upgrade_exe, X_OK) == 0)
			return true;
	}
	return false;
}

void
upgrade_remember(int argc, char **argv)
{
	char cwd[PATH_MAX];
	ssize_t n;

	(void)argc;
	upgrade_argv = argv;
	/* The path as started, made absolute but not resolved: a symlink
	 * switched to a new release (current -> releases/v2) must lead to
	 * the new binary, which /proc/self/exe (resolved) would not. */
	if (strchr(argv[0], '/') != NULL) {
		size_t a = strlen(argv[0]), c = 0;

		if (argv[0][0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL)
			c = strlen(cwd);
		if (c + 1 + a < sizeof(upgrade_exe)) {
			memcpy(upgrade_exe, cwd, c);
			if (c > 0)
				upgrade_exe[c++] = '/';
			memcpy(upgrade_exe + c, argv[0], a + 1);
			return;
		}
	}
	if (upgrade_search_path(argv[0]))
		return;
	if ((n = readlink("/proc/self/exe", upgrade_exe,
	    sizeof(upgrade_exe) - 1)) > 0)
		upgrade_exe[n] = '\0';
	else
		snprintf(upgrade_exe, sizeof(upgrade_exe), "%s", argv[0]);
}

/* ---- the steps ---- */

int
upgrade_fail(struct upgrade *u, const char *fmt, ...)
{
	va_list ap;

	if (u->why[0] != '\0')
		return -1;
	va_start(ap, fmt);
	vsnprintf(u->why, sizeof(u->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* A FAIL among what the new process left in the socket: 0 with u->why
 * set, or -1 when there is none. */
static int
read_fail(struct upgrade *u, const char *step)
{
	char buf[HANDOVER_MAX_MSG];
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS];
	size_t n, nfds;
	unsigned version;

	while (handover_recv(u->sock, &t, buf, sizeof(buf) - 1, &n, fds, &nfds,
	    handover_now_ms(), &version) == 0) {
		handover_close_fds(fds, nfds);
		if (t == HANDOVER_FAIL) {
			buf[n] = '\0';
			(void)upgrade_fail(u, "pid %ld gave up %s: %s", (long)u->child,
			    step, buf);
			return 0;
		}
	}
	return -1;
}

/* Why the socket failed: mostly, what became of the new process. */
static int
fail_io(struct upgrade *u, const char *step, int err)
{
	int st;
	pid_t r = 0;

	if (atomic_load(&u->cancel) && !u->committing)
		return upgrade_fail(u, "cancelled by a signal to stop");
	/* A sender that failed may have missed the new process's reason,
	 * sent before it went away: it is still in the socket. */
	if ((err == EPIPE || err == ECONNRESET) && read_fail(u, step) == 0)
		return -1;
	/* It closed its end: it is exiting; give it a moment to say how. */
	for (int i = 0; i < 100 && r == 0 && err == ECONNRESET; i++) {
		r = waitpid(u->child, &st, WNOHANG);
		if (r == 0)
			nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	if (r == u->child) {
		u->child = -1;
		if (WIFEXITED(st))
			return upgrade_fail(u, "pid %ld exited with status %d %s",
			    (long)r, WEXITSTATUS(st), step);
		return upgrade_fail(u, "pid %ld was killed by signal %d %s", (long)r,
		    WTERMSIG(st), step);
	}
	if (err == ETIMEDOUT)
		return upgrade_fail(u, "pid %ld did not answer within upgrade_timeout "
		    "%s", (long)u->child, step);
	if (err == EPROTO)
		return upgrade_fail(u, "pid %ld speaks another handover version %s",
		    (long)u->child, step);
	return upgrade_fail(u, "pid %ld %s: %s", (long)u->child, step, strerror(err));
}

/* The next message, which must be `want` (a FAIL's text is the reason). */
static int
expect(struct upgrade *u, enum handover_type want, void *body, size_t cap,
    size_t *len, const char *step)
{
	char buf[HANDOVER_MAX_MSG];
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS];
	size_t n, nfds;
	unsigned version;

	if (atomic_load(&u->cancel) && !u->committing)
		return upgrade_fail(u, "cancelled by a signal to stop");
	if (handover_recv(u->sock, &t, buf, sizeof(buf) - 1, &n, fds, &nfds,
	    u->deadline_ms, &version) == -1)
		return fail_io(u, step, errno);
	handover_close_fds(fds, nfds);
	if (t == HANDOVER_FAIL) {
		buf[n] = '\0';
		return upgrade_fail(u, "pid %ld gave up %s: %s", (long)u->child, step, buf);
	}
	if (t != want || n > cap)
		return upgrade_fail(u, "pid %ld sent message %d %s", (long)u->child,
		    (int)t, step);
	if (n > 0)
		memcpy(body, buf, n);
	if (len != NULL)
		*len = n;
	return 0;
}

static int
send_msg(struct upgrade *u, enum handover_type t, const void *body,
    size_t len, const int *fds, size_t nfds, const char *step)
{
	if (atomic_load(&u->cancel) && !u->committing)
		return upgrade_fail(u, "cancelled by a signal to stop");
	if (handover_send(u->sock, t, body, len, fds, nfds, u->deadline_ms) == -1)
		return fail_io(u, step, errno);
	return 0;
}

/* Start the binary on disk with our arguments; its end of the socket
 * is at an fd without close-on-exec, named in SPLICED_UPGRADE_FD. */
static int
spawn(struct upgrade *u, int their)
{
	posix_spawnattr_t at;
	sigset_t none, deflt;
	size_t n = 0;
	char **env, var[64];
	int fd, rc;

	for (char **e = environ; *e != NULL; e++)
		n++;
	if ((env = calloc(n + 2, sizeof(*env))) == NULL)
		return upgrade_fail(u, "out of memory");
	for (size_t i = 0, k = 0; i < n; i++)
		if (strncmp(environ[i], "SPLICED_UPGRADE_FD=", 19) != 0)
			env[k++] = environ[i];
	/* F_DUPFD: a copy without FD_CLOEXEC, for the child alone. */
	if ((fd = fcntl(their, F_DUPFD, 3)) == -1) {
		free(env);
		return upgrade_fail(u, "cannot pass the socket: %s", strerror(errno));
	}
	snprintf(var, sizeof(var), "SPLICED_UPGRADE_FD=%d", fd);
	for (n = 0; env[n] != NULL; n++)
		;
	env[n] = var;
	/* It starts as a process of its own would: no signal blocked (the
	 * workers block theirs), default handlers. */
	sigemptyset(&none);
	sigfillset(&deflt);
	sigdelset(&deflt, SIGPIPE);
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &deflt);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&u->child, upgrade_exe, NULL, &at, upgrade_argv, env);
	posix_spawnattr_destroy(&at);
	close(fd);
	free(env);
	if (rc != 0) {
		u->child = -1;
		return upgrade_fail(u, "cannot start %s: %s", upgrade_exe, strerror(rc));
	}
	log_info("upgrade: started %s as pid %ld", upgrade_exe, (long)u->child);
	return 0;
}

/* Every listening socket, in messages of at most HANDOVER_MAX_FDS. */
static int
send_listeners(struct upgrade *u, size_t *count)
{
	struct listener_fd *v;
	struct handover_sock kinds[HANDOVER_MAX_FDS];
	int fds[HANDOVER_MAX_FDS], afd = admin_listen_fd(u->admin);
	size_t n, k = 0;
	int rc = -1;

	if (listener_proc_fds(u->p->lp, &v, &n) == -1)
		return upgrade_fail(u, "cannot copy the listening sockets: %s",
		    strerror(errno));
	for (size_t i = 0; i <= n; i++) {
		bool last = i == n;

		if (!last || afd >= 0) {
			int fd = last ? afd : v[i].fd;

			memset(&kinds[k], 0, sizeof(kinds[k]));
			kinds[k].kind = last ? HANDOVER_SOCK_ADMIN : v[i].name ?
			    HANDOVER_SOCK_PASSED : HANDOVER_SOCK_BOUND;
			if (!last && v[i].name != NULL)
				snprintf(kinds[k].name, sizeof(kinds[k].name),
				    "%s", v[i].name);
			fds[k++] = fd;
		}
		if (k > 0 && (k == HANDOVER_MAX_FDS || last)) {
			if (send_msg(u, HANDOVER_LISTEN, kinds, k * sizeof(*kinds),
			    fds, k, "taking the listening sockets") == -1)
				goto out;
			*count += k;
			k = 0;
		}
	}
	rc = send_msg(u, HANDOVER_LISTEN_END, NULL, 0, NULL, 0,
	    "taking the listening sockets");
out:
	listener_fds_free(v, n);
	return rc;
}

/* Wait until no connection is in a handshake or connecting, and no
 * client waits for a slot: they finish here, then travel. */
static int
settle(struct upgrade *u)
{
	struct timespec poll = { 0, UPGRADE_SETTLE_POLL_MS * 1000 * 1000 };
	unsigned left;
	bool failed;

	for (;;) {
		left = upgrade_ask_all(u, upgrade_unsettled_fn, &failed);
		if (failed)
			return upgrade_fail(u, "out of memory");
		if (left == 0)
			return 0;
		if (atomic_load(&u->cancel))
			return upgrade_fail(u, "cancelled by a signal to stop");
		if (handover_now_ms() >= u->deadline_ms)
			return upgrade_fail(u, "%u connections were still connecting or "
			    "in a handshake when upgrade_timeout passed", left);
		nanosleep(&poll, NULL);
	}
}

/* Connections in CONN messages of as many records as fit (size and fds),
 * each message followed by its records' copy-buffer bytes, in order. */
struct handover_batch {
	struct handover_conn rec[HANDOVER_BATCH];
	const struct handover_item *items[HANDOVER_BATCH];
	int fds[HANDOVER_MAX_FDS];
	size_t n, nfds;
};

static int
send_batch(struct upgrade *u, struct handover_batch *b)
{
	if (b->n == 0)
		return 0;
	if (send_msg(u, HANDOVER_CONN, b->rec, b->n * sizeof(b->rec[0]),
	    b->fds, b->nfds, "taking the connections") == -1)
		return -1;
	for (size_t i = 0; i < b->n; i++) {
		const struct handover_item *it = b->items[i];
		const struct handover_dir *d[2] = { &it->rec.up, &it->rec.down };

		for (int k = 0; k < 2; k++)
			for (size_t off = 0; off < d[k]->buf_len;
			    off += HANDOVER_MAX_MSG) {
				size_t n = d[k]->buf_len - off;

				if (n > HANDOVER_MAX_MSG)
					n = HANDOVER_MAX_MSG;
				if (send_msg(u, HANDOVER_DATA,
				    (const char *)it->data[k] + off, n, NULL, 0,
				    "taking the connections") == -1)
					return -1;
			}
	}
	b->n = b->nfds = 0;
	return 0;
}

/* it joins the batch, sent first when it would not fit. */
static int
send_conn(struct upgrade *u, struct handover_batch *b,
    const struct handover_item *it)
{
	if ((b->n == HANDOVER_BATCH || b->nfds + it->rec.nfds >
	    HANDOVER_MAX_FDS) && send_batch(u, b) == -1)
		return -1;
	b->rec[b->n] = it->rec;
	b->items[b->n++] = it;
	memcpy(b->fds + b->nfds, it->fds, it->rec.nfds * sizeof(int));
	b->nfds += it->rec.nfds;
	return 0;
}

static int
send_conns(struct upgrade *u, size_t *count)
{
	struct handover_end end = { 0 };
	struct handover_batch *b;
	bool failed;

	if ((u->items = calloc(u->p->nw, sizeof(*u->items))) == NULL ||
	    (b = calloc(1, sizeof(*b))) == NULL)
		return upgrade_fail(u, "out of memory");
	u->frozen = true;
	*count = upgrade_ask_all(u, upgrade_export_fn, &failed);
	if (failed) {
		free(b);
		return upgrade_fail(u, "out of memory describing the connections");
	}
	for (unsigned w = 0; w < u->p->nw; w++)
		for (size_t i = 0; i < u->items[w].n; i++)
			if (send_conn(u, b, &u->items[w].v[i]) == -1) {
				free(b);
				return -1;
			}
	if (send_batch(u, b) == -1) {
		free(b);
		return -1;
	}
	free(b);
	end.conns = *count;
	end.health_down = u->health_down;
	return send_msg(u, HANDOVER_CONN_END, &end, sizeof(end), NULL, 0,
	    "taking the connections");
}

/* The counters, once the connections are frozen (nothing counts any
 * more), in STATS messages; the new process adds them to its own. */
static int
send_stats(struct upgrade *u)
{
	struct stats_sample all;
	struct worker_totals t = { 0 };
	uint8_t *buf = NULL;
	size_t len = 0;
	bool failed;
	int rc = -1;

	if (stats_sample_init(&all, 0) == -1)
		return upgrade_fail(u, "out of memory");
	if ((u->samples = calloc(u->p->nw, sizeof(*u->samples))) == NULL ||
	    (u->totals = calloc(u->p->nw, sizeof(*u->totals))) == NULL) {
		upgrade_fail(u, "out of memory");
		goto out;
	}
	upgrade_ask_all(u, upgrade_counters_fn, &failed);
	for (unsigned w = 0; w < u->p->nw && !failed; w++) {
		failed = stats_sample_merge(&all, &u->samples[w]) == -1;
		conn_stats_add(&t.conn, &u->totals[w].conn);
		relay_stats_add(&t.relay, &u->totals[w].relay);
	}
	if (failed || statcarry_encode(&all, &t, &buf, &len) == -1) {
		upgrade_fail(u, "out of memory gathering the counters");
		goto out;
	}
	for (size_t off = 0; off < len; off += HANDOVER_MAX_MSG)
		if (send_msg(u, HANDOVER_STATS, buf + off, len - off >
		    HANDOVER_MAX_MSG ? HANDOVER_MAX_MSG : len - off, NULL, 0,
		    "taking the counters") == -1)
			goto out;
	rc = 0;
out:
	for (unsigned w = 0; u->samples != NULL && w < u->p->nw; w++)
		stats_sample_cleanup(&u->samples[w]);
	free(u->samples);
	free(u->totals);
	u->samples = NULL;
	u->totals = NULL;
	stats_sample_cleanup(&all);
	free(buf);
	return rc;
}

/* COMMIT went out and COMMITTED did not come. If the new process ended
 * (its end read, in order, after anything it sent), it never committed:
 * the connections go on here. If it is still there (upgrade_timeout),
 * it is stopped first, then whatever it managed to send is read: a
 * COMMITTED means it may have moved bytes of the connections, which
 * then cannot go on here either (u->lost: undo() resets them). */
static void
commit_unsure(struct upgrade *u)
{
	char buf[HANDOVER_MAX_MSG];
	enum handover_type t;
	int fds[HANDOVER_MAX_FDS], st;
	size_t n, nfds;
	unsigned version;

	if (u->child <= 0)
		return;
	kill(u->child, SIGKILL);
	(void)waitpid(u->child, &st, 0);
	u->child = -1;
	while (handover_recv(u->sock, &t, buf, sizeof(buf), &n, fds, &nfds,
	    handover_now_ms(), &version) == 0) {
		handover_close_fds(fds, nfds);
		if (t == HANDOVER_COMMITTED)
			u->lost = true;
	}
}

/* The servers' states, in SERVERS messages; the new process sets them
 * before its checks and workers start. */
static int
send_servers(struct upgrade *u)
{
	size_t per = HANDOVER_MAX_MSG / sizeof(*u->servers);

	for (size_t i = 0; i < u->nservers; i += per) {
		size_t n = u->nservers - i < per ? u->nservers - i : per;

		if (send_msg(u, HANDOVER_SERVERS, u->servers + i,
		    n * sizeof(*u->servers), NULL, 0, "taking the servers") == -1)
			return -1;
	}
	return 0;
}

/* On the main thread: what every server's state is now. 0 / -1 ENOMEM. */
static int
servers_take(struct upgrade *u, const struct backend_set *bs)
{
	size_t n = 0;

	for (size_t b = 0; b < bs->n; b++)
		n += bs->b[b].n;
	if (n > 0 && (u->servers = calloc(n, sizeof(*u->servers))) == NULL)
		return -1;
	for (size_t b = 0; b < bs->n; b++)
		for (size_t i = 0; i < bs->b[b].n; i++) {
			const struct server_state *st = bs->b[b].servers[i];
			struct handover_server *s = &u->servers[u->nservers++];

			snprintf(s->backend, sizeof(s->backend), "%s",
			    bs->b[b].cfg->name);
			snprintf(s->server, sizeof(s->server), "%s",
			    bs->b[b].entry[i]->name);
			memcpy(&s->addr, &st->addr.ss, st->addr.len);
			s->addrlen = st->addr.len;
			s->up = atomic_load(&st->up);
			s->admin = (uint8_t)atomic_load(&st->admin);
			s->weight = (uint16_t)atomic_load(&st->weight);
		}
	return 0;
}

/* From here a cancel no longer interrupts (see struct upgrade). */
static int
begin_commit(struct upgrade *u)
{
	int rc = 0;

	pthread_mutex_lock(&u->lock);
	if (atomic_load(&u->cancel))
		rc = upgrade_fail(u, "cancelled by a signal to stop");
	else
		u->committing = true;
	pthread_mutex_unlock(&u->lock);
	return rc;
}

static int
run(struct upgrade *u, uint64_t t0)
{
	size_t socks = 0, conns = 0, n;
	struct handover_hello hello;
	uint64_t frozen_at, done_at;
	bool failed, running;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return upgrade_fail(u, "socketpair: %s", strerror(errno));
	pthread_mutex_lock(&u->lock);
	u->sock = sv[0];
	pthread_mutex_unlock(&u->lock);
	if (spawn(u, sv[1]) == -1) {
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	if (expect(u, HANDOVER_HELLO, &hello, sizeof(hello), &n,
	    "before the handover") == -1)
		return -1;
	if (n != sizeof(hello) || (pid_t)hello.pid != u->child)
		return upgrade_fail(u, "pid %ld said hello as pid %lu", (long)u->child,
		    (unsigned long)hello.pid);
	if (send_listeners(u, &socks) == -1 ||
	    expect(u, HANDOVER_LISTENING, NULL, 0, NULL,
	    "taking the listening sockets") == -1)
		return -1;
	log_info("upgrade: pid %ld took %zu listening sockets", (long)u->child,
	    socks);
	/* From here clients wait in the backlogs until the new process
	 * accepts, or until this one does again. */
	upgrade_ask_all(u, upgrade_hold_fn, &failed);
	if (settle(u) == -1)
		return -1;
	frozen_at = handover_now_ms();
	if (send_conns(u, &conns) == -1 ||
	    expect(u, HANDOVER_RECEIVED, NULL, 0, NULL,
	    "taking the connections") == -1 ||
	    send_stats(u) == -1 || send_servers(u) == -1 ||
	    begin_commit(u) == -1 ||
	    send_msg(u, HANDOVER_COMMIT, NULL, 0, NULL, 0, "at the commit") == -1)
		return -1;
	if (expect(u, HANDOVER_COMMITTED, NULL, 0, NULL, "at the commit") == -1) {
		commit_unsure(u);
		return -1;
	}
	/* The commit point: the connections are the new process's. */
	atomic_store(&u->handed, true);
	admin_handed(u->admin, true);
	n = upgrade_ask_all(u, upgrade_release_fn, &failed);
	u->frozen = false;
	/* Their bytes move again once the new process's workers run: until
	 * then is the pause they saw. Past the commit nothing depends on the
	 * answer; a new process that never sends it only costs the figure. */
	u->deadline_ms = handover_now_ms() + UPGRADE_RUNNING_WAIT_MS;
	running = expect(u, HANDOVER_RUNNING, NULL, 0, NULL, "starting") == 0;
	done_at = handover_now_ms();
	log_info("upgrade: handed %zu connections to pid %ld in %" PRIu64
	    " ms (longest pause %s%" PRIu64 " ms); exiting", n, (long)u->child,
	    done_at - t0, running ? "" : "over ", done_at - frozen_at);
	return 0;
}

/* The upgrade failed: everything as it was. */
static void
undo(struct upgrade *u)
{
	int st;

	if (u->child > 0) {
		kill(u->child, SIGKILL);
		(void)waitpid(u->child, &st, 0);
	}
	if (u->frozen)
		upgrade_ask_undo(u, u->lost ? upgrade_abort_fn : upgrade_thaw_fn);
	u->frozen = false;
	upgrade_ask_undo(u, upgrade_resume_fn);
	if (u->lost)
		log_error("upgrade failed: %s; it had committed, so its "
		    "connections were reset; serving again", u->why);
	else
		log_warn("upgrade failed: %s; still serving %u connections",
		    u->why, listener_proc_active(u->p->lp));
}

static void *
thread_main(void *arg)
{
	struct upgrade *u = arg;
	uint64_t t0 = handover_now_ms();

	u->deadline_ms = t0 + u->p->cfg->upgrade_timeout_ms;
	if (run(u, t0) == -1)
		undo(u);
	pthread_mutex_lock(&u->lock);
	if (u->sock >= 0)
		close(u->sock);
	u->sock = -1;
	pthread_mutex_unlock(&u->lock);
	for (unsigned w = 0; u->items != NULL && w < u->p->nw; w++)
		handover_items_cleanup(&u->items[w]);
	free(u->items);
	u->items = NULL;
	event_active(u->finished, 0, 1);
	return NULL;
}

/* u, its questions and its base. */
static void
asks_free(struct upgrade *u)
{
	if (u == NULL)
		return;
	for (unsigned i = 0; u->asks != NULL && i < u->p->nw; i++)
		if (u->asks[i].done != NULL)
			event_free(u->asks[i].done);
	free(u->asks);
	free(u->servers);
	if (u->base != NULL)
		event_base_free(u->base);
	free(u);
}

struct upgrade *
upgrade_start(struct proc *p, struct admin *admin, struct event *finished)
{
	struct upgrade *u = calloc(1, sizeof(*u));
	sigset_t all, old;
	int rc;

	if (u == NULL)
		goto nomem;
	u->p = p;
	if ((u->base = event_base_new()) == NULL ||
	    (u->asks = calloc(p->nw, sizeof(*u->asks))) == NULL)
		goto nomem;
	if (upgrade_asks_init(u) == -1 || servers_take(u, p->bs) == -1)
		goto nomem;
	u->health_down = admin_health_is_down(admin);
	u->admin = admin;
	u->finished = finished;
	u->sock = -1;
	u->child = -1;
	atomic_init(&u->cancel, false);
	atomic_init(&u->handed, false);
	pthread_mutex_init(&u->lock, NULL);
	/* Signals stay the main loop's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&u->thread, NULL, thread_main, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warn("upgrade failed: cannot start its thread: %s",
		    strerror(rc));
		pthread_mutex_destroy(&u->lock);
		asks_free(u);
		return NULL;
	}
	return u;
nomem:
	log_warn("upgrade failed: out of memory");
	asks_free(u);
	return NULL;
}

void
upgrade_cancel(struct upgrade *u)
{
	pthread_mutex_lock(&u->lock);
	atomic_store(&u->cancel, true);
	if (!u->committing && u->sock >= 0)
		(void)shutdown(u->sock, SHUT_RDWR);
	pthread_mutex_unlock(&u->lock);
}

bool
upgrade_handed(const struct upgrade *u)
{
	return atomic_load(&u->handed);
}

pid_t
upgrade_new_pid(const struct upgrade *u)
{
	return u->child;
}

void
upgrade_free(struct upgrade *u)
{
	if (u == NULL)
		return;
	pthread_join(u->thread, NULL);
	pthread_mutex_destroy(&u->lock);
	asks_free(u);
}
