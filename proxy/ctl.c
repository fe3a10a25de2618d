/* proxy/ctl.c: spliced ctl, the admin endpoint's client (ctl.h).
 *
 * One evhttp connection per run, each request run to its end on a loop of
 * our own. A unix socket goes through a relay: libevent 2.1's evhttp
 * client connects only to host names and addresses (2.2 adds
 * evhttp_connection_base_bufferevent_unix_new, which would replace it), so
 * evhttp talks to a loopback port of ours that accepts exactly that one
 * connection (its peer must be evhttp's own socket) and copies bytes both
 * ways to the unix socket. The server may answer and close at once (an
 * error closes the connection): the relay passes each side's end on to
 * the other as a shutdown of writing once what came before it is out, and
 * lets the pair go only when both ended and nothing is left to send. */
#include "spliced/ctl.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spliced/addr.h"
#include "spliced/admin.h"
#include "spliced/clock.h"
#include "spliced/config.h"

#define CTL_EXIT_USAGE 2

enum { CTL_NEAR, CTL_FAR };     /* evhttp's side of the relay, the unix side */

struct ctl {
	const struct ctl_opts *o;
	struct event_base *base;
	struct evhttp_connection *evcon;
	char *token;
	char host[ADDR_TEXT_MAX];   /* what evhttp connects to */
	unsigned port;
	/* The unix socket's relay. */
	struct sockaddr_un sun;
	struct evconnlistener *relay;
	struct bufferevent *side[2];       /* CTL_NEAR, CTL_FAR */
	bool ended[2];              /* nothing more to read from it */
	bool shut[2];               /* nothing more to write to it */
	/* The answer of the request in flight. */
	int code;                   /* 0: none came */
	enum evhttp_request_error why;
	bool failed;
	struct evbuffer *body;
};

static void
ctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: spliced ctl [--admin ADDR:PORT|unix:PATH] [--token-file FILE] COMMAND\n"
	    "  status [--json]                         listeners, backends, servers, connections\n"
	    "  server BACKEND/SERVER ready|drain|maint [--weight N]\n"
	    "  wait-empty BACKEND/SERVER|all [--timeout DUR]\n"
	    "                                          exit 0 once it holds no connection, 1 at the\n"
	    "                                          timeout (default 60s); polls every 200 ms\n"
	    "  health up|down                          what GET /healthz answers\n"
	    "The admin address: --admin, else $SPLICED_ADMIN, else %s; the token\n"
	    "file: --token-file, else $SPLICED_ADMIN_TOKEN_FILE.\n", CTL_ADMIN_DEFAULT);
}

static int ctl_usage_error(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
ctl_usage_error(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

/* "B/S": two names. */
static bool
ctl_target_ok(const char *t)
{
	char b[64], s[64], path[200];

	snprintf(path, sizeof(path), "/servers/%s", t);
	return strlen(t) < 130 && admin_route(path, b, s, sizeof(b)) ==
	    ADMIN_ROUTE_SERVER;
}

/* The command's words after the options: what each command takes. */
static int
ctl_words(struct ctl_opts *o, char **w, int n, char *err, size_t errlen)
{
	static const struct { const char *name; enum ctl_command cmd; int words; } cmds[] = {
		{ "status", CTL_STATUS, 0 },
		{ "server", CTL_SERVER, 2 },
		{ "wait-empty", CTL_WAIT_EMPTY, 1 },
		{ "health", CTL_HEALTH, 1 },
		{ "help", CTL_HELP, 0 },
	};
	size_t i;

	if (n == 0)
		return ctl_usage_error(err, errlen, "ctl: a command is needed "
		    "(status, server, wait-empty or health)");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(w[0], cmds[i].name) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0]))
		return ctl_usage_error(err, errlen, "ctl: unknown command '%s'",
		    w[0]);
	o->cmd = cmds[i].cmd;
	if (n - 1 < cmds[i].words)
		return ctl_usage_error(err, errlen, "ctl %s: %s", w[0],
		    o->cmd == CTL_SERVER ? "needs BACKEND/SERVER and ready, drain "
		    "or maint" : o->cmd == CTL_HEALTH ? "needs up or down" :
		    "needs BACKEND/SERVER or all");
	if (n - 1 > cmds[i].words)
		return ctl_usage_error(err, errlen, "ctl %s: unexpected argument "
		    "'%s'", w[0], w[cmds[i].words + 1]);
	if (o->cmd == CTL_SERVER || o->cmd == CTL_WAIT_EMPTY) {
		o->target = w[1];
		if (!(o->cmd == CTL_WAIT_EMPTY && strcmp(w[1], "all") == 0) &&
		    !ctl_target_ok(w[1]))
			return ctl_usage_error(err, errlen, "ctl %s: '%s' is not "
			    "BACKEND/SERVER", w[0], w[1]);
	}
	if (o->cmd == CTL_SERVER) {
		o->state = w[2];
		if (strcmp(w[2], "ready") != 0 && strcmp(w[2], "drain") != 0 &&
		    strcmp(w[2], "maint") != 0)
			return ctl_usage_error(err, errlen, "ctl server: '%s' is not "
			    "ready, drain or maint", w[2]);
	}
	if (o->cmd == CTL_HEALTH) {
		o->state = w[1];
		if (strcmp(w[1], "up") != 0 && strcmp(w[1], "down") != 0)
			return ctl_usage_error(err, errlen, "ctl health: '%s' is not "
			    "up or down", w[1]);
	}
	return 0;
}

