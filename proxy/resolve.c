/* proxy/resolve.c: host-name servers, resolved with evdns on the main
 * thread, and re-resolved.
 *
 *   IDLE --timer (resolve_interval)--> ASKING --answer / failure--> IDLE
 *
 * One struct name per host-name server line, with one query in flight at
 * most and one timer: the next query is due resolve_interval after the
 * last answer, so a slow name server never makes queries pile up. The
 * addresses in use are never copied here: they are the name's addresses in
 * the current backend_set, which is what an answer is compared with.
 *
 * evdns_getaddrinfo() rather than one query per family: it asks A and
 * AAAA at once, reads /etc/hosts when the system's configuration is used,
 * and gives one list. Its price is a coarse error: a timeout and a
 * SERVFAIL both come back as EVUTIL_EAI_FAIL. It may call back before it
 * returns (a name in /etc/hosts): query() allows for that. */
#include "spliced/resolve.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spliced/backend.h"
#include "spliced/clock.h"
#include "spliced/config.h"
#include "spliced/log.h"

#define LIST_TEXT_MAX (4 * (ADDR_TEXT_MAX + 1) + 32)

struct name {
	struct resolver *r;
	size_t b, s;                /* backend, and server line in it */
	const struct config_backend *bc;
	const struct config_server *srv;
	struct event *timer;
	struct evdns_getaddrinfo_request *req;
	bool busy;                  /* a query in flight */
	bool answered;              /* the first round is over for it */
	int last;                   /* outcome of the last query: 0 or an error */
};

struct resolver {
	struct event_base *base;
	struct evdns_base *dns;     /* NULL without host-name servers */
	struct backend_set *bs;     /* the current generation: a reference */
	resolver_publish_cb publish;
	void *arg;
	struct name *names;
	size_t n;
	size_t pending;             /* first round: names without an outcome */
	bool first;                 /* in the first round */
	resolver_report_cb report;
	void *report_arg;
	size_t failed;              /* first round */
	bool freeing;
	bool retired;               /* freed from the loop when idle */
	bool free_due;              /* that free is scheduled */
	struct resolver *grave_next, **grave_prev;  /* the retired list */
};

/* No A or AAAA record, though the name server answered. */
#define RESOLVER_ENOADDR (-1000)

static const char *
why_text(int e)
{
	switch (e) {
	case EVUTIL_EAI_NONAME:
		return "no such name";
	case EVUTIL_EAI_FAIL:
		return "no answer (the name server timed out or failed)";
	case RESOLVER_ENOADDR:
		return "no address (no A or AAAA record)";
	default:
		return evutil_gai_strerror(e);
	}
}

/* ---- address lists ---- */

size_t
resolver_addrs(const struct evutil_addrinfo *res, unsigned port,
    struct addr *out, size_t max)
{
	size_t n = 0;

	for (; res != NULL; res = res->ai_next) {
		struct addr a;
		size_t k;

		if ((res->ai_family != AF_INET && res->ai_family != AF_INET6) ||
		    res->ai_addr == NULL ||
		    (size_t)res->ai_addrlen > sizeof(a.ss))
			continue;
		memset(&a, 0, sizeof(a));
		memcpy(&a.ss, res->ai_addr, (size_t)res->ai_addrlen);
		a.len = (socklen_t)res->ai_addrlen;
		addr_set_port(&a, port);
		/* Insert in order, leaving duplicates out (the same address
		 * may come once per socket type, or twice from /etc/hosts). */
		for (k = 0; k < n && addr_compare(&out[k], &a) < 0; k++)
			;
		if ((k < n && addr_compare(&out[k], &a) == 0) || k == max)
			continue;
		if (n == max)
			n--;        /* the largest goes, to keep the order */
		memmove(&out[k + 1], &out[k], (n - k) * sizeof(*out));
		out[k] = a;
		n++;
	}
	return n;
}

bool
resolver_same(const struct addr *a, size_t na, const struct addr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!addr_equal(&a[i], &b[i]))
			return false;
	return true;
}

