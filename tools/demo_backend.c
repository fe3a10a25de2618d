/* tools/demo_backend.c: spliced-demo, a small backend to try spliced with.
 *
 *     spliced-demo [--listen 127.0.0.1:9001]
 *
 * A connection's first bytes choose what it gets:
 *   - "GET " or "HEAD ": HTTP/1.1, keep-alive honoured, "Connection: close"
 *     honoured, pipelined requests answered in order:
 *         /          a short page saying what to try
 *         /bytes/N   N bytes (k/m/g: powers of 1024; at most 16g) of a
 *                    pattern of 16-byte lines, each its own offset in hex
 *                    ("000000000000010\n" starts at byte 0x10), so a byte
 *                    that went missing or moved can be located
 *   - anything else: every byte is echoed back (`nc 127.0.0.1 9001`).
 *
 * Memory per connection is bounded: the input buffer has a high watermark
 * (reading stops while it is full), echo moves bytes to the output only
 * while the output holds less than OUT_HIGH, and /bytes/N is generated in
 * CHUNK pieces as the socket drains, never held whole.
 *
 * Closing: when a response is the last one (close, HTTP/1.0, the client's
 * EOF), the output is flushed, the write side shut, and input read and
 * dropped until the client's EOF or LINGER_S, so a request the client
 * pipelined behind it cannot turn the response into a reset. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "spliced/addr.h"
#include "spliced/log.h"

#define IN_HIGH   (64 * 1024)     /* input buffer: reading stops here */
#define OUT_HIGH  (128 * 1024)    /* output buffer: stop adding here ... */
#define OUT_LOW   (32 * 1024)     /* ... and add more when it drains to this */
#define CHUNK     (32 * 1024)     /* /bytes/N is generated this much at a time */
#define HDR_MAX   8192            /* a request head longer than this: 431 */
#define BYTES_MAX (16ULL << 30)   /* /bytes/N: N at most 16 GiB */
#define IDLE_S    60              /* HTTP keep-alive idle, stalled writes */
#define LINGER_S  2

enum demo_state {
	DEMO_SNIFF,                 /* too few bytes yet to tell HTTP from echo */
	DEMO_ECHO,
	DEMO_HTTP_IDLE,             /* waiting for (the rest of) a request head */
	DEMO_HTTP_BODY,             /* generating /bytes/N as the output drains */
	DEMO_CLOSING,               /* last bytes queued: flush, then shut down */
	DEMO_LINGER,                /* write side shut: drop input until EOF */
};

struct demo {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *resume;       /* re-enables accepting after EMFILE */
	LIST_HEAD(, demo_conn) conns;
};

struct demo_conn {
	struct bufferevent *bev;
	enum demo_state state;
	bool keep_alive;            /* after the response being sent */
	bool peer_eof;
	uint64_t total, sent;       /* /bytes/N: N, and bytes generated so far */
	LIST_ENTRY(demo_conn) entry;
};

static void demo_read_cb(struct bufferevent *, void *);

/* The pattern: 16-byte records, record r being r*16 in 15 hex digits and a
 * newline. rec[0..13] hold r, rec[14] is always '0'. */
static void pattern_seek(unsigned char rec[16], uint64_t r)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 13; i >= 0; i--, r >>= 4)
		rec[i] = (unsigned char)hex[r & 15];
	rec[14] = '0';
	rec[15] = '\n';
}

static void pattern_next(unsigned char rec[16])
{
	int i = 13;

	while (i > 0 && rec[i] == 'f')
		rec[i--] = '0';
	rec[i] = rec[i] == '9' ? 'a' : rec[i] + 1;
}

/* n bytes of the pattern starting at byte off, into dst. */
static void pattern_fill(unsigned char *dst, uint64_t off, size_t n)
{
	unsigned char rec[16];
	size_t skip = off % 16, k;

	pattern_seek(rec, off / 16);
	while (n > 0) {
		k = 16 - skip < n ? 16 - skip : n;
		memcpy(dst, rec + skip, k);
		dst += k;
		n -= k;
		skip = 0;
		pattern_next(rec);
	}
}

