/* proxy/log.c: levelled lines on stderr; journald's priority prefixes when
 * stderr is the journal. While the writer runs, each thread's lines go
 * through its own queue to the writer thread, the only one that may block
 * on stderr (log.h says what that promises).
 *
 * A queue is a ring with one producer (its thread) and one consumer (the
 * writer), and no lock: head and tail count bytes since the queue was made,
 * the thread owns tail and the bytes from tail up to head + size, the
 * writer owns head and the bytes from head to tail. Each publishes its
 * counter after touching the bytes (release), and reads the other's before
 * (acquire). Waking the writer is a Dekker handshake on two seq_cst
 * pairs: the thread stores tail then loads `sleeping`; the writer stores
 * `sleeping` then loads every tail. At least one of them sees the other's
 * store, so the writer never sleeps on a line nobody woke it for.
 *
 * A queue holds records: a struct log_rec (length and kind), then that
 * many bytes of whole lines. The writer copies the records of a queue
 * into its stage, one destination at a time (stderr, or the access-log
 * file), and writes the stage out in one write(2) per destination.
 *
 * Where access lines go (acc_fd, acc_path) is the writer's while it runs,
 * the main thread's otherwise; the main thread hands changes to a running
 * writer through the box (a reload's new file, SIGUSR1's reopen), which
 * the writer takes after writing what was queued. */
#include "spliced/log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log_int.h"

/* The writer's stage: records copied out of a queue, written at once. */
#define LOG_STAGE_SIZE (64u * 1024)

enum log_kind { LOG_KIND_EVENT, LOG_KIND_ACCESS };

/* Before each hand-off in a queue. */
struct log_rec {
	uint32_t len;               /* of the lines that follow */
	uint32_t kind;              /* enum log_kind */
};

struct log_queue {
	_Atomic uint64_t head;      /* written out: the writer's */
	_Atomic uint64_t tail;      /* queued: its thread's */
	_Atomic uint64_t dropped;   /* lines its thread found no room for */
	/* The writer's: drops it has seen, drops it has reported, and the
	 * tail when it saw them (the lines queued before those drops end
	 * there: once head passes it, the writer has caught up). */
	uint64_t noted, reported, mark;
	struct log_queue *next;     /* set before the queue is published */
	char buf[LOG_QUEUE_SIZE];
};

struct log_writer {
	pthread_t thread;
	unsigned gen;               /* tells a thread its queue is this writer's */
	_Atomic(struct log_queue *) queues;    /* pushed by threads, never removed */
	atomic_bool sleeping;       /* the writer waits on wake; cleared by who wakes it */
	atomic_bool stopping;
	pthread_mutex_t mu;
	pthread_cond_t wake;        /* for the writer */
	pthread_cond_t stopped;     /* for log_writer_stop(), with done */
	bool done, abandoned;       /* under mu */
	int stage_fd;
	size_t stage_len;
	char stage[LOG_STAGE_SIZE];
};

/* The running writer: set and cleared by the thread that starts and stops
 * it, read by every thread that logs. */
static _Atomic(struct log_writer *) writer;
static unsigned generation;     /* the starting thread's */
/* A stopped writer is stuck in write(2): lines are dropped, not written. */
static atomic_bool stalled;
static _Atomic uint64_t dropped_total;

static _Thread_local struct log_queue *my_queue;
static _Thread_local unsigned my_gen;

/* Written by the main thread (at start, and by a reload), read by every
 * worker. Relaxed: a line filtered by the old level a moment after the
 * change does no harm, and nothing else is published through it. */
static _Atomic int level = CONFIG_LOG_INFO;

/* The same for log_format. */
static _Atomic int format_kind = CONFIG_LOG_FORMAT_TEXT;

/* Set by log_init() before any worker starts, read-only afterwards. */
static bool journal;

/* Whether access lines go to a file (timestamped, no journald prefix):
 * set by the main thread, read by the workers as they format; relaxed, as
 * level. */
static atomic_bool access_to_file;

/* Where access lines go: stderr, the file's fd, or -1 (off). Written by
 * the writer while it runs, by the main thread otherwise; read by any
 * thread that logs without a writer. acc_path: the file's, or NULL. */
static atomic_int acc_fd = STDERR_FILENO;
static char *acc_path;

/* What the main thread last installed (log_access_use()), to tell a
 * reload's unchanged access_log from a new one. The main thread's. */
