/* proxy/log.c: levelled lines on stderr, one write(2) per line. */
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

static void
vlog(enum config_log_level l, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (l > level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s: ",
	    ts.tv_nsec / 1000000, names[l]);
	n += r > 0 ? (size_t)r : 0;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r < 0)
		r = 0;
	n += (size_t)r;
	if (n > sizeof(line) - 2)       /* truncated: keep the newline */
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so lines of concurrent workers never interleave; a log that
	 * cannot be written must not stop the proxy. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
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