static void demo_conn_free(struct demo_conn *c)
{
	LIST_REMOVE(c, entry);
	bufferevent_free(c->bev);
	free(c);
}

static void demo_set_timeouts(struct demo_conn *c, int read_s, int write_s)
{
	struct timeval r = { read_s, 0 }, w = { write_s, 0 };

	bufferevent_set_timeouts(c->bev, read_s ? &r : NULL, write_s ? &w : NULL);
}

/* Flush what is queued, then shut the write side and linger. */
static void demo_close_soon(struct demo_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	c->state = DEMO_CLOSING;
	if (evbuffer_get_length(out) > 0) {
		/* The write callback runs again once the output is empty. */
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		return;
	}
	if (c->peer_eof) {
		demo_conn_free(c);
		return;
	}
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->state = DEMO_LINGER;
	demo_set_timeouts(c, LINGER_S, 0);
	bufferevent_enable(c->bev, EV_READ);
	demo_read_cb(c->bev, c);
}

static void demo_echo(struct demo_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t queued = evbuffer_get_length(out);

	if (queued < OUT_HIGH)
		evbuffer_remove_buffer(in, out, OUT_HIGH - queued);
	if (c->peer_eof && evbuffer_get_length(in) == 0)
		demo_close_soon(c);
}

static void demo_respond(struct demo_conn *c, int status, const char *reason,
    const char *type, uint64_t length, const char *extra)
{
	evbuffer_add_printf(bufferevent_get_output(c->bev),
	    "HTTP/1.1 %d %s\r\nServer: spliced-demo\r\nContent-Type: %s\r\n"
	    "Content-Length: %" PRIu64 "\r\nConnection: %s\r\n%s\r\n",
	    status, reason, type, length, c->keep_alive ? "keep-alive" : "close",
	    extra ? extra : "");
}

/* A short text response; head: the header only (a HEAD request). */
static void demo_text(struct demo_conn *c, int status, const char *reason,
    const char *body, bool head)
{
	if (status >= 400 && status != 404)
		c->keep_alive = false;
	demo_respond(c, status, reason, "text/plain; charset=utf-8",
	    strlen(body), status == 405 ? "Allow: GET, HEAD\r\n" : NULL);
	if (!head)
		evbuffer_add(bufferevent_get_output(c->bev), body, strlen(body));
}

/* Generate /bytes/N until the output holds OUT_HIGH or N is all queued.
 * 1: all of it is queued, 0: more to come, -1: c was freed. */
static int demo_body_fill(struct demo_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer_iovec v;
	size_t n;

	while (c->sent < c->total && evbuffer_get_length(out) < OUT_HIGH) {
		n = c->total - c->sent < CHUNK ? (size_t)(c->total - c->sent) : CHUNK;
		if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) != 1) {
			log_warn("spliced-demo: out of memory, dropping a connection");
			demo_conn_free(c);
			return -1;
		}
		pattern_fill(v.iov_base, c->sent, n);
		v.iov_len = n;
		evbuffer_commit_space(out, &v, 1);
		c->sent += n;
	}
	return c->sent == c->total;
}

/* A response is all queued: wait for the next request, or close.
 * false: the connection is closing (or gone). */
static bool demo_http_done(struct demo_conn *c)
{
	if (!c->keep_alive) {
		demo_close_soon(c);
		return false;
	}
	c->state = DEMO_HTTP_IDLE;
	demo_set_timeouts(c, IDLE_S, IDLE_S);
	return true;
}

/* "64", "64k", "1M", "16g": bytes, at most BYTES_MAX. 0 or -1. */
static int demo_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > BYTES_MAX)
			return -1;
	}
	switch (*s) {
	case 'k': case 'K': shift = 10; s++; break;
	case 'm': case 'M': shift = 20; s++; break;
	case 'g': case 'G': shift = 30; s++; break;
	}
	if (*s != '\0' || v > BYTES_MAX >> shift)
		return -1;
	*out = v << shift;
	return 0;
}