static enum config_access_log cur_mode = CONFIG_ACCESS_LOG_ON;
static char *cur_path;

/* The main thread's requests to a running writer (box_mu). */
static pthread_mutex_t box_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool install;               /* fd and path: the new destination */
	bool reopen;
	int fd;
	char *path;
} box;
static atomic_bool box_full;    /* seq_cst: the writer's sleep checks it */

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

void
log_set_format(enum config_log_format f)
{
	atomic_store_explicit(&format_kind, (int)f, memory_order_relaxed);
}

enum config_log_format
log_get_format(void)
{
	return (enum config_log_format)atomic_load_explicit(&format_kind,
	    memory_order_relaxed);
}

static struct log_style
style(bool access)
{
	struct log_style st = { journal, log_get_format() };

	/* A file is not journald: its lines carry their own time. */
	if (access && atomic_load_explicit(&access_to_file, memory_order_relaxed))
		st.journal = false;
	return st;
}

/* One line, newline included, into dst (cap >= 64): its length. */
static size_t
format(char *dst, size_t cap, enum config_log_level l, const char *fmt, va_list ap)
{
	return log_format_event(dst, cap, style(false), l, fmt, ap);
}

static size_t
format_line(char *dst, size_t cap, enum config_log_level l, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t
format_line(char *dst, size_t cap, enum config_log_level l, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = format(dst, cap, l, fmt, ap);
	va_end(ap);
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
count_dropped(struct log_queue *q, unsigned lines)
{
	/* Release: the writer that sees the count also sees the tail of the
	 * lines queued before it. */
	if (q != NULL)
		atomic_fetch_add_explicit(&q->dropped, lines, memory_order_release);
	atomic_fetch_add_explicit(&dropped_total, lines, memory_order_relaxed);
}

uint64_t
log_dropped_total(void)
{
	return atomic_load_explicit(&dropped_total, memory_order_relaxed);
}

/* The calling thread's queue with w, made and published on its first
 * line; NULL when there is no memory for one. */
static struct log_queue *
queue_of_thread(struct log_writer *w)
{
	struct log_queue *q;

	if (my_queue != NULL && my_gen == w->gen)
		return my_queue;
	if ((q = malloc(sizeof(*q))) == NULL)
		return NULL;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	atomic_init(&q->dropped, 0);
	q->noted = q->reported = q->mark = 0;
	q->next = atomic_load_explicit(&w->queues, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&w->queues, &q->next, q,
	    memory_order_release, memory_order_relaxed))
		;
	my_queue = q;
	my_gen = w->gen;
	return q;
}

/* n bytes into q's ring at byte count `at` (which the caller owns). */
static void
ring_put(struct log_queue *q, uint64_t at, const void *buf, size_t n)
{
	size_t i = at % LOG_QUEUE_SIZE, first;

	first = n < LOG_QUEUE_SIZE - i ? n : LOG_QUEUE_SIZE - i;
	memcpy(q->buf + i, buf, first);
	memcpy(q->buf, (const char *)buf + first, n - first);
}

static void
ring_get(const struct log_queue *q, uint64_t at, void *buf, size_t n)
{
	size_t i = at % LOG_QUEUE_SIZE, first;

	first = n < LOG_QUEUE_SIZE - i ? n : LOG_QUEUE_SIZE - i;
	memcpy(buf, q->buf + i, first);
	memcpy((char *)buf + first, q->buf, n - first);
}

/* The writer, out of its sleep if it sleeps. */
static void
writer_wake(struct log_writer *w)
{
	if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&w->sleeping, false, memory_order_seq_cst)) {
		pthread_mutex_lock(&w->mu);
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->mu);
	}
}

/* A record of n bytes of whole lines into q, or false (no room: the
 * caller counts the drop). Wakes the writer if it sleeps. */
static bool
queue_push(struct log_writer *w, struct log_queue *q, enum log_kind kind,
    const char *buf, size_t n)
{
	uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
	struct log_rec r = { (uint32_t)n, kind };

	if (n + sizeof(r) > LOG_QUEUE_SIZE - (tail - head))
		return false;
	ring_put(q, tail, &r, sizeof(r));
	ring_put(q, tail + sizeof(r), buf, n);
	atomic_store_explicit(&q->tail, tail + sizeof(r) + n, memory_order_seq_cst);
	writer_wake(w);
	return true;
}

