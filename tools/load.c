/* tools/load.c: spliced-load, a load client for benchmarks.
 *
 *     spliced-load fetch --connect ADDR:PORT --size SIZE --connections TOTAL ...
 *     spliced-load idle  --connect ADDR:PORT --connections N ...
 * (options: load_usage() below).
 *
 * fetch: keeps C connections in flight; each connects, sends nothing (or,
 * with --prefix FILE, that file's bytes: a captured TLS ClientHello for a
 * proxy that routes by it), reads to EOF and must get exactly SIZE bytes
 * (only the count is checked, never the content). It stops after TOTAL connections or S seconds (those in
 * flight finish, or with --cut are closed at S) and prints one JSON line.
 * --discard reads with MSG_TRUNC: the kernel drops the bytes without copying
 * them out, so the client costs next to nothing per byte.
 *
 * idle: opens N connections, at most C connecting at once; each sends one
 * byte and waits for it to come back (an echo backend behind the proxy: a
 * byte that returned proves the proxy connected it through). Once every
 * connection is open, or has failed, it prints {"event": "open", "open": ...}
 * and holds them until --hold S seconds pass, SIGTERM/SIGINT, or, without
 * --hold, its stdin (a pipe, socket or terminal) reaches EOF. Then it prints
 * {"event": "closed", ...} and exits. A held connection the far side closes
 * counts as an error ("closed").
 *
 * Everything is non-blocking in one libevent loop. Each connection has an
 * idle timeout (--timeout, default 10 s) while it waits for bytes, and after
 * --max-errors errors no new connection is started, so a run is bounded in
 * time and count. RLIMIT_NOFILE is raised as far as needed (the soft limit
 * to the hard one; root raises both). Exit status: 0 when there was no error,
 * 1 when there was one, 2 for a bad option. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "spliced/addr.h"
#include "spliced/config.h"
#include "spliced/log.h"

#define READ_SIZE       (256 << 10)  /* bytes asked of one recv() */
#define READS_PER_WAKE  16           /* then let the other connections run */
#define SPARE_FDS       32           /* stdio, epoll, libevent's own */
#define PREFIX_MAX      (1 << 20)    /* --prefix: as much as sni_max_bytes may hold */

#if defined(__linux__)
#define LOAD_DISCARD_FLAG MSG_TRUNC  /* tcp(7): the data is dropped, not copied */
#else
#define LOAD_DISCARD_FLAG 0
#endif

enum load_mode { LOAD_FETCH, LOAD_IDLE };

enum load_err {
	LOAD_ERR_SOCKET,    /* socket() or connect() failed at once (EMFILE, EADDRNOTAVAIL) */
	LOAD_ERR_REFUSED,
	LOAD_ERR_RESET,
	LOAD_ERR_SHORT,     /* EOF before SIZE bytes; idle: EOF before the echo */
	LOAD_ERR_LONG,      /* more than SIZE bytes; idle: not the byte sent */
	LOAD_ERR_TIMEOUT,
	LOAD_ERR_CLOSED,    /* idle: a held connection ended */
	LOAD_ERR_OTHER,
	LOAD_ERR_COUNT
};

static const char *const load_err_names[LOAD_ERR_COUNT] = {
	"socket", "refused", "reset", "short", "long", "timeout", "closed", "other",
};

enum load_conn_state {
	LOAD_CONN_CONNECTING,   /* idle, fetch with a prefix: until it is sent */
	LOAD_CONN_WAITING,      /* fetch: reading; idle: waiting for the echo */
	LOAD_CONN_HELD,         /* idle: open and echoed */
};

struct load {
	struct event_base *base;
	struct addr to;
	enum load_mode mode;

	/* Options. */
	uint64_t size, total, max_errors;
	unsigned concurrency;
	double seconds, hold, timeout;
	int rflags;
	bool cut;                   /* fetch: at --seconds, close those in flight */
	char *prefix;               /* fetch: sent first on every connection */
	size_t prefix_len;

	/* Progress. */
	uint64_t started, done, inflight, held, bytes, ncut;
	uint64_t errors[LOAD_ERR_COUNT], nerrors;
	bool stopping;              /* start no new connection */
	bool interrupted;           /* a signal or stdin EOF cut the run short */
	bool opened;                /* idle: the "open" line is out */
	struct timespec t0, t1;
	uint32_t *lat;              /* fetch: microseconds, one per good connection */
	size_t nlat, caplat;
	char *buf;