int
ctl_parse(int argc, char **argv, struct ctl_opts *o, char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "admin", required_argument, NULL, 'a' },
		{ "token-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "weight", required_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *weight = NULL, *timeout = NULL;
	unsigned long v;
	char *end;
	int ch;

	*o = (struct ctl_opts){ .admin = getenv("SPLICED_ADMIN"),
	    .token_file = getenv("SPLICED_ADMIN_TOKEN_FILE"),
	    .timeout_ms = CTL_WAIT_DEFAULT_MS };
	if (o->admin == NULL || *o->admin == '\0')
		o->admin = CTL_ADMIN_DEFAULT;
	if (o->token_file != NULL && *o->token_file == '\0')
		o->token_file = NULL;
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a': o->admin = optarg; break;
		case 'k': o->token_file = optarg; break;
		case 'j': o->json = 1; break;
		case 'w': weight = optarg; break;
		case 't': timeout = optarg; break;
		case 'h': o->cmd = CTL_HELP; return 0;
		case ':':
			return ctl_usage_error(err, errlen, "ctl: %s needs a value",
			    argv[optind - 1]);
		default:
			return ctl_usage_error(err, errlen, "ctl: unknown option "
			    "'%s'", argv[optind - 1]);
		}
	}
	if (ctl_words(o, argv + optind, argc - optind, err, errlen) == -1)
		return -1;
	if (o->json && o->cmd != CTL_STATUS)
		return ctl_usage_error(err, errlen, "ctl: --json goes with status");
	if (weight != NULL) {
		if (o->cmd != CTL_SERVER)
			return ctl_usage_error(err, errlen, "ctl: --weight goes with "
			    "server");
		errno = 0;
		v = strtoul(weight, &end, 10);
		if (*weight < '0' || *weight > '9' || *end != '\0' || errno != 0 ||
		    v < 1 || v > CONFIG_WEIGHT_MAX)
			return ctl_usage_error(err, errlen, "ctl: --weight '%s' is "
			    "not a number in 1..%u", weight, CONFIG_WEIGHT_MAX);
		o->weight = (unsigned)v;
	}
	if (timeout != NULL) {
		if (o->cmd != CTL_WAIT_EMPTY)
			return ctl_usage_error(err, errlen, "ctl: --timeout goes with "
			    "wait-empty");
		if (config_parse_duration_ms(timeout, &o->timeout_ms) == -1)
			return ctl_usage_error(err, errlen, "ctl: --timeout '%s' is "
			    "not a duration (use ms, s, m or h)", timeout);
	}
	if (strncmp(o->admin, "unix:", 5) == 0 ? o->admin[5] == '\0' ||
	    strlen(o->admin + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path) :
	    strchr(o->admin, ':') == NULL)
		return ctl_usage_error(err, errlen, "ctl: --admin '%s' is not "
		    "ADDR:PORT or unix:PATH", o->admin);
	return 0;
}

/* ---- the unix socket's relay ---- */

static void
ctl_relay_close(struct ctl *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->side[i] != NULL)
			bufferevent_free(c->side[i]);
		c->side[i] = NULL;
		c->ended[i] = c->shut[i] = false;
	}
}