/* The name's addresses in the current set, in their order. */
static size_t
current(const struct name *nm, struct addr *out)
{
	const struct backend_shared *sh = &nm->r->bs->b[nm->b];
	size_t n = 0;

	for (size_t i = 0; i < sh->n && n < RESOLVER_MAX_ADDRS; i++)
		if (sh->entry[i] == nm->srv)
			out[n++] = sh->servers[i]->addr;
	return n;
}

/* "127.0.0.2:9001 [::1]:9001", or "none"; the first few only. */
static const char *
list_text(const struct addr *a, size_t n, char *buf, size_t len)
{
	char one[ADDR_TEXT_MAX];
	size_t used = 0;

	snprintf(buf, len, "none");
	for (size_t i = 0; i < n && used < len; i++) {
		if (i == 4) {
			snprintf(buf + used, len - used, " and %zu more", n - i);
			break;
		}
		addr_format((const struct sockaddr *)&a[i].ss, one, sizeof(one));
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		    i ? " " : "", one);
	}
	return buf;
}

/* ---- outcomes ---- */

static void
failed(struct name *nm, int e)
{
	struct addr have[RESOLVER_MAX_ADDRS];
	char err[CONFIG_ERR_MAX], why[300], list[LIST_TEXT_MAX];
	size_t n = current(nm, have);

	if (nm->r->first) {
		snprintf(why, sizeof(why), "cannot resolve '%s': %s",
		    nm->srv->dnsname, why_text(e));
		config_server_error(nm->r->bs->cfg, nm->bc, nm->srv, why, err,
		    sizeof(err));
		nm->r->failed++;
		if (nm->r->report != NULL)
			nm->r->report(err, nm->r->report_arg);
	} else if (e != nm->last) {
		if (n > 0)
			log_warn("server %s/%s: cannot resolve '%s': %s; keeping "
			    "its address%s %s", nm->bc->name, nm->srv->name,
			    nm->srv->dnsname, why_text(e), n == 1 ? "" : "es",
			    list_text(have, n, list, sizeof(list)));
		else
			log_warn("server %s/%s: cannot resolve '%s': %s; it stays "
			    "down until it resolves", nm->bc->name,
			    nm->srv->name, nm->srv->dnsname, why_text(e));
	}
	nm->last = e;
}

static void
resolved(struct name *nm, const struct addr *a, size_t n)
{
	struct addr have[RESOLVER_MAX_ADDRS];
	char now[LIST_TEXT_MAX], was[LIST_TEXT_MAX];
	size_t nhave = current(nm, have);
	struct backend_set *bs;

	if (resolver_same(a, n, have, nhave)) {
		if (nm->last != 0 && !nm->r->first)
			log_info("server %s/%s: '%s' resolves again, to %s",
			    nm->bc->name, nm->srv->name, nm->srv->dnsname,
			    list_text(a, n, now, sizeof(now)));
		nm->last = 0;
		return;
	}
	if ((bs = backend_set_update(nm->r->bs, nm->b, nm->s, a, n)) == NULL) {
		/* The addresses in use stay; the next answer tries again. */
		log_error("server %s/%s: out of memory taking the addresses of "
		    "'%s'", nm->bc->name, nm->srv->name, nm->srv->dnsname);
		return;
	}
	nm->last = 0;
	backend_set_unref(nm->r->bs);
	nm->r->bs = bs;
	nm->r->publish(bs, nm->r->arg);
	/* After the publish: when the line is read, the workers have it. */
	log_info("server %s/%s: '%s' resolves to %s (was %s)", nm->bc->name,
	    nm->srv->name, nm->srv->dnsname, list_text(a, n, now, sizeof(now)),
	    list_text(have, nhave, was, sizeof(was)));
}

static void
unlink_retired(struct resolver *r)
{
	if (r->grave_prev == NULL)
		return;
	if (r->grave_next != NULL)
		r->grave_next->grave_prev = r->grave_prev;
	*r->grave_prev = r->grave_next;
	r->grave_prev = NULL;
}

static void
free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	unlink_retired(arg);
	resolver_free(arg);
}

