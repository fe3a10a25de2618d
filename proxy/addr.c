/* proxy/addr.c: the socket addresses operators write, parsed, printed and
 * compared.
 *
 * The host part is split from the port at the last ':', so a bare IPv6
 * address ("::1:80") cannot be told from its port and is refused: IPv6
 * addresses go in brackets. Numeric hosts never touch the resolver; only a
 * name does, through getaddrinfo without AI_ADDRCONFIG (which hides ::1 and
 * 127.0.0.1 on hosts whose only interface is loopback), and only for
 * addr_parse(): a server's name is left to resolve.c (evdns). */
#include "spliced/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest host accepted: a DNS name is at most 253 characters. */
#define HOST_MAX 256

/* Whether "*" can be the IPv6 wildcard: 0 not asked yet, 1 yes, 2 no. */
static atomic_int ipv6_state;

static bool
have_ipv6(void)
{
	int fd, state = atomic_load(&ipv6_state);

	if (state != 0)
		return state == 1;
	if ((fd = socket(AF_INET6, SOCK_STREAM, 0)) >= 0) {
		close(fd);
		state = 1;
	} else if (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT) {
		state = 2;
	} else {
		/* Out of fds or memory says nothing about IPv6: assume it and
		 * ask again next time. */
		return true;
	}
	atomic_store(&ipv6_state, state);
	return state == 1;
}

/* Digits only, no sign: 0, or -1 not a number, -2 out of range. */
static int
parse_port(const char *s, bool allow_zero, unsigned *port)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -2;
	}
	if (v == 0 && !allow_zero)
		return -2;
	*port = (unsigned)v;
	return 0;
}

/* True for "1.2.3", "10.1": numbers and dots that inet_pton refused.
 * getaddrinfo would take them as inet_aton shorthands; an operator who
 * writes one almost certainly mistyped an address. */
static bool
looks_numeric(const char *host)
{
	return host[strspn(host, "0123456789.")] == '\0';
}

/* host through getaddrinfo (numeric only with AI_NUMERICHOST): the first
 * answer into *a, without the port. 0, or -1 with *why. */
static int
lookup(struct addr *a, const char *host, int family, int flags,
    const char **why)
{
	struct addrinfo hints, *res;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = flags;
	if ((rc = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		*why = gai_strerror(rc);
		return -1;
	}
	if (res->ai_addrlen > sizeof(a->ss)) {
		freeaddrinfo(res);
		*why = "address too long";
		return -1;
	}
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* name: NULL to resolve a host name here; else the name is left for the
 * caller (copied into name, HOST_MAX bytes) and *a holds only the port. */
static int
parse(struct addr *a, const char *text, bool allow_zero_port, char *name,
    char *err, size_t errlen)
{
	char host[HOST_MAX];
	const char *start = text, *end, *port, *why = NULL;
	bool bracketed = false;
	unsigned portnum = 0;
	size_t hlen;
	int rc;

	memset(a, 0, sizeof(*a));
	if (text == NULL || *text == '\0') {
		snprintf(err, errlen, "empty address (expected HOST:PORT)");
		return -1;
	}
	if (text[0] == '[') {
		if ((end = strchr(text, ']')) == NULL) {
			snprintf(err, errlen, "missing ']' in '%s'", text);
			return -1;
		}
		if (end[1] != ':') {
			snprintf(err, errlen,
			    "missing port in '%s' (write [ADDRESS]:PORT)", text);
			return -1;
		}
		bracketed = true;
		start = text + 1;
		port = end + 2;
	} else {
		if ((end = strrchr(text, ':')) == NULL) {
			snprintf(err, errlen,
			    "missing port in '%s' (write HOST:PORT)", text);
			return -1;
		}
		if (memchr(start, ':', (size_t)(end - start)) != NULL) {
			snprintf(err, errlen, "IPv6 address without brackets "
			    "in '%s' (write [ADDRESS]:PORT)", text);
			return -1;
		}
		port = end + 1;
	}
	hlen = (size_t)(end - start);
	if (hlen == 0) {
		snprintf(err, errlen, "missing host in '%s' "
		    "(write *:PORT for every address)", text);
		return -1;
	}
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "host too long in '%s'", text);
		return -1;
	}
	memcpy(host, start, hlen);
	host[hlen] = '\0';

	if ((rc = parse_port(port, allow_zero_port, &portnum)) != 0) {
		snprintf(err, errlen, rc == -1 ? "port is not a number in '%s'" :
		    allow_zero_port ? "port out of range in '%s' (0..65535)" :
		    "port out of range in '%s' (1..65535)", text);
		return -1;
	}

	if (bracketed) {
		/* getaddrinfo rather than inet_pton: it takes "%scope" too. */
		if (lookup(a, host, AF_INET6, AI_NUMERICHOST, &why) < 0) {
			snprintf(err, errlen,
			    "'%s' is not an IPv6 address in '%s'", host, text);
			return -1;
		}
	} else if (strcmp(host, "*") == 0) {
		a->wildcard = true;
		if (have_ipv6()) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = in6addr_any;
			a->len = sizeof(*sin6);
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

			sin->sin_family = AF_INET;
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
			a->len = sizeof(*sin);
		}
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			a->len = sizeof(*sin);
		} else if (looks_numeric(host)) {
			snprintf(err, errlen,
			    "'%s' is not an IPv4 address in '%s'", host, text);
			return -1;
		} else if (name != NULL) {
			memcpy(name, host, hlen + 1);
			a->ss.ss_family = AF_UNSPEC;
			a->len = 0;
			addr_set_port(a, portnum);
			return 0;
		} else if (lookup(a, host, AF_UNSPEC, 0, &why) < 0) {
			snprintf(err, errlen, "cannot resolve '%s' in '%s': %s",
			    host, text, why);
			return -1;
		}
	}

	addr_set_port(a, portnum);
	return 0;
}