static int
ctl_relay_index(const struct ctl *c, const struct bufferevent *bev)
{
	return bev == c->side[CTL_FAR] ? CTL_FAR : CTL_NEAR;
}

/* A side whose peer ended gets its writing shut once its output is out;
 * the pair goes once neither can move another byte. */
static void
ctl_relay_settle(struct ctl *c)
{
	for (int i = 0; i < 2; i++) {
		struct bufferevent *b = c->side[i];

		if (b != NULL && c->ended[!i] && !c->shut[i] &&
		    evbuffer_get_length(bufferevent_get_output(b)) == 0) {
			shutdown(bufferevent_getfd(b), SHUT_WR);
			c->shut[i] = true;
		}
	}
	if (c->ended[CTL_NEAR] && c->ended[CTL_FAR] && c->shut[CTL_NEAR] &&
	    c->shut[CTL_FAR])
		ctl_relay_close(c);
}

static void
ctl_relay_read_cb(struct bufferevent *from, void *arg)
{
	struct ctl *c = arg;
	int i = ctl_relay_index(c, from);
	struct evbuffer *in = bufferevent_get_input(from);

	/* A side that failed takes nothing more. */
	if (c->shut[!i])
		evbuffer_drain(in, evbuffer_get_length(in));
	else
		bufferevent_write_buffer(c->side[!i], in);
}

/* A side's output is out: its shutdown may be due. */
static void
ctl_relay_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	ctl_relay_settle(arg);
}

/* EOF: that side sends no more, which its peer learns once the bytes
 * before it are out. An error: nothing more moves on that side at all. */
static void
ctl_relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl *c = arg;
	int i = ctl_relay_index(c, bev);
	struct evbuffer *out = bufferevent_get_output(bev);

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	bufferevent_disable(bev, EV_READ);
	c->ended[i] = true;
	if (what & BEV_EVENT_ERROR) {
		bufferevent_disable(bev, EV_WRITE);
		evbuffer_drain(out, evbuffer_get_length(out));
		c->shut[i] = true;
	}
	ctl_relay_settle(c);
}

/* Whether the peer is the socket evhttp connects from. */
static bool
ctl_relay_peer_ok(struct ctl *c, const struct sockaddr *peer, socklen_t len)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
	struct sockaddr_storage ours;
	socklen_t olen = sizeof(ours);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	return fd != -1 && getsockname(fd, (struct sockaddr *)&ours, &olen) == 0 &&
	    olen == len && memcmp(&ours, peer, len) == 0;
}

static void
ctl_relay_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *peer, int len, void *arg)
{
	struct ctl *c = arg;
	int ufd;

	(void)l;
	if (!ctl_relay_peer_ok(c, peer, (socklen_t)len)) {
		close(fd);
		return;
	}
	/* evhttp connects again only once it is done with the last pair. */
	ctl_relay_close(c);
	if ((ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(ufd, (struct sockaddr *)&c->sun, sizeof(c->sun)) == -1) {
		fprintf(stderr, "spliced ctl: cannot connect to %s: %s\n",
		    c->sun.sun_path, strerror(errno));
		if (ufd != -1)
			close(ufd);
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(ufd);
	c->side[CTL_NEAR] = bufferevent_socket_new(c->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	c->side[CTL_FAR] = bufferevent_socket_new(c->base, ufd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->side[CTL_NEAR] == NULL || c->side[CTL_FAR] == NULL) {
		if (c->side[CTL_NEAR] == NULL)
			close(fd);
		if (c->side[CTL_FAR] == NULL)
			close(ufd);
		ctl_relay_close(c);
		return;
	}
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(c->side[i], ctl_relay_read_cb, ctl_relay_write_cb,
		    ctl_relay_event_cb, c);
		bufferevent_enable(c->side[i], EV_READ | EV_WRITE);
	}
}

/* A loopback port for evhttp, relayed to the unix socket. 0 or -1. */
static int
ctl_relay_start(struct ctl *c, const char *path)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);

	c->sun.sun_family = AF_UNIX;
	snprintf(c->sun.sun_path, sizeof(c->sun.sun_path), "%s", path);
	c->relay = evconnlistener_new_bind(c->base, ctl_relay_accept_cb, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 4,
	    (struct sockaddr *)&sin, sizeof(sin));
	if (c->relay == NULL || getsockname(evconnlistener_get_fd(c->relay),
	    (struct sockaddr *)&sin, &len) == -1)
		return -1;
	snprintf(c->host, sizeof(c->host), "127.0.0.1");
	c->port = ntohs(sin.sin_port);
	return 0;
}

