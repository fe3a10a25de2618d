/* proxy/tlshello.c: a ClientHello read up to its server name (RFC 8446
 * §4.1.2, §4.2 and §5.1; RFC 5246 §7.4.1.2 for TLS 1.2 and earlier;
 * RFC 6066 §3).
 *
 * Two layers, each a byte-at-a-time state machine: the record layer
 * strips record headers and hands each body byte to the handshake layer,
 * which walks the ClientHello's fields. Every byte is judged when it
 * arrives and nothing depends on how the bytes were split, so feeding in
 * pieces gives what feeding whole gives. Each field is checked against
 * its container (the hello, the extensions block, the extension, the
 * server_name list) when its length is known, so a length that overruns
 * is refused at the byte that declared it, not when the bytes run out.
 *
 * Where the RFCs leave a choice, this file decides:
 * - Record version: major 3, any minor. RFC 8446 says legacy_record_version
 *   "MUST be ignored for all purposes", and clients send 0x0301 in their
 *   first record; a major other than 3 is not TLS (an SSLv2-style hello
 *   starts with a byte with the high bit set, so it fails on byte 0).
 * - The ClientHello's legacy_version must have major 3 too (SSL 3.0 to
 *   TLS 1.3 all do); nothing that routes by name can need another.
 * - The first record decides NOT_TLS (type not handshake, or major not
 *   3); a later record that breaks the same rules is INVALID: the stream
 *   had started as TLS. A zero-length record is INVALID whichever it is
 *   (RFC 8446 §5.1 forbids zero-length handshake fragments), and so is
 *   one over 2^14 bytes (record_overflow).
 * - TOO_LARGE by declared length: when the handshake header is complete,
 *   the least number of bytes the whole hello could still take (the rest
 *   of this record, then records of 2^14 bytes with their headers) is
 *   compared with max; the whole hello, not only up to server_name, since
 *   that is what the header declares and what a server will read. TOO_LARGE
 *   by bytes: at the max-th byte, when it did not end the parse.
 * - Lengths: session_id at most 32 bytes; cipher_suites even and at least
 *   2 bytes; compression_methods at least 1 (any count and values: TLS 1.2
 *   clients may offer more than null). An absent extensions block (the
 *   hello ends after compression_methods) and an empty one are both a
 *   hello without server_name. Extensions must fill the hello exactly.
 * - Extensions are not checked for duplicates or for what they hold,
 *   except server_name: only the first server_name extension is read.
 *   Its list must fill the extension exactly and not be empty (RFC 6066:
 *   server_name_list<1..2^16-1>). Entries of an unknown name_type are
 *   skipped by their 16-bit length (RFC 6066 requires every future type
 *   to start with one); the first host_name entry is the name, and the
 *   parse ends there. A server_name with no host_name entry gives no name
 *   and the parse goes on to the hello's end (a later server_name
 *   extension is not read: a client may not send two).
 * - host_name: 1..255 bytes on the wire (so a 255-byte name with a
 *   trailing dot is too long), each 0x21..0x7e; it is lower-cased and one
 *   trailing dot dropped (RFC 6066 forbids it, but clients have sent it),
 *   and a name of only "." is invalid. Nothing else is judged (labels,
 *   IP literals, which RFC 6066 forbids but clients send): the routes
 *   decide what a name matches. */
#include "spliced/tlshello.h"

#include <string.h>

#define REC_HEAD 5                  /* type, version (2), length (2) */
#define HS_HEAD 4                   /* msg_type, length (3) */
#define CT_CHANGE_CIPHER_SPEC 20
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPLICATION_DATA 23
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_TYPE_HOST 0
#define SESSION_ID_MAX 32