/* Copies the Host header into buf if it looks like host[:port]. */
static void demo_host(const char *value, char *buf, size_t len)
{
	size_t n = strspn(value, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");

	if (n > 0 && n < len && value[n] == '\0')
		memcpy(buf, value, n + 1);
}

static void demo_page(struct demo_conn *c, const char *host, bool head)
{
	char body[4096], nchost[160];
	const char *colon = strrchr(host, ':');

	/* "nc HOST PORT" wants them apart; "[::1]:8080" -> "::1 8080". */
	if (colon && colon[1] != '\0' && !strchr(colon, ']'))
		snprintf(nchost, sizeof nchost, "%.*s %s",
		    (int)(colon - host) - (host[0] == '[' ? 2 : 0),
		    host + (host[0] == '['), colon + 1);
	else
		snprintf(nchost, sizeof nchost, "%s 80", host);
	snprintf(body, sizeof body,
	    "spliced-demo: a backend to try spliced with.\n\n"
	    "Through spliced, or straight to this backend, try:\n\n"
	    "  curl http://%s/bytes/100\n"
	    "      100 bytes of the pattern: 16-byte lines, each holding its own\n"
	    "      offset in hex, so a lost or moved byte is easy to find\n"
	    "  curl -s http://%s/bytes/64m | sha256sum\n"
	    "      64 MiB; the sum must match the one fetched from the backend\n"
	    "      directly. Sizes take k, m, g (powers of 1024), up to 16g.\n"
	    "  curl -so /dev/null -w '%%{speed_download} bytes/s\\n' http://%s/bytes/1g\n"
	    "      a bulk transfer: big enough for spliced to splice it\n"
	    "  curl http://%s/bytes/1k http://%s/bytes/1k\n"
	    "      two requests on one kept-alive connection\n\n"
	    "A connection whose first bytes are not an HTTP request is echoed:\n\n"
	    "  nc %s\n",
	    host, host, host, host, host, nchost);
	demo_respond(c, 200, "OK", "text/plain; charset=utf-8", strlen(body), NULL);
	if (!head)
		evbuffer_add(bufferevent_get_output(c->bev), body, strlen(body));
}

/* Answer one request head (NUL-terminated, CRs included). */
static void demo_http_request(struct demo_conn *c, char *head)
{
	char *line, *save, *method, *target, *version, *v;
	char host[128] = "127.0.0.1:9001";
	bool is_head, has_body = false;

	line = strtok_r(head, "\n", &save);
	method = line ? strtok_r(line, " \r", &v) : NULL;
	target = method ? strtok_r(NULL, " \r", &v) : NULL;
	version = target ? strtok_r(NULL, " \r", &v) : NULL;
	if (!version || strncmp(version, "HTTP/1.", 7) != 0) {
		c->keep_alive = false;
		demo_text(c, 400, "Bad Request", "bad request line\n", false);
		return;
	}
	c->keep_alive = strcmp(version, "HTTP/1.0") != 0;
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		line[strcspn(line, "\r")] = '\0';
		if (!(v = strchr(line, ':')))
			continue;
		*v++ = '\0';
		v += strspn(v, " \t");
		if (strcasecmp(line, "Connection") == 0) {
			if (strcasestr(v, "close"))
				c->keep_alive = false;
			else if (strcasestr(v, "keep-alive"))
				c->keep_alive = true;
		} else if (strcasecmp(line, "Host") == 0) {
			demo_host(v, host, sizeof host);
		} else if (strcasecmp(line, "Transfer-Encoding") == 0 ||
		    (strcasecmp(line, "Content-Length") == 0 && strtoull(v, NULL, 10) > 0)) {
			has_body = true;
		}
	}
	is_head = strcmp(method, "HEAD") == 0;
	if (has_body) {
		demo_text(c, 400, "Bad Request", "request bodies are not supported\n", is_head);
	} else if (!is_head && strcmp(method, "GET") != 0) {
		demo_text(c, 405, "Method Not Allowed", "only GET and HEAD\n", false);
	} else if (strcmp(target, "/") == 0) {
		demo_page(c, host, is_head);
	} else if (strncmp(target, "/bytes/", 7) == 0) {
		if (demo_parse_size(target + 7, &c->total) < 0) {
			demo_text(c, 400, "Bad Request",
			    "/bytes/N: N is a size like 100, 64k, 1m, 2g, at most 16g\n", is_head);
			return;
		}
		demo_respond(c, 200, "OK", "application/octet-stream", c->total, NULL);
		c->sent = is_head ? c->total : 0;
		c->state = DEMO_HTTP_BODY;
		/* No read timeout while sending: a long download is not idle. */
		demo_set_timeouts(c, 0, IDLE_S);
	} else {
		demo_text(c, 404, "Not Found", "not found; try / or /bytes/1m\n", is_head);
	}
}

