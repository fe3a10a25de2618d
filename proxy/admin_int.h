/* proxy/admin_int.h: what admin.c (the server) and admin_json.c (the
 * answers' JSON) share; nothing else includes it but test_admin.c. */
#ifndef SPLICED_ADMIN_INT_H
#define SPLICED_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>

struct backend_set;
struct config;
struct evbuffer;
struct stats_sample;

/* What /status tells beyond the workers' figures. */
struct srctable;

struct admin_view {
	const struct config *cfg;   /* the listeners */
	const struct backend_set *bs;   /* the backends and servers */
	unsigned workers;           /* the process's; the sample's are those
	                             * that answered */
	double uptime_s;
	bool draining;              /* a SIGTERM drain began */
	const char *health;         /* up | down | draining */
	struct srctable *sources;   /* the per-source limits' table, or NULL */
};

/* s as a JSON string, quoted and escaped (", \\, control characters). */
void admin_json_str(struct evbuffer *, const char *s);
/* The status document (CONTRACT.md), with "workers_answered" (the
 * sample's workers) next to "workers". 0, or -1 (out of memory). */
int admin_json_status(struct evbuffer *, const struct admin_view *,
    const struct stats_sample *);
/* The same as a table for people (spliced ctl status). 0 or -1. */
int admin_text_status(struct evbuffer *, const struct admin_view *,
    const struct stats_sample *);
/* Server `server` of backend `backend` of bs, with "workers" (nw) and
 * "workers_answered" (the sample's): 0, -1 out of memory, or 1 when there
 * is no such backend or server. */
int admin_json_server(struct evbuffer *, const struct backend_set *,
    const char *backend, const char *server, const struct stats_sample *,
    unsigned nw);
/* {"connections": [...]} of s, newest first. 0 or -1. */
int admin_json_connections(struct evbuffer *, const struct stats_sample *);

#endif