/* The ClientHello body's fields, in order (p->state). */
enum field {
	F_VERSION,                  /* legacy_version (2) */
	F_RANDOM,                   /* random (32) */
	F_SID_LEN,                  /* legacy_session_id length (1) */
	F_SID,
	F_CS_LEN,                   /* cipher_suites length (2) */
	F_CS,
	F_COMP_LEN,                 /* compression_methods length (1) */
	F_COMP,
	F_EXTS_LEN,                 /* extensions block length (2) */
	F_EXT_HEAD,                 /* extension type (2) and length (2) */
	F_EXT_BODY,                 /* an extension other than the one read */
	F_SNI_LIST_LEN,             /* server_name_list length (2) */
	F_SNI_HEAD,                 /* name_type (1), its length (2) */
	F_SNI_SKIP,                 /* an entry of another name_type */
	F_NAME,                     /* the host_name */
};

/* Why a field that does not fit its container is refused. */
static const char *const cut_short[] = {
	[F_VERSION] = "ClientHello too short for its version",
	[F_RANDOM] = "ClientHello too short for its random",
	[F_SID_LEN] = "ClientHello too short for its session_id",
	[F_SID] = "session_id runs past the ClientHello's end",
	[F_CS_LEN] = "ClientHello too short for its cipher_suites",
	[F_CS] = "cipher_suites run past the ClientHello's end",
	[F_COMP_LEN] = "ClientHello too short for its compression_methods",
	[F_COMP] = "compression_methods run past the ClientHello's end",
	[F_EXTS_LEN] = "ClientHello too short for its extensions length",
	[F_EXT_HEAD] = "bytes after the last extension, too few for one",
	[F_EXT_BODY] = "an extension runs past the extensions block",
	[F_SNI_LIST_LEN] = "server_name extension too short for its list",
	[F_SNI_HEAD] = "bytes after the last server_name entry, too few for one",
	[F_SNI_SKIP] = "a server_name entry runs past its list",
	[F_NAME] = "host_name runs past the server_name list",
};

void
tlshello_init(struct tlshello_parser *p, size_t max)
{
	memset(p, 0, sizeof(*p));
	p->done = TLSHELLO_MORE;
	p->max = max;
}

static enum tlshello_status
fail(struct tlshello_parser *p, enum tlshello_status st, const char *why)
{
	p->why = why;
	return st;
}

static enum tlshello_status
invalid(struct tlshello_parser *p, const char *why)
{
	return fail(p, TLSHELLO_INVALID, why);
}

/* The next field starts at the current body offset: size bytes that must
 * end by end. A field of no bytes is ended by the caller's loop. */
static enum tlshello_status
start(struct tlshello_parser *p, enum field f, size_t size, size_t end)
{
	if (size > end - p->hs_off)
		return invalid(p, cut_short[f]);
	p->state = f;
	p->acc = 0;
	p->field_end = p->hs_off + size;
	return TLSHELLO_MORE;
}

/* An extension ended at the current offset: the next, or the hello's end. */
static enum tlshello_status
next_extension(struct tlshello_parser *p)
{
	if (p->hs_off == p->ext_end)
		return TLSHELLO_DONE;   /* no (further) server_name: no name */
	return start(p, F_EXT_HEAD, 4, p->ext_end);
}

/* The extension header in acc: its type and length. */
static enum tlshello_status
extension(struct tlshello_parser *p)
{
	size_t len = p->acc & 0xffff;

	p->ext_type = (uint16_t)(p->acc >> 16);
	if (len > p->ext_end - p->hs_off)
		return invalid(p, cut_short[F_EXT_BODY]);
	p->ext_item_end = p->hs_off + len;
	if (p->ext_type != EXT_SERVER_NAME || p->sni_seen)
		return start(p, F_EXT_BODY, len, p->ext_end);
	p->sni_seen = true;
	return start(p, F_SNI_LIST_LEN, 2, p->ext_item_end);
}

/* A server_name entry's header in acc: its type and length. */
static enum tlshello_status
sni_entry(struct tlshello_parser *p)
{
	size_t len = p->acc & 0xffff;

	p->name_type = (uint8_t)(p->acc >> 16);
	if (p->name_type != NAME_TYPE_HOST)
		return start(p, F_SNI_SKIP, len, p->sni_list_end);
	if (len == 0)
		return invalid(p, "host_name is empty");
	if (len > TLSHELLO_NAME_MAX)
		return invalid(p, "host_name longer than 255 bytes");
	p->name_len = 0;
	return start(p, F_NAME, len, p->sni_list_end);
}