/* Answer the complete request heads in the input, in order, for as long as
 * each response can be queued whole (a long /bytes/N continues from the
 * write callback, which comes back here when it is done). */
static void demo_http_next(struct demo_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char head[HDR_MAX + 1];
	unsigned char *p;
	size_t len, i, end;

	while (c->state == DEMO_HTTP_IDLE) {
		len = evbuffer_get_length(in);
		if (len > HDR_MAX)
			len = HDR_MAX;
		p = evbuffer_pullup(in, (ev_ssize_t)len);
		/* The head ends at an empty line; bare LF is accepted (nc users). */
		for (i = 1, end = 0; i < len && !end; i++)
			if (p[i] == '\n' && (p[i - 1] == '\n' ||
			    (i > 1 && p[i - 1] == '\r' && p[i - 2] == '\n')))
				end = i + 1;
		if (!end) {
			if (len == HDR_MAX) {
				demo_text(c, 431, "Request Header Fields Too Large",
				    "request head too large\n", false);
				demo_close_soon(c);
			} else if (c->peer_eof) {
				demo_close_soon(c);
			}
			return;
		}
		memcpy(head, p, end);
		head[end] = '\0';
		evbuffer_drain(in, end);
		demo_http_request(c, head);
		if (c->state == DEMO_HTTP_BODY && demo_body_fill(c) != 1)
			return;
		if (!demo_http_done(c))
			return;
	}
}

static void demo_read_cb(struct bufferevent *bev, void *arg)
{
	struct demo_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n;
	unsigned char *p;

	switch (c->state) {
	case DEMO_SNIFF:
		n = len < 5 ? len : 5;
		p = evbuffer_pullup(in, (ev_ssize_t)n);
		if ((n >= 4 && memcmp(p, "GET ", 4) == 0) ||
		    (n >= 5 && memcmp(p, "HEAD ", 5) == 0)) {
			c->state = DEMO_HTTP_IDLE;
			demo_http_next(c);
		} else if (!c->peer_eof && (memcmp(p, "GET ", n) == 0 ||
		    memcmp(p, "HEAD ", n) == 0)) {
			break;      /* the start of a request head: wait for more */
		} else if (len == 0) {
			demo_close_soon(c);
		} else {
			c->state = DEMO_ECHO;
			demo_set_timeouts(c, 0, IDLE_S);
			demo_echo(c);
		}
		break;
	case DEMO_ECHO:
		demo_echo(c);
		break;
	case DEMO_HTTP_IDLE:
		demo_http_next(c);
		break;
	case DEMO_LINGER:
		evbuffer_drain(in, len);
		if (c->peer_eof)
			demo_conn_free(c);
		break;
	case DEMO_HTTP_BODY:
	case DEMO_CLOSING:
		break;      /* input waits; the watermark stops reading */
	}
}

static void demo_write_cb(struct bufferevent *bev, void *arg)
{
	struct demo_conn *c = arg;

	(void)bev;
	switch (c->state) {
	case DEMO_ECHO:
		demo_echo(c);
		break;
	case DEMO_HTTP_BODY:
		if (demo_body_fill(c) == 1 && demo_http_done(c))
			demo_http_next(c);
		break;
	case DEMO_CLOSING:
		demo_close_soon(c);
		break;
	default:
		break;
	}
}

