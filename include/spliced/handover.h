/* include/spliced/handover.h: what a binary upgrade sends over its unix
 * socket, and the calls that send and receive it (upgrade.h runs the
 * protocol; conn.h makes and takes the connection records).
 *
 * The socket is AF_UNIX SOCK_SEQPACKET: every message arrives whole, in
 * order, with the fds it carries (SCM_RIGHTS). Both ends are builds of
 * spliced on one host, but not the same build: every message starts with
 * HANDOVER_MAGIC and HANDOVER_VERSION, and a process refuses a version it
 * does not speak. Records are fixed-width fields in the host's byte order
 * (one host, one byte order); any change to their layout or meaning takes
 * a new HANDOVER_VERSION.
 *
 * The exchange (old: the running process; new: the binary it started):
 *   new -> old  HELLO        its config loaded; version and pid
 *   old -> new  LISTEN ...   listening sockets (fds), then LISTEN_END
 *   new -> old  LISTENING    took them (it does not accept yet)
 *   old -> new  CONN [DATA]  a batch of connections (fds: sockets,
 *                            pipes; DATA: their copy-buffer bytes) or
 *                            clients waiting for a slot; CONN_END, the count
 *   new -> old  RECEIVED     holds them all (nothing runs yet)
 *   old -> new  STATS ...    the old process's counters (statcarry.h)
 *   old -> new  SERVERS ...  its servers' states: up or down, and what
 *                            the admin endpoint set (drain, maint, weight)
 *   old -> new  COMMIT
 *   new -> old  COMMITTED    the commit point: from here on the
 *                            connections are the new process's
 *   new -> old  RUNNING      its workers run them: the end of the pause
 *                            their bytes saw (the old one's figure)
 * Either side may send FAIL (a text) instead of its next message; the
 * old process then resumes everything it froze. */
#ifndef SPLICED_HANDOVER_H
#define SPLICED_HANDOVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HANDOVER_MAGIC 0x53504c55u      /* "SPLU" */
#define HANDOVER_VERSION 1
/* Names: a config line holds at most 200 bytes (inih), so a name fits. */
#define HANDOVER_NAME_MAX 200

/* The most fds one message carries (SCM_MAX_FD is 253). */
#define HANDOVER_MAX_FDS 250
/* The largest message: a DATA chunk, or a block of counters. */
#define HANDOVER_MAX_MSG (64 * 1024)
/* Fds of one connection: two sockets, and a pipe per direction. */
#define HANDOVER_CONN_FDS 6

enum handover_type {
	HANDOVER_HELLO = 1,
	HANDOVER_FAIL,
	HANDOVER_LISTEN,
	HANDOVER_LISTEN_END,
	HANDOVER_LISTENING,
	HANDOVER_CONN,
	HANDOVER_DATA,
	HANDOVER_CONN_END,
	HANDOVER_RECEIVED,
	HANDOVER_COMMIT,
	HANDOVER_COMMITTED,
	HANDOVER_STATS,
	HANDOVER_RUNNING,
	HANDOVER_SERVERS,
};

struct handover_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
};

struct handover_hello {
	uint32_t pid;
};

/* LISTEN: one entry per fd it carries, in order. */
enum handover_sock_kind {
	HANDOVER_SOCK_BOUND,        /* bound by spliced (one per worker) */
	HANDOVER_SOCK_PASSED,       /* systemd's (socket activation) */
	HANDOVER_SOCK_ADMIN,        /* the admin endpoint's */
};

struct handover_sock {
	uint32_t kind;
	char name[64];              /* PASSED: its FileDescriptorName */
};

/* SERVERS: one per server address, as the old process saw it when the
 * upgrade began. */
struct handover_server {
	char backend[HANDOVER_NAME_MAX];
	char server[HANDOVER_NAME_MAX];
	struct sockaddr_storage addr;
	uint32_t addrlen;
	uint8_t up;
	uint8_t admin;              /* enum backend_admin */
	uint16_t weight;            /* 0: the config line's */
};

struct handover_end {           /* CONN_END */
	uint64_t conns;
	uint8_t health_down;        /* `spliced ctl health down` was in force */
	uint8_t pad_[7];
};