/* A log that cannot be written must not stop the proxy. */
static void
put_fd(int fd, const char *buf, size_t n)
{
	if (fd >= 0 && write(fd, buf, n) < 0)
		return;
}

/* n bytes holding `lines` whole lines of one kind, to where that kind
 * goes: through the thread's queue while the writer runs, directly
 * otherwise. */
static void
emit(enum log_kind kind, const char *buf, size_t n, unsigned lines)
{
	struct log_writer *w = atomic_load_explicit(&writer, memory_order_acquire);
	struct log_queue *q;

	if (w == NULL) {
		if (atomic_load_explicit(&stalled, memory_order_relaxed))
			count_dropped(NULL, lines);
		else
			put_fd(kind == LOG_KIND_ACCESS ? atomic_load_explicit(&acc_fd,
			    memory_order_relaxed) : STDERR_FILENO, buf, n);
		return;
	}
	if ((q = queue_of_thread(w)) == NULL || !queue_push(w, q, kind, buf, n))
		count_dropped(q, lines);
}

static void
vlog(enum config_log_level l, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];

	if (l > log_get_level())
		return;
	/* One hand-off, so that lines of concurrent threads never
	 * interleave. */
	emit(LOG_KIND_EVENT, line, format(line, sizeof(line), l, fmt, ap), 1);
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
	b->lines = 0;
	b->kind = LOG_KIND_EVENT;
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

/* Room for a line of kind in b: a batch is one record, of one kind. */
static void
batch_room(struct log_batch *b, enum log_kind kind)
{
	if ((b->len > 0 && b->kind != (int)kind) ||
	    sizeof(b->buf) - b->len < LOG_LINE_MAX)
		log_batch_flush(b);
	/* The flush runs once the callbacks already due have run: the lines
	 * of one turn of the loop go out in one hand-off. */
	if (b->len == 0)
		event_active(b->flush, EV_TIMEOUT, 0);
	b->kind = (int)kind;
	b->lines++;
}

void
log_batch_msg(struct log_batch *b, enum config_log_level l, const char *fmt, ...)
{
	va_list ap;

	if (l > log_get_level())
		return;
	batch_room(b, LOG_KIND_EVENT);
	va_start(ap, fmt);
	b->len += format(b->buf + b->len, sizeof(b->buf) - b->len, l, fmt, ap);
	va_end(ap);
}

void
log_batch_access(struct log_batch *b, const struct log_access *a)
{
	/* On stderr access lines are info lines; a file of their own takes
	 * them all. */
	if (!atomic_load_explicit(&access_to_file, memory_order_relaxed) &&
	    CONFIG_LOG_INFO > log_get_level())
		return;
	batch_room(b, LOG_KIND_ACCESS);
	b->len += log_format_access(b->buf + b->len, sizeof(b->buf) - b->len,
	    style(true), a);
}

void
log_batch_flush(struct log_batch *b)
{
	if (b->len > 0)
		emit((enum log_kind)b->kind, b->buf, b->len, b->lines);
	b->len = 0;
	b->lines = 0;
}

void
log_msg(enum config_log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(l, fmt, ap);
	va_end(ap);
}

/* --- the writer thread ------------------------------------------------ */

/* Writes the stage out. Only the writer writes stderr and the access-log
 * file now, so a write cut short (a signal, a full disk) simply goes on
 * where it stopped. */
static void
stage_flush(struct log_writer *w)
{
	size_t off = 0;
	ssize_t r;

	while (off < w->stage_len) {
		r = write(w->stage_fd, w->stage + off, w->stage_len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)             /* unwritable: lost, as put() loses it */
			break;
		off += (size_t)r;
	}
	w->stage_len = 0;
}

/* Copies q's records from head up to tail into the stage, written out
 * whenever the destination changes or it is full, and at the end. The
 * room goes back to the thread only once its bytes are written: a stalled
 * reader holds a queue's worth, not a queue and a stage. */
static void
queue_write(struct log_writer *w, struct log_queue *q, uint64_t head,
    uint64_t tail)
{
	struct log_rec r;
	int fd;

	while (head < tail) {
		ring_get(q, head, &r, sizeof(r));
		fd = r.kind == LOG_KIND_ACCESS ? atomic_load_explicit(&acc_fd,
		    memory_order_relaxed) : STDERR_FILENO;
		if (w->stage_len > 0 && (w->stage_fd != fd ||
		    r.len > sizeof(w->stage) - w->stage_len)) {
			stage_flush(w);
			atomic_store_explicit(&q->head, head, memory_order_release);
		}
		if (fd >= 0) {          /* access_log = off: none */
			w->stage_fd = fd;
			ring_get(q, head + sizeof(r), w->stage + w->stage_len, r.len);
			w->stage_len += r.len;
		}
		head += sizeof(r) + r.len;
	}
	stage_flush(w);
	atomic_store_explicit(&q->head, head, memory_order_release);
}