static void demo_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct demo_conn *c = arg;

	if (!(what & BEV_EVENT_EOF)) {
		/* An error, or a timeout: nothing more can be done for it. */
		demo_conn_free(c);
		return;
	}
	/* Reading has stopped; what was read is still answered or echoed. */
	c->peer_eof = true;
	demo_read_cb(bev, c);
}

static void demo_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct demo *d = arg;
	struct demo_conn *c;
	int one = 1;

	(void)l, (void)sa, (void)salen;
	if (!(c = calloc(1, sizeof *c)) ||
	    !(c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		log_warn("spliced-demo: out of memory, refusing a connection");
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->state = DEMO_SNIFF;
	LIST_INSERT_HEAD(&d->conns, c, entry);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bufferevent_setcb(c->bev, demo_read_cb, demo_write_cb, demo_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	demo_set_timeouts(c, IDLE_S, IDLE_S);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void demo_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct demo *d = arg;

	(void)fd, (void)what;
	evconnlistener_enable(d->listener);
}

/* EMFILE and friends: pause accepting for a second rather than spin. */
static void demo_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct demo *d = arg;
	struct timeval one = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	log_warn("spliced-demo: accept: %s; pausing accepts for 1s",
	    evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	evtimer_add(d->resume, &one);
}

static void demo_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig, (void)what;
	event_base_loopexit(arg, NULL);
}

static void demo_usage(FILE *f)
{
	fprintf(f, "usage: spliced-demo [--listen ADDR:PORT]   (default 127.0.0.1:9001)\n"
	    "HTTP (GET /, GET /bytes/N) for connections that start with GET or HEAD,\n"
	    "echo for every other connection.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = "127.0.0.1:9001";
	struct demo d = { 0 };
	struct event *sigint = NULL, *sigterm = NULL;
	struct demo_conn *c;
	struct addr a;
	struct sockaddr_storage bound;
	socklen_t boundlen = sizeof bound;
	char err[256], text[ADDR_TEXT_MAX];
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 'h': demo_usage(stdout); return 0;
		default: demo_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "spliced-demo: unexpected argument '%s'\n", argv[optind]);
		demo_usage(stderr);
		return 2;
	}
	if (addr_parse(&a, listen, true, err, sizeof err) < 0) {
		fprintf(stderr, "spliced-demo: --listen: %s\n", err);
		return 2;
	}
	log_set_level(CONFIG_LOG_INFO);
	log_route_libevent();
	signal(SIGPIPE, SIG_IGN);
	LIST_INIT(&d.conns);
	if (!(d.base = event_base_new()))
		goto fail;
	d.listener = evconnlistener_new_bind(d.base, demo_accept_cb, &d,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
	    (struct sockaddr *)&a.ss, (int)a.len);
	if (!d.listener) {
		log_error("spliced-demo: cannot listen on %s: %s", listen, strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(d.listener, demo_accept_error_cb);
	d.resume = evtimer_new(d.base, demo_resume_cb, &d);
	sigint = evsignal_new(d.base, SIGINT, demo_signal_cb, d.base);
	sigterm = evsignal_new(d.base, SIGTERM, demo_signal_cb, d.base);
	if (!d.resume || !sigint || !sigterm ||
	    event_add(sigint, NULL) < 0 || event_add(sigterm, NULL) < 0)
		goto fail;
	getsockname(evconnlistener_get_fd(d.listener), (struct sockaddr *)&bound, &boundlen);
	log_info("spliced-demo: listening on %s (HTTP: GET / and GET /bytes/N; "
	    "anything else is echoed)", addr_format((struct sockaddr *)&bound, text, sizeof text));
	event_base_dispatch(d.base);
	rc = 0;
fail:
	while ((c = LIST_FIRST(&d.conns)) != NULL)
		demo_conn_free(c);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (d.resume)
		event_free(d.resume);
	if (d.listener)
		evconnlistener_free(d.listener);
	if (d.base)
		event_base_free(d.base);
	return rc;
}
