/* proxy/stats.c: a worker's counters by name, and samples that sum them.
 *
 * Blocks are found by name with a linear search: a worker looks a name up
 * when it makes a snap (a reload, new addresses), not per connection, and
 * a config has few listeners and backends. Blocks are allocated one by
 * one so that the pointers a snap holds stay valid as more are added. */
#include "spliced/stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const double stats_connect_le[STATS_HIST_MAX] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
};

const double stats_duration_le[STATS_HIST_MAX] = {
	0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 86400,
};

const char *
stats_deny_name(enum stats_deny r)
{
	static const char *const names[STATS_DENY_MAX_] = {
		[STATS_DENY_ACL] = "acl",
		[STATS_DENY_RATE] = "rate",
		[STATS_DENY_PER_SOURCE] = "per_source",
		[STATS_DENY_PROXY_HEADER] = "proxy_header",
		[STATS_DENY_NO_ROUTE] = "no_route",
		[STATS_DENY_LIMIT] = "limit",
	};

	return names[r];
}

const char *
stats_hs_kind_name(enum stats_hs_kind k)
{
	return k == STATS_HS_PROXY ? "proxy" : "sni";
}

const char *
stats_hs_result_name(enum stats_hs_result r)
{
	static const char *const names[STATS_HS_RESULT_MAX_] = {
		[STATS_HS_OK] = "ok",
		[STATS_HS_DEFAULT] = "default",
		[STATS_HS_NO_SNI] = "no_sni",
		[STATS_HS_NOT_TLS] = "not_tls",
		[STATS_HS_TIMEOUT] = "timeout",
		[STATS_HS_TOO_LARGE] = "too_large",
		[STATS_HS_INVALID] = "invalid",
	};

	return names[r];
}

struct stats_worker {
	struct stats_listener **l;
	size_t nl;
	struct stats_backend **b;
	size_t nb;
	struct stats_server **s;
	size_t ns;
};

struct stats_worker *
stats_worker_new(void)
{
	return calloc(1, sizeof(struct stats_worker));
}

void
stats_worker_free(struct stats_worker *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->nl; i++) {
		free(w->l[i]->name);
		free(w->l[i]);
	}
	for (size_t i = 0; i < w->nb; i++) {
		free(w->b[i]->name);
		free(w->b[i]);
	}
	for (size_t i = 0; i < w->ns; i++) {
		free(w->s[i]->backend);
		free(w->s[i]->name);
		free(w->s[i]);
	}
	free(w->l);
	free(w->b);
	free(w->s);
	free(w);
}

/* Append p to the array *v of *n pointers. 0 / -1 ENOMEM. */
static int
stats_push(void ***v, size_t *n, void *p)
{
	void **nv = realloc(*v, (*n + 1) * sizeof(*nv));

	if (nv == NULL)
		return -1;
	nv[(*n)++] = p;
	*v = nv;
	return 0;
}

struct stats_listener *
stats_worker_listener(struct stats_worker *w, const char *name)
{
	struct stats_listener *l;

	for (size_t i = 0; i < w->nl; i++)
		if (strcmp(w->l[i]->name, name) == 0)
			return w->l[i];
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	if ((l->name = strdup(name)) == NULL ||
	    stats_push((void ***)&w->l, &w->nl, l) == -1) {
		free(l->name);
		free(l);
		return NULL;
	}
	return l;
}

struct stats_backend *
stats_worker_backend(struct stats_worker *w, const char *name)
{
	struct stats_backend *b;

	for (size_t i = 0; i < w->nb; i++)
		if (strcmp(w->b[i]->name, name) == 0)
			return w->b[i];
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	if ((b->name = strdup(name)) == NULL ||
	    stats_push((void ***)&w->b, &w->nb, b) == -1) {
		free(b->name);
		free(b);
		return NULL;
	}
	return b;
}

struct stats_server *
stats_worker_server(struct stats_worker *w, const char *backend,
    const char *server)
{
	struct stats_server *s;

	for (size_t i = 0; i < w->ns; i++)
		if (strcmp(w->s[i]->backend, backend) == 0 &&
		    strcmp(w->s[i]->name, server) == 0)
			return w->s[i];
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((s->backend = strdup(backend)) == NULL ||
	    (s->name = strdup(server)) == NULL ||
	    stats_push((void ***)&w->s, &w->ns, s) == -1) {
		free(s->backend);
		free(s->name);
		free(s);
		return NULL;
	}
	return s;
}

