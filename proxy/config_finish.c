/* proxy/config_finish.c: the checks across keys, once every key is set.
 *
 * Each value was range-checked on its line when it was set (config_keys.c);
 * what is left needs all the sections: a listener has binds and a backend
 * that exists (or routes to backends that exist), a backend has servers,
 * no address is bound twice. The listeners without their own splice, splice_threshold or tcp_keepalive
 * take [global]'s here, since [global] may come after them; accept_proxy_from
 * needs accept_proxy, and a backend's health checks learn the PROXY header
 * its listeners send. Errors name the line of the key to blame, from the
 * marks of config.c. */
#include "spliced/config.h"

#include <arpa/inet.h>
#include <stdio.h>

#include "config_int.h"

/* "*" is [::] and 0.0.0.0 at once: listener.c binds it dual-stack. */
static bool
binds_clash(const struct addr *a, const struct addr *b)
{
	const struct addr *other = a->wildcard ? b : a;
	const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;

	if (addr_equal(a, b))
		return true;
	if (a->wildcard == b->wildcard || other->ss.ss_family != AF_INET)
		return false;
	/* sin_port and sin6_port sit at the same offset */
	return x->sin_port == y->sin_port &&
	    ((const struct sockaddr_in *)&other->ss)->sin_addr.s_addr ==
	    htonl(INADDR_ANY);
}

/* Whether bind k of listener li clashes with a bind before it: which. */
static bool
bind_taken(const struct config *cfg, size_t li, size_t k, size_t *oi,
    size_t *q)
{
	const struct addr *a = &cfg->listeners[li].binds[k];

	for (*oi = 0; *oi <= li; (*oi)++) {
		const struct config_listener *o = &cfg->listeners[*oi];
		size_t end = *oi == li ? k : o->nbinds;

		for (*q = 0; *q < end; (*q)++)
			if (binds_clash(a, &o->binds[*q]))
				return true;
	}
	return false;
}

/* The same address bound twice, by one listener or two. A wildcard and a
 * specific address on one port are fine: the kernel takes the specific
 * one for its address. */
static int
finish_binds(struct config *cfg, char *err, size_t errlen)
{
	char label[CONFIG_LABEL_MAX], why[CONFIG_WHY_MAX], lbuf[32];
	char text[ADDR_TEXT_MAX];
	struct sect s = { CONFIG_SECT_LISTENER, 0 }, o = s;
	size_t q;

	for (s.idx = 0; s.idx < cfg->nlisteners; s.idx++) {
		const struct config_listener *l = &cfg->listeners[s.idx];

		for (size_t k = 0; k < l->nbinds; k++) {
			if (!bind_taken(cfg, s.idx, k, &o.idx, &q))
				continue;
			snprintf(why, sizeof(why), "%s is already bound by "
			    "[listener %s]%s", addr_written(&l->binds[k], text,
			    sizeof(text)), cfg->listeners[o.idx].name,
			    config_at_line(config_mark_line(cfg, o, "bind", q),
			    lbuf, sizeof(lbuf)));
			config_err_put(err, errlen, cfg->path,
			    config_mark_line(cfg, s, "bind", k),
			    config_sect_label(cfg, s, label, sizeof(label)),
			    "bind", why);
			return -1;
		}
	}
	return 0;
}

/* Whether a reaches this host only: 127.0.0.0/8, ::1, or ::ffff:127.x.
 * "*" is every address, so never. */
static bool
addr_loopback(const struct addr *a)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
	const unsigned char *b = s6->sin6_addr.s6_addr;

	if (a->wildcard)
		return false;
	if (a->ss.ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr)
		    >> 24) == 127;
	if (a->ss.ss_family != AF_INET6)
		return false;
	return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
	    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && b[12] == 127);
}

/* An admin endpoint others can reach needs a token: anyone who reaches
 * it could drain every server. */
static int
finish_admin(struct config *cfg, char *err, size_t errlen)
{
	char text[ADDR_TEXT_MAX], why[CONFIG_WHY_MAX];

	if (cfg->admin.unix_path != NULL || cfg->admin.addr.len == 0 ||
	    cfg->admin_token_file != NULL || addr_loopback(&cfg->admin.addr))
		return 0;
	snprintf(why, sizeof(why), "%s is not a loopback address: set "
	    "admin_token_file too (a bearer token every request must carry)",
	    addr_written(&cfg->admin.addr, text, sizeof(text)));
	config_global_error(cfg, "admin", why, err, errlen);
	return -1;
}

/* A listener's keys of client identity (DESIGN section 7) that depend on
 * one another: accept_proxy_from names the peers allowed to send a PROXY
 * header, so without accept_proxy = on it would be silently ignored. And
 * the health checks of its backend send what it sends: a server that
 * expects a PROXY header drops a check without one. With two listeners of
 * one backend sending different versions the first in file order wins:
 * servers that take the header (haproxy, nginx) take both versions, so
 * the traffic works either way and only the checks' header is chosen. */