/* A retired resolver with no query left is freed, from the loop: not
 * inside evdns's own callback, which still uses its base. */
static void
retired_check(struct resolver *r)
{
	struct timeval now = { 0, 0 };

	for (size_t i = 0; i < r->n; i++)
		if (r->names[i].busy)
			return;
	/* A cancel may call back at once, inside resolver_retire. */
	if (r->free_due)
		return;
	r->free_due = true;
	if (event_base_once(r->base, -1, EV_TIMEOUT, free_cb, r, &now) == -1)
		log_debug("resolver: cannot schedule its free; leaked");
}

static void
answer_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct name *nm = arg;
	struct resolver *r = nm->r;
	struct addr a[RESOLVER_MAX_ADDRS];
	unsigned ms = nm->bc->resolve_interval_ms;
	struct timeval tv = clock_timeval_ms(ms);
	size_t n = 0;

	nm->busy = false;
	nm->req = NULL;
	if (r->retired) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		retired_check(r);
		return;
	}
	if (res != NULL) {
		n = resolver_addrs(res, addr_port(&nm->srv->addr), a,
		    RESOLVER_MAX_ADDRS);
		evutil_freeaddrinfo(res);
	}
	if (result == EVUTIL_EAI_CANCEL || r->freeing)
		return;
	if (result == 0 && n == 0)
		result = RESOLVER_ENOADDR;
	if (result != 0)
		failed(nm, result);
	else
		resolved(nm, a, n);
	if (!nm->answered) {
		nm->answered = true;
		r->pending--;
	}
	/* Without its timer the name would never be asked again, and keep
	 * what it resolved to now for good: said once, as an error. */
	if (evtimer_add(nm->timer, &tv) == -1)
		log_error("server %s/%s: '%s' will not be resolved again: "
		    "cannot arm its timer", nm->bc->name, nm->srv->name,
		    nm->srv->dnsname);
}

static void
query(struct name *nm)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	nm->busy = true;
	req = evdns_getaddrinfo(nm->r->dns, nm->srv->dnsname, NULL, &hints,
	    answer_cb, nm);
	/* NULL: answered already (or failed at once), through answer_cb. */
	if (nm->busy)
		nm->req = req;
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	query(arg);
}

/* ---- the resolver ---- */

/* evdns's own messages ("Nameserver 127.0.0.1:53 has failed: request
 * timed out") would reach the log through libevent's callback as
 * warnings, every time: what a failure means for a server is said above,
 * once per change, so these are details. evdns tells warnings apart from
 * the rest only. */
static void
dns_log_cb(int is_warning, const char *msg)
{
	if (is_warning)
		log_info("dns: %s", msg);
	else
		log_debug("dns: %s", msg);
}

static int
dns_setup(struct resolver *r, const struct config *cfg, char *err,
    size_t errlen)
{
	char text[ADDR_TEXT_MAX];
	int rc;

	evdns_set_log_fn(dns_log_cb);
	/* Inactive between queries: no socket event keeps the loop busy. */
	if ((r->dns = evdns_base_new(r->base,
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
		snprintf(err, errlen, "cannot create a DNS resolver");
		return -1;
	}
	/* libevent's 5 s x 3 attempts would hold start-up 15 s when the name
	 * server is down; resolv.conf's own options still win below. */
	evdns_base_set_option(r->dns, "timeout:", "2");
	evdns_base_set_option(r->dns, "attempts:", "2");
	if (cfg->resolver.len > 0) {
		if (evdns_base_nameserver_sockaddr_add(r->dns,
		    (const struct sockaddr *)&cfg->resolver.ss,
		    cfg->resolver.len, 0) != 0) {
			snprintf(err, errlen, "cannot use resolver %s",
			    addr_format((const struct sockaddr *)
			    &cfg->resolver.ss, text, sizeof(text)));
			return -1;
		}
		return 0;
	}
	/* Without a usable file libevent asks 127.0.0.1, as libc would. */
	if ((rc = evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL,
	    "/etc/resolv.conf")) != 0)
		log_warn("/etc/resolv.conf: %s; asking the name server on "
		    "127.0.0.1", rc == 6 ? "no nameserver line" :
		    "cannot be read");
	return 0;
}

struct resolver *
resolver_new(struct event_base *base, struct backend_set *bs,
    resolver_publish_cb publish, void *arg, char *err, size_t errlen)
{
	const struct config *cfg = bs->cfg;
	struct resolver *r;
	size_t n = config_dns_servers(cfg);

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->names = calloc(n ? n : 1, sizeof(*r->names))) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	r->bs = backend_set_ref(bs);
	r->publish = publish;
	r->arg = arg;
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *bc = &cfg->backends[i];

		for (size_t j = 0; j < bc->nservers; j++) {
			struct name *nm;

			if (bc->servers[j].dnsname == NULL)
				continue;
			nm = &r->names[r->n++];
			*nm = (struct name){ .r = r, .b = i, .s = j, .bc = bc,
			    .srv = &bc->servers[j] };
			if ((nm->timer = evtimer_new(base, timer_cb, nm)) == NULL) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
		}
	}
	if (r->n > 0 && dns_setup(r, cfg, err, errlen) == -1)
		goto fail;
	return r;