int
addr_parse(struct addr *a, const char *text, bool allow_zero_port,
    char *err, size_t errlen)
{
	return parse(a, text, allow_zero_port, NULL, err, errlen);
}

int
addr_parse_server(struct addr *a, const char *text, char **name, char *err,
    size_t errlen)
{
	char host[HOST_MAX];

	host[0] = '\0';
	*name = NULL;
	if (parse(a, text, false, host, err, errlen) < 0)
		return -1;
	if (host[0] != '\0' && (*name = strdup(host)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

void
addr_set_port(struct addr *a, unsigned port)
{
	/* sin_port and sin6_port sit at the same offset; an AF_UNSPEC
	 * address (a name still to resolve) keeps it there too. */
	((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
}

unsigned
addr_port(const struct addr *a)
{
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

/* Family first, then the address bytes, then port and scope: any total
 * order does, as long as it is the same every time. */
int
addr_compare(const struct addr *a, const struct addr *b)
{
	const unsigned char *x, *y;
	size_t n;
	int c;

	if (a->ss.ss_family != b->ss.ss_family)
		return a->ss.ss_family < b->ss.ss_family ? -1 : 1;
	if (a->ss.ss_family == AF_INET) {
		x = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
		y = (const unsigned char *)&((const struct sockaddr_in *)&b->ss)->sin_addr;
		n = 4;
	} else if (a->ss.ss_family == AF_INET6) {
		x = ((const struct sockaddr_in6 *)&a->ss)->sin6_addr.s6_addr;
		y = ((const struct sockaddr_in6 *)&b->ss)->sin6_addr.s6_addr;
		n = 16;
	} else {
		if (a->len != b->len)
			return a->len < b->len ? -1 : 1;
		return memcmp(&a->ss, &b->ss, a->len);
	}
	if ((c = memcmp(x, y, n)) != 0)
		return c < 0 ? -1 : 1;
	if (addr_port(a) != addr_port(b))
		return addr_port(a) < addr_port(b) ? -1 : 1;
	if (a->ss.ss_family == AF_INET6) {
		uint32_t sa = ((const struct sockaddr_in6 *)&a->ss)->sin6_scope_id;
		uint32_t sb = ((const struct sockaddr_in6 *)&b->ss)->sin6_scope_id;

		if (sa != sb)
			return sa < sb ? -1 : 1;
	}
	return 0;
}

const char *
addr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
	/* INET6_ADDRSTRLEN plus "%" and an interface name (IF_NAMESIZE). */
	char host[INET6_ADDRSTRLEN + 1 + 16];

	if (buflen == 0)
		return buf;
	if (sa == NULL) {
		snprintf(buf, buflen, "(none)");
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, buflen, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		/* getnameinfo, unlike inet_ntop, keeps a link-local's scope. */
		if (getnameinfo(sa, sizeof(*sin6), host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST) != 0)
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, buflen, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, buflen, "(address family %d)", sa->sa_family);
	}
	return buf;
}

void
addr_unmap(struct sockaddr_storage *ss, socklen_t *len)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	struct sockaddr_in sin = { .sin_family = AF_INET };

	if (ss->ss_family != AF_INET6 || *len < sizeof(*sin6) ||
	    !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return;
	sin.sin_port = sin6->sin6_port;
	memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sin, sizeof(sin));
	*len = sizeof(sin);
}

bool
addr_equal(const struct addr *a, const struct addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
		const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;

		return x->sin6_port == y->sin6_port &&
		    x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr,
		    sizeof(x->sin6_addr)) == 0;
	}
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

const char *
addr_written(const struct addr *a, char *buf, size_t buflen)
{
	if (a->wildcard)
		snprintf(buf, buflen, "*:%u", addr_port(a));
	else
		addr_format((const struct sockaddr *)&a->ss, buf, buflen);
	return buf;
}
