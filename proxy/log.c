/* proxy/log.c: levelled lines on stderr, one write(2) per line or per batch;
 * journald's priority prefixes when stderr is the journal. */
#include "spliced/log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Written by the main thread (at start, and by a reload), read by every
 * worker. Relaxed: a line filtered by the old level a moment after the
 * change does no harm, and nothing else is published through it. */
static _Atomic int level = CONFIG_LOG_INFO;

/* Set by log_init() before any worker starts, read-only afterwards. */
static bool journal;

static const char *const names[] = { "error", "warn", "info", "debug" };
/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char prio[] = { '3', '4', '6', '7' };

/* Whether JOURNAL_STREAM ("DEV:INODE", both decimal) names the file stderr
 * is now: systemd sets it when it connects stderr to journald, and it is
 * inherited by whatever we run with stderr redirected, hence the check. */
static bool
journal_stream(void)
{
	unsigned long long dev, ino;
	const char *e;
	struct stat st;
	char *end;

	e = getenv("JOURNAL_STREAM");
	if (e == NULL || *e == '\0')
		return false;
	errno = 0;
	dev = strtoull(e, &end, 10);
	if (end == e || *end != ':' || errno != 0)
		return false;
	e = end + 1;
	ino = strtoull(e, &end, 10);
	if (end == e || *end != '\0' || errno != 0)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(void)
{
	journal = journal_stream();
}

void
log_set_level(enum config_log_level l)
{
	atomic_store_explicit(&level, (int)l, memory_order_relaxed);
}

enum config_log_level
log_get_level(void)
{
	return (enum config_log_level)atomic_load_explicit(&level,
	    memory_order_relaxed);
}

/* One line, newline included, into dst (cap >= 2): its length. */
static size_t
format(char *dst, size_t cap, enum config_log_level l, const char *fmt, va_list ap)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (journal) {
		/* "<N>": journald takes the line's priority from it (and
		 * strips it). No timestamp: journald stamps every line as it
		 * receives it, and a second one would only clutter
		 * journalctl's output. */
		r = snprintf(dst, cap, "<%c>%s: ", prio[l], names[l]);
		n = r > 0 ? (size_t)r : 0;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(dst, cap, "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(dst + n, cap - n, ".%03ldZ %s: ",
		    ts.tv_nsec / 1000000, names[l]);
		n += r > 0 ? (size_t)r : 0;
	}
	if (n > cap - 2)
		n = cap - 2;
	r = vsnprintf(dst + n, cap - n, fmt, ap);
	n += r > 0 ? (size_t)r : 0;
	if (n > cap - 2)                /* truncated: keep the newline */
		n = cap - 2;
	dst[n++] = '\n';
	return n;
}

/* A log that cannot be written must not stop the proxy. */
static void
put(const char *buf, size_t n)
{
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

static void
vlog(enum config_log_level l, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];

	if (l > log_get_level())
		return;
	/* One write so lines of concurrent workers never interleave. */
	put(line, format(line, sizeof(line), l, fmt, ap));
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	log_batch_flush(arg);
}

int
log_batch_init(struct log_batch *b, struct event_base *base)
{
	b->len = 0;
	b->flush = event_new(base, -1, 0, flush_cb, b);
	return b->flush == NULL ? -1 : 0;
}

void
log_batch_cleanup(struct log_batch *b)
{
	if (b->flush == NULL)
		return;
	log_batch_flush(b);
	event_free(b->flush);
	b->flush = NULL;
}

void
log_batch_msg(struct log_batch *b, enum config_log_level l, const char *fmt, ...)
{
	va_list ap;

	if (l > log_get_level())
		return;
	if (sizeof(b->buf) - b->len < LOG_LINE_MAX)
		log_batch_flush(b);
	/* The flush runs once the callbacks already due have run: the lines
	 * of one turn of the loop go out in one write. */
	if (b->len == 0)
		event_active(b->flush, EV_TIMEOUT, 0);
	va_start(ap, fmt);
	b->len += format(b->buf + b->len, sizeof(b->buf) - b->len, l, fmt, ap);
	va_end(ap);
}

void
log_batch_flush(struct log_batch *b)
{
	if (b->len > 0)
		put(b->buf, b->len);
	b->len = 0;
}

void
log_msg(enum config_log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(l, fmt, ap);
	va_end(ap);
}

static void
libevent_cb(int severity, const char *msg)
{
	enum config_log_level l;

	switch (severity) {
	case EVENT_LOG_DEBUG: l = CONFIG_LOG_DEBUG; break;
	case EVENT_LOG_MSG:   l = CONFIG_LOG_INFO; break;
	case EVENT_LOG_WARN:  l = CONFIG_LOG_WARN; break;
	default:              l = CONFIG_LOG_ERROR; break;
	}
	log_msg(l, "libevent: %s", msg);
}

void
log_route_libevent(void)
{
	event_set_log_callback(libevent_cb);
}
