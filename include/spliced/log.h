/* include/spliced/log.h: levelled log lines on stderr, access lines on
 * stderr or in a file of their own.
 *
 * One line per call:
 *     2026-11-22T22:52:59.123Z warn: message
 * or with log_format = json (log_set_format()), one JSON object per line:
 *     {"time":"2026-11-22T22:52:59.123Z","level":"warn","msg":"message"}
 * When stderr is journald's stream (log_init() found JOURNAL_STREAM naming
 * it), every line starts with its syslog priority instead of a timestamp,
 * which journald adds itself:
 *     <4>warn: message
 * (error <3>, warn <4>, info <6>, debug <7>); in JSON the prefix stays
 * and "time" goes: <4>{"level":"warn","msg":"message"}. libevent's own
 * messages, once routed here, get the same treatment.
 * Messages are formatted here; never pass peer bytes as the format. JSON
 * strings are escaped (log_json_escape()): every line parses.
 *
 * Access lines (log_batch_access(), one per connection) are event lines of
 * level info on stderr with access_log = on; with access_log = PATH they go
 * to that file instead, always with their timestamp and never with a
 * journald prefix, whatever log_level says; with off, nowhere. The file is
 * opened at start and by a reload (log_access_open()), and opened again on
 * SIGUSR1 (log_reopen()) by the writer thread, as the user the process
 * runs as then: after logrotate moved it, lines queued before the reopen
 * still go to the old file, later ones to the new; none is lost.
 *
 * Who writes to stderr. A reader of stderr that stalls (a pipe nobody
 * reads, a journald that is behind) must never stop the proxy, so while
 * the log writer runs (log_writer_start() .. log_writer_stop()) no thread
 * that logs ever blocks on stderr:
 *  - every thread that logs gets its own queue, a ring of LOG_QUEUE_SIZE
 *    bytes, on its first line (allocated once per thread, never per line);
 *  - a line, or a whole log_batch, is copied into it whole, or, when it
 *    does not fit, dropped and counted; a thread never waits for room;
 *  - one writer thread ("spliced-log", not a worker) writes the queues to
 *    stderr, many lines per write(2). It sleeps while every queue is empty
 *    and is woken when a line arrives while it sleeps; after a write it
 *    gathers for LOG_GATHER_MS before it looks again, so that under load
 *    it is not woken once per loop turn of every worker; it is the only
 *    thread that writes stderr then, so a line is never split by another's
 *    bytes;
 *  - once the writer has written the lines that were queued before a drop,
 *    it writes one line "warn: N log lines dropped while the log reader was
 *    stalled" (in the format above; left out when log_level is error).
 * The lines of one thread reach stderr in the order it logged them, with
 * nothing lost while the reader keeps up; the lines of different threads
 * may be reordered by the writer, by up to a queue's worth.
 * Access lines share the queues with event lines (each hand-off is tagged
 * with its kind), so on stderr they keep their order too, and the writer
 * is the only thread that writes the access-log file.
 * Without a writer (before it starts, after it stops, spliced -t, tools,
 * unit tests) each line, or batch, is one blocking write(2) from the
 * thread that logs, as it always was: lines of concurrent threads never
 * interleave. */
#ifndef SPLICED_LOG_H
#define SPLICED_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/config.h"

struct event;
struct event_base;

#define LOG_LINE_MAX 2048               /* longer lines are cut */
/* Per thread that logs while the writer runs (the main thread and each
 * worker): about 1,500 access lines of ~170 bytes, 0.3 s of one worker's
 * lines at the README's rate of new connections (9,765 a second over two
 * workers), so a reader that keeps up but is scheduled out for a moment
 * loses nothing. malloc'd: pages a burst never reached cost nothing. */
#define LOG_QUEUE_SIZE (256u * 1024)
/* How long log_writer_stop() waits for the writer to write what is queued. */
#define LOG_STOP_WAIT_MS 1000
/* How long the writer gathers lines after a write. Without it, each worker
 * woke the writer once per turn of its loop: with a connection per
 * request, 0.8 context switches and 1.15x the proxy's CPU per request
 * (tools/bench --sections small). At most 100 wake-ups a second instead,
 * and lines reach stderr at most this much later; a queue holds far more
 * than a worker logs in that time. */
#define LOG_GATHER_MS 10

/* Decides, once, whether lines carry journald's "<N>" prefixes: they do
 * when JOURNAL_STREAM ("DEV:INODE") matches fstat() of stderr (device and
 * inode). Call it at start, before any thread logs and after stderr is
 * where it will stay. Without the call lines carry timestamps. */
void log_init(void);

/* Thread-safe (a relaxed atomic): a reload may change the level while the
 * workers log. Lines below the level are dropped. */
void log_set_level(enum config_log_level);
enum config_log_level log_get_level(void);
/* The same for log_format: text (default) or json. */
void log_set_format(enum config_log_format);
enum config_log_format log_get_format(void);
/* Route libevent's own messages into this log. */
void log_route_libevent(void);

