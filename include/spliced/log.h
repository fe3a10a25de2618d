/* include/spliced/log.h: levelled log lines on stderr.
 *
 * One line per call, written with a single write(2) so lines from different
 * workers never interleave:
 *     2026-11-22T22:52:59.123Z warn: message
 * When stderr is journald's stream (log_init() found JOURNAL_STREAM naming
 * it), every line starts with its syslog priority instead of a timestamp,
 * which journald adds itself:
 *     <4>warn: message
 * (error <3>, warn <4>, info <6>, debug <7>). libevent's own messages, once
 * routed here, get the same treatment.
 * Messages are formatted here; never pass peer bytes as the format. */
#ifndef SPLICED_LOG_H
#define SPLICED_LOG_H

#include <stddef.h>

#include "spliced/config.h"

struct event;
struct event_base;

#define LOG_LINE_MAX 2048               /* longer lines are cut */

/* Decides, once, whether lines carry journald's "<N>" prefixes: they do
 * when JOURNAL_STREAM ("DEV:INODE") matches fstat() of stderr (device and
 * inode). Call it at start, before any thread logs and after stderr is
 * where it will stay. Without the call lines carry timestamps. */
void log_init(void);

/* Thread-safe (a relaxed atomic): a reload may change the level while the
 * workers log. Lines below the level are dropped. */
void log_set_level(enum config_log_level);
enum config_log_level log_get_level(void);
/* Route libevent's own messages into this log. */
void log_route_libevent(void);

void log_msg(enum config_log_level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A worker's batch: lines written together, in one write(2), once the
 * callbacks of the current turn of its event loop have run (or when the
 * batch is full). Under load that is one write for many access lines, not
 * one per connection. A line never straddles two writes. Owned by one
 * thread. */
struct log_batch {
	char buf[16384];
	size_t len;
	struct event *flush;
};

int log_batch_init(struct log_batch *, struct event_base *);   /* 0 / -1 ENOMEM */
void log_batch_cleanup(struct log_batch *);     /* flushes what is left */
void log_batch_msg(struct log_batch *, enum config_log_level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_batch_flush(struct log_batch *);

#define log_error(...) log_msg(CONFIG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(CONFIG_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(CONFIG_LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= CONFIG_LOG_DEBUG) log_msg(CONFIG_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