/* The field p->state ended at the current offset (its value, for a
 * length, in acc): check it and start the next. */
static enum tlshello_status
field_end(struct tlshello_parser *p)
{
	size_t n = p->acc;

	switch ((enum field)p->state) {
	case F_VERSION:
		if (n >> 8 != 3)
			return invalid(p, "ClientHello version major is not 3");
		return start(p, F_RANDOM, 32, p->hs_len);
	case F_RANDOM:
		return start(p, F_SID_LEN, 1, p->hs_len);
	case F_SID_LEN:
		if (n > SESSION_ID_MAX)
			return invalid(p, "session_id longer than 32 bytes");
		return start(p, F_SID, n, p->hs_len);
	case F_SID:
		return start(p, F_CS_LEN, 2, p->hs_len);
	case F_CS_LEN:
		if (n < 2 || n % 2 != 0)
			return invalid(p, "cipher_suites length odd or below 2");
		return start(p, F_CS, n, p->hs_len);
	case F_CS:
		return start(p, F_COMP_LEN, 1, p->hs_len);
	case F_COMP_LEN:
		if (n == 0)
			return invalid(p, "compression_methods empty");
		return start(p, F_COMP, n, p->hs_len);
	case F_COMP:
		if (p->hs_off == p->hs_len)
			return TLSHELLO_DONE;   /* no extensions: no name */
		return start(p, F_EXTS_LEN, 2, p->hs_len);
	case F_EXTS_LEN:
		if (n != p->hs_len - p->hs_off)
			return invalid(p, "extensions block does not fill the rest of the ClientHello");
		p->ext_end = p->hs_len;
		return next_extension(p);
	case F_EXT_HEAD:
		return extension(p);
	case F_EXT_BODY:
		return next_extension(p);
	case F_SNI_LIST_LEN:
		if (n == 0)
			return invalid(p, "server_name list empty");
		if (n != p->ext_item_end - p->hs_off)
			return invalid(p, "server_name list does not fill its extension");
		p->sni_list_end = p->ext_item_end;
		return start(p, F_SNI_HEAD, 3, p->sni_list_end);
	case F_SNI_HEAD:
		return sni_entry(p);
	case F_SNI_SKIP:
		if (p->hs_off == p->sni_list_end)
			return next_extension(p);       /* no host_name in it */
		return start(p, F_SNI_HEAD, 3, p->sni_list_end);
	case F_NAME:
		if (p->name[p->name_len - 1] == '.')
			p->name_len--;
		if (p->name_len == 0)
			return invalid(p, "host_name is \".\"");
		p->name[p->name_len] = '\0';
		p->has_name = true;
		return TLSHELLO_DONE;
	}
	return invalid(p, "parser state lost");     /* not reached */
}

