/* proxy/log_format.c: what a log line looks like (log.h): text or JSON,
 * event lines and access lines, with journald's "<N>" prefix or a
 * timestamp. The bytes of a JSON string come from anywhere (a peer's
 * address, a name from DNS, libevent's messages): they are escaped, so
 * that every line parses. */
#include "log_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The longest escaped string of an access line's field: the line stays
 * well under LOG_LINE_MAX with its five strings. */
#define FIELD_MAX 320

static const char *const names[] = {
	[CONFIG_LOG_ERROR] = "error",
	[CONFIG_LOG_WARN] = "warn",
	[CONFIG_LOG_INFO] = "info",
	[CONFIG_LOG_DEBUG] = "debug",
};
/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char prio[] = {
	[CONFIG_LOG_ERROR] = '3',
	[CONFIG_LOG_WARN] = '4',
	[CONFIG_LOG_INFO] = '6',
	[CONFIG_LOG_DEBUG] = '7',
};

/* The length of the valid UTF-8 sequence at s, or 0: RFC 3629 (no
 * overlong forms, no surrogates, nothing past U+10FFFF), which is what a
 * strict JSON reader decodes. A NUL ends a sequence short. */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

size_t
log_json_escape(char *dst, size_t cap, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = 0, n;
	char esc[8];

	while (*p != '\0') {
		n = utf8_len(p);
		if (n > 1 || (n == 1 && *p >= 0x20 && *p != '"' && *p != '\\' &&
		    *p != 0x7f)) {
			if (cap - len < n)
				break;
			memcpy(dst + len, p, n);
			len += n;
			p += n;
			continue;
		}
		switch (*p) {
		case '"':  memcpy(esc, "\\\"", 3); break;
		case '\\': memcpy(esc, "\\\\", 3); break;
		case '\n': memcpy(esc, "\\n", 3); break;
		case '\r': memcpy(esc, "\\r", 3); break;
		case '\t': memcpy(esc, "\\t", 3); break;
		default:   /* a control character, or a byte that is not UTF-8 */
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)*p);
			break;
		}
		n = strlen(esc);
		if (cap - len < n)
			break;
		memcpy(dst + len, esc, n);
		len += n;
		p++;
	}
	return len;
}

/* Appends to a line, never past its end: what does not fit is left out. */
struct out {
	char *p;
	size_t len, cap;
};

static void
put_raw(struct out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len)
		n = o->cap - o->len;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void
put_str(struct out *o, const char *s)
{
	put_raw(o, s, strlen(s));
}

/* ,"KEY":"escaped s": s cut at max bytes, or where the line ends, with
 * its closing quote kept. */
static void
put_json_str(struct out *o, const char *key, const char *s, size_t max)
{
	size_t room;

	put_str(o, ",\"");
	put_str(o, key);
	put_str(o, "\":\"");
	room = o->cap - o->len > 1 ? o->cap - o->len - 1 : 0;
	o->len += log_json_escape(o->p + o->len, room < max ? room : max, s);
	put_str(o, "\"");
}

/* "2026-11-22T22:52:59.123Z" */
static void
put_stamp(struct out *o)
{
	struct timespec ts;
	struct tm tm;
	char buf[40];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	put_str(o, buf);
}

/* What a line starts with, up to its message (text) or its first field
 * but one (JSON: "level"). */
static void
put_head(struct out *o, struct log_style st, enum config_log_level l)
{
	if (st.journal) {
		/* "<N>": journald takes the line's priority from it (and
		 * strips it). No timestamp: journald stamps every line as it
		 * receives it, and a second one would only clutter
		 * journalctl's output. */
		char p[4] = { '<', prio[l], '>', '\0' };

		put_str(o, p);
	}
	if (st.format == CONFIG_LOG_FORMAT_TEXT) {
		if (!st.journal) {
			put_stamp(o);
			put_str(o, " ");
		}
		put_str(o, names[l]);
		put_str(o, ": ");
		return;
	}
	put_str(o, "{");
	if (!st.journal) {
		put_str(o, "\"time\":\"");
		put_stamp(o);
		put_str(o, "\",");
	}
	put_str(o, "\"level\":\"");
	put_str(o, names[l]);
	put_str(o, "\"");
}