	struct event *deadline, *sigint, *sigterm, *input;
	LIST_HEAD(, load_conn) conns;
};

struct load_conn {
	struct load *load;
	int fd;
	enum load_conn_state state;
	uint64_t got;
	size_t sent;                /* fetch: of the prefix */
	struct timespec start;
	struct event *ev;
	LIST_ENTRY(load_conn) entry;
};

static void load_fill(struct load *);

static double load_since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static struct timeval load_tv(double s)
{
	struct timeval tv;

	tv.tv_sec = (time_t)s;
	tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
	return tv;
}

static void load_conn_free(struct load_conn *c)
{
	LIST_REMOVE(c, entry);
	event_free(c->ev);
	close(c->fd);
	free(c);
}

static void load_error(struct load *l, enum load_err kind)
{
	l->errors[kind]++;
	if (++l->nerrors >= l->max_errors && !l->stopping) {
		log_warn("spliced-load: %" PRIu64 " errors: starting no more connections",
		    l->nerrors);
		l->stopping = true;
	}
}

static enum load_err load_errno_kind(int err)
{
	switch (err) {
	case ECONNREFUSED: return LOAD_ERR_REFUSED;
	case ECONNRESET:
	case EPIPE: return LOAD_ERR_RESET;
	case ETIMEDOUT: return LOAD_ERR_TIMEOUT;
	default: return LOAD_ERR_OTHER;
	}
}

static int load_record(struct load *l, const struct timespec *start, const struct timespec *end)
{
	double us = load_since(start, end) * 1e6;
	uint32_t *grown;
	size_t cap;

	if (l->nlat == l->caplat) {
		cap = l->caplat ? l->caplat * 2 : 4096;
		if (!(grown = realloc(l->lat, cap * sizeof *grown)))
			return -1;
		l->lat = grown;
		l->caplat = cap;
	}
	l->lat[l->nlat++] = us > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	return 0;
}

/* The end of one connection: kind < 0 is success. Starts the next ones. */
static void load_conn_end(struct load_conn *c, int kind)
{
	struct load *l = c->load;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	l->t1 = now;
	if (c->state == LOAD_CONN_HELD)
		l->held--;
	else
		l->inflight--;
	if (kind >= 0) {
		log_debug("spliced-load: connection failed (%s) after %" PRIu64 " bytes",
		    load_err_names[kind], c->got);
		load_error(l, (enum load_err)kind);
	} else {
		l->done++;
		if (load_record(l, &c->start, &now) < 0) {
			log_error("spliced-load: out of memory for latencies");
			l->stopping = true;
			load_error(l, LOAD_ERR_OTHER);
		}
	}
	load_conn_free(c);
	load_fill(l);
}

static void load_fetch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;
	struct load *l = c->load;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		load_conn_end(c, LOAD_ERR_TIMEOUT);
		return;
	}
	for (int i = 0; i < READS_PER_WAKE; i++) {
		n = recv(fd, l->buf, READ_SIZE, l->rflags);
		if (n > 0) {
			c->got += (uint64_t)n;
			l->bytes += (uint64_t)n;
			if (c->got > l->size) {
				load_conn_end(c, LOAD_ERR_LONG);
				return;
			}
			continue;
		}
		if (n == 0) {
			load_conn_end(c, c->got == l->size ? -1 : LOAD_ERR_SHORT);
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		load_conn_end(c, load_errno_kind(errno));
		return;
	}
}

/* fetch with a prefix: the connect finished (or failed), or the socket
 * has room again; sends what is left of the prefix, then reads. */
