/* include/spliced/ctl.h: `spliced ctl`, the admin endpoint's client
 * (DESIGN.md section 3; the endpoint is admin.h's).
 *
 *   spliced ctl [--admin ADDR:PORT|unix:PATH] [--token-file FILE] COMMAND
 *     status [--json]                   the table of /status?format=text,
 *                                       or /status itself
 *     server B/S ready|drain|maint [--weight N]
 *     wait-empty B/S|all [--timeout DUR]
 *                                       polls every CTL_POLL_MS until the
 *                                       server (all: the process) holds no
 *                                       connection: 0; 1 at the timeout
 *                                       (default CTL_WAIT_DEFAULT_MS)
 *     health up|down                    what GET /healthz answers
 *
 * The address defaults to $SPLICED_ADMIN, else CTL_ADMIN_DEFAULT; the
 * token file to $SPLICED_ADMIN_TOKEN_FILE. HTTP is libevent's evhttp
 * client. Exit: 0 done; 1 the endpoint could not be reached, or answered
 * 4xx/5xx (its one-line reason is printed), or wait-empty timed out; 2 a
 * usage error naming the argument. */
#ifndef SPLICED_CTL_H
#define SPLICED_CTL_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_ADMIN_DEFAULT "127.0.0.1:9090"
#define CTL_POLL_MS 200
#define CTL_WAIT_DEFAULT_MS 60000u
#define CTL_REQUEST_TIMEOUT_S 10

enum ctl_command {
	CTL_STATUS,
	CTL_SERVER,
	CTL_WAIT_EMPTY,
	CTL_HEALTH,
	CTL_HELP,
};

/* Caller-owned; strings point into argv or the environment. */
struct ctl_opts {
	enum ctl_command cmd;
	const char *admin;          /* ADDR:PORT or unix:PATH */
	const char *token_file;     /* NULL: none */
	const char *target;         /* B/S, or "all" (wait-empty) */
	const char *state;          /* server: ready|drain|maint; health: up|down */
	unsigned weight;            /* server: 0 = not given */
	unsigned timeout_ms;        /* wait-empty */
	int json;                   /* status --json */
};

/* argv[0] is "ctl". 0, or -1 with a usage error naming the bad argument
 * in err. Not thread-safe (getopt). */
int ctl_parse(int argc, char **argv, struct ctl_opts *, char *err,
    size_t errlen);
/* The non-negative integer at path of a JSON object's text: a name
 * ("active"), or names of nested objects joined by dots
 * ("connections.active"), each looked up among its object's own members
 * (not inside their values). -1 when absent or not such a number. */
long long ctl_json_int(const char *json, const char *path);
/* What wait-empty makes of an answer (/status for all, else
 * /servers/B/S): 1 empty, 0 not yet (connections open, or fewer
 * "workers_answered" than "workers"), -1 a field missing. *active: the
 * count read (-1 when missing). */
int ctl_wait_verdict(const char *json, bool all, long long *active);

/* spliced ctl: parse, run, print; the exit status. */
int ctl_main(int argc, char **argv);

#endif