static void
warn_dropped(uint64_t n)
{
	char line[LOG_LINE_MAX];
	size_t len;

	if (CONFIG_LOG_WARN > log_get_level())
		return;
	len = format_line(line, sizeof(line), CONFIG_LOG_WARN, "%" PRIu64
	    " log lines dropped while the log reader was stalled", n);
	put(line, len);
}

/* One round over the queues: writes what each holds, then the warning for
 * drops whose earlier lines are now written. The bytes it found. */
static uint64_t
writer_pass(struct log_writer *w)
{
	struct log_queue *q;
	uint64_t head, tail, d, found = 0, caught_up = 0;

	for (q = atomic_load_explicit(&w->queues, memory_order_acquire); q != NULL;
	    q = q->next) {
		if ((d = atomic_load_explicit(&q->dropped, memory_order_acquire)) != q->noted) {
			q->noted = d;
			q->mark = atomic_load_explicit(&q->tail, memory_order_acquire);
		}
		head = atomic_load_explicit(&q->head, memory_order_relaxed);
		tail = atomic_load_explicit(&q->tail, memory_order_seq_cst);
		if (tail != head) {
			queue_write(w, q, head, tail);
			found += tail - head;
			head = tail;
		}
		if (q->noted != q->reported && head >= q->mark) {
			caught_up += q->noted - q->reported;
			q->reported = q->noted;
		}
	}
	if (caught_up > 0)
		warn_dropped(caught_up);
	return found;
}

static bool
queues_empty(struct log_writer *w)
{
	struct log_queue *q;

	for (q = atomic_load_explicit(&w->queues, memory_order_acquire); q != NULL;
	    q = q->next)
		if (atomic_load_explicit(&q->tail, memory_order_seq_cst) !=
		    atomic_load_explicit(&q->head, memory_order_relaxed))
			return false;
	return true;
}

/* After a write: let lines gather (log.h, LOG_GATHER_MS); the stop cuts
 * it short. Nobody wakes the writer meanwhile: it is not `sleeping`. */
static void
writer_gather(struct log_writer *w)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += LOG_GATHER_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!atomic_load_explicit(&w->stopping, memory_order_acquire) &&
	    pthread_cond_timedwait(&w->wake, &w->mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&w->mu);
}

/* Until a thread queues a line, or the stop. */
static void
writer_sleep(struct log_writer *w)
{
	pthread_mutex_lock(&w->mu);
	atomic_store_explicit(&w->sleeping, true, memory_order_seq_cst);
	while (atomic_load_explicit(&w->sleeping, memory_order_seq_cst) &&
	    !atomic_load_explicit(&w->stopping, memory_order_acquire) &&
	    !atomic_load_explicit(&box_full, memory_order_seq_cst) &&
	    queues_empty(w))
		pthread_cond_wait(&w->wake, &w->mu);
	atomic_store_explicit(&w->sleeping, false, memory_order_relaxed);
	pthread_mutex_unlock(&w->mu);
}

