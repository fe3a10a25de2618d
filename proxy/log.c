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
 * store, so the writer never sleeps on a line nobody woke it for. */
#include "spliced/log.h"

#include <errno.h>
#include <event2/event.h>
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

/* n bytes of whole lines into q, or false (no room: the caller counts the
 * drop). Wakes the writer if it sleeps. */
static bool
queue_push(struct log_writer *w, struct log_queue *q, const char *buf, size_t n)
{
	uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
	size_t at = tail % LOG_QUEUE_SIZE, first;

	if (n > LOG_QUEUE_SIZE - (tail - head))
		return false;
	first = n < LOG_QUEUE_SIZE - at ? n : LOG_QUEUE_SIZE - at;
	memcpy(q->buf + at, buf, first);
	memcpy(q->buf, buf + first, n - first);
	atomic_store_explicit(&q->tail, tail + n, memory_order_seq_cst);
	if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&w->sleeping, false, memory_order_seq_cst)) {
		pthread_mutex_lock(&w->mu);
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->mu);
	}
	return true;
}

/* n bytes holding `lines` whole lines, to stderr: through the thread's
 * queue while the writer runs, directly otherwise. */
static void
emit(const char *buf, size_t n, unsigned lines)
{
	struct log_writer *w = atomic_load_explicit(&writer, memory_order_acquire);
	struct log_queue *q;

	if (w == NULL) {
		if (atomic_load_explicit(&stalled, memory_order_relaxed))
			count_dropped(NULL, lines);
		else
			put(buf, n);
		return;
	}
	if ((q = queue_of_thread(w)) == NULL || !queue_push(w, q, buf, n))
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
	emit(line, format(line, sizeof(line), l, fmt, ap), 1);
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
	 * of one turn of the loop go out in one hand-off. */
	if (b->len == 0)
		event_active(b->flush, EV_TIMEOUT, 0);
	va_start(ap, fmt);
	b->len += format(b->buf + b->len, sizeof(b->buf) - b->len, l, fmt, ap);
	va_end(ap);
	b->lines++;
}

void
log_batch_flush(struct log_batch *b)
{
	if (b->len > 0)
		emit(b->buf, b->len, b->lines);
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

/* Writes q's bytes from head up to tail and hands the room back as it
 * goes. Only the writer writes stderr now, so a write cut short (a signal,
 * a full disk) simply goes on where it stopped. */
static void
queue_write(struct log_queue *q, uint64_t head, uint64_t tail)
{
	struct iovec iov[2];
	size_t at, first;
	ssize_t r;

	while (head < tail) {
		at = head % LOG_QUEUE_SIZE;
		first = tail - head < LOG_QUEUE_SIZE - at ? tail - head : LOG_QUEUE_SIZE - at;
		iov[0] = (struct iovec){ q->buf + at, first };
		iov[1] = (struct iovec){ q->buf, tail - head - first };
		r = writev(STDERR_FILENO, iov, iov[1].iov_len > 0 ? 2 : 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)             /* unwritable: lost, as put() loses it */
			r = (ssize_t)(tail - head);
		head += (uint64_t)r;
		atomic_store_explicit(&q->head, head, memory_order_release);
	}
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
			queue_write(q, head, tail);
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
		if (writer_pass(w) > 0) {
			if (!stopping)
				writer_gather(w);
			continue;
		}
		if (stopping)
			break;
		writer_sleep(w);
	}
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
