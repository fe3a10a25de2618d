/* tools/floor_relay.c: floor-relay, the least CPU a userspace TCP relay can
 * spend per request: the floor tools/bench's small section measures spliced,
 * HAProxy and nginx against.
 *
 *     floor-relay --listen ADDR:PORT --backend ADDR:PORT [--backend ...]
 *                 [--threads N]
 *
 * N threads (default: the online CPUs, as spliced's workers), each with its
 * own SO_REUSEPORT listener and epoll: nothing is shared that is written.
 * Each accepted connection gets a non-blocking connect to the next backend
 * (round robin, per thread) and is relayed with read(2)/write(2) through a
 * 64 KiB buffer per direction, allocated with the pair. What keeps the
 * syscalls few:
 * - Level-triggered epoll, each socket registered once for EPOLLIN. Its
 *   interest changes only when a write would block (the sink waits for
 *   EPOLLOUT, the source is not read meanwhile) or drains, and at EOF.
 * - A short read means drained, a short write full: neither is followed by
 *   the call that would only return EAGAIN.
 * - A write to a backend still connecting blocks like one to a full socket;
 *   a failed connect shows as EPOLLERR: no SO_ERROR, no EPOLLOUT round.
 * - TCP_NODELAY (HAProxy and nginx set it for TCP) on the listener, which
 *   Linux copies to every accepted socket, and on each backend socket.
 * A source's EOF becomes shutdown(SHUT_WR) of the other side, the pair is
 * closed when both directions have ended, and an error on either socket
 * closes both (a reset is fine here).
 *
 * Left out on purpose, since each costs what a floor must not: timeouts,
 * health checks, retries, logging, counters, splice, connection limits,
 * a graceful stop (SIGTERM and SIGINT kill it), names (numeric addresses:
 * 127.0.0.1:80, [::1]:80). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_BUF        (64 * 1024)
#define FLOOR_BACKLOG    4096
#define FLOOR_EVENTS     256
#define FLOOR_BACKENDS   64       /* --backend at most this often */
#define FLOOR_PAUSE_S    1        /* accepting rests this long after EMFILE */

struct floor_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct floor_end {               /* one socket of a pair; epoll's data.ptr */
	struct floor_pair *pair;
	int side;                    /* 0: the client, 1: the backend */
	int fd;
	uint32_t events;             /* the interest epoll holds for it now */
};

struct floor_dir {               /* the bytes from end[i] to end[!i] */
	char *buf;
	size_t off, len;             /* read, not yet written: buf[off, off+len) */
	bool done;                   /* the source said EOF; the sink was shut */
};

struct floor_pair {
	struct floor_end end[2];
	struct floor_dir dir[2];
	/* The backend answered (a byte read or written, or writable): until
	 * then a shutdown would abort its connect, so the client's FIN waits
	 * (fin_waits) for it to be writable. */
	bool connected, fin_waits;
	bool closed;
	struct floor_pair *next_dead;
};

struct floor_worker {
	pthread_t thread;
	int epfd, lfd;
	size_t next;                 /* the backend the next connection gets */
	struct floor_pair *dead;     /* closed in this batch of events */
	time_t paused_at;            /* accepting paused then (EMFILE) */
	bool paused;
};

static struct floor_addr floor_backends[FLOOR_BACKENDS];
static size_t floor_nbackends;

/* "1.2.3.4:80" or "[::1]:80" (numeric only) into a; 0, or -1. */
static int floor_parse_addr(const char *text, struct floor_addr *a)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
	const char *colon = strrchr(text, ':');
	char host[INET6_ADDRSTRLEN], *stop;
	bool v6 = text[0] == '[';
	unsigned long port;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	if (colon == NULL || !isdigit((unsigned char)colon[1]) || (v6 && colon[-1] != ']'))
		return -1;
	hlen = (size_t)(colon - text) - (v6 ? 2 : 0);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, text + v6, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &stop, 10);
	if (*stop != '\0' || errno != 0 || port > 65535)
		return -1;
	if (!v6 && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		a->len = sizeof(*in4);
		return 0;
	}
	if (v6 && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		a->len = sizeof(*in6);
		return 0;
	}
	return -1;
}

