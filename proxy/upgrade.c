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
#include "spliced/handover.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/statcarry.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

extern char **environ;

/* How often the thread asks whether every connection has settled. */
#define UPGRADE_SETTLE_POLL_MS 5
/* After the commit: how long to wait for the new process to say its
 * workers run (only the pause figure depends on it). */
#define UPGRADE_RUNNING_WAIT_MS 5000

static char upgrade_exe[PATH_MAX];
static char **upgrade_argv;

struct upgrade {
	struct proc *p;
	struct admin *admin;
	struct event *finished;     /* the main loop's */
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool handed;         /* the commit point was passed */
	/* A cancel shuts the socket down, which ends any wait on it at
	 * once; not once COMMIT is sent: then only the new process's answer
	 * (COMMITTED, or its end) says who holds the connections. */
	pthread_mutex_t lock;
	bool committing;
	pid_t child;
	int sock;
	uint64_t deadline_ms;
	struct event_base *base;    /* the thread's: query answers */
	struct handover_items *items;       /* [p->nw] */
	struct stats_sample *samples;       /* [p->nw] */
	struct worker_totals *totals;       /* [p->nw] */
	bool frozen;
	char why[512];
};

void
upgrade_remember(int argc, char **argv)
{
	ssize_t n = readlink("/proc/self/exe", upgrade_exe,
	    sizeof(upgrade_exe) - 1);

	(void)argc;
	upgrade_argv = argv;
	/* Elsewhere (no /proc): argv[0], as the shell found it. */
	if (n <= 0)
		snprintf(upgrade_exe, sizeof(upgrade_exe), "%s", argv[0]);
	else
		upgrade_exe[n] = '\0';
}

static int fail(struct upgrade *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- asking the workers ---- */

struct upgrade_ask {
	struct upgrade *u;
	struct worker_query q;
	struct event *done;         /* one each: activations do not add up */
	void (*fn)(struct upgrade_ask *, struct worker *);
	unsigned index;
	unsigned answer;
	int rc;
	bool answered;              /* done fired (the asking thread's) */
	atomic_uint *left;
};

static void
ask_fn(struct worker *w, void *arg)
{
	struct upgrade_ask *a = arg;

	a->fn(a, w);
}

static void
ask_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upgrade_ask *a = arg;

	(void)fd, (void)what;
	a->answered = true;
	atomic_fetch_sub(a->left, 1);
}

/* Past the deadline: take back the questions not yet asked of a worker
 * stuck in a callback (one being answered now is waited for). True
 * when any was taken back. */
static bool
ask_cancel(struct upgrade *u, struct upgrade_ask *a, unsigned n)
{
	bool any = false;

	for (unsigned i = 0; i < n; i++)
		if (!a[i].answered && worker_query_cancel(u->p->w[i], &a[i].q)) {
			a[i].answered = true;
			a[i].rc = -1;
			atomic_fetch_sub(a[i].left, 1);
			any = true;
		}
	return any;
}

/* Run fn on every worker's loop and wait for all of them. Workers answer
 * within a loop turn; one that does not by the upgrade's deadline (stuck
 * in a callback: the watchdog's business) fails the step, unless
 * `undoing`: the way back waits for every worker. The sum of their
 * answers; *failed when any returned -1 or did not answer. An event per
 * worker: two activations of one event before its callback runs make
 * one call. */
static unsigned
ask_all_(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *),
    bool undoing, bool *failed)
{
	struct timeval slice = { 0, 100 * 1000 };
	uint64_t deadline;
	unsigned nw = u->p->nw, sum = 0, asked = 0;
	struct upgrade_ask *a = calloc(nw, sizeof(*a));
	atomic_uint left;

	*failed = a == NULL;
	if (a == NULL)
		return 0;
	atomic_init(&left, nw);
	for (unsigned i = 0; i < nw; i++) {
		a[i] = (struct upgrade_ask){ .u = u, .fn = fn, .index = i,
		    .left = &left };
		if ((a[i].done = event_new(u->base, -1, 0, ask_done_cb,
		    &a[i])) == NULL) {
			*failed = true;
			goto out;
		}
	}
	for (; asked < nw; asked++) {
		a[asked].q = (struct worker_query){ .fn = ask_fn,
		    .arg = &a[asked], .done = a[asked].done };
		worker_query(u->p->w[asked], &a[asked].q);
	}
	/* A healthy worker answers within milliseconds: the grace second
	 * keeps the upgrade's own deadline checks (settle) first to say why. */
	deadline = u->deadline_ms > handover_now_ms() + 1000 ? u->deadline_ms :
	    handover_now_ms() + 1000;
	while (atomic_load(&left) > 0) {
		if (!undoing && handover_now_ms() >= deadline &&
		    ask_cancel(u, a, nw))
			fail(u, "a worker did not answer within upgrade_timeout");
		if (atomic_load(&left) == 0)
			break;
		event_base_loopexit(u->base, &slice);
		event_base_loop(u->base, EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY);
	}
	for (unsigned i = 0; i < nw; i++) {
		sum += a[i].answer;
		*failed |= a[i].rc == -1;
	}
out:
	for (unsigned i = 0; i < nw; i++)
		if (a[i].done != NULL)
			event_free(a[i].done);
	free(a);
	return sum;
}

