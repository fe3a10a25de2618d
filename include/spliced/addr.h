/* include/spliced/addr.h: socket addresses as operators write them.
 *
 * Accepted forms: "127.0.0.1:8080", "[::1]:8080", "*:8080" (every address: the
 * IPv6 wildcard, dual-stack where the host has IPv6, else 0.0.0.0), and
 * "host.name:8080". addr_parse() resolves a name once with getaddrinfo,
 * which blocks: it is for start-up and config checks only, never a worker.
 * addr_parse_server() leaves a name alone for resolve.c (evdns, on the main
 * thread's loop). */
#ifndef SPLICED_ADDR_H
#define SPLICED_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "[" + INET6_ADDRSTRLEN + "%" + an interface name (IF_NAMESIZE) +
 * "]:65535" fits. */
#define ADDR_TEXT_MAX 80

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
	bool wildcard;              /* written as "*:PORT" */
};

/* 0, or -1 with a message in err (e.g. "port out of range in '1.2.3.4:0'").
 * allow_zero_port: port 0 is accepted (tests bind to it; listeners never do). */
int addr_parse(struct addr *, const char *text, bool allow_zero_port,
    char *err, size_t errlen);

/* As addr_parse() (port 0 refused), but a host name is not resolved:
 * *name gets a malloc'd copy of it, and *a only the port (family
 * AF_UNSPEC, len 0). *name is NULL for a numeric address (or "*"), which
 * *a then holds as addr_parse() would. 0, or -1 with err. */
int addr_parse_server(struct addr *, const char *text, char **name,
    char *err, size_t errlen);

/* The port, in host order; set it (any family, AF_UNSPEC too). */
unsigned addr_port(const struct addr *);
void addr_set_port(struct addr *, unsigned port);

/* A total order (family, address, port, scope): <0, 0 or >0. 0 exactly
 * when addr_equal(). */
int addr_compare(const struct addr *, const struct addr *);

/* "1.2.3.4:80" / "[::1]:80" into buf (ADDR_TEXT_MAX), returns buf. */
const char *addr_format(const struct sockaddr *, char *buf, size_t buflen);

/* a as an operator writes it: "*:8080" for the wildcard, else as
 * addr_format(). Returns buf (ADDR_TEXT_MAX). */
const char *addr_written(const struct addr *a, char *buf, size_t buflen);

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, how a dual-stack socket
 * sees an IPv4 peer) rewritten as the AF_INET address it maps, port kept;
 * any other address is left alone. */
void addr_unmap(struct sockaddr_storage *, socklen_t *len);

/* Same family, address and port (and scope, for IPv6). */
bool addr_equal(const struct addr *, const struct addr *);

#endif
