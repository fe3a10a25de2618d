/* proxy/admin.c: the admin endpoint's server: its socket, its clients,
 * and what each route answers (admin.h). The routes' parsing is
 * admin_req.c's, their JSON admin_json.c's.
 *
 * Bounding the clients: libevent 2.1 (Debian 12) has no
 * evhttp_set_max_connections and tells nothing when an accepted
 * connection goes away before its first request. So a connection counts
 * from its accept (evhttp's bufferevent callback) as "pending" until its
 * first request, when it becomes a client with a close callback; a pending
 * one that never sends a request is closed by evhttp's timeout, so it is
 * no longer counted after ADMIN_TIMEOUT_S (and a second). At
 * ADMIN_MAX_CLIENTS in all, accepting pauses (the kernel's backlog holds
 * the rest) until one closes or a pending one ages out. */
#include "spliced/admin.h"

#include <errno.h>
#include <stdatomic.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin_int.h"
#include "proc.h"
#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/config.h"
#include "spliced/listener.h"
#include "spliced/log.h"
#include "spliced/metrics.h"
#include "spliced/statuspage.h"
#include "spliced/supervise.h"

#define ADMIN_NAME_MAX 64
/* A pending connection is gone for sure by then: evhttp's timeout. */
#define ADMIN_PENDING_MS ((ADMIN_TIMEOUT_S + 1) * 1000u)

struct admin;

/* A connection that sent a request, and the request it waits on. */
struct admin_client {
	struct admin *a;
	struct evhttp_connection *evcon;   /* NULL: a free slot */
	struct evhttp_request *req;        /* waiting on g */
	struct metrics_gather *g;
	enum admin_route route;
	bool text;                  /* /status?format=text */
	char b[ADMIN_NAME_MAX], s[ADMIN_NAME_MAX];
};

struct admin {
	int fd;                     /* until admin_start hands it to lev */
	char *unix_path;            /* to remove at the end */
	char where[ADDR_TEXT_MAX + 120];   /* "127.0.0.1:9090", "unix:PATH" */
	char *token;                /* NULL: none required */
	struct proc *p;
	struct supervise *sv;
	struct evhttp *http;
	struct evconnlistener *lev;
	struct event *resume;
	struct admin_client c[ADMIN_MAX_CLIENTS];
	uint64_t pending[ADMIN_MAX_CLIENTS];   /* accept times, oldest first */
	size_t npending;
	bool paused, health_down;
	bool closing;               /* in admin_free: the listener is gone */
	_Atomic bool handed;        /* an upgrade's new process has the socket */
	uint64_t start_ms;          /* clock_coarse_ms() at the process's start */
	double start_wall;          /* the process's start, epoch seconds */
};

/* ---- the socket ---- */

/* A unix socket's file from an earlier run: replaced when nobody answers
 * on it; anything else at that path is left alone. 0 or -1 with why. */