/* A non-blocking SO_REUSEPORT listener with TCP_NODELAY; fd or -1. */
static int floor_listen(const struct floor_addr *a)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(fd, FLOOR_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* What end[side] waits for: input while its direction's buffer is empty and
 * open, output while the other direction holds bytes for it. An end that
 * waits for nothing is made edge-triggered: epoll reports EPOLLHUP whatever
 * the interest once a socket has both sent and received its FIN, and would
 * report it on every turn while that socket's last bytes wait for the
 * other side to drain. */
static uint32_t floor_wanted(const struct floor_pair *p, int side)
{
	uint32_t ev = 0;

	if (!p->dir[side].done && p->dir[side].len == 0)
		ev |= EPOLLIN;
	if (p->dir[!side].len > 0 || (side == 1 && p->fin_waits))
		ev |= EPOLLOUT;
	return ev != 0 ? ev : EPOLLET;
}

static void floor_close(struct floor_worker *w, struct floor_pair *p)
{
	/* close() takes the sockets out of the epoll set; the pair itself may
	 * still be named by an event of this batch, so it is freed after. */
	close(p->end[0].fd);
	close(p->end[1].fd);
	p->closed = true;
	p->next_dead = w->dead;
	w->dead = p;
}

/* Both ends' interest brought in line with the pair's state, or the pair
 * closed when both directions have ended. 0, or -1 (the caller closes). */
static int floor_update(struct floor_worker *w, struct floor_pair *p)
{
	if (p->dir[0].done && p->dir[1].done) {
		floor_close(w, p);
		return 0;
	}
	for (int side = 0; side < 2; side++) {
		struct floor_end *e = &p->end[side];
		struct epoll_event ev = { .events = floor_wanted(p, side), .data.ptr = e };

		if (ev.events == e->events)
			continue;
		if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, e->fd, &ev) < 0)
			return -1;
		e->events = ev.events;
	}
	return 0;
}

/* Write what dir[side] holds to the other end. A short write means the
 * socket is full: wait for EPOLLOUT rather than try again for EAGAIN. */
static int floor_flush(struct floor_pair *p, int side)
{
	struct floor_dir *d = &p->dir[side];
	ssize_t n;

	n = write(p->end[!side].fd, d->buf + d->off, d->len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (side == 0)
		p->connected = true;
	d->off += (size_t)n;
	d->len -= (size_t)n;
	if (d->len == 0)
		d->off = 0;
	return 0;
}

/* Read from end[side] (its buffer is empty) and pass it on. A short read
 * means the socket is drained: the next read waits for the next event. */
static int floor_read(struct floor_pair *p, int side)
{
	struct floor_dir *d = &p->dir[side];
	ssize_t n;

	n = read(p->end[side].fd, d->buf, FLOOR_BUF);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (side == 1)
		p->connected = true;
	if (n == 0) {
		d->done = true;
		/* Closing the pair sends that FIN anyway. */
		if (p->dir[!side].done)
			return 0;
		if (side == 0 && !p->connected) {
			p->fin_waits = true;
			return 0;
		}
		return shutdown(p->end[!side].fd, SHUT_WR) < 0 && errno != ENOTCONN ? -1 : 0;
	}
	d->len = (size_t)n;
	return floor_flush(p, side);
}

/* Level-triggered, a listener whose accept fails on the fd limit is ready
 * again at once: accepting rests a second or two instead (as relayd's). */
static void floor_accepting(struct floor_worker *w, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = NULL };

	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->lfd, &ev) == 0)
		w->paused = !on;
	w->paused_at = time(NULL);
}

static void floor_accept(struct floor_worker *w)
{
	const struct floor_addr *b;
	struct floor_pair *p = NULL;
	int cfd, bfd = -1, one = 1;

	/* One connection per event: level-triggered epoll reports the rest. */
	cfd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			floor_accepting(w, false);
		return;
	}
	b = &floor_backends[w->next++ % floor_nbackends];
	bfd = socket(b->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bfd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			floor_accepting(w, false);
		goto fail;
	}
	if (setsockopt(bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	if (connect(bfd, (const struct sockaddr *)&b->ss, b->len) < 0 && errno != EINPROGRESS)
		goto fail;
	/* The buffers are not zeroed: a memset of 128 KiB would cost more
	 * than the rest of a short connection. */
	p = malloc(sizeof(*p) + 2 * FLOOR_BUF);
	if (p == NULL)
		goto fail;
	memset(p, 0, sizeof(*p));
	for (int side = 0; side < 2; side++) {
		struct floor_end *e = &p->end[side];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };

		e->pair = p;
		e->side = side;
		e->fd = side == 0 ? cfd : bfd;
		e->events = EPOLLIN;
		p->dir[side].buf = (char *)(p + 1) + (size_t)side * FLOOR_BUF;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, e->fd, &ev) < 0)
			goto fail;
	}
	return;
fail:
	free(p);       /* its fds leave the epoll set as they are closed */
	if (bfd >= 0)
		close(bfd);
	close(cfd);
}