static void load_fetch_send_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;
	struct load *l = c->load;
	struct timeval tv = load_tv(l->timeout);
	socklen_t len = sizeof(int);
	int err = 0;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		load_conn_end(c, LOAD_ERR_TIMEOUT);
		return;
	}
	if (c->sent == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		load_conn_end(c, load_errno_kind(err));
		return;
	}
	n = send(fd, l->prefix + c->sent, l->prefix_len - c->sent, MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		load_conn_end(c, load_errno_kind(errno));
		return;
	}
	if (n > 0)
		c->sent += (size_t)n;
	if (c->sent < l->prefix_len) {
		if (event_add(c->ev, &tv) < 0)
			load_conn_end(c, LOAD_ERR_OTHER);
		return;
	}
	c->state = LOAD_CONN_WAITING;
	if (event_assign(c->ev, l->base, fd, EV_READ | EV_PERSIST, load_fetch_cb, c) < 0 ||
	    event_add(c->ev, &tv) < 0)
		load_conn_end(c, LOAD_ERR_OTHER);
}

/* idle: the held byte came back, or the connection ended. */
static void load_idle_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;
	struct load *l = c->load;
	char byte[64];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		load_conn_end(c, LOAD_ERR_TIMEOUT);
		return;
	}
	n = recv(fd, byte, sizeof byte, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (c->state == LOAD_CONN_HELD) {
		/* Nothing more is due: any byte, EOF or error ends it. */
		load_conn_end(c, LOAD_ERR_CLOSED);
		return;
	}
	if (n <= 0) {
		load_conn_end(c, n == 0 ? LOAD_ERR_SHORT : load_errno_kind(errno));
		return;
	}
	if (n != 1 || byte[0] != 'x') {
		load_conn_end(c, LOAD_ERR_LONG);
		return;
	}
	/* Held from now on: watched for its end, without a timeout. */
	event_del(c->ev);
	if (event_add(c->ev, NULL) < 0) {
		load_conn_end(c, LOAD_ERR_OTHER);
		return;
	}
	c->state = LOAD_CONN_HELD;
	l->inflight--;
	l->held++;
	load_fill(l);
}

/* idle: the connect finished (or failed); send the byte to be echoed. */
static void load_idle_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;
	struct load *l = c->load;
	struct timeval tv = load_tv(l->timeout);
	socklen_t len = sizeof(int);
	int err = 0;

	if (what & EV_TIMEOUT) {
		load_conn_end(c, LOAD_ERR_TIMEOUT);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0 && send(fd, "x", 1, MSG_NOSIGNAL) != 1)
		err = errno ? errno : EIO;
	if (err != 0) {
		load_conn_end(c, load_errno_kind(err));
		return;
	}
	c->state = LOAD_CONN_WAITING;
	if (event_assign(c->ev, l->base, fd, EV_READ | EV_PERSIST, load_idle_read_cb, c) < 0 ||
	    event_add(c->ev, &tv) < 0)
		load_conn_end(c, LOAD_ERR_OTHER);
}

/* One new connection; 0, or -1 when none could be started (counted). */
static int load_conn_start(struct load *l)
{
	struct timeval tv = load_tv(l->timeout);
	struct load_conn *c;
	int fd;

	l->started++;
	fd = socket(l->to.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_debug("spliced-load: socket: %s", strerror(errno));
		load_error(l, LOAD_ERR_SOCKET);
		return -1;
	}
	if (!(c = calloc(1, sizeof *c))) {
		close(fd);
		load_error(l, LOAD_ERR_OTHER);
		return -1;
	}
	c->load = l;
	c->fd = fd;
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	if (connect(fd, (struct sockaddr *)&l->to.ss, l->to.len) < 0 && errno != EINPROGRESS) {
		log_debug("spliced-load: connect: %s", strerror(errno));
		load_error(l, errno == ECONNREFUSED ? LOAD_ERR_REFUSED : LOAD_ERR_SOCKET);
		close(fd);
		free(c);
		return -1;
	}
	/* fetch reads at once: a failed connect shows as a readable socket
	 * whose recv() returns the error, which saves a wake-up. */
	if (l->mode == LOAD_FETCH && l->prefix_len == 0) {
		c->state = LOAD_CONN_WAITING;
		c->ev = event_new(l->base, fd, EV_READ | EV_PERSIST, load_fetch_cb, c);
	} else if (l->mode == LOAD_FETCH) {
		c->state = LOAD_CONN_CONNECTING;
		c->ev = event_new(l->base, fd, EV_WRITE, load_fetch_send_cb, c);
	} else {
		c->state = LOAD_CONN_CONNECTING;
		c->ev = event_new(l->base, fd, EV_WRITE, load_idle_connect_cb, c);
	}
	if (!c->ev || event_add(c->ev, &tv) < 0) {
		if (c->ev)
			event_free(c->ev);
		close(fd);
		free(c);
		load_error(l, LOAD_ERR_OTHER);
		return -1;
	}
	LIST_INSERT_HEAD(&l->conns, c, entry);
	l->inflight++;
	return 0;
}

