/* include/spliced/tlshello.h: a TLS ClientHello read far enough to know
 * the server name it asks for (RFC 8446 §4.1.2 and §5.1, RFC 6066 §3),
 * without terminating TLS.
 *
 * Pure functions over bytes: no socket, no allocation, no clock. The
 * connection (handshake.c) reads what the client sent, holds it, and
 * feeds it here as it arrives; the held bytes then go to the backend the
 * name chose, untouched.
 *
 * Parsing is incremental at both layers: one ClientHello may span any
 * number of TLS records (RFC 8446 §5.1 allows a handshake message to be
 * fragmented), and records may span any number of reads; feeding the
 * bytes in pieces gives the same result as feeding them whole. Since
 * post-quantum key shares (X25519MLKEM768) a browser's hello is over
 * 1,500 bytes and is commonly split over TCP segments; some stacks also
 * split it over records.
 *
 * It is bounded: at most `max` bytes (record headers included) are taken
 * before an answer, and a ClientHello whose declared length cannot fit
 * in `max` is TOO_LARGE at once. The parser keeps what it needs in itself
 * (the name, at most 255 bytes, and a few counters); nothing is copied
 * but the name.
 *
 * Outcomes are told apart, since a listener treats them differently:
 *   TLSHELLO_DONE      the hello was read up to its server_name extension
 *                      (a name) or to its end (no server_name: no name);
 *   TLSHELLO_NOT_TLS   the first bytes cannot start a TLS handshake record
 *                      (plain HTTP, an SSLv2-style hello, anything else):
 *                      known from the first byte or two;
 *   TLSHELLO_TOO_LARGE the hello does not fit in max;
 *   TLSHELLO_INVALID   a TLS record stream that breaks the grammar (a
 *                      record of another type or with a bad length, a
 *                      handshake message that is not a ClientHello,
 *                      lengths that do not add up, a name that is empty,
 *                      longer than 255 bytes, or holds a byte outside
 *                      0x21..0x7e).
 * The name is returned lower-cased, without a trailing dot. Extensions
 * before server_name are skipped whatever their type (GREASE values and
 * unknown types included); the first host_name entry of server_name is
 * the name. With encrypted_client_hello the outer server_name, the
 * public name, is the one seen (as every passthrough router sees it). */
#ifndef SPLICED_TLSHELLO_H
#define SPLICED_TLSHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLSHELLO_NAME_MAX 255       /* a DNS name's longest text form */
#define TLSHELLO_RECORD_MAX 16384   /* a record's plaintext (2^14) */

enum tlshello_status {
	TLSHELLO_MORE,              /* all fed so far fits a hello: feed more */
	TLSHELLO_DONE,              /* tlshello_name() tells the name, or NULL */
	TLSHELLO_NOT_TLS,
	TLSHELLO_TOO_LARGE,
	TLSHELLO_INVALID,
};

/* The parser's state; embed or allocate it, then tlshello_init(). Its
 * fields are tlshello.c's (no pointer to the input is kept). */
struct tlshello_parser {
	enum tlshello_status done;  /* MORE until the parser ended */
	const char *why;            /* why it ended other than DONE */
	size_t max;                 /* bytes it may take before an answer */
	size_t seen;                /* bytes taken so far, records included */
	/* Record layer: the header being read, and what is left of the
	 * current record's body. */
	uint8_t rec_head[5];
	uint8_t rec_have;           /* bytes of rec_head read */
	size_t rec_left;
	/* Handshake layer: the message's header, its length, and where the
	 * parser is in its body. */
	uint8_t hs_head[4];
	uint8_t hs_have;
	size_t hs_len;              /* the ClientHello body's declared length */
	size_t hs_off;              /* body bytes read so far */
	/* The body's grammar: the field being read, a length being
	 * assembled, and where the current field (vector, extension) ends,
	 * as offsets into the body. */
	int state;
	uint32_t acc;               /* a length field being read, big-endian */
	size_t field_end;
	size_t ext_end;             /* end of the extensions block */
	size_t ext_item_end;        /* end of the extension being read */
	size_t sni_list_end;        /* end of the server_name list */
	uint16_t ext_type;
	uint8_t name_type;
	bool sni_seen;              /* the first server_name was reached */
	size_t name_len;
	char name[TLSHELLO_NAME_MAX + 1];
	bool has_name;
};

/* Start a parser that takes at most max bytes before it answers (the
 * listener's sni_max_bytes). */
void tlshello_init(struct tlshello_parser *, size_t max);

/* Feed the next len bytes the client sent (after all fed before).
 * *used: how many were taken (with MORE, all of them; with an end status,
 * those up to the byte that decided it; the rest are not looked at).
 * With an end other than DONE, *why (if why is not NULL) is a static,
 * one-line reason ("record type 23 before the ClientHello ended"). Once
 * an end status is returned, later calls return it again, using nothing. */
enum tlshello_status tlshello_feed(struct tlshello_parser *,
    const uint8_t *buf, size_t len, size_t *used, const char **why);

/* After DONE: the server name (lower-case, NUL-terminated, in the
 * parser), or NULL when the hello has no server_name host_name. NULL
 * before DONE. */
const char *tlshello_name(const struct tlshello_parser *);

#endif