/* A byte of the ClientHello's body. */
static enum tlshello_status
body_byte(struct tlshello_parser *p, uint8_t b)
{
	enum tlshello_status st = TLSHELLO_MORE;

	p->hs_off++;
	if (p->state == F_NAME) {
		if (b < 0x21 || b > 0x7e)
			return invalid(p, "host_name holds a byte outside 0x21..0x7e");
		p->name[p->name_len++] = (char)(b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
	} else {
		/* Lengths are at most 4 bytes; what skipped fields shift in
		 * is never read. */
		p->acc = p->acc << 8 | b;
	}
	/* A field that ends here, and any empty ones behind it. */
	while (st == TLSHELLO_MORE && p->hs_off == p->field_end)
		st = field_end(p);
	return st;
}

/* The handshake header is complete: a ClientHello that could fit. */
static enum tlshello_status
hs_head_end(struct tlshello_parser *p)
{
	size_t need, rest;

	p->hs_len = (size_t)p->hs_head[1] << 16 | (size_t)p->hs_head[2] << 8 |
	    p->hs_head[3];
	need = p->seen + p->hs_len;
	if (p->hs_len > p->rec_left) {
		rest = p->hs_len - p->rec_left;
		need += REC_HEAD * ((rest + TLSHELLO_RECORD_MAX - 1) / TLSHELLO_RECORD_MAX);
	}
	if (need > p->max)
		return fail(p, TLSHELLO_TOO_LARGE,
		    "the ClientHello's declared length does not fit in the limit");
	return start(p, F_VERSION, 2, p->hs_len);
}

/* A byte of a record's body: the handshake layer's. */
static enum tlshello_status
hs_byte(struct tlshello_parser *p, uint8_t b)
{
	p->rec_left--;
	if (p->hs_have == HS_HEAD)
		return body_byte(p, b);
	p->hs_head[p->hs_have++] = b;
	if (p->hs_have == 1 && b != HS_CLIENT_HELLO)
		return invalid(p, "handshake message is not a ClientHello");
	if (p->hs_have == HS_HEAD)
		return hs_head_end(p);
	return TLSHELLO_MORE;
}

/* Why a later record of another type ends the parse. */
static const char *
other_record(uint8_t type)
{
	switch (type) {
	case CT_CHANGE_CIPHER_SPEC:
		return "record type 20 (change_cipher_spec) before the ClientHello ended";
	case CT_ALERT:
		return "record type 21 (alert) before the ClientHello ended";
	case CT_APPLICATION_DATA:
		return "record type 23 (application_data) before the ClientHello ended";
	default:
		return "a record not of type 22 (handshake) before the ClientHello ended";
	}
}

/* A byte of a record header. */
static enum tlshello_status
rec_byte(struct tlshello_parser *p, uint8_t b)
{
	bool first = p->seen <= REC_HEAD;  /* the stream's first record */
	size_t len;

	p->rec_head[p->rec_have++] = b;
	switch (p->rec_have) {
	case 1:
		if (b == CT_HANDSHAKE)
			return TLSHELLO_MORE;
		if (!first)
			return invalid(p, other_record(b));
		return fail(p, TLSHELLO_NOT_TLS, b & 0x80 ?
		    "first byte has the high bit set: an SSLv2-style hello, not TLS" :
		    "first byte is not 22, a TLS handshake record");
	case 2:
		if (b == 3)
			return TLSHELLO_MORE;
		if (!first)
			return invalid(p, "record version major is not 3");
		return fail(p, TLSHELLO_NOT_TLS, "record version major is not 3: not TLS");
	case REC_HEAD:
		len = (size_t)p->rec_head[3] << 8 | b;
		if (len == 0)
			return invalid(p, "record of length 0");
		if (len > TLSHELLO_RECORD_MAX)
			return invalid(p, "record longer than 2^14 bytes");
		p->rec_left = len;
		p->rec_have = 0;
		return TLSHELLO_MORE;
	default:
		return TLSHELLO_MORE;
	}
}

enum tlshello_status
tlshello_feed(struct tlshello_parser *p, const uint8_t *buf, size_t len,
    size_t *used, const char **why)
{
	enum tlshello_status st = p->done;
	size_t i = 0;

	while (st == TLSHELLO_MORE && i < len) {
		if (p->seen >= p->max) {        /* max 0: not a byte may be taken */
			st = fail(p, TLSHELLO_TOO_LARGE, "the limit is 0 bytes");
			break;
		}
		p->seen++;
		st = p->rec_left == 0 ? rec_byte(p, buf[i]) : hs_byte(p, buf[i]);
		i++;
		if (st == TLSHELLO_MORE && p->seen >= p->max)
			st = fail(p, TLSHELLO_TOO_LARGE,
			    "the limit was reached before the ClientHello's server name");
	}
	*used = i;                      /* 0 when it had ended before */
	p->done = st;
	if (st != TLSHELLO_MORE && st != TLSHELLO_DONE && why != NULL)
		*why = p->why;
	return st;
}

const char *
tlshello_name(const struct tlshello_parser *p)
{
	return p->done == TLSHELLO_DONE && p->has_name ? p->name : NULL;
}