/* The newline, always: a cut line ends at cap - 1. */
static size_t
put_end(struct out *o)
{
	if (o->len > o->cap - 1)
		o->len = o->cap - 1;
	o->p[o->len++] = '\n';
	return o->len;
}

size_t
log_format_event(char *dst, size_t cap, struct log_style st,
    enum config_log_level l, const char *fmt, va_list ap)
{
	/* Text: room for the newline (and vsnprintf's NUL); JSON: for '"}'
	 * and the newline after the message. */
	struct out o = { dst, 0, cap - 2 };
	char msg[LOG_LINE_MAX];
	int r;

	if (st.format == CONFIG_LOG_FORMAT_TEXT) {
		put_head(&o, st, l);
		r = vsnprintf(o.p + o.len, o.cap - o.len + 1, fmt, ap);
		o.len += r > 0 ? (size_t)r : 0;
		if (o.len > o.cap)      /* truncated: keep the newline */
			o.len = o.cap;
		o.cap = cap - 1;
		return put_end(&o);
	}
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	o.cap = cap - 3;
	put_head(&o, st, l);
	put_json_str(&o, "msg", msg, sizeof(msg) * 6);
	o.cap = cap;
	put_str(&o, "}");
	return put_end(&o);
}

size_t
log_format_access(char *dst, size_t cap, struct log_style st,
    const struct log_access *a)
{
	struct out o = { dst, 0, cap - 1 };
	char nums[256];

	if (st.format == CONFIG_LOG_FORMAT_TEXT) {
		put_head(&o, st, CONFIG_LOG_INFO);
		snprintf(o.p + o.len, o.cap - o.len + 1, "access listener=%s "
		    "client=%s server=%s%s%s up_splice=%" PRIu64 " up_copy=%"
		    PRIu64 " down_splice=%" PRIu64 " down_copy=%" PRIu64
		    " duration_ms=%" PRId64 " reason=%s", a->listener, a->client,
		    a->server != NULL ? a->server : "-", a->routed ? " sni=" :
		    "", !a->routed ? "" : a->sni != NULL ? a->sni : "-", a->up_splice,
		    a->up_copy, a->down_splice, a->down_copy, a->duration_ms,
		    a->reason);
		o.len += strlen(o.p + o.len);
		o.cap = cap;
		return put_end(&o);
	}
	put_head(&o, st, CONFIG_LOG_INFO);
	put_str(&o, ",\"msg\":\"access\"");
	snprintf(nums, sizeof(nums), ",\"id\":%" PRIu64, a->id);
	put_str(&o, nums);
	put_json_str(&o, "listener", a->listener, FIELD_MAX);
	put_json_str(&o, "client", a->client, FIELD_MAX);
	if (a->server != NULL)
		put_json_str(&o, "server", a->server, FIELD_MAX);
	else
		put_str(&o, ",\"server\":null");
	if (a->routed && a->sni != NULL)
		put_json_str(&o, "sni", a->sni, FIELD_MAX);
	else if (a->routed)
		put_str(&o, ",\"sni\":null");
	snprintf(nums, sizeof(nums), ",\"up_splice\":%" PRIu64 ",\"up_copy\":%"
	    PRIu64 ",\"down_splice\":%" PRIu64 ",\"down_copy\":%" PRIu64
	    ",\"duration_ms\":%" PRId64, a->up_splice, a->up_copy,
	    a->down_splice, a->down_copy, a->duration_ms);
	put_str(&o, nums);
	put_json_str(&o, "reason", a->reason, FIELD_MAX);
	put_str(&o, "}");
	return put_end(&o);
}