static int
admin_stale(const char *path, char *why, size_t n)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (lstat(path, &st) == -1)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, n, "%s exists and is not a socket", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(why, n, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (r == 0) {
		snprintf(why, n, "%s is in use by another process", path);
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		snprintf(why, n, "cannot remove the stale %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
admin_socket_unix(const char *path, char *why, size_t n)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (admin_stale(path, why, n) == -1)
		return -1;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1) {
		snprintf(why, n, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(why, n, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	/* Whoever may drain servers: the owner and the group. */
	if (chmod(path, 0660) == -1 || listen(fd, 64) == -1) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static int
admin_socket_tcp(const struct addr *a, char *why, size_t n)
{
	char text[ADDR_TEXT_MAX];
	int fd, one = 1, zero = 0;

	addr_written(a, text, sizeof(text));
	if ((fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1) {
		snprintf(why, n, "socket for %s: %s", text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "*" is both families, as the listeners bind it. */
	if (a->wildcard && a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(fd, 64) == -1) {
		snprintf(why, n, "cannot bind %s: %s", text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The old process's admin socket, between admin_take_handed() and
 * admin_bind(): start-up only, before any thread exists. */
static int admin_handed_fd = -1;

void
admin_take_handed(int fd)
{
	admin_handed_fd = fd;
}

/* Whether fd listens where cfg's admin key says. */
static bool
admin_fd_matches(const struct config *cfg, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return false;
	if (cfg->admin.unix_path != NULL)
		return ss.ss_family == AF_UNIX &&
		    strncmp(un->sun_path, cfg->admin.unix_path,
		    sizeof(un->sun_path)) == 0;
	return ss.ss_family != AF_UNIX && len == cfg->admin.addr.len &&
	    memcmp(&ss, &cfg->admin.addr.ss, len) == 0;
}

bool
admin_health_is_down(const struct admin *a)
{
	return a != NULL && a->health_down;
}

void
admin_health_set_down(struct admin *a)
{
	if (a != NULL)
		a->health_down = true;
}

int
admin_listen_fd(const struct admin *a)
{
	return a != NULL && a->lev != NULL ? evconnlistener_get_fd(a->lev) : -1;
}

void
admin_handed(struct admin *a, bool shared)
{
	if (a != NULL)
		atomic_store(&a->handed, shared);
}

int
admin_bind(const struct config *cfg, struct admin **out, char *err,
    size_t errlen)
{
	char why[CONFIG_ERR_MAX];
	struct admin *a;
	int handed = admin_handed_fd;

	admin_handed_fd = -1;
	if (handed != -1 && ((cfg->admin.unix_path == NULL &&
	    cfg->admin.addr.len == 0) || !admin_fd_matches(cfg, handed))) {
		close(handed);
		handed = -1;
	}

	*out = NULL;
	if (cfg->admin.unix_path == NULL && cfg->admin.addr.len == 0)
		return 0;
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		if (handed != -1)
			close(handed);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->fd = handed;
	if (cfg->admin_token_file != NULL &&
	    admin_token_load(cfg->admin_token_file, &a->token, why,
	    sizeof(why)) == -1) {
		config_global_error(cfg, "admin_token_file", why, err, errlen);
		goto fail;
	}
	if (cfg->admin.unix_path != NULL) {
		if (a->fd == -1)
			a->fd = admin_socket_unix(cfg->admin.unix_path, why,
			    sizeof(why));
		if (a->fd != -1 &&
		    (a->unix_path = strdup(cfg->admin.unix_path)) == NULL)
			snprintf(why, sizeof(why), "out of memory");
		snprintf(a->where, sizeof(a->where), "unix:%s", cfg->admin.unix_path);
	} else {
		if (a->fd == -1)
			a->fd = admin_socket_tcp(&cfg->admin.addr, why,
			    sizeof(why));
		addr_written(&cfg->admin.addr, a->where, sizeof(a->where));
	}
	if (a->fd == -1 || (cfg->admin.unix_path != NULL && a->unix_path == NULL)) {
		config_global_error(cfg, "admin", why, err, errlen);
		goto fail;
	}
	*out = a;
	return 0;
fail:
	admin_free(a);
	return -1;
}

/* ---- counting clients ---- */

static unsigned
admin_count(struct admin *a)
{
	uint64_t now = clock_coarse_ms();
	size_t old = 0;
	unsigned n = 0;

	while (old < a->npending && now - a->pending[old] > ADMIN_PENDING_MS)
		old++;
	if (old > 0) {
		memmove(a->pending, a->pending + old,
		    (a->npending - old) * sizeof(a->pending[0]));
		a->npending -= old;
	}
	for (size_t i = 0; i < ADMIN_MAX_CLIENTS; i++)
		n += a->c[i].evcon != NULL;
	return n + (unsigned)a->npending;
}

/* Pause accepting at the limit; resume below it. */
static void
admin_recount(struct admin *a)
{
	struct timeval tv = { 1, 0 };
	bool full = admin_count(a) >= ADMIN_MAX_CLIENTS;

	if (full && !a->paused) {
		evconnlistener_disable(a->lev);
		a->paused = true;
		log_warn("admin: %d clients at once: not accepting more for now",
		    ADMIN_MAX_CLIENTS);
	} else if (!full && a->paused) {
		evconnlistener_enable(a->lev);
		a->paused = false;
	}
	/* Pending ones age out without an event: look again later. */
	if (a->paused)
		evtimer_add(a->resume, &tv);
}

static void
admin_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	admin_recount(arg);
}

/* evhttp accepted a connection: it needs its bufferevent. */
static struct bufferevent *
admin_accept_cb(struct event_base *base, void *arg)
{
	struct admin *a = arg;

	admin_count(a);
	if (a->npending < ADMIN_MAX_CLIENTS)
		a->pending[a->npending++] = clock_coarse_ms();
	admin_recount(a);
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

/* A client's connection is being freed (by the peer, a timeout, or
 * admin_free): a request still waiting for its figures goes too. */
static void
admin_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct admin_client *c = arg;

	(void)evcon;
	if (c->g != NULL) {
		metrics_gather_cancel(c->g);
		c->g = NULL;
		/* evhttp detached it from the connection and left it to us. */
		if (evhttp_request_get_connection(c->req) == NULL)
			evhttp_request_free(c->req);
	}
	c->req = NULL;
	c->evcon = NULL;
	if (!c->a->closing)
		admin_recount(c->a);
}

/* The client of req's connection, made at its first request. NULL when
 * no slot is free (cannot happen while the count holds). */
static struct admin_client *
admin_client(struct admin *a, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct admin_client *free_slot = NULL;

	for (size_t i = 0; i < ADMIN_MAX_CLIENTS; i++) {
		if (a->c[i].evcon == evcon)
			return &a->c[i];
		if (a->c[i].evcon == NULL && free_slot == NULL)
			free_slot = &a->c[i];
	}
	if (free_slot == NULL)
		return NULL;
	*free_slot = (struct admin_client){ .a = a, .evcon = evcon };
	evhttp_connection_set_closecb(evcon, admin_closed_cb, free_slot);
	/* It was counted as pending since its accept. */
	if (a->npending > 0) {
		memmove(a->pending, a->pending + 1,
		    (a->npending - 1) * sizeof(a->pending[0]));
		a->npending--;
	}
	return free_slot;
}

/* ---- answers ---- */

/* An answer. For HEAD, the headers of GET's with no body: libevent 2.1's
 * evhttp_make_header() appends the body to a HEAD answer all the same and
 * leaves out its Content-Length, so both are done here. An error closes
 * the connection, as evhttp's own 400 and 413 do. */
static void
admin_reply(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char len[24];

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (code >= 400)
		evhttp_add_header(h, "Connection", "close");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(h, "Content-Length", len);
		body = NULL;
	}
	evhttp_send_reply(req, code, reason, body);
}

/* A short text answer: "ok", or one line saying what is wrong. */
static void
admin_text(struct evhttp_request *req, int code, const char *reason,
    const char *line)
{
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(body, "%s\n", line);
	admin_reply(req, code, reason, "text/plain; charset=utf-8", body);
	evbuffer_free(body);
}

static const char *
admin_health(const struct admin *a)
{
	if (a->sv != NULL && supervise_draining(a->sv))
		return "draining";
	return a->health_down ? "down" : "up";
}

/* The workers answered: the figures c->route asked for. */
static void
admin_gathered_cb(struct stats_sample *s, void *arg)
{
	struct admin_client *c = arg;
	struct admin *a = c->a;
	struct evhttp_request *req = c->req;
	struct evbuffer *body = evbuffer_new();
	const char *type = "application/json";
	struct metrics_process mp;
	struct admin_view v;
	char line[200];
	int r = -1;

	c->g = NULL;
	c->req = NULL;
	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	switch (c->route) {
	case ADMIN_ROUTE_METRICS:
		/* A scraper takes a sum that went down for a counter reset. */
		if (admin_gather_whole(s->workers, a->p->nw, line,
		    sizeof(line)) == -1) {
			admin_text(req, 503, "Service Unavailable", line);
			evbuffer_free(body);
			return;
		}
		mp = (struct metrics_process){ a->p->cfg, a->p->bs, a->start_wall,
		    listener_proc_sources(a->p->lp) };
		type = "text/plain; version=0.0.4; charset=utf-8";
		r = metrics_prometheus(body, s, &mp);
		break;
	case ADMIN_ROUTE_STATUS:
		v = (struct admin_view){ a->p->cfg, a->p->bs, a->p->nw,
		    (double)(clock_coarse_ms() - a->start_ms) / 1000,
		    a->sv != NULL && supervise_draining(a->sv), admin_health(a),
		    listener_proc_sources(a->p->lp) };
		if (c->text) {
			type = "text/plain; charset=utf-8";
			r = admin_text_status(body, &v, s);
		} else
			r = admin_json_status(body, &v, s);
		break;
	case ADMIN_ROUTE_CONNECTIONS:
		r = admin_json_connections(body, s);
		break;
	case ADMIN_ROUTE_SERVER:
		if ((r = admin_json_server(body, a->p->bs, c->b, c->s, s,
		    a->p->nw)) == 1) {
			/* A reload removed it while the workers answered. */
			snprintf(line, sizeof(line), "no server %s/%s", c->b, c->s);
			admin_text(req, 404, "Not Found", line);
			evbuffer_free(body);
			return;
		}
		break;
	default:
		break;
	}
	if (r == 0)
		admin_reply(req, 200, "OK", type, body);
	else
		admin_text(req, 500, "Internal Server Error", "out of memory");
	evbuffer_free(body);
}

/* Ask the workers; the answer goes out from admin_gathered_cb. */
static void
admin_gather(struct admin_client *c, struct evhttp_request *req, size_t limit)
{
	c->req = req;
	c->g = metrics_gather(c->a->p->w, c->a->p->nw, c->a->p->base, limit,
	    admin_gathered_cb, c);
	if (c->g == NULL) {
		c->req = NULL;
		admin_text(req, 500, "Internal Server Error",
		    "cannot ask the workers (out of memory)");
	}
}

/* POST /servers/B/S, then its new state like GET. */
static void
admin_post_server(struct admin_client *c, struct evhttp_request *req,
    const struct admin_params *ps)
{
	char why[200];
	unsigned weight;
	int state;

	if (admin_server_request(ps, &state, &weight, why, sizeof(why)) == -1) {
		admin_text(req, 400, "Bad Request", why);
		return;
	}
	if (backend_server_set_admin(c->a->p->bs, c->b, c->s, state,
	    weight) == -1) {
		if (errno == ENOENT) {
			snprintf(why, sizeof(why), "no server %s/%s", c->b, c->s);
			admin_text(req, 404, "Not Found", why);
		} else {
			snprintf(why, sizeof(why), "cannot set %s/%s: %s", c->b,
			    c->s, strerror(errno));
			admin_text(req, 400, "Bad Request", why);
		}
		return;
	}
	/* backend_server_set_admin() logged what changed. */
	admin_gather(c, req, 0);
}

static void
admin_post_health(struct admin *a, struct evhttp_request *req,
    const struct admin_params *ps)
{
	char why[200];
	bool up;

	if (admin_health_request(ps, &up, why, sizeof(why)) == -1) {
		admin_text(req, 400, "Bad Request", why);
		return;
	}
	if (a->health_down == up)
		log_info("admin: /healthz set %s", up ? "up" : "down");
	a->health_down = !up;
	admin_text(req, 200, "OK", up ? "up" : "down");
}

/* GET /: the status page, built into the binary. */
static void
admin_page(struct evhttp_request *req)
{
	struct evbuffer *body = evbuffer_new();

	if (body == NULL || evbuffer_add_reference(body, statuspage_html,
	    statuspage_html_len, NULL, NULL) == -1) {
		if (body != NULL)
			evbuffer_free(body);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	admin_reply(req, 200, "OK", "text/html; charset=utf-8", body);
	evbuffer_free(body);
}

static void
admin_healthz(struct admin *a, struct evhttp_request *req)
{
	const char *h = admin_health(a);

	if (strcmp(h, "up") == 0)
		admin_text(req, 200, "OK", "ok");
	else
		admin_text(req, 503, "Service Unavailable", h);
}

/* The POST routes: the body's parameters, then the route's action. */
static void
admin_post(struct admin_client *c, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	struct admin_params ps;
	char why[200];
	const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";

	if (admin_type_ok(evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Content-Type"), why, sizeof(why)) == -1) {
		admin_text(req, 415, "Unsupported Media Type", why);
		return;
	}
	if (body == NULL ||
	    admin_params_parse(body, len, &ps, why, sizeof(why)) == -1) {
		admin_text(req, 400, "Bad Request", body ? why : "out of memory");
		return;
	}
	if (c->route == ADMIN_ROUTE_HEALTHZ)
		admin_post_health(c->a, req, &ps);
	else
		admin_post_server(c, req, &ps);
}

/* Whether a browser may have been made to ask (a page of another site,
 * or one that got our address under its own name): 0, or -1 answered. */
static int
admin_who(struct admin *a, struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *host = evhttp_find_header(in, "Host");
	char why[300];

	if (admin_origin_ok(evhttp_find_header(in, "Origin"), host, why,
	    sizeof(why)) == -1 ||
	    (a->unix_path == NULL && a->token == NULL &&
	    admin_host_ok(host, why, sizeof(why)) == -1)) {
		admin_text(req, 403, "Forbidden", why);
		return -1;
	}
	return 0;
}

static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct admin_client *c = admin_client(a, req);
	char why[200];
	size_t limit = 0;

	if (c == NULL) {
		admin_text(req, 503, "Service Unavailable", "too many clients");
		return;
	}
	if (admin_who(a, req) == -1)
		return;
	c->route = admin_route(evhttp_uri_get_path(uri), c->b, c->s,
	    sizeof(c->b));
	/* The page itself holds no data (it asks /status with the token the
	 * user gives it), so it loads without one, to ask for it. */
	if (a->token != NULL && !(c->route == ADMIN_ROUTE_PAGE &&
	    (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)) &&
	    !admin_auth_ok(a->token,
	    evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization"))) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		admin_text(req, 401, "Unauthorized",
		    "a bearer token is required (Authorization: Bearer TOKEN)");
		return;
	}
	if (c->route == ADMIN_ROUTE_NONE) {
		admin_text(req, 404, "Not Found", "no such path (see /status, "
		    "/metrics, /connections, /servers/BACKEND/SERVER, /healthz)");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD &&
	    (cmd != EVHTTP_REQ_POST || !admin_route_posts(c->route))) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		    admin_route_posts(c->route) ? "GET, HEAD, POST" : "GET, HEAD");
		admin_text(req, 405, "Method Not Allowed", "method not allowed");
		return;
	}
	if (cmd == EVHTTP_REQ_POST) {
		admin_post(c, req);
		return;
	}
	switch (c->route) {
	case ADMIN_ROUTE_HEALTHZ:
		admin_healthz(a, req);
		return;
	case ADMIN_ROUTE_PAGE:
		admin_page(req);
		return;
	case ADMIN_ROUTE_STATUS:
		if (admin_format_parse(evhttp_uri_get_query(uri), &c->text, why,
		    sizeof(why)) == -1) {
			admin_text(req, 400, "Bad Request", why);
			return;
		}
		break;
	case ADMIN_ROUTE_CONNECTIONS:
		if (admin_limit_parse(evhttp_uri_get_query(uri), &limit, why,
		    sizeof(why)) == -1) {
			admin_text(req, 400, "Bad Request", why);
			return;
		}
		break;
	default:
		break;
	}
	admin_gather(c, req, limit);
}

/* The first line of path that starts with prefix ("" for any) into buf.
 * 0 or -1. (/proc/stat's interrupt line alone can be longer than buf.) */
static int
admin_read_line(const char *path, const char *prefix, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	int rc = -1;

	if (f == NULL)
		return -1;
	while (fgets(buf, (int)n, f) != NULL)
		if (strncmp(buf, prefix, strlen(prefix)) == 0) {
			rc = 0;
			break;
		}
	fclose(f);
	return rc;
}

/* When the process started: Linux's /proc, else now (admin_start runs
 * within a second of it). */
static void
admin_started(struct admin *a)
{
	char self[1024], btime[64];
	struct timeval now;
	double wall, age;

	gettimeofday(&now, NULL);
	wall = (double)now.tv_sec + (double)now.tv_usec / 1e6;
	a->start_wall = wall;
	a->start_ms = clock_coarse_ms();
	if (admin_read_line("/proc/self/stat", "", self, sizeof(self)) == -1 ||
	    admin_read_line("/proc/stat", "btime ", btime, sizeof(btime)) == -1 ||
	    admin_proc_start(self, btime, sysconf(_SC_CLK_TCK),
	    &a->start_wall) == -1 || a->start_wall > wall) {
		a->start_wall = wall;
		return;
	}
	/* uptime counts on the monotonic clock from the same moment. */
	age = (wall - a->start_wall) * 1000;
	a->start_ms = a->start_ms > (uint64_t)age ? a->start_ms - (uint64_t)age :
	    0;
}

int
admin_start(struct admin *a, struct proc *p, struct supervise *sv)
{
	struct timeval to = { ADMIN_TIMEOUT_S, 0 };

	a->p = p;
	a->sv = sv;
	admin_started(a);
	if ((a->http = evhttp_new(p->base)) == NULL ||
	    (a->resume = evtimer_new(p->base, admin_resume_cb, a)) == NULL)
		return -1;
	evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
	evhttp_set_timeout_tv(a->http, &to);
	/* Every method reaches admin_request_cb, which answers 405 itself
	 * with the Allow header evhttp would leave out. */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(a->http, admin_request_cb, a);
	evhttp_set_bevcb(a->http, admin_accept_cb, a);
	if ((a->lev = evconnlistener_new(p->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, a->fd)) == NULL)
		return -1;
	a->fd = -1;                 /* the listener's now */
	if (evhttp_bind_listener(a->http, a->lev) == NULL) {
		evconnlistener_free(a->lev);
		a->lev = NULL;
		return -1;
	}
	log_info("admin: serving on %s%s", a->where, a->token != NULL ?
	    " (a bearer token is required)" : "");
	return 0;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	/* Frees the listener and every connection (their close callbacks
	 * cancel what they wait for). */
	a->closing = true;
	if (a->http != NULL)
		evhttp_free(a->http);
	a->lev = NULL;
	if (a->resume != NULL)
		event_free(a->resume);
	if (a->fd != -1)
		close(a->fd);
	/* After dropping privileges the directory may not let us: the next
	 * start replaces a stale file anyway. */
	if (a->unix_path != NULL && !atomic_load(&a->handed))
		unlink(a->unix_path);
	free(a->unix_path);
	free(a->token);
	free(a);
}