/* ---- requests ---- */

static void
ctl_done_cb(struct evhttp_request *req, void *arg)
{
	struct ctl *c = arg;

	c->code = req != NULL ? evhttp_request_get_response_code(req) : 0;
	if (req != NULL && c->code != 0)
		evbuffer_add_buffer(c->body, evhttp_request_get_input_buffer(req));
	event_base_loopbreak(c->base);
}

static void
ctl_error_cb(enum evhttp_request_error why, void *arg)
{
	struct ctl *c = arg;

	c->failed = true;
	c->why = why;
}

/* One request; its answer in c->code and c->body. 0 for an answer (of
 * any status); -1 after printing that none came. */
static int
ctl_request(struct ctl *c, enum evhttp_cmd_type cmd, const char *path,
    const char *form)
{
	struct evhttp_request *req = evhttp_request_new(ctl_done_cb, c);
	struct evkeyvalq *h;
	char auth[ADMIN_TOKEN_MAX + 16], hostport[ADDR_TEXT_MAX + 16];

	c->code = 0;
	c->failed = false;
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	if (req == NULL) {
		fprintf(stderr, "spliced ctl: out of memory\n");
		return -1;
	}
	evhttp_request_set_error_cb(req, ctl_error_cb);
	h = evhttp_request_get_output_headers(req);
	/* The endpoint takes only a loopback literal without a token (DNS
	 * rebinding), and an IPv6 one in brackets. */
	snprintf(hostport, sizeof(hostport), strchr(c->host, ':') != NULL ?
	    "[%s]:%u" : "%s:%u", c->host, c->port);
	evhttp_add_header(h, "Host", hostport);
	if (c->token != NULL) {
		snprintf(auth, sizeof(auth), "Bearer %s", c->token);
		evhttp_add_header(h, "Authorization", auth);
	}
	if (form != NULL) {
		evhttp_add_header(h, "Content-Type",
		    "application/x-www-form-urlencoded");
		evbuffer_add(evhttp_request_get_output_buffer(req), form,
		    strlen(form));
	}
	if (evhttp_make_request(c->evcon, req, cmd, path) == -1) {
		fprintf(stderr, "spliced ctl: cannot send the request to %s\n",
		    c->o->admin);
		return -1;
	}
	event_base_dispatch(c->base);
	if (c->code == 0) {
		fprintf(stderr, "spliced ctl: no answer from the admin endpoint at "
		    "%s (%s; is spliced running with admin = %s?)\n", c->o->admin,
		    c->failed && c->why == EVREQ_HTTP_TIMEOUT ? "timed out" :
		    "connection refused or closed", c->o->admin);
		return -1;
	}
	return 0;
}

/* The answer was not 2xx: print the server's one-line reason, as it said
 * it. -1. */
static int
ctl_refused(struct ctl *c, enum evhttp_cmd_type cmd, const char *path)
{
	size_t len = evbuffer_get_length(c->body);
	char *text;

	evbuffer_add(c->body, "", 1);
	text = (char *)evbuffer_pullup(c->body, -1);
	text[strcspn(text, "\n")] = '\0';
	fprintf(stderr, "spliced ctl: %s %s: %d %s\n", cmd == EVHTTP_REQ_POST ?
	    "POST" : "GET", path, c->code, len > 0 ? text : "");
	return -1;
}

/* A request that must be answered 2xx: 0, or -1 printed. */
static int
ctl_ask(struct ctl *c, enum evhttp_cmd_type cmd, const char *path,
    const char *form)
{
	if (ctl_request(c, cmd, path, form) == -1)
		return -1;
	return c->code / 100 == 2 ? 0 : ctl_refused(c, cmd, path);
}

/* ---- reading admin_json.c's documents ---- */

static const char *
ctl_json_ws(const char *p)
{
	return p + strspn(p, " \t\r\n");
}

/* Past the value at p (a string, an object or array whole, a number or a
 * word); NULL when it does not end. */