/* One direction of a connection, as relay.h's struct relay_dir holds it
 * at a clean point (between callbacks: no syscall in flight). */
struct handover_dir {
	uint8_t state;              /* enum relay_state: READING, WRITING, DONE */
	uint8_t mode;               /* enum relay_mode of its mover */
	uint8_t short_read;
	uint8_t has_pipe;           /* its pipe's fds follow in the message */
	uint32_t pipe_size;
	uint32_t pipe_queued;       /* bytes in the pipe */
	uint32_t buf_len;           /* copy-buffer bytes, in DATA after the CONN */
	uint64_t bytes[2];          /* by enum relay_mode */
	uint64_t last_io_ms;        /* CLOCK_MONOTONIC_COARSE: one clock per host */
	/* struct relay_policy_state */
	uint8_t p_splice, p_no_splice, p_ask, p_queue;
	uint32_t p_full_reads, p_short_wakes;
	uint64_t p_threshold, p_burst, p_wake_bytes;
};

struct handover_conn {
	uint8_t waiting;            /* a client accepted, waiting for a slot:
	                               only listener, peer and its socket */
	uint8_t pad0_[3];
	char listener[HANDOVER_NAME_MAX];
	char backend[HANDOVER_NAME_MAX];    /* "" when none */
	char server[HANDOVER_NAME_MAX];     /* the server line's name */
	char server_text[HANDOVER_NAME_MAX + 80];  /* "NAME/ADDRESS": the access log */
	char sni[256];              /* "" when none */
	struct sockaddr_storage peer;
	uint32_t peerlen;
	uint32_t server_addrlen;
	struct sockaddr_storage server_addr;
	uint32_t worker;            /* the old worker's index */
	int64_t started_sec, started_nsec;      /* CLOCK_MONOTONIC */
	uint64_t frozen_ms;         /* CLOCK_MONOTONIC_COARSE: frozen since */
	uint8_t one_done, first_end;
	uint8_t nfds;               /* client, backend, then pipes: up's, down's */
	uint8_t pad_;
	struct handover_dir up, down;
};

/* Records per CONN message (each with up to HANDOVER_CONN_FDS fds, all
 * of them within HANDOVER_MAX_FDS). */
#define HANDOVER_BATCH (HANDOVER_MAX_MSG / sizeof(struct handover_conn))

/* A connection on its way out of the old process: its record, fds
 * (rec.nfds of them, still the old connection's: sendmsg passes copies)
 * and copy-buffer bytes (rec.up.buf_len at data[0], rec.down.buf_len at
 * data[1]), valid while the connection stays frozen. */
struct handover_item {
	struct handover_conn rec;
	int fds[HANDOVER_CONN_FDS];
	const void *data[2];
};

struct handover_items {         /* a growing array */
	struct handover_item *v;
	size_t n, cap;
};

/* Room for one more item at the end: it, or NULL (ENOMEM). */
struct handover_item *handover_items_add(struct handover_items *);
void handover_items_cleanup(struct handover_items *);

/* 0, or -1 with errno (ETIMEDOUT past deadline_ms, a CLOCK_MONOTONIC
 * instant in ms; EPIPE or ECONNRESET when the peer went away). */
int handover_send(int sock, enum handover_type, const void *body, size_t len,
    const int *fds, size_t nfds, uint64_t deadline_ms);
/* Receive the next message: its type, body (up to cap bytes; *len) and
 * fds (up to HANDOVER_MAX_FDS into fds; *nfds, all close-on-exec). -1
 * with errno: ETIMEDOUT, ECONNRESET at end of stream (the peer exited),
 * EPROTO for a message without the magic or of another version (*version
 * then says which, when it could be read), EMSGSIZE when it was cut. */
int handover_recv(int sock, enum handover_type *, void *body, size_t cap,
    size_t *len, int *fds, size_t *nfds, uint64_t deadline_ms,
    unsigned *version);

/* Close n fds a message brought (those nobody takes). */
void handover_close_fds(const int *fds, size_t n);

/* CLOCK_MONOTONIC in ms (the deadlines above). */
uint64_t handover_now_ms(void);

#endif