static unsigned
ask_all(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *),
    bool *failed)
{
	return ask_all_(u, fn, false, failed);
}

/* The way back (thaw, accept again): every worker, however long. */
static void
ask_all_undo(struct upgrade *u, void (*fn)(struct upgrade_ask *, struct worker *))
{
	bool failed;

	(void)ask_all_(u, fn, true, &failed);
}

static void
hold_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_hold(w, true);
}

static void
resume_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_hold(w, false);
}

static void
unsettled_fn(struct upgrade_ask *a, struct worker *w)
{
	a->answer = worker_unsettled(w);
}

static void
export_fn(struct upgrade_ask *a, struct worker *w)
{
	a->rc = worker_export(w, &a->u->items[a->index]);
	a->answer = (unsigned)a->u->items[a->index].n;
}

static void
thaw_fn(struct upgrade_ask *a, struct worker *w)
{
	(void)a;
	worker_thaw(w);
}

static void
counters_fn(struct upgrade_ask *a, struct worker *w)
{
	a->rc = worker_counters(w, &a->u->samples[a->index],
	    &a->u->totals[a->index]);
}

static void
release_fn(struct upgrade_ask *a, struct worker *w)
{
	a->answer = worker_release(w);
}

/* ---- the steps ---- */

static int
fail(struct upgrade *u, const char *fmt, ...)
{
	va_list ap;

	if (u->why[0] != '\0')
		return -1;
	va_start(ap, fmt);
	vsnprintf(u->why, sizeof(u->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* Why the socket failed: mostly, what became of the new process. */
static int
fail_io(struct upgrade *u, const char *step, int err)
{
	int st;
	pid_t r = 0;

	if (atomic_load(&u->cancel) && !u->committing)
		return fail(u, "cancelled by a signal to stop");
	/* It closed its end: it is exiting; give it a moment to say how. */
	for (int i = 0; i < 100 && r == 0 && err == ECONNRESET; i++) {
		r = waitpid(u->child, &st, WNOHANG);
		if (r == 0)
			nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	if (r == u->child) {
		u->child = -1;
		if (WIFEXITED(st))
			return fail(u, "pid %ld exited with status %d %s",
			    (long)r, WEXITSTATUS(st), step);
		return fail(u, "pid %ld was killed by signal %d %s", (long)r,
		    WTERMSIG(st), step);
	}
	if (err == ETIMEDOUT)
		return fail(u, "pid %ld did not answer within upgrade_timeout "
		    "%s", (long)u->child, step);
	if (err == EPROTO)
		return fail(u, "pid %ld speaks another handover version %s",
		    (long)u->child, step);
	return fail(u, "pid %ld %s: %s", (long)u->child, step, strerror(err));
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
		return fail(u, "cancelled by a signal to stop");
	if (handover_recv(u->sock, &t, buf, sizeof(buf) - 1, &n, fds, &nfds,
	    u->deadline_ms, &version) == -1)
		return fail_io(u, step, errno);
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (t == HANDOVER_FAIL) {
		buf[n] = '\0';
		return fail(u, "pid %ld gave up %s: %s", (long)u->child, step, buf);
	}
	if (t != want || n > cap)
		return fail(u, "pid %ld sent message %d %s", (long)u->child,
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
		return fail(u, "cancelled by a signal to stop");
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
		return fail(u, "out of memory");
	for (size_t i = 0, k = 0; i < n; i++)
		if (strncmp(environ[i], "SPLICED_UPGRADE_FD=", 19) != 0)
			env[k++] = environ[i];
	/* F_DUPFD: a copy without FD_CLOEXEC, for the child alone. */
	if ((fd = fcntl(their, F_DUPFD, 3)) == -1) {
		free(env);
		return fail(u, "cannot pass the socket: %s", strerror(errno));
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
		return fail(u, "cannot start %s: %s", upgrade_exe, strerror(rc));
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
		return fail(u, "out of memory");
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
	free(v);
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
		left = ask_all(u, unsettled_fn, &failed);
		if (failed)
			return fail(u, "out of memory");
		if (left == 0)
			return 0;
		if (atomic_load(&u->cancel))
			return fail(u, "cancelled by a signal to stop");
		if (handover_now_ms() >= u->deadline_ms)
			return fail(u, "%u connections were still connecting or "
			    "in a handshake when upgrade_timeout passed", left);
		nanosleep(&poll, NULL);
	}
}

/* One connection: its record and fds, then its copy-buffer bytes. */
static int
send_conn(struct upgrade *u, const struct handover_item *it)
{
	const struct handover_dir *d[2] = { &it->rec.up, &it->rec.down };

	if (send_msg(u, HANDOVER_CONN, &it->rec, sizeof(it->rec), it->fds,
	    it->rec.nfds, "taking the connections") == -1)
		return -1;
	for (int k = 0; k < 2; k++)
		for (size_t off = 0; off < d[k]->buf_len; off += HANDOVER_MAX_MSG) {
			size_t n = d[k]->buf_len - off;

			if (n > HANDOVER_MAX_MSG)
				n = HANDOVER_MAX_MSG;
			if (send_msg(u, HANDOVER_DATA, (const char *)it->data[k] +
			    off, n, NULL, 0, "taking the connections") == -1)
				return -1;
		}
	return 0;
}

static int
send_conns(struct upgrade *u, size_t *count)
{
	struct handover_end end = { 0 };
	bool failed;

	if ((u->items = calloc(u->p->nw, sizeof(*u->items))) == NULL)
		return fail(u, "out of memory");
	u->frozen = true;
	*count = ask_all(u, export_fn, &failed);
	if (failed)
		return fail(u, "out of memory describing the connections");
	for (unsigned w = 0; w < u->p->nw; w++)
		for (size_t i = 0; i < u->items[w].n; i++)
			if (send_conn(u, &u->items[w].v[i]) == -1)
				return -1;
	end.conns = *count;
	return send_msg(u, HANDOVER_CONN_END, &end, sizeof(end), NULL, 0,
	    "taking the connections");
}

static void
totals_sum(struct worker_totals *to, const struct worker_totals *f)
{
	to->conn.connections += f->conn.connections;
	to->conn.connect_failures += f->conn.connect_failures;
	to->conn.handed += f->conn.handed;
	to->conn.adopted += f->conn.adopted;
	for (int r = 0; r < CONN_REASON_MAX_; r++)
		to->conn.reasons[r] += f->conn.reasons[r];
	for (int m = 0; m < RELAY_MODE_MAX_; m++)
		to->relay.bytes[m] += f->relay.bytes[m];
	for (int k = 0; k < RELAY_FALLBACK_MAX_; k++)
		to->relay.fallbacks[k] += f->relay.fallbacks[k];
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
		return fail(u, "out of memory");
	if ((u->samples = calloc(u->p->nw, sizeof(*u->samples))) == NULL ||
	    (u->totals = calloc(u->p->nw, sizeof(*u->totals))) == NULL) {
		fail(u, "out of memory");
		goto out;
	}
	ask_all(u, counters_fn, &failed);
	for (unsigned w = 0; w < u->p->nw && !failed; w++) {
		failed = stats_sample_merge(&all, &u->samples[w]) == -1;
		totals_sum(&t, &u->totals[w]);
	}
	if (failed || statcarry_encode(&all, &t, &buf, &len) == -1) {
		fail(u, "out of memory gathering the counters");
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

/* From here a cancel no longer interrupts (see struct upgrade). */
static int
begin_commit(struct upgrade *u)
{
	int rc = 0;

	pthread_mutex_lock(&u->lock);
	if (atomic_load(&u->cancel))
		rc = fail(u, "cancelled by a signal to stop");
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
		return fail(u, "socketpair: %s", strerror(errno));
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
	if (send_listeners(u, &socks) == -1 ||
	    expect(u, HANDOVER_LISTENING, NULL, 0, NULL,
	    "taking the listening sockets") == -1)
		return -1;
	log_info("upgrade: pid %ld took %zu listening sockets", (long)u->child,
	    socks);
	/* From here clients wait in the backlogs until the new process
	 * accepts, or until this one does again. */
	ask_all(u, hold_fn, &failed);
	if (settle(u) == -1)
		return -1;
	frozen_at = handover_now_ms();
	if (send_conns(u, &conns) == -1 ||
	    expect(u, HANDOVER_RECEIVED, NULL, 0, NULL,
	    "taking the connections") == -1 ||
	    send_stats(u) == -1 || begin_commit(u) == -1 ||
	    send_msg(u, HANDOVER_COMMIT, NULL, 0, NULL, 0, "at the commit") == -1 ||
	    expect(u, HANDOVER_COMMITTED, NULL, 0, NULL, "at the commit") == -1)
		return -1;
	/* The commit point: the connections are the new process's. */
	atomic_store(&u->handed, true);
	admin_handed(u->admin, true);
	n = ask_all(u, release_fn, &failed);
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
		ask_all_undo(u, thaw_fn);
	u->frozen = false;
	ask_all_undo(u, resume_fn);
	log_warn("upgrade failed: %s; still serving %u connections", u->why,
	    listener_proc_active(u->p->lp));
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

struct upgrade *
upgrade_start(struct proc *p, struct admin *admin, struct event *finished)
{
	struct upgrade *u = calloc(1, sizeof(*u));
	sigset_t all, old;
	int rc;

	if (u == NULL || (u->base = event_base_new()) == NULL) {
		log_warn("upgrade failed: out of memory");
		free(u);
		return NULL;
	}
	u->p = p;
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
		event_base_free(u->base);
		free(u);
		return NULL;
	}
	return u;
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
	event_base_free(u->base);
	free(u);
}
