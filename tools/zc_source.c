/* tools/zc_source.c: zc-source, a sendfile(2) source for benchmarks.
 *
 *     zc-source --listen 127.0.0.1:PORT --size SIZE [--file PATH] [--verbose]
 *
 * Every accepted connection is sent the whole file with zc_sendfile() (the
 * project's zero-copy layer: sendfile on Linux, read+write in the portable
 * build) from a non-blocking socket driven by libevent write events; then
 * the write side is shut, input is dropped until the peer's EOF (so nothing
 * it sent can turn the end into a reset), and the socket is closed. So the
 * source itself spends almost no CPU per byte, and a transfer's cost is the
 * relay's: put spliced between it and a reader to measure one size.
 *
 * The file: --file PATH is used if it exists (SIZE, if given, must not
 * exceed it: the first SIZE bytes are sent), else created with SIZE bytes;
 * without --file an unlinked temporary file is made in $TMPDIR or /tmp.
 * Created files hold spliced-demo's pattern (16-byte lines, each its own
 * offset in hex), so a reader can check what arrived. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "spliced/addr.h"
#include "spliced/config.h"
#include "spliced/log.h"
#include "spliced/zerocopy.h"

#define STEP       (1 << 20)      /* bytes asked of one zc_sendfile() call */
#define BUDGET     (16 << 20)     /* bytes per callback, so others get a turn */
#define LINGER_S   5

struct zcs {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *resume;       /* re-enables accepting after EMFILE */
	int file;
	off_t size;
	uint64_t served, failed;
	LIST_HEAD(, zcs_conn) conns;
};

struct zcs_conn {
	struct zcs *zcs;
	int fd;
	off_t off;
	struct timespec start;
	struct event *ev;
	LIST_ENTRY(zcs_conn) entry;
};

static void zcs_conn_free(struct zcs_conn *c)
{
	LIST_REMOVE(c, entry);
	event_free(c->ev);
	close(c->fd);
	free(c);
}

static double zcs_elapsed(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) +
	    (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* After the last byte: read and drop until EOF, an error or LINGER_S. */
static void zcs_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zcs_conn *c = arg;
	char scratch[4096];
	ssize_t n;

	if (what & EV_READ) {
		while ((n = recv(fd, scratch, sizeof scratch, 0)) > 0)
			;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	zcs_conn_free(c);
}

static void zcs_send_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zcs_conn *c = arg;
	struct zcs *z = c->zcs;
	struct timeval linger = { LINGER_S, 0 };
	struct stat st;
	size_t moved = 0, len;
	ssize_t n;

	(void)what;
	while (c->off < z->size && moved < BUDGET) {
		len = (size_t)(z->size - c->off) < STEP ? (size_t)(z->size - c->off) : STEP;
		n = zc_sendfile(fd, z->file, &c->off, len);
		if (n > 0) {
			moved += (size_t)n;
			continue;
		}
		/* 0 is "would block", but sendfile also returns 0 at the end of
		 * the file: if the file shrank under us, this would spin. */
		if (n == 0 && fstat(z->file, &st) == 0 && st.st_size > c->off)
			return;
		if (n == 0)
			errno = ENODATA;
		log_debug("zc-source: connection dropped after %jd bytes: %s",
		    (intmax_t)c->off, strerror(errno));
		z->failed++;
		zcs_conn_free(c);
		return;
	}
	if (c->off < z->size)
		return;             /* budget spent; the persistent event comes back */
	z->served++;
	log_debug("zc-source: sent %jd bytes in %.3f s", (intmax_t)c->off,
	    zcs_elapsed(&c->start));
	shutdown(fd, SHUT_WR);
	event_del(c->ev);
	if (event_assign(c->ev, z->base, fd, EV_READ | EV_PERSIST, zcs_linger_cb, c) < 0 ||
	    event_add(c->ev, &linger) < 0)
		zcs_conn_free(c);
}

static void zcs_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct zcs *z = arg;
	struct zcs_conn *c;

	(void)l, (void)sa, (void)salen;
	if (!(c = calloc(1, sizeof *c)) ||
	    !(c->ev = event_new(z->base, fd, EV_WRITE | EV_PERSIST, zcs_send_cb, c)) ||
	    event_add(c->ev, NULL) < 0) {
		log_warn("zc-source: out of memory, refusing a connection");
		if (c && c->ev)
			event_free(c->ev);
		free(c);
		close(fd);
		return;
	}
	c->zcs = z;
	c->fd = fd;
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	LIST_INSERT_HEAD(&z->conns, c, entry);
}

static void zcs_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zcs *z = arg;

	(void)fd, (void)what;
	evconnlistener_enable(z->listener);
}

/* EMFILE and friends: pause accepting for a second rather than spin. */
static void zcs_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct zcs *z = arg;
	struct timeval one = { 1, 0 };

	log_warn("zc-source: accept: %s; pausing accepts for 1s",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(l);
	evtimer_add(z->resume, &one);
}

static void zcs_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig, (void)what;
	event_base_loopexit(arg, NULL);
}

/* Fill fd with size bytes of the pattern (see spliced-demo). 0 or -1. */
static int zcs_fill(int fd, off_t size)
{
	static const char hex[] = "0123456789abcdef";
	static char buf[STEP];
	uint64_t rec, v;
	off_t off = 0;
	size_t len, i;
	ssize_t n;

	while (off < size) {
		len = (size_t)(size - off) < sizeof buf ? (size_t)(size - off) : sizeof buf;
		/* off is a multiple of STEP here, so of 16. */
		for (i = 0, rec = (uint64_t)off / 16; i < sizeof buf; i += 16, rec++) {
			v = rec;
			for (int d = 13; d >= 0; d--, v >>= 4)
				buf[i + (size_t)d] = hex[v & 15];
			buf[i + 14] = '0';
			buf[i + 15] = '\n';
		}
		for (i = 0; i < len; i += (size_t)n) {
			n = pwrite(fd, buf + i, len - i, off + (off_t)i);
			if (n < 0 && errno == EINTR)
				n = 0;
			else if (n < 0)
				return -1;
		}
		off += (off_t)len;
	}
	return 0;
}