static const char *
ctl_json_skip(const char *p)
{
	int depth = 0;

	do {
		if (*p == '"') {
			for (p++; *p != '"'; p++)
				if (*p == '\0' || (*p == '\\' && *++p == '\0'))
					return NULL;
			p++;
		} else if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			if (--depth < 0)
				return NULL;
			p++;
		} else if (depth == 0) {
			size_t n = strcspn(p, ",}] \t\r\n");

			if (n == 0)
				return NULL;
			p += n;
		} else if (*p == '\0')
			return NULL;
		else
			p++;
	} while (depth > 0);
	return p;
}

long long
ctl_json_int(const char *json, const char *path)
{
	const char *p = ctl_json_ws(json), *key;
	size_t klen;
	long long v;
	char *end;

	for (;;) {
		bool found = false;

		if (*p != '{')
			return -1;
		klen = strcspn(path, ".");
		for (p = ctl_json_ws(p + 1); !found;) {
			if (*p != '"' || (key = p + 1,
			    (p = ctl_json_skip(p)) == NULL))
				return -1;
			found = (size_t)(p - 1 - key) == klen &&
			    memcmp(key, path, klen) == 0;
			if (*(p = ctl_json_ws(p)) != ':')
				return -1;
			p = ctl_json_ws(p + 1);
			if (found)
				break;
			if ((p = ctl_json_skip(p)) == NULL ||
			    *(p = ctl_json_ws(p)) != ',')
				return -1;
			p = ctl_json_ws(p + 1);
		}
		if (path[klen] == '.') {
			path += klen + 1;
			continue;
		}
		if (*p < '0' || *p > '9')
			return -1;
		v = strtoll(p, &end, 10);
		return strchr(",} \t\r\n", *end) != NULL && *end != '\0' ? v : -1;
	}
}

int
ctl_wait_verdict(const char *json, bool all, long long *active)
{
	long long workers = ctl_json_int(json, "workers");
	long long answered = ctl_json_int(json, "workers_answered");

	*active = ctl_json_int(json, all ? "connections.active" : "active");
	if (workers < 0 || answered < 0 || *active < 0)
		return -1;
	if (answered < workers)
		return 0;
	return *active == 0;
}

static void
ctl_print_body(struct ctl *c)
{
	size_t len = evbuffer_get_length(c->body);

	fwrite(evbuffer_pullup(c->body, -1), 1, len, stdout);
}

/* The body as a string (it stays in c->body). */
static const char *
ctl_body_text(struct ctl *c)
{
	evbuffer_add(c->body, "", 1);
	return (const char *)evbuffer_pullup(c->body, -1);
}

static int
ctl_wait_empty(struct ctl *c)
{
	char path[200];
	uint64_t deadline = clock_coarse_ms() + c->o->timeout_ms;
	struct timespec nap = { 0, CTL_POLL_MS * 1000000L };
	bool all = strcmp(c->o->target, "all") == 0;
	long long active = -1;
	int v;

	snprintf(path, sizeof(path), all ? "/status" : "/servers/%s",
	    c->o->target);
	for (;;) {
		if (ctl_request(c, EVHTTP_REQ_GET, path, NULL) == -1)
			return 1;
		/* 503: the endpoint cannot tell now (a worker late, too many
		 * clients): not empty yet. */
		if (c->code == 503)
			v = 0;
		else if (c->code / 100 != 2) {
			ctl_refused(c, EVHTTP_REQ_GET, path);
			return 1;
		} else if ((v = ctl_wait_verdict(ctl_body_text(c), all,
		    &active)) == -1) {
			fprintf(stderr, "spliced ctl: GET %s: no \"active\", "
			    "\"workers\" or \"workers_answered\" in the answer\n",
			    path);
			return 1;
		}
		if (v == 1) {
			printf("%s: no connection left\n", c->o->target);
			return 0;
		}
		if (clock_coarse_ms() >= deadline) {
			if (v == 0 && (c->code == 503 || active == 0))
				printf("%s: not every worker answered; still not "
				    "known empty after %u ms\n", c->o->target,
				    c->o->timeout_ms);
			else
				printf("%s: %lld connection%s still open after %u ms\n",
				    c->o->target, active, active == 1 ? "" : "s",
				    c->o->timeout_ms);
			return 1;
		}
		nanosleep(&nap, NULL);
	}
}

