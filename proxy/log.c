/* proxy/log.c: levelled lines on stderr, one write(2) per line or per batch. */
#include "spliced/log.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once before any worker starts, read-only afterwards. */
static enum config_log_level level = CONFIG_LOG_INFO;

static const char *const names[] = { "error", "warn", "info", "debug" };

void
log_set_level(enum config_log_level l)
{
	level = l;
}

enum config_log_level
log_get_level(void)
{
	return level;
}

/* One line, newline included, into dst (cap >= 2): its length. */
static size_t
format(char *dst, size_t cap, enum config_log_level l, const char *fmt, va_list ap)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(dst, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(dst + n, cap - n, ".%03ldZ %s: ", ts.tv_nsec / 1000000, names[l]);
	n += r > 0 ? (size_t)r : 0;
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

	if (l > level)
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

	if (l > level)
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