/* Opens (or creates) the file to serve; sets z->file and z->size. */
static int zcs_open(struct zcs *z, const char *path, bool have_size, size_t size)
{
	char tmpl[4096];
	const char *dir = getenv("TMPDIR");
	struct stat st;
	bool create = false;

	if (path) {
		z->file = open(path, O_RDONLY | O_CLOEXEC);
		if (z->file < 0 && errno == ENOENT && have_size) {
			z->file = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			create = true;
		}
		if (z->file < 0) {
			log_error("zc-source: %s: %s%s", path, strerror(errno),
			    errno == ENOENT ? " (give --size to create it)" : "");
			return -1;
		}
	} else {
		snprintf(tmpl, sizeof tmpl, "%s/zc-source.XXXXXX", dir && *dir ? dir : "/tmp");
		if ((z->file = mkostemp(tmpl, O_CLOEXEC)) < 0) {
			log_error("zc-source: %s: %s", tmpl, strerror(errno));
			return -1;
		}
		unlink(tmpl);
		path = tmpl;
		create = true;
	}
	if (create && zcs_fill(z->file, (off_t)size) < 0) {
		log_error("zc-source: writing %s: %s", path, strerror(errno));
		if (path != tmpl)
			unlink(path);   /* not a half-written file for the next run */
		return -1;
	}
	if (fstat(z->file, &st) < 0) {
		log_error("zc-source: %s: %s", path, strerror(errno));
		return -1;
	}
	if (have_size && (uint64_t)st.st_size < size) {
		log_error("zc-source: %s holds %jd bytes, fewer than --size %zu",
		    path, (intmax_t)st.st_size, size);
		return -1;
	}
	z->size = have_size ? (off_t)size : st.st_size;
	return 0;
}

static void zcs_usage(FILE *f)
{
	fprintf(f, "usage: zc-source --listen ADDR:PORT --size SIZE [--file PATH] [--verbose]\n"
	    "Sends SIZE bytes (k/m/g: powers of 1024) with sendfile to every connection,\n"
	    "then closes it. --file: serve this file (created with SIZE bytes if missing).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "size", required_argument, NULL, 's' },
		{ "file", required_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = NULL, *path = NULL;
	struct zcs z = { .file = -1 };
	struct event *sigint = NULL, *sigterm = NULL;
	struct zcs_conn *c;
	struct addr a;
	struct sockaddr_storage bound;
	socklen_t boundlen = sizeof bound;
	char err[256], text[ADDR_TEXT_MAX];
	bool have_size = false, verbose = false;
	size_t size = 0;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "l:s:f:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 'f': path = optarg; break;
		case 'v': verbose = true; break;
		case 's':
			if (config_parse_size(optarg, &size) < 0) {
				fprintf(stderr, "zc-source: --size: '%s' is not a size (4096, 64k, 1m, 1g)\n", optarg);
				return 2;
			}
			have_size = true;
			break;
		case 'h': zcs_usage(stdout); return 0;
		default: zcs_usage(stderr); return 2;
		}
	}
	if (optind != argc || !listen || (!have_size && !path)) {
		fprintf(stderr, "zc-source: %s\n", optind != argc ? "unexpected argument" :
		    !listen ? "--listen is required" : "--size is required (or --file of an existing file)");
		zcs_usage(stderr);
		return 2;
	}
	if (addr_parse(&a, listen, true, err, sizeof err) < 0) {
		fprintf(stderr, "zc-source: --listen: %s\n", err);
		return 2;
	}
	log_set_level(verbose ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO);
	log_route_libevent();
	signal(SIGPIPE, SIG_IGN);
	LIST_INIT(&z.conns);
	if (zcs_open(&z, path, have_size, size) < 0 || !(z.base = event_base_new()))
		goto fail;
	z.listener = evconnlistener_new_bind(z.base, zcs_accept_cb, &z,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
	    (struct sockaddr *)&a.ss, (int)a.len);
	if (!z.listener) {
		log_error("zc-source: cannot listen on %s: %s", listen, strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(z.listener, zcs_accept_error_cb);
	z.resume = evtimer_new(z.base, zcs_resume_cb, &z);
	sigint = evsignal_new(z.base, SIGINT, zcs_signal_cb, z.base);
	sigterm = evsignal_new(z.base, SIGTERM, zcs_signal_cb, z.base);
	if (!z.resume || !sigint || !sigterm ||
	    event_add(sigint, NULL) < 0 || event_add(sigterm, NULL) < 0)
		goto fail;
	getsockname(evconnlistener_get_fd(z.listener), (struct sockaddr *)&bound, &boundlen);
	log_info("zc-source: listening on %s, sending %jd bytes per connection (zero-copy: %s)",
	    addr_format((struct sockaddr *)&bound, text, sizeof text), (intmax_t)z.size,
	    zc_backend_name());
	event_base_dispatch(z.base);
	log_info("zc-source: %" PRIu64 " connections served, %" PRIu64 " dropped early",
	    z.served, z.failed);
	rc = 0;
fail:
	while ((c = LIST_FIRST(&z.conns)) != NULL)
		zcs_conn_free(c);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (z.resume)
		event_free(z.resume);
	if (z.listener)
		evconnlistener_free(z.listener);
	if (z.base)
		event_base_free(z.base);
	if (z.file >= 0)
		close(z.file);
	return rc;
}