void
stats_hist_add(struct stats_hist *h, const double *le, uint64_t us)
{
	size_t i;

	for (i = 0; i < STATS_HIST_MAX && (double)us > le[i] * 1e6; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

static void
stats_bytes_add(uint64_t to[STATS_DIR_MAX_][RELAY_MODE_MAX_],
    const uint64_t from[STATS_DIR_MAX_][RELAY_MODE_MAX_])
{
	for (int d = 0; d < STATS_DIR_MAX_; d++)
		for (int m = 0; m < RELAY_MODE_MAX_; m++)
			to[d][m] += from[d][m];
}

void
stats_conn_closed(struct stats_listener *l, enum conn_reason why,
    const uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_], uint64_t age_us)
{
	l->active--;
	l->closed[why]++;
	stats_bytes_add(l->bytes, bytes);
	stats_hist_add(&l->duration, stats_duration_le, age_us);
}

static void
stats_hist_sum(struct stats_hist *to, const struct stats_hist *from)
{
	for (size_t i = 0; i <= STATS_HIST_MAX; i++)
		to->bucket[i] += from->bucket[i];
	to->count += from->count;
	to->sum_us += from->sum_us;
}

/* The sample's entry of listener `name`, made zeroed if new. */
static struct stats_listener *
sample_listener(struct stats_sample *s, const char *name)
{
	struct stats_listener *v;

	for (size_t i = 0; i < s->nl; i++)
		if (strcmp(s->l[i].name, name) == 0)
			return &s->l[i];
	if ((v = realloc(s->l, (s->nl + 1) * sizeof(*v))) == NULL)
		return NULL;
	s->l = v;
	memset(&v[s->nl], 0, sizeof(*v));
	if ((v[s->nl].name = strdup(name)) == NULL)
		return NULL;
	return &v[s->nl++];
}

static struct stats_backend *
sample_backend(struct stats_sample *s, const char *name)
{
	struct stats_backend *v;

	for (size_t i = 0; i < s->nb; i++)
		if (strcmp(s->b[i].name, name) == 0)
			return &s->b[i];
	if ((v = realloc(s->b, (s->nb + 1) * sizeof(*v))) == NULL)
		return NULL;
	s->b = v;
	memset(&v[s->nb], 0, sizeof(*v));
	if ((v[s->nb].name = strdup(name)) == NULL)
		return NULL;
	return &v[s->nb++];
}

static struct stats_server *
sample_server(struct stats_sample *s, const char *backend, const char *name)
{
	struct stats_server *v;

	for (size_t i = 0; i < s->ns; i++)
		if (strcmp(s->s[i].backend, backend) == 0 &&
		    strcmp(s->s[i].name, name) == 0)
			return &s->s[i];
	if ((v = realloc(s->s, (s->ns + 1) * sizeof(*v))) == NULL)
		return NULL;
	s->s = v;
	memset(&v[s->ns], 0, sizeof(*v));
	if ((v[s->ns].backend = strdup(backend)) == NULL ||
	    (v[s->ns].name = strdup(name)) == NULL) {
		free(v[s->ns].backend);
		v[s->ns].backend = NULL;
		return NULL;
	}
	return &v[s->ns++];
}

/* f's counters into t (not `active`, a gauge). */
static void
listener_sum(struct stats_listener *t, const struct stats_listener *f)
{
	t->connections += f->connections;
	for (int r = 0; r < CONN_REASON_MAX_; r++)
		t->closed[r] += f->closed[r];
	for (int r = 0; r < STATS_DENY_MAX_; r++)
		t->denied[r] += f->denied[r];
	for (int k = 0; k < STATS_HS_KIND_MAX_; k++)
		for (int r = 0; r < STATS_HS_RESULT_MAX_; r++)
			t->handshake[k][r] += f->handshake[k][r];
	stats_bytes_add(t->bytes, f->bytes);
	stats_hist_sum(&t->duration, &f->duration);
}

/* Add one block into the sample's block of the same name. 0 / -1. */
static int
sample_add_listener(struct stats_sample *s, const struct stats_listener *f)
{
	struct stats_listener *t = sample_listener(s, f->name);

	if (t == NULL)
		return -1;
	listener_sum(t, f);
	t->active += f->active;
	return 0;
}

static int
sample_add_backend(struct stats_sample *s, const struct stats_backend *f)
{
	struct stats_backend *t = sample_backend(s, f->name);

	if (t == NULL)
		return -1;
	stats_hist_sum(&t->connect, &f->connect);
	return 0;
}

static int
sample_add_server(struct stats_sample *s, const struct stats_server *f)
{
	struct stats_server *t = sample_server(s, f->backend, f->name);

	if (t == NULL)
		return -1;
	t->connections += f->connections;
	t->connect_failures += f->connect_failures;
	return 0;
}

int
stats_sample_add_worker(struct stats_sample *s, const struct stats_worker *w)
{
	for (size_t i = 0; i < w->nl; i++)
		if (sample_add_listener(s, w->l[i]) == -1)
			goto fail;
	for (size_t i = 0; i < w->nb; i++)
		if (sample_add_backend(s, w->b[i]) == -1)
			goto fail;
	for (size_t i = 0; i < w->ns; i++)
		if (sample_add_server(s, w->s[i]) == -1)
			goto fail;
	return 0;
fail:
	errno = ENOMEM;
	return -1;
}

int
stats_sample_add_bytes(struct stats_sample *s, const char *listener,
    const uint64_t bytes[STATS_DIR_MAX_][RELAY_MODE_MAX_])
{
	struct stats_listener *l = sample_listener(s, listener);

	if (l == NULL) {
		errno = ENOMEM;
		return -1;
	}
	stats_bytes_add(l->bytes, bytes);
	return 0;
}

void
stats_sample_add_conn(struct stats_sample *s, const struct stats_conn *c)
{
	if (s->nc < s->conn_limit && s->nc < s->conn_room)
		s->c[s->nc++] = *c;
}

int
stats_sample_merge(struct stats_sample *to, const struct stats_sample *from)
{
	for (size_t i = 0; i < from->nl; i++)
		if (sample_add_listener(to, &from->l[i]) == -1)
			goto fail;
	for (size_t i = 0; i < from->nb; i++)
		if (sample_add_backend(to, &from->b[i]) == -1)
			goto fail;
	for (size_t i = 0; i < from->ns; i++)
		if (sample_add_server(to, &from->s[i]) == -1)
			goto fail;
	for (int f = 0; f < RELAY_FALLBACK_MAX_; f++)
		to->fallbacks[f] += from->fallbacks[f];
	to->pipes.in_use += from->pipes.in_use;
	to->pipes.pooled += from->pipes.pooled;
	to->pipes.held += from->pipes.held;
	to->pipes.created += from->pipes.created;
	to->pipes.reused += from->pipes.reused;
	to->pipes.closed_dirty += from->pipes.closed_dirty;
	for (int f = 0; f < PIPEPOOL_FAIL_MAX_; f++)
		to->pipes.fails[f] += from->pipes.fails[f];
	if (from->nc > 0) {
		struct stats_conn *v = realloc(to->c,
		    (to->nc + from->nc) * sizeof(*v));

		if (v == NULL)
			goto fail;
		memcpy(v + to->nc, from->c, from->nc * sizeof(*v));
		to->c = v;
		to->nc += from->nc;
		to->conn_room = to->nc;
	}
	to->workers += from->workers;
	return 0;
fail:
	errno = ENOMEM;
	return -1;
}

static int
stats_conn_newer(const void *a, const void *b)
{
	const struct stats_conn *x = a, *y = b;

	if (x->age_ms != y->age_ms)
		return x->age_ms < y->age_ms ? -1 : 1;
	return x->id > y->id ? -1 : x->id < y->id;
}

void
stats_sample_sort_conns(struct stats_sample *s)
{
	if (s->nc > 1)
		qsort(s->c, s->nc, sizeof(*s->c), stats_conn_newer);
	if (s->nc > s->conn_limit)
		s->nc = s->conn_limit;
}

int
stats_sample_init(struct stats_sample *s, size_t conn_limit)
{
	memset(s, 0, sizeof(*s));
	s->conn_limit = conn_limit;
	if (conn_limit > 0 && (s->c = calloc(conn_limit, sizeof(*s->c))) == NULL)
		return -1;
	s->conn_room = conn_limit;
	return 0;
}

void
stats_sample_cleanup(struct stats_sample *s)
{
	for (size_t i = 0; i < s->nl; i++)
		free(s->l[i].name);
	for (size_t i = 0; i < s->nb; i++)
		free(s->b[i].name);
	for (size_t i = 0; i < s->ns; i++) {
		free(s->s[i].backend);
		free(s->s[i].name);
	}
	free(s->l);
	free(s->b);
	free(s->s);
	free(s->c);
	memset(s, 0, sizeof(*s));
}

const struct stats_listener *
stats_sample_listener(const struct stats_sample *s, const char *name)
{
	for (size_t i = 0; i < s->nl; i++)
		if (strcmp(s->l[i].name, name) == 0)
			return &s->l[i];
	return NULL;
}

const struct stats_backend *
stats_sample_backend(const struct stats_sample *s, const char *name)
{
	for (size_t i = 0; i < s->nb; i++)
		if (strcmp(s->b[i].name, name) == 0)
			return &s->b[i];
	return NULL;
}

const struct stats_server *
stats_sample_server(const struct stats_sample *s, const char *backend,
    const char *server)
{
	for (size_t i = 0; i < s->ns; i++)
		if (strcmp(s->s[i].backend, backend) == 0 &&
		    strcmp(s->s[i].name, server) == 0)
			return &s->s[i];
	return NULL;
}

int
stats_worker_adopt(struct stats_worker *w, const struct stats_sample *s)
{
	for (size_t i = 0; i < s->nl; i++) {
		struct stats_listener *t = stats_worker_listener(w, s->l[i].name);

		if (t == NULL)
			goto fail;
		listener_sum(t, &s->l[i]);
	}
	for (size_t i = 0; i < s->nb; i++) {
		struct stats_backend *t = stats_worker_backend(w, s->b[i].name);

		if (t == NULL)
			goto fail;
		stats_hist_sum(&t->connect, &s->b[i].connect);
	}
	for (size_t i = 0; i < s->ns; i++) {
		struct stats_server *t = stats_worker_server(w, s->s[i].backend,
		    s->s[i].name);

		if (t == NULL)
			goto fail;
		t->connections += s->s[i].connections;
		t->connect_failures += s->s[i].connect_failures;
	}
	return 0;
fail:
	errno = ENOMEM;
	return -1;
}