static int
finish_proxy(struct config *cfg, struct sect s, const char *label, char *err,
    size_t errlen)
{
	struct config_listener *l = &cfg->listeners[s.idx];

	if (l->naccept_proxy_from > 0 && !l->accept_proxy) {
		config_err_put(err, errlen, cfg->path,
		    config_mark_line(cfg, s, "accept_proxy_from", 0), label,
		    "accept_proxy_from", "needs accept_proxy = on (it names "
		    "the peers that may send a PROXY header)");
		return -1;
	}
	if (l->proxy_protocol == CONFIG_PROXY_OFF)
		return 0;
	if (l->backend != NULL && l->backend->check_proxy == CONFIG_PROXY_OFF)
		l->backend->check_proxy = l->proxy_protocol;
	for (size_t i = 0; i < l->nroutes; i++)
		if (l->routes[i].backend->check_proxy == CONFIG_PROXY_OFF)
			l->routes[i].backend->check_proxy = l->proxy_protocol;
	return 0;
}

/* The backend named at line of key (sub: which of its lines), or -1. */
static int
find_backend(struct config *cfg, struct sect s, const char *label,
    const char *key, size_t sub, const char *name,
    struct config_backend **out, char *err, size_t errlen)
{
	char why[CONFIG_WHY_MAX];
	size_t bi;

	if (config_sect_find(cfg, CONFIG_SECT_BACKEND, name, &bi)) {
		*out = &cfg->backends[bi];
		return 0;
	}
	snprintf(why, sizeof(why), "no [backend %s] section", name);
	config_err_put(err, errlen, cfg->path, config_mark_line(cfg, s, key,
	    sub), label, key, why);
	return -1;
}

/* A listener's backend, and its routes' (DESIGN section 8): with routes
 * the backend is the default, and may be left out; then clients that
 * match no route are refused. sni_max_bytes without a route would bound
 * a read that never happens. */
static int
finish_routes(struct config *cfg, struct sect s, const char *label,
    char *err, size_t errlen)
{
	struct config_listener *l = &cfg->listeners[s.idx];

	if (l->backend_name == NULL && l->nroutes == 0) {
		config_err_put(err, errlen, cfg->path, l->line, label,
		    "backend", "missing (name the [backend NAME] to relay "
		    "to, or route clients by server name with route lines)");
		return -1;
	}
	if (l->backend_name != NULL && find_backend(cfg, s, label, "backend",
	    0, l->backend_name, &l->backend, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < l->nroutes; i++)
		if (find_backend(cfg, s, label, "route", i,
		    l->routes[i].backend_name, &l->routes[i].backend, err,
		    errlen) == -1)
			return -1;
	if (l->nroutes == 0 && config_mark_line(cfg, s, "sni_max_bytes",
	    0) >= 0) {
		config_err_put(err, errlen, cfg->path,
		    config_mark_line(cfg, s, "sni_max_bytes", 0), label,
		    "sni_max_bytes", "needs route lines (it bounds the "
		    "ClientHello read to route by server name)");
		return -1;
	}
	return 0;
}

/* Every value was range-checked when it was set, on its line; what is left
 * needs all the sections. The first problem found is reported. */
int
config_finish(struct config *cfg, char *err, size_t errlen)
{
	struct config_priv *p = config_priv(cfg);
	char label[CONFIG_LABEL_MAX];
	struct sect s;

	if (cfg->nlisteners == 0) {
		/* No line holds the problem: name the last, where a listener
		 * would go (line 1 of an empty file). */
		config_err_put(err, errlen, cfg->path, p->last_line, NULL, NULL,
		    p->last_line > 0 ? "end of the file, and no [listener "
		    "NAME] section: nothing to relay" : "no [listener NAME] "
		    "section: nothing to relay");
		return -1;
	}
	s.kind = CONFIG_SECT_LISTENER;
	for (s.idx = 0; s.idx < cfg->nlisteners; s.idx++) {
		struct config_listener *l = &cfg->listeners[s.idx];

		config_sect_label(cfg, s, label, sizeof(label));
		if (l->nbinds == 0) {
			config_err_put(err, errlen, cfg->path, l->line, label,
			    "bind", "missing (a listener needs at least one "
			    "'bind = ADDRESS:PORT')");
			return -1;
		}
		if (finish_routes(cfg, s, label, err, errlen) < 0)
			return -1;
		if (finish_proxy(cfg, s, label, err, errlen) < 0)
			return -1;
		/* Inherited only now: [global] may come after the listener. */
		if (config_mark_line(cfg, s, "splice", 0) < 0)
			l->splice = cfg->splice;
		if (config_mark_line(cfg, s, "splice_threshold", 0) < 0)
			l->splice_threshold = cfg->splice_threshold;
		if (config_mark_line(cfg, s, "tcp_keepalive", 0) < 0)
			l->tcp_keepalive = cfg->tcp_keepalive;
	}
	s.kind = CONFIG_SECT_BACKEND;
	for (s.idx = 0; s.idx < cfg->nbackends; s.idx++) {
		if (cfg->backends[s.idx].nservers > 0)
			continue;
		config_err_put(err, errlen, cfg->path,
		    cfg->backends[s.idx].line,
		    config_sect_label(cfg, s, label, sizeof(label)), "server",
		    "missing (a backend needs at least one "
		    "'server = NAME ADDRESS:PORT')");
		return -1;
	}
	if (finish_admin(cfg, err, errlen) == -1)
		return -1;
	return finish_binds(cfg, err, errlen);
}