static void load_print_errors(const struct load *l)
{
	printf("\"errors\": %" PRIu64 ", \"error_kinds\": {", l->nerrors);
	for (int k = 0; k < LOAD_ERR_COUNT; k++)
		printf("%s\"%s\": %" PRIu64, k ? ", " : "", load_err_names[k], l->errors[k]);
	printf("}");
}

static void load_print_open(struct load *l)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	printf("{\"mode\": \"idle\", \"event\": \"open\", \"open\": %" PRIu64
	    ", \"wanted\": %" PRIu64 ", ", l->held, l->total);
	load_print_errors(l);
	printf(", \"seconds\": %.3f}\n", load_since(&l->t0, &now));
	fflush(stdout);
	l->opened = true;
}

/* Starts connections until the concurrency is reached; ends the loop (or,
 * for idle, announces the open connections) once nothing is left to do. */
static void load_fill(struct load *l)
{
	struct timeval tv;

	while (!l->stopping && l->inflight < l->concurrency && l->started < l->total)
		load_conn_start(l);
	if (l->inflight > 0 || (!l->stopping && l->started < l->total))
		return;
	if (l->mode == LOAD_FETCH) {
		event_base_loopexit(l->base, NULL);
		return;
	}
	if (l->opened || l->interrupted)
		return;
	load_print_open(l);
	if (l->hold > 0) {
		tv = load_tv(l->hold);
		evtimer_add(l->deadline, &tv);
	}
}

static void load_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;
	struct load_conn *c;

	(void)fd, (void)what;
	if (l->mode == LOAD_IDLE) {
		event_base_loopexit(l->base, NULL);
		return;
	}
	if (l->cut) {
		/* Closed with bytes unread: the far side sees a reset, which is
		 * the point (the run ends now), so it is no error here. */
		clock_gettime(CLOCK_MONOTONIC, &l->t1);
		while ((c = LIST_FIRST(&l->conns)) != NULL) {
			l->ncut++;
			l->inflight--;
			load_conn_free(c);
		}
		event_base_loopexit(l->base, NULL);
		return;
	}
	l->stopping = true;         /* fetch: those in flight finish */
	load_fill(l);
}

static void load_stop(struct load *l, const char *why)
{
	/* idle: ending the hold is the normal end; anything else cuts the run. */
	if (!(l->mode == LOAD_IDLE && l->opened)) {
		log_warn("spliced-load: %s: stopping before the end", why);
		l->interrupted = true;
	}
	event_base_loopexit(l->base, NULL);
}