fail:
	resolver_free(r);
	return NULL;
}

size_t
resolver_first_round(struct resolver *r, resolver_report_cb report, void *arg)
{
	r->first = true;
	r->report = report;
	r->report_arg = arg;
	r->failed = 0;
	r->pending = r->n;
	for (size_t i = 0; i < r->n; i++)
		query(&r->names[i]);
	/* 1: nothing left to wait for, which a query in flight rules out;
	 * -1: the loop failed. Either way, waiting longer would hang. */
	while (r->pending > 0)
		if (event_base_loop(r->base, EVLOOP_ONCE) != 0)
			break;
	r->first = false;
	r->report = NULL;
	return r->failed;
}

void
resolver_start(struct resolver *r)
{
	for (size_t i = 0; i < r->n; i++) {
		r->names[i].answered = true;
		query(&r->names[i]);
	}
}

void
resolver_retire(struct resolver *r, struct resolver **graveyard)
{
	if (r == NULL)
		return;
	r->retired = true;
	r->grave_next = *graveyard;
	if (r->grave_next != NULL)
		r->grave_next->grave_prev = &r->grave_next;
	r->grave_prev = graveyard;
	*graveyard = r;
	for (size_t i = 0; i < r->n; i++) {
		event_del(r->names[i].timer);
		if (r->names[i].busy && r->names[i].req != NULL)
			evdns_getaddrinfo_cancel(r->names[i].req);
	}
	retired_check(r);
}

void
resolver_free_retired(struct resolver **graveyard)
{
	struct resolver *r;

	while ((r = *graveyard) != NULL) {
		unlink_retired(r);
		resolver_free(r);
	}
}

struct backend_set *
resolver_set(const struct resolver *r)
{
	return r->bs;
}

void
resolver_free(struct resolver *r)
{
	bool busy = false;

	if (r == NULL)
		return;
	r->freeing = true;
	for (size_t i = 0; i < r->n; i++) {
		if (r->names[i].timer != NULL)
			event_free(r->names[i].timer);
		if (r->names[i].busy && r->names[i].req != NULL)
			evdns_getaddrinfo_cancel(r->names[i].req);
	}
	/* A cancelled query is called back from the loop, later: until
	 * then its struct name must live. */
	for (int round = 0; round < 100; round++) {
		busy = false;
		for (size_t i = 0; i < r->n && !busy; i++)
			busy = r->names[i].busy;
		if (!busy)
			break;
		event_base_loop(r->base, EVLOOP_NONBLOCK);
	}
	if (busy) {
		/* Never seen; leaking beats a callback into freed memory. */
		log_debug("resolver: queries still in flight at exit");
		return;
	}
	if (r->dns != NULL)
		evdns_base_free(r->dns, 0);
	backend_set_unref(r->bs);
	free(r->names);
	free(r);
}