static void
writer_free(struct log_writer *w)
{
	struct log_queue *q, *next;

	for (q = atomic_load_explicit(&w->queues, memory_order_acquire); q != NULL;
	    q = next) {
		next = q->next;
		free(q);
	}
	pthread_cond_destroy(&w->stopped);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

static void writer_box(struct log_writer *);

static void *
writer_run(void *arg)
{
	struct log_writer *w = arg;
	bool stopping, abandoned;

	pthread_setname_np(pthread_self(), "spliced-log");
	for (;;) {
		/* Read before the pass: whatever was queued before the stop
		 * is seen by it. */
		stopping = atomic_load_explicit(&w->stopping, memory_order_acquire);
		writer_box(w);
		if (writer_pass(w) > 0) {
			if (!stopping)
				writer_gather(w);
			continue;
		}
		if (stopping)
			break;
		writer_sleep(w);
	}
	writer_box(w);              /* a change handed over at the last moment */
	pthread_mutex_lock(&w->mu);
	abandoned = w->abandoned;
	w->done = true;
	pthread_cond_signal(&w->stopped);
	pthread_mutex_unlock(&w->mu);
	/* Given up on by log_writer_stop(): nobody joins it, nobody else
	 * touches w, and the reader has come back. */
	if (abandoned) {
		writer_free(w);
		atomic_store_explicit(&stalled, false, memory_order_relaxed);
	}
	return NULL;
}

int
log_writer_start(void)
{
	pthread_condattr_t ca;
	struct log_writer *w;
	sigset_t all, old;
	int r;

	if (atomic_load_explicit(&writer, memory_order_relaxed) != NULL ||
	    atomic_load_explicit(&stalled, memory_order_relaxed)) {
		errno = EBUSY;
		return -1;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	w->gen = ++generation;
	atomic_init(&w->queues, NULL);
	atomic_init(&w->sleeping, false);
	atomic_init(&w->stopping, false);
	pthread_mutex_init(&w->mu, NULL);
	/* The gathering's and the stop's deadlines are on the monotonic
	 * clock. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->wake, &ca);
	pthread_cond_init(&w->stopped, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals are for the main thread; the writer is never interrupted. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&w->thread, NULL, writer_run, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		writer_free(w);
		errno = r;
		return -1;
	}
	atomic_store_explicit(&writer, w, memory_order_release);
	return 0;
}

void
log_writer_stop(void)
{
	struct log_writer *w = atomic_load_explicit(&writer, memory_order_relaxed);
	struct timespec deadline;
	pthread_t thread;
	bool done;

	if (w == NULL)
		return;
	thread = w->thread;         /* w is the writer's to free once abandoned */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += LOG_STOP_WAIT_MS / 1000;
	deadline.tv_nsec += (LOG_STOP_WAIT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	atomic_store_explicit(&w->stopping, true, memory_order_release);
	pthread_cond_signal(&w->wake);
	while (!w->done &&
	    pthread_cond_timedwait(&w->stopped, &w->mu, &deadline) != ETIMEDOUT)
		;
	done = w->done;
	if (!done) {
		/* Stuck in write(2): the process must still be able to exit. */
		w->abandoned = true;
		atomic_store_explicit(&stalled, true, memory_order_relaxed);
	}
	pthread_mutex_unlock(&w->mu);
	atomic_store_explicit(&writer, NULL, memory_order_relaxed);
	if (done) {
		pthread_join(thread, NULL);
		writer_free(w);
	} else
		pthread_detach(thread);
}

/* --- the access log ------------------------------------------------- */

/* An event line from the thread that writes stderr now: the writer, or
 * the main thread while none runs. */
static void
note(enum config_log_level l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
note(enum config_log_level l, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	size_t n;

	if (l > log_get_level())
		return;
	va_start(ap, fmt);
	n = format(line, sizeof(line), l, fmt, ap);
	va_end(ap);
	put(line, n);
}

/* O_NONBLOCK only for the open: a FIFO without a reader fails (ENXIO)
 * rather than hang the thread; writes then block, in the writer only. */
static int
acc_open(const char *path)
{
	int fd, fl;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK, 0640);
	if (fd >= 0 && (fl = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* The new destination; the old file, if any, is closed. */
static void
acc_install(int fd, char *path)
{
	int old = atomic_load_explicit(&acc_fd, memory_order_relaxed);

	atomic_store_explicit(&acc_fd, fd, memory_order_relaxed);
	if (acc_path != NULL)
		close(old);
	free(acc_path);
	acc_path = path;
}

static void
acc_reopen(void)
{
	int fd;

	if (acc_path == NULL)
		return;
	if ((fd = acc_open(acc_path)) == -1) {
		note(CONFIG_LOG_WARN, "access_log: cannot reopen %s: %s; still "
		    "writing to the file open before", acc_path, strerror(errno));
		return;
	}
	close(atomic_exchange_explicit(&acc_fd, fd, memory_order_relaxed));
	note(CONFIG_LOG_INFO, "access_log: reopened %s", acc_path);
}

/* What the main thread asked for, once what was queued before is
 * written (to the old destination). */
static void
writer_box(struct log_writer *w)
{
	bool install, reopen;
	char *path;
	int fd;

	if (!atomic_exchange_explicit(&box_full, false, memory_order_seq_cst))
		return;
	pthread_mutex_lock(&box_mu);
	install = box.install;
	reopen = box.reopen;
	fd = box.fd;
	path = box.path;
	box.install = box.reopen = false;
	box.path = NULL;
	pthread_mutex_unlock(&box_mu);
	writer_pass(w);
	if (install)
		acc_install(fd, path);
	else if (reopen)
		acc_reopen();
}

int
log_access_open(struct log_access_file *af, const struct config *cfg,
    char *err, size_t errlen)
{
	char why[CONFIG_ERR_MAX];

	af->mode = cfg->access_log;
	af->fd = -1;
	af->path = NULL;
	af->keep = af->mode == cur_mode && (af->mode != CONFIG_ACCESS_LOG_FILE ||
	    strcmp(cfg->access_log_path, cur_path) == 0);
	if (af->keep || af->mode != CONFIG_ACCESS_LOG_FILE)
		return 0;
	if ((af->fd = acc_open(cfg->access_log_path)) == -1) {
		snprintf(why, sizeof(why), "cannot open %s: %s",
		    cfg->access_log_path, strerror(errno));
		config_global_error(cfg, "access_log", why, err, errlen);
		return -1;
	}
	if ((af->path = strdup(cfg->access_log_path)) == NULL) {
		close(af->fd);
		af->fd = -1;
		config_global_error(cfg, "access_log", "out of memory", err, errlen);
		return -1;
	}
	return 0;
}

void
log_access_use(struct log_access_file *af)
{
	struct log_writer *w = atomic_load_explicit(&writer, memory_order_relaxed);
	bool file = af->mode == CONFIG_ACCESS_LOG_FILE;
	char *copy;
	int fd;

	if (af->keep)
		return;
	if (file && (copy = strdup(af->path)) != NULL) {
		free(cur_path);
		cur_path = copy;
	} else if (file)
		return;                 /* no memory: the next reload tries again */
	cur_mode = af->mode;
	atomic_store_explicit(&access_to_file, file, memory_order_relaxed);
	fd = file ? af->fd : af->mode == CONFIG_ACCESS_LOG_ON ? STDERR_FILENO : -1;
	if (w == NULL)
		acc_install(fd, af->path);
	else {
		pthread_mutex_lock(&box_mu);
		if (box.install && box.path != NULL)   /* never taken: superseded */
			close(box.fd);
		free(box.path);
		box.install = true;
		box.reopen = false;
		box.fd = fd;
		box.path = af->path;
		pthread_mutex_unlock(&box_mu);
		atomic_store_explicit(&box_full, true, memory_order_seq_cst);
		writer_wake(w);
	}
	af->fd = -1;
	af->path = NULL;
}

void
log_access_cleanup(struct log_access_file *af)
{
	if (af->fd >= 0)
		close(af->fd);
	free(af->path);
	af->fd = -1;
	af->path = NULL;
}

int
log_access_start(const struct config *cfg, char *err, size_t errlen)
{
	struct log_access_file af;

	if (log_access_open(&af, cfg, err, errlen) == -1)
		return -1;
	log_access_use(&af);
	log_access_cleanup(&af);
	return 0;
}

int
log_access_check(const struct config *cfg, char *err, size_t errlen)
{
	char why[CONFIG_ERR_MAX], *copy;
	const char *dir;
	int fd;

	if (cfg->access_log != CONFIG_ACCESS_LOG_FILE)
		return 0;
	fd = open(cfg->access_log_path, O_WRONLY | O_APPEND | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT) {      /* would it be created? */
		if ((copy = strdup(cfg->access_log_path)) == NULL)
			return -1;
		dir = dirname(copy);
		if (access(dir, W_OK | X_OK) == 0) {
			free(copy);
			return 0;
		}
		snprintf(why, sizeof(why), "cannot create %s: %s: %s",
		    cfg->access_log_path, dir, strerror(errno));
		free(copy);
	} else
		snprintf(why, sizeof(why), "cannot open %s: %s",
		    cfg->access_log_path, strerror(errno));
	config_global_error(cfg, "access_log", why, err, errlen);
	return -1;
}

void
log_reopen(void)
{
	struct log_writer *w = atomic_load_explicit(&writer, memory_order_relaxed);

	if (w == NULL) {
		acc_reopen();
		return;
	}
	pthread_mutex_lock(&box_mu);
	box.reopen = true;
	pthread_mutex_unlock(&box_mu);
	atomic_store_explicit(&box_full, true, memory_order_seq_cst);
	writer_wake(w);
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