/* Thread-safe; never blocks while the writer runs (see above). */
void log_msg(enum config_log_level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Starts the writer thread: from then on lines go through the queues. Call
 * it from the main thread after log_init(), once no thread is left to start
 * before it (spliced: after dropping privileges) and while no other thread
 * logs yet. The thread runs with every signal blocked. 0, or -1 with errno
 * (EBUSY: it runs already, or a stop gave up on it and it is still stuck;
 * what pthread_create() returns). */
int log_writer_start(void);
/* Writes what is queued and ends the writer; from then on lines are written
 * directly again. Call it from the thread that started it, once no other
 * thread logs any more (spliced: after the workers were joined). When
 * stderr does not take the lines within LOG_STOP_WAIT_MS (the reader is
 * stalled) it returns anyway, without joining a writer stuck in write(2):
 * that one finishes on its own if the reader comes back, and until it does
 * lines are dropped and counted rather than written, so that the process
 * can still exit. A no-op when no writer runs. */
void log_writer_stop(void);
/* Lines dropped since the process started (no room in a queue, or while a
 * stopped writer was stuck), for spliced_log_lines_dropped_total.
 * Thread-safe. */
uint64_t log_dropped_total(void);

/* --- the access log (access_log) ---------------------------------------
 * Call these from the thread that starts and stops the writer (spliced:
 * the main thread), never from a worker: opening a file may block.
 * Before the first log_access_use() access lines go to stderr (on). */

/* What log_access_use() installs: an open file, or none needed. */
struct log_access_file {
	enum config_access_log mode;
	int fd;                     /* the file's with CONFIG_ACCESS_LOG_FILE, else -1 */
	char *path;
	bool keep;                  /* the same as in use now: nothing to open */
};

/* Opens cfg's access_log file (O_WRONLY | O_APPEND | O_CREAT, mode 0640,
 * as the process is now: at start before it drops privileges) unless it
 * is the file in use already. 0, or -1 with err naming the key: "FILE:LINE:
 * [global] access_log: cannot open /x/a.log: Permission denied". A FIFO
 * without a reader is refused (ENXIO), not waited for. */
int log_access_open(struct log_access_file *, const struct config *,
    char *err, size_t errlen);
/* From now on access lines go where af says; takes af's file. While the
 * writer runs it makes the switch, after writing the lines queued before;
 * without it, the switch is made now (no other thread may log then). */
void log_access_use(struct log_access_file *);
/* Closes a file log_access_use() did not take (a reload that failed). */
void log_access_cleanup(struct log_access_file *);
/* log_access_open() and log_access_use() at once: at start. */
int log_access_start(const struct config *, char *err, size_t errlen);
/* For spliced -t: whether the file could be opened, without creating it
 * (an existing file is opened for appending; else its directory must be
 * writable). 0, or -1 with err as log_access_open()'s. */
int log_access_check(const struct config *, char *err, size_t errlen);
/* SIGUSR1: open the access-log file again by its path (after logrotate
 * moved it): the writer does it, after writing what is queued. It logs
 * "access_log: reopened PATH", or a warning when the file cannot be opened
 * (the old one stays in use). The directory must be writable by the user
 * the process runs as ([global] user). Nothing to do without a file. */
void log_reopen(void);

/* One connection's access line. Text: "access listener=L client=C
 * server=S up_splice=N up_copy=N down_splice=N down_copy=N duration_ms=N
 * reason=R" (no id: the text line is as it always was); JSON: those
 * fields, numbers as numbers, server null when none was reached, and
 * "id". */
struct log_access {
	uint64_t id;                /* unique in the process (conn.h) */
	const char *listener, *client;
	const char *server;         /* "NAME/ADDRESS", or NULL: none reached */
	/* routed: a listener with routes, whose lines have sni, the server
	 * name (NULL: none was read; "-" in text, null in JSON). Other
	 * listeners' lines leave the field out. */
	bool routed;
	const char *sni;
	uint64_t up_splice, up_copy, down_splice, down_copy;
	int64_t duration_ms;
	const char *reason;
};

/* s as the inside of a JSON string (no quotes) into dst, at most cap bytes
 * and never part of an escape or of a UTF-8 sequence: '"', '\\' and
 * control characters escaped, bytes that are not UTF-8 as \u00XX. The
 * bytes written (no NUL is added). */
size_t log_json_escape(char *dst, size_t cap, const char *s);

/* A worker's batch: lines handed on together, once the callbacks of the
 * current turn of its event loop have run (or when the batch is full): one
 * copy into the thread's queue (or one write(2) without a writer) for many
 * access lines, not one per connection. A line never straddles two
 * hand-offs; a batch that does not fit in the queue is dropped whole.
 * Owned by one thread. */
struct log_batch {
	char buf[16384];
	size_t len;
	unsigned lines;             /* in buf, counted when it is dropped */
	int kind;                   /* of the lines in buf: log.c's */
	struct event *flush;
};

int log_batch_init(struct log_batch *, struct event_base *);   /* 0 / -1 ENOMEM */
void log_batch_cleanup(struct log_batch *);     /* flushes what is left */
void log_batch_msg(struct log_batch *, enum config_log_level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An access line (see above), into the batch. */
void log_batch_access(struct log_batch *, const struct log_access *);
void log_batch_flush(struct log_batch *);

#define log_error(...) log_msg(CONFIG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(CONFIG_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(CONFIG_LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= CONFIG_LOG_DEBUG) log_msg(CONFIG_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