static int
ctl_run(struct ctl *c)
{
	const struct ctl_opts *o = c->o;
	char path[200], form[64];

	switch (o->cmd) {
	case CTL_STATUS:
		if (ctl_ask(c, EVHTTP_REQ_GET, o->json ? "/status" :
		    "/status?format=text", NULL) == -1)
			return 1;
		ctl_print_body(c);
		return 0;
	case CTL_SERVER:
		snprintf(path, sizeof(path), "/servers/%s", o->target);
		if (o->weight > 0)
			snprintf(form, sizeof(form), "state=%s&weight=%u", o->state,
			    o->weight);
		else
			snprintf(form, sizeof(form), "state=%s", o->state);
		if (ctl_ask(c, EVHTTP_REQ_POST, path, form) == -1)
			return 1;
		printf("%s: %s", o->target, o->state);
		if (o->weight > 0)
			printf(", weight %u", o->weight);
		printf(" (%lld active)\n", ctl_json_int(ctl_body_text(c), "active"));
		return 0;
	case CTL_WAIT_EMPTY:
		return ctl_wait_empty(c);
	case CTL_HEALTH:
		snprintf(form, sizeof(form), "state=%s", o->state);
		if (ctl_ask(c, EVHTTP_REQ_POST, "/healthz", form) == -1)
			return 1;
		printf("health: %s\n", o->state);
		return 0;
	default:
		return CTL_EXIT_USAGE;
	}
}

/* The connection (and the relay of a unix socket). 0, or -1 printed. */
static int
ctl_connect(struct ctl *c)
{
	const char *admin = c->o->admin;
	char why[CONFIG_ERR_MAX];
	struct addr a;

	if (strncmp(admin, "unix:", 5) == 0) {
		if (ctl_relay_start(c, admin + 5) == -1) {
			fprintf(stderr, "spliced ctl: cannot start the relay to %s: "
			    "%s\n", admin + 5, strerror(errno));
			return -1;
		}
	} else {
		if (addr_parse(&a, admin, false, why, sizeof(why)) == -1) {
			fprintf(stderr, "spliced ctl: --admin: %s\n", why);
			return -1;
		}
		addr_format((struct sockaddr *)&a.ss, c->host, sizeof(c->host));
		c->port = addr_port(&a);
		/* "[::1]:9090" -> "::1" for evhttp, which takes a host. */
		if (c->host[0] == '[') {
			memmove(c->host, c->host + 1, strlen(c->host));
			c->host[strcspn(c->host, "]")] = '\0';
		} else
			c->host[strcspn(c->host, ":")] = '\0';
	}
	if ((c->evcon = evhttp_connection_base_new(c->base, NULL, c->host,
	    (unsigned short)c->port)) == NULL) {
		fprintf(stderr, "spliced ctl: out of memory\n");
		return -1;
	}
	evhttp_connection_set_timeout(c->evcon, CTL_REQUEST_TIMEOUT_S);
	return 0;
}

int
ctl_main(int argc, char **argv)
{
	char err[CONFIG_ERR_MAX];
	struct ctl_opts o;
	struct ctl c = { .o = &o };
	int rc = 1;

	if (ctl_parse(argc, argv, &o, err, sizeof(err)) == -1) {
		fprintf(stderr, "spliced %s\n", err);
		ctl_usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (o.cmd == CTL_HELP) {
		ctl_usage(stdout);
		return 0;
	}
	/* A side of the relay, or evhttp, may write to a socket whose peer
	 * has gone: an error to handle, not a signal to die of. */
	signal(SIGPIPE, SIG_IGN);
	if (o.token_file != NULL &&
	    admin_token_load(o.token_file, &c.token, err, sizeof(err)) == -1) {
		fprintf(stderr, "spliced ctl: --token-file: %s\n", err);
		return 1;
	}
	if ((c.base = event_base_new()) == NULL ||
	    (c.body = evbuffer_new()) == NULL) {
		fprintf(stderr, "spliced ctl: out of memory\n");
		goto out;
	}
	if (ctl_connect(&c) == 0)
		rc = ctl_run(&c);
out:
	if (c.evcon != NULL)
		evhttp_connection_free(c.evcon);
	ctl_relay_close(&c);
	if (c.relay != NULL)
		evconnlistener_free(c.relay);
	if (c.body != NULL)
		evbuffer_free(c.body);
	if (c.base != NULL)
		event_base_free(c.base);
	free(c.token);
	return rc;
}
