/* include/spliced/admin.h: the admin endpoint (DESIGN.md section 6).
 *
 * HTTP/1.1 (libevent's evhttp) on the main thread's loop, never on a
 * worker, on [global] admin: ADDR:PORT or unix:PATH. Bounded: bodies of at
 * most ADMIN_MAX_BODY (413 past it), headers of ADMIN_MAX_HEADERS, at most
 * ADMIN_MAX_CLIENTS connections at once (accepting pauses at the limit),
 * ADMIN_TIMEOUT_S for a request to arrive and its answer to leave.
 *
 *   GET  /metrics                Prometheus text (metrics_prometheus())
 *   GET  /status                 JSON, CONTRACT.md's shape (?format=text: a table)
 *   GET  /connections?limit=N    JSON, open connections, newest first
 *   GET  /servers/B/S            JSON, one server
 *   POST /servers/B/S            state=ready|drain|maint and/or weight=N
 *   GET  /healthz                200 "ok", 503 "draining" or "down"
 *   POST /healthz                state=up|down
 *   GET  /                       the status page
 * HEAD goes wherever GET does: GET's headers, Content-Length included,
 * and no body. A POST body is a form (application/x-www-form-urlencoded)
 * or a flat JSON object of strings and numbers, and its Content-Type says
 * which (415 otherwise). Before anything else a browser's tricks are
 * refused, 403: an Origin header other than "http://" and the request's
 * Host (a page of another site), and, on a TCP address without a token,
 * a Host other than a loopback literal or localhost (DNS rebinding).
 * Errors, each closing the connection: 400 with a one-line reason, 404
 * unknown path, backend or server, 405 with an Allow header, 401 when
 * admin_token_file is set and the request lacks "Authorization: Bearer
 * TOKEN" (all but GET /, the page, which holds no data and asks the user
 * for the token), 413 for a body too large (evhttp's own page, HTML, as
 * is its 400 for a request it cannot parse: libevent 2.1 has no hook for
 * them). Figures come from metrics_gather() (metrics.h), answered when
 * the workers have; /status and /servers/B/S say "workers_answered"
 * next to "workers", and /metrics answers 503 when a worker was late
 * (its sums would go backwards). A client that leaves while its gather
 * runs is not noticed: libevent 2.1's evhttp stops reading a connection
 * while its request is answered, so it learns of the departure only when
 * the answer is written (or at admin_free); the gather runs to its end
 * and the answer goes nowhere.
 *
 * The pure parts (routing, the token, the query and the body) are exposed
 * for tests. */
#ifndef SPLICED_ADMIN_H
#define SPLICED_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct admin;
struct config;
struct proc;                    /* proxy/proc.h: the main thread's state */
struct supervise;

#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_MAX_CLIENTS 32
#define ADMIN_TIMEOUT_S 10
#define ADMIN_TOKEN_MAX 4096    /* bytes of a token file */
#define ADMIN_CONN_LIMIT_DEFAULT 100
#define ADMIN_CONN_LIMIT_MAX 10000

/* Start-up, before privileges drop (a unix socket's directory, a port
 * below 1024): the listening socket of cfg's admin key (a stale unix
 * socket file is replaced; the new one is mode 0660) and the token of
 * admin_token_file. 0 with *out NULL when admin is not set; 0 with *out;
 * or -1 with err naming the key ("spliced.ini:3: [global] admin: cannot
 * bind 127.0.0.1:9090: Address already in use"). */
int admin_bind(const struct config *cfg, struct admin **out, char *err,
    size_t errlen);
/* A binary upgrade. The new process: the old one's admin socket (-1:
 * none) is used when it is the one cfg's admin key names, else closed;
 * call before admin_bind(), which then binds only what is missing. */
void admin_take_handed(int fd);
/* Its listening socket (-1: none), and whether another process holds it
 * too (the old one, before the commit; the new one, after it): then
 * admin_free() leaves a unix socket's file in place. Any thread. */
int admin_listen_fd(const struct admin *);
/* What `spliced ctl health` set (main thread): an upgrade's new process
 * answers /healthz as the old one did (NULL: up). */
bool admin_health_is_down(const struct admin *);
void admin_health_set_down(struct admin *);
void admin_handed(struct admin *, bool shared);
/* Serve on p->base (after the workers exist: p->w), reading p's current
 * generation (p->cfg, p->bs) at every request, and sv for the drain. 0,
 * or -1 with errno. */
int admin_start(struct admin *, struct proc *p, struct supervise *sv);
/* Close the socket and every client; a unix socket's file is removed.
 * NULL is fine. */
void admin_free(struct admin *);

/* The token in the file at path: its content without leading and trailing
 * white space, not empty, at most ADMIN_TOKEN_MAX bytes. 0 with *token
 * (malloc'd), or -1 with why ("cannot read /x: No such file or
 * directory"). */