static void floor_event(struct floor_worker *w, struct floor_end *e, uint32_t events)
{
	struct floor_pair *p = e->pair;
	int side = e->side;

	if (p->closed)
		return;
	if (events & EPOLLERR)
		goto fail;
	if ((events & EPOLLOUT) && p->dir[!side].len > 0 && floor_flush(p, !side) < 0)
		goto fail;
	if ((events & EPOLLOUT) && side == 1 && p->fin_waits) {
		p->connected = true;
		p->fin_waits = false;
		if (shutdown(e->fd, SHUT_WR) < 0 && errno != ENOTCONN)
			goto fail;
	}
	/* EPOLLHUP: the FIN (or a reset) waits to be read like any input. */
	if ((events & (EPOLLIN | EPOLLHUP)) && !p->dir[side].done && p->dir[side].len == 0 &&
	    floor_read(p, side) < 0)
		goto fail;
	if (floor_update(w, p) < 0)
		goto fail;
	return;
fail:
	if (!p->closed)
		floor_close(w, p);
}

static void *floor_run(void *arg)
{
	struct floor_worker *w = arg;
	struct epoll_event events[FLOOR_EVENTS];

	for (;;) {
		int n = epoll_wait(w->epfd, events, FLOOR_EVENTS, w->paused ? 500 : -1);

		if (n < 0 && errno != EINTR) {
			perror("floor-relay: epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL)
				floor_accept(w);
			else
				floor_event(w, events[i].data.ptr, events[i].events);
		}
		while (w->dead != NULL) {
			struct floor_pair *p = w->dead;

			w->dead = p->next_dead;
			free(p);
		}
		if (w->paused && time(NULL) > w->paused_at + FLOOR_PAUSE_S)
			floor_accepting(w, true);
	}
	return NULL;
}

static int floor_usage(const char *why, const char *arg)
{
	if (why != NULL && *why != '\0')
		fprintf(stderr, "floor-relay: %s%s\n", why, arg != NULL ? arg : "");
	fprintf(why != NULL ? stderr : stdout,
	    "usage: floor-relay --listen ADDR:PORT --backend ADDR:PORT [--backend ...]\n"
	    "                   [--threads N]\n"
	    "A minimal epoll TCP relay, the floor tools/bench measures proxies against.\n"
	    "Numeric addresses (127.0.0.1:8080, [::1]:8080); backends in turn; N threads\n"
	    "(default: the online CPUs). SIGTERM or SIGINT ends it.\n");
	return why != NULL ? 2 : 0;
}

/* Every listener is bound before any thread starts, so a bad address fails
 * at once and the port takes connections once it listens. */
static int floor_start(const struct floor_addr *listen_addr, long nthreads)
{
	struct floor_worker *workers = calloc((size_t)nthreads, sizeof(*workers));
	int err;

	if (workers == NULL)
		return -1;
	for (long i = 0; i < nthreads; i++) {
		struct floor_worker *w = &workers[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		w->lfd = floor_listen(listen_addr);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (w->lfd < 0 || w->epfd < 0 ||
		    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev) < 0)
			return -1;
	}
	for (long i = 0; i < nthreads; i++) {
		err = pthread_create(&workers[i].thread, NULL, floor_run, &workers[i]);
		if (err != 0) {
			errno = err;
			return -1;
		}
	}
	for (long i = 0; i < nthreads; i++)
		pthread_join(workers[i].thread, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "backend", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct floor_addr listen_addr;
	const char *listen_text = NULL;
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	char *stop;
	int c;

	while ((c = getopt_long(argc, argv, "l:b:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (floor_parse_addr(optarg, &listen_addr) < 0)
				return floor_usage("--listen: not a numeric ADDR:PORT: ", optarg);
			listen_text = optarg;
			break;
		case 'b':
			if (floor_nbackends == FLOOR_BACKENDS)
				return floor_usage("too many --backend (at most 64)", NULL);
			if (floor_parse_addr(optarg, &floor_backends[floor_nbackends++]) < 0)
				return floor_usage("--backend: not a numeric ADDR:PORT: ", optarg);
			break;
		case 't':
			errno = 0;
			nthreads = strtol(optarg, &stop, 10);
			if (*optarg == '\0' || *stop != '\0' || errno != 0 ||
			    nthreads < 1 || nthreads > 1024)
				return floor_usage("--threads: not a number from 1 to 1024: ", optarg);
			break;
		case 'h':
			return floor_usage(NULL, NULL);
		default:
			return floor_usage("", NULL);
		}
	}
	if (optind < argc)
		return floor_usage("unexpected argument: ", argv[optind]);
	if (listen_text == NULL || floor_nbackends == 0)
		return floor_usage("--listen and at least one --backend are required", NULL);
	signal(SIGPIPE, SIG_IGN);
	if (floor_start(&listen_addr, nthreads > 0 ? nthreads : 1) < 0) {
		fprintf(stderr, "floor-relay: starting on %s: %s\n", listen_text, strerror(errno));
		return 1;
	}
	return 0;
}