static void load_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	load_stop(arg, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void load_input_cb(evutil_socket_t fd, short what, void *arg)
{
	char scratch[512];
	ssize_t n;

	(void)what;
	n = read(fd, scratch, sizeof scratch);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	load_stop(arg, "stdin closed");
}

/* Raises RLIMIT_NOFILE to hold need fds: the soft limit to the hard one,
 * or both when allowed (root). 0, or -1 with a message. */
static int load_raise_fds(rlim_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = rl.rlim_max = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return 0;
	getrlimit(RLIMIT_NOFILE, &rl);
	fprintf(stderr, "spliced-load: %ju connections at once need %ju fds, but the limit is "
	    "%ju and cannot be raised (%s): raise the hard limit (ulimit -Hn, which\n"
	    "needs CAP_SYS_RESOURCE) or ask for fewer\n",
	    (uintmax_t)(need - SPARE_FDS), (uintmax_t)need, (uintmax_t)rl.rlim_cur,
	    strerror(errno));
	return -1;
}

static int load_percentile(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void load_print_fetch(struct load *l)
{
	double s = load_since(&l->t0, &l->t1);
	uint32_t p50 = 0, p99 = 0, max = 0;

	if (s <= 0)
		s = 1e-9;
	if (l->nlat > 0) {
		qsort(l->lat, l->nlat, sizeof *l->lat, load_percentile);
		p50 = l->lat[(l->nlat - 1) * 50 / 100];
		p99 = l->lat[(l->nlat - 1) * 99 / 100];
		max = l->lat[l->nlat - 1];
	}
	printf("{\"mode\": \"fetch\", \"size\": %" PRIu64 ", \"connections\": %" PRIu64
	    ", ", l->size, l->done);
	load_print_errors(l);
	printf(", \"bytes\": %" PRIu64 ", \"seconds\": %.3f, \"conns_per_s\": %.1f"
	    ", \"gbps\": %.3f, \"p50_us\": %" PRIu32 ", \"p99_us\": %" PRIu32
	    ", \"max_us\": %" PRIu32 ", \"cut\": %" PRIu64 ", \"prefix_bytes\": %zu"
	    ", \"interrupted\": %s}\n",
	    l->bytes, s, (double)l->done / s, (double)l->bytes * 8 / s / 1e9,
	    p50, p99, max, l->ncut, l->prefix_len, l->interrupted ? "true" : "false");
}

static void load_print_closed(struct load *l)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	printf("{\"mode\": \"idle\", \"event\": \"closed\", \"held\": %" PRIu64
	    ", \"wanted\": %" PRIu64 ", ", l->held, l->total);
	load_print_errors(l);
	printf(", \"seconds\": %.3f, \"interrupted\": %s}\n", load_since(&l->t0, &now),
	    l->interrupted ? "true" : "false");
}

static void load_usage(FILE *f)
{
	fprintf(f,
	    "usage: spliced-load fetch --connect ADDR:PORT --size SIZE --connections TOTAL\n"
	    "                          [--concurrency C] [--seconds S [--cut]] [--discard]\n"
	    "                          [--prefix FILE] [--timeout S] [--max-errors N] [--verbose]\n"
	    "       spliced-load idle  --connect ADDR:PORT --connections N\n"
	    "                          [--concurrency C] [--hold S] [--timeout S] [--max-errors N]\n"
	    "                          [--verbose]\n"
	    "\n"
	    "fetch: C connections in flight (default 1), each reads to EOF and must get\n"
	    "  exactly SIZE bytes (k/m/g: powers of 1024); only the count is checked, not\n"
	    "  the content. Stops after TOTAL connections or S seconds (those in flight\n"
	    "  finish; with --cut they are closed then, their bytes counted, and \"cut\"\n"
	    "  says how many). --discard: drop the bytes in the kernel (MSG_TRUNC, Linux)\n"
	    "  instead of copying them out. --prefix FILE: send FILE's bytes (at most\n"
	    "  1 MiB, e.g. a TLS ClientHello) on each connection first, then read.\n"
	    "  One JSON line: connections, errors by kind, bytes (received), seconds,\n"
	    "  conns_per_s, gbps, latency (connect to EOF) p50_us/p99_us, prefix_bytes.\n"
	    "idle: opens N connections, C connecting at once (default 100); each sends\n"
	    "  one byte and waits for its echo. Prints {\"event\": \"open\", \"open\": N, ...}\n"
	    "  once all are open, then holds them for --hold S seconds, or until stdin\n"
	    "  (a pipe, socket or terminal) reaches EOF, or SIGTERM/SIGINT.\n"
	    "Both: --timeout S (default 10) bounds each wait for bytes; --max-errors N\n"
	    "  (default 100) starts no new connection after N errors. RLIMIT_NOFILE is\n"
	    "  raised as needed. --verbose: log each failed connection. Exit 0 only when\n"
	    "  there was no error.\n");
}

/* A count, 1..max, or -1 with a message. */
static int load_parse_count(const char *opt, const char *text, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end || *text == '-' || v < 1 || v > max) {
		fprintf(stderr, "spliced-load: %s: '%s' is not a count from 1 to %" PRIu64 "\n",
		    opt, text, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int load_parse_seconds(const char *opt, const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || *end || !(v > 0) || v > 1e6) {
		fprintf(stderr, "spliced-load: %s: '%s' is not a number of seconds (0.5, 10)\n",
		    opt, text);
		return -1;
	}
	*out = v;
	return 0;
}

/* --prefix: the whole file into l->prefix; 0, or -1 after a message. */
static int load_read_prefix(struct load *l, const char *path)
{
	FILE *f;
	size_t n;
	int rc = -1;

	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "spliced-load: --prefix: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* One byte more than allowed tells a file that is too long. */
	if (!(l->prefix = malloc(PREFIX_MAX + 1))) {
		fprintf(stderr, "spliced-load: --prefix: out of memory\n");
		goto out;
	}
	n = fread(l->prefix, 1, PREFIX_MAX + 1, f);
	if (ferror(f)) {
		fprintf(stderr, "spliced-load: --prefix: %s: read error\n", path);
		goto out;
	}
	if (n == 0 || n > PREFIX_MAX) {
		fprintf(stderr, "spliced-load: --prefix: %s: %s\n", path,
		    n == 0 ? "empty" : "more than 1 MiB");
		goto out;
	}
	l->prefix_len = n;
	rc = 0;
out:
	if (rc < 0) {
		free(l->prefix);
		l->prefix = NULL;
	}
	fclose(f);
	return rc;
}

/* Options into l; 0, or -1 after a message (exit 2). */
static int load_parse(struct load *l, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "connections", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "hold", required_argument, NULL, 'H' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "max-errors", required_argument, NULL, 'E' },
		{ "discard", no_argument, NULL, 'd' },
		{ "cut", no_argument, NULL, 'k' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *connect_to = NULL, *prefix = NULL;
	char err[256];
	bool have_size = false, have_total = false, discard = false;
	uint64_t v;
	size_t size;
	int opt;

	if (argc < 2 || (strcmp(argv[1], "fetch") && strcmp(argv[1], "idle"))) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			load_usage(stdout);
			exit(0);
		}
		fprintf(stderr, "spliced-load: %s\n", argc < 2 ? "a mode is required (fetch or idle)" :
		    "the first argument is the mode: fetch or idle");
		goto usage;
	}
	l->mode = strcmp(argv[1], "fetch") ? LOAD_IDLE : LOAD_FETCH;
	l->concurrency = l->mode == LOAD_FETCH ? 1 : 100;
	l->timeout = 10;
	l->max_errors = 100;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': connect_to = optarg; break;
		case 'd': discard = true; break;
		case 'k': l->cut = true; break;
		case 'p': prefix = optarg; break;
		case 'v': log_set_level(CONFIG_LOG_DEBUG); break;
		case 's':
			if (config_parse_size(optarg, &size) < 0) {
				fprintf(stderr, "spliced-load: --size: '%s' is not a size (0, 4096, 64k, 1m, 1g)\n",
				    optarg);
				return -1;
			}
			l->size = size;
			have_size = true;
			break;
		case 'n':
			if (load_parse_count("--connections", optarg, UINT64_MAX / 2, &l->total) < 0)
				return -1;
			have_total = true;
			break;
		case 'C':
			if (load_parse_count("--concurrency", optarg, 1000000, &v) < 0)
				return -1;
			l->concurrency = (unsigned)v;
			break;
		case 'E':
			if (load_parse_count("--max-errors", optarg, UINT64_MAX / 2, &l->max_errors) < 0)
				return -1;
			break;
		case 'S':
			if (load_parse_seconds("--seconds", optarg, &l->seconds) < 0)
				return -1;
			break;
		case 'H':
			if (load_parse_seconds("--hold", optarg, &l->hold) < 0)
				return -1;
			break;
		case 'T':
			if (load_parse_seconds("--timeout", optarg, &l->timeout) < 0)
				return -1;
			break;
		case 'h': load_usage(stdout); exit(0);
		default: goto usage;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "spliced-load: unexpected argument '%s'\n", argv[optind]);
		goto usage;
	}
	if (!connect_to) {
		fprintf(stderr, "spliced-load: --connect is required\n");
		goto usage;
	}
	if (addr_parse(&l->to, connect_to, false, err, sizeof err) < 0) {
		fprintf(stderr, "spliced-load: --connect: %s\n", err);
		return -1;
	}
	if (l->to.wildcard) {
		fprintf(stderr, "spliced-load: --connect: '%s' is a wildcard, not an address\n",
		    connect_to);
		return -1;
	}
	if (l->mode == LOAD_FETCH) {
		if (!have_size || (!have_total && l->seconds == 0)) {
			fprintf(stderr, "spliced-load: fetch: %s\n", !have_size ? "--size is required" :
			    "--connections or --seconds is required");
			goto usage;
		}
		if (l->hold > 0) {
			fprintf(stderr, "spliced-load: --hold: only for idle\n");
			return -1;
		}
		if (!have_total)
			l->total = UINT64_MAX;
		if (l->cut && l->seconds == 0) {
			fprintf(stderr, "spliced-load: --cut: needs --seconds\n");
			return -1;
		}
		if (discard && LOAD_DISCARD_FLAG == 0) {
			fprintf(stderr, "spliced-load: --discard: needs Linux (MSG_TRUNC on TCP)\n");
			return -1;
		}
		l->rflags = discard ? LOAD_DISCARD_FLAG : 0;
		if (prefix && load_read_prefix(l, prefix) < 0)
			return -1;
	} else {
		if (!have_total) {
			fprintf(stderr, "spliced-load: idle: --connections is required\n");
			goto usage;
		}
		if (have_size || l->seconds > 0 || discard || l->cut || prefix) {
			fprintf(stderr, "spliced-load: %s: only for fetch\n", have_size ? "--size" :
			    l->seconds > 0 ? "--seconds" : discard ? "--discard" :
			    l->cut ? "--cut" : "--prefix");
			return -1;
		}
	}
	return 0;