int admin_token_load(const char *path, char **token, char *why, size_t n);
/* Whether an Authorization header value carries "Bearer TOKEN". Compared
 * in constant time for a given token length. header may be NULL. */
bool admin_auth_ok(const char *token, const char *header);

enum admin_route {
	ADMIN_ROUTE_NONE,           /* 404 */
	ADMIN_ROUTE_PAGE,
	ADMIN_ROUTE_METRICS,
	ADMIN_ROUTE_STATUS,
	ADMIN_ROUTE_CONNECTIONS,
	ADMIN_ROUTE_SERVER,
	ADMIN_ROUTE_HEALTHZ,
};

/* The route of a request's path (no query, not decoded: names are
 * [A-Za-z0-9_.-] and need no escape). For ADMIN_ROUTE_SERVER the backend
 * and server names are copied into b and s (n bytes each); a name too long
 * or not a valid name is ADMIN_ROUTE_NONE. */
enum admin_route admin_route(const char *path, char *b, char *s, size_t n);
/* Whether the route takes POST (every route takes GET and HEAD). */
bool admin_route_posts(enum admin_route);

/* Who may ask (DESIGN.md section 6, and the browser's attacks on a
 * loopback endpoint: a cross-site form, DNS rebinding). Each is 0, or -1
 * with why (one line) for a 403 or a 415. */

/* An Origin header (may be NULL: no Origin, nothing to check) must be the
 * request's own: "http://" and the Host header (host may be NULL),
 * compared without regard to case. A page of another site, "null", or
 * https (the endpoint serves only http) is refused. */
int admin_origin_ok(const char *origin, const char *host, char *why, size_t n);
/* The Host header (may be NULL) of a request to a TCP address without a
 * token: a loopback literal (127.x.x.x, [::1]) or localhost, each with or
 * without :PORT. Another name may be an attacker's, resolving to
 * 127.0.0.1 (DNS rebinding); a unix socket has no such problem. */
int admin_host_ok(const char *host, char *why, size_t n);
/* A POST's Content-Type (may be NULL): application/x-www-form-urlencoded
 * or application/json, any case, with parameters (charset=...) or none.
 * text/plain is what a cross-site form may send without asking. */
int admin_type_ok(const char *type, char *why, size_t n);

/* Whether a gather of answered workers of nw is whole. -1 with why when
 * it is not: counters summed over fewer workers would go backwards. */
int admin_gather_whole(unsigned answered, unsigned nw, char *why, size_t n);

/* The process's start, in seconds since the epoch, from the text of
 * /proc/self/stat (its 22nd field: clock ticks since boot) and of
 * /proc/stat (its btime line), with hz ticks a second. 0, or -1 when
 * either does not parse. */
int admin_proc_start(const char *self_stat, const char *stat, long hz,
    double *start);

/* The limit of /connections from the query string (may be NULL):
 * limit=N, 1..ADMIN_CONN_LIMIT_MAX; ADMIN_CONN_LIMIT_DEFAULT without it.
 * 0, or -1 with why. */
int admin_limit_parse(const char *query, size_t *limit, char *why, size_t n);

/* /status's query (may be NULL): nothing or format=json (*text false),
 * format=text (the table spliced ctl status prints). 0, or -1 with why. */
int admin_format_parse(const char *query, bool *text, char *why, size_t n);

/* The parameters of a POST body: at most ADMIN_PARAMS_MAX, names and
 * values of at most ADMIN_PARAM_LEN - 1 bytes. */
#define ADMIN_PARAMS_MAX 8
#define ADMIN_PARAM_LEN 64
struct admin_params {
	struct { char name[ADMIN_PARAM_LEN], value[ADMIN_PARAM_LEN]; } p[ADMIN_PARAMS_MAX];
	size_t n;
};
/* body (len bytes, not NUL-terminated) as a flat JSON object when its
 * first non-blank byte is '{', else as a form. A JSON object holds
 * strings (with the escapes of RFC 8259, \u only below 0x80) and
 * non-negative integers, nothing nested; a name given twice, an empty
 * name or a NUL byte is refused. 0, or -1 with why (one line). */
int admin_params_parse(const char *body, size_t len, struct admin_params *,
    char *why, size_t n);
/* The value of name, or NULL. */
const char *admin_params_get(const struct admin_params *, const char *name);

/* POST /servers/B/S: state (ready, drain, maint; -1 when not given) and
 * weight (1..256; 0 when not given); at least one of them, nothing else.
 * 0, or -1 with why. */
int admin_server_request(const struct admin_params *, int *state,
    unsigned *weight, char *why, size_t n);
/* POST /healthz: state=up or state=down, nothing else. 0, or -1 with why. */
int admin_health_request(const struct admin_params *, bool *up, char *why,
    size_t n);

#endif
