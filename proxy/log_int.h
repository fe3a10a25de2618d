/* proxy/log_int.h: the line formats of the log, private to log.c and
 * log_format.c (text and JSON, for event lines and access lines). Only
 * formatting: no I/O, no state. */
#ifndef SPLICED_LOG_INT_H
#define SPLICED_LOG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "spliced/log.h"

/* How a line starts: journald's "<N>" and no timestamp, or a timestamp. */
struct log_style {
	bool journal;
	enum config_log_format format;
};

/* One event line, newline included, into dst (cap >= 64): its length. A
 * message too long for cap is cut; a JSON line stays whole JSON. */
size_t log_format_event(char *dst, size_t cap, struct log_style,
    enum config_log_level, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* One access line (level info), newline included, into dst (cap >=
 * LOG_LINE_MAX): its length. */
size_t log_format_access(char *dst, size_t cap, struct log_style,
    const struct log_access *);

#endif