usage:
	load_usage(stderr);
	return -1;
}

/* idle: watch stdin for EOF when it is something that can reach one later. */
static int load_watch_input(struct load *l)
{
	struct stat st;

	if (l->mode != LOAD_IDLE || l->hold > 0 || fstat(STDIN_FILENO, &st) < 0)
		return 0;
	if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !isatty(STDIN_FILENO))
		return 0;
	l->input = event_new(l->base, STDIN_FILENO, EV_READ | EV_PERSIST, load_input_cb, l);
	return l->input && event_add(l->input, NULL) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct load l = { .mode = LOAD_FETCH };
	struct load_conn *c;
	struct timeval tv;
	rlim_t need;
	int rc = 1;

	LIST_INIT(&l.conns);
	if (load_parse(&l, argc, argv) < 0)
		return 2;
	log_route_libevent();
	signal(SIGPIPE, SIG_IGN);
	need = (rlim_t)(l.mode == LOAD_FETCH ? l.concurrency : l.total) + SPARE_FDS;
	if (load_raise_fds(need) < 0)
		return 1;
	if (!(l.base = event_base_new()) ||
	    !(l.buf = malloc(READ_SIZE)) ||
	    !(l.deadline = evtimer_new(l.base, load_deadline_cb, &l)) ||
	    !(l.sigint = evsignal_new(l.base, SIGINT, load_signal_cb, &l)) ||
	    !(l.sigterm = evsignal_new(l.base, SIGTERM, load_signal_cb, &l)) ||
	    event_add(l.sigint, NULL) < 0 || event_add(l.sigterm, NULL) < 0 ||
	    load_watch_input(&l) < 0) {
		log_error("spliced-load: cannot set up the event loop: %s", strerror(errno));
		goto fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &l.t0);
	l.t1 = l.t0;
	if (l.mode == LOAD_FETCH && l.seconds > 0) {
		tv = load_tv(l.seconds);
		evtimer_add(l.deadline, &tv);
	}
	load_fill(&l);
	if (l.mode == LOAD_FETCH ? l.inflight > 0 : !l.interrupted)
		event_base_dispatch(l.base);
	if (l.mode == LOAD_FETCH) {
		load_print_fetch(&l);
	} else {
		if (!l.opened)
			load_print_open(&l);
		load_print_closed(&l);
	}
	rc = l.nerrors == 0 && !l.interrupted ? 0 : 1;
fail:
	fflush(stdout);
	while ((c = LIST_FIRST(&l.conns)) != NULL)
		load_conn_free(c);
	if (l.input)
		event_free(l.input);
	if (l.sigterm)
		event_free(l.sigterm);
	if (l.sigint)
		event_free(l.sigint);
	if (l.deadline)
		event_free(l.deadline);
	if (l.base)
		event_base_free(l.base);
	free(l.buf);
	free(l.lat);
	free(l.prefix);
	return rc;
}
