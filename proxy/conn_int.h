/* proxy/conn_int.h: a connection's insides, shared by conn.c (its life:
 * connect, relay, close) and conn_ident.c (who the client is and where it
 * goes: its PROXY header, its admission, its route by ClientHello, the
 * prelude sent on). Not for other modules. */
#ifndef SPLICED_CONN_INT_H
#define SPLICED_CONN_INT_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "spliced/admission.h"
#include "spliced/conn.h"
#include "spliced/fdreserve.h"
#include "spliced/proxyproto.h"
#include "spliced/relay.h"
#include "spliced/srctable.h"

struct backend_lb;
struct config_backend;
struct handshake;
struct handshake_hello;
struct server_state;

/* What a connection sends each server it reaches before relaying: its
 * PROXY header, then the client's bytes read to route it (its
 * ClientHello, and what came with it). */
struct conn_prelude {
	uint8_t hdr[PROXYPROTO_ENCODE_MAX];
	uint16_t hdrlen;
	uint8_t *held;              /* malloc'd; NULL with nheld 0 */
	size_t nheld;
	size_t off;                 /* of hdrlen + nheld, sent to the current server */
};

struct conn_home {
	struct event_base *base;
	struct relay_ctx *relay;
	struct log_batch *log;
	struct worker_snap *cur;
	struct conn_hooks hooks;
	void *arg;
	struct fdreserve reserve;
	struct admission_log refusals;     /* their log lines, rate-limited */
	struct conn_stats st;
	struct stats_worker *stats; /* per listener, backend and server */
	uint64_t id_base, seq;      /* connection ids: id_base | seq */
	unsigned n;
	TAILQ_HEAD(conn_list, conn) conns;   /* oldest first */
	/* Connections whose backend socket found no fd: they wait, in
	 * arrival order, and are served before accepting resumes. */
	TAILQ_HEAD(, conn) fdwait;
};

struct conn {
	struct conn_home *h;
	uint64_t id;                /* unique in the process: access lines, /connections */
	/* What the connection started under: its listener, backend and
	 * balancer stay those of this snap, whatever a reload brings. */
	struct worker_snap *snap;
	struct listener *l;
	const struct config_backend *bc;
	struct backend_lb *lb;      /* of the last attempt: balancer() */
	struct worker_snap *lbsnap; /* the snap lb belongs to */
	struct stats_listener *sl;  /* counters of its listener */
	int cfd, bfd;
	/* The client: the peer, or the source its PROXY header gave. */
	struct sockaddr_storage peer;
	socklen_t peerlen;
	struct handshake *hs;       /* reading its PROXY header; NULL after */
	struct handshake_hello *hello;   /* reading its ClientHello; NULL after */
	char *sni;                  /* the server name it asked for, or NULL */
	struct srctable_ticket ticket;   /* its slot as a source (srctable.h) */
	struct conn_prelude *pre;   /* for its servers, or NULL: none */
	size_t held_sent;           /* client bytes the prelude sent on */
	ssize_t server;             /* index into lb's addresses; -1 before any */
	bool reserved;              /* holds a slot on server (backend_lb_pick) */
	bool trial;                 /* the trial connect of a server down */
	unsigned attempts;
	bool relaying, closed;
	bool frozen;                /* handed over, unless the upgrade fails */
	uint64_t frozen_ms;         /* clock_coarse_ms() when it froze */
	char *srvtext;              /* taken over: "NAME/ADDRESS" of its server */
	bool fdwait;                /* on h->fdwait */
	unsigned pins;              /* >0: a caller up the stack still uses c */
	bool one_done;
	enum conn_reason first_end;
	struct event cev;           /* the backend connect completing */
	struct event timer;
	struct relay_dir up, down;  /* client -> backend, backend -> client */
	struct timespec started;
	struct timespec attempted;  /* the last connect attempt began */
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) fdlink;   /* h->fdwait */
};

/* conn.c */
void conn_close(struct conn *, enum conn_reason);
/* Free c, closed or never started (its fields released already). */
void conn_free(struct conn *);
/* Abortive close of fd: its peer sees an RST. */
void conn_reset_fd(int fd);
/* Pick a server and connect (the first attempt: avoid NULL). */
void conn_connect(struct conn *);
/* The server is reached (connected, and the header sent): count it,
 * and relay. */
void conn_reached(struct conn *);
/* The attempt on the server picked failed (why): the next one, if any. */
void conn_connect_failed(struct conn *, const char *why);

/* The callbacks of a relaying connection (conn_handover.c arms them). */
void conn_dir_cb(struct relay_dir *, void *arg);
void conn_idle_cb(evutil_socket_t fd, short what, void *arg);

/* conn_ident.c */
/* A client just taken over: read its PROXY header first (accept_proxy),
 * admit it, read its ClientHello (routes) and connect (or refuse it). */
void conn_ident_start(struct conn *);
/* Send the prelude to the server just connected, then conn_reached():
 * at once, or once the socket takes it; a failure is the attempt's
 * (conn_connect_failed). */
void conn_ident_send(struct conn *);
/* What the client's identity holds (handshakes, source slot, prelude):
 * given back as the connection closes. */
void conn_ident_cleanup(struct conn *);

#endif
