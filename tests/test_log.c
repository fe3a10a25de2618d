/* tests/test_log.c: the log's queues and writer thread.
 *
 * stderr (fd 2) is caught: the write end of a pipe the test reads, or
 * leaves unread to stall the writer (a pipe of one page fills at once).
 * While it is caught nothing is asserted: cmocka reports failures on
 * stderr, into the pipe, where they could block. Each test gathers what it
 * saw, puts stderr back, then asserts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "spliced/log.h"

#define LONG_LINE 500           /* bytes of text in a line meant to fill */

/* fd 2 as the write end of a pipe; what was read from its read end. */
struct caught {
	int rfd;
	int saved;                  /* stderr as the test found it */
	char *buf;                  /* NUL-terminated */
	size_t len, cap;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* pipe_size 0: the kernel's default (64 KiB). */
static void
catch_stderr(struct caught *c, int pipe_size)
{
	int p[2];

	memset(c, 0, sizeof(*c));
	assert_int_equal(pipe(p), 0);
	if (pipe_size > 0)
		assert_true(fcntl(p[1], F_SETPIPE_SZ, pipe_size) >= pipe_size);
	c->rfd = p[0];
	assert_true((c->saved = dup(STDERR_FILENO)) >= 0);
	assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
	close(p[1]);
	c->cap = 1 << 16;
	assert_non_null(c->buf = malloc(c->cap));
	c->buf[0] = '\0';
}

/* One read of what the pipe holds, waiting up to timeout_ms: the bytes
 * read; 0 at EOF or when nothing came. */
static size_t
read_some(struct caught *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->rfd, .events = POLLIN };
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	if (c->cap - c->len < 65536 + 1) {
		c->cap *= 2;
		if ((c->buf = realloc(c->buf, c->cap)) == NULL)
			abort();
	}
	if ((n = read(c->rfd, c->buf + c->len, 65536)) <= 0)
		return 0;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return (size_t)n;
}

static size_t
unread(const struct caught *c)
{
	int n = 0;

	return ioctl(c->rfd, FIONREAD, &n) == 0 ? (size_t)n : 0;
}

/* stderr back as it was; the pipe read to its end (bounded). */
static void
release_stderr(struct caught *c)
{
	double end = now_s() + 5;

	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	while (now_s() < end && read_some(c, 100) > 0)
		;
	close(c->rfd);
}

static void
release_free(struct caught *c)
{
	free(c->buf);
}

static unsigned
count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The number in the dropped-lines warning, summed over every one. */
static uint64_t
warned(const char *buf)
{
	static const char w[] = " warn: ";
	uint64_t sum = 0;
	unsigned long long n;
	char tail[64];

	for (const char *p = buf; (p = strstr(p, w)) != NULL; p++)
		if (sscanf(p + strlen(w), "%llu log lines dropped while the log "
		    "reader %63[a-z]", &n, tail) == 2 && strcmp(tail, "was") == 0)
			sum += n;
	return sum;
}

static void
log_long(unsigned i)
{
	log_info("long %05u %0*d", i, LONG_LINE, 0);
}

/* ---- no writer -------------------------------------------------------- */

static void
test_direct_without_writer(void **state)
{
	struct event_base *base = event_base_new();
	struct log_batch b;
	struct caught c;
	uint64_t dropped = log_dropped_total();
	size_t first;
	int rc;

	(void)state;
	assert_non_null(base);
	catch_stderr(&c, 0);
	log_info("direct %d", 1);
	/* Written before log_info() returned: there without waiting. */
	first = read_some(&c, 0);
	rc = log_batch_init(&b, base);
	log_batch_msg(&b, CONFIG_LOG_WARN, "batch %d", 1);
	log_batch_msg(&b, CONFIG_LOG_INFO, "batch %d", 2);
	log_batch_flush(&b);
	log_batch_cleanup(&b);
	release_stderr(&c);
	event_base_free(base);

	assert_int_equal(rc, 0);
	assert_true(first > 0);
	assert_non_null(strstr(c.buf, " info: direct 1\n"));
	assert_non_null(strstr(c.buf, " warn: batch 1\n"));
	assert_non_null(strstr(c.buf, " info: batch 2\n"));
	/* "YYYY-MM-DDTHH:MM:SS.mmmZ": no journald prefix without log_init(). */
	assert_true(c.buf[4] == '-' && c.buf[10] == 'T' && c.buf[23] == 'Z');
	assert_int_equal(log_dropped_total(), dropped);
	release_free(&c);
}

/* ---- order ------------------------------------------------------------ */

#define ORDER_THREADS 3
#define ORDER_LINES 3000

static void *
order_producer(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	struct event_base *base = event_base_new();
	struct log_batch b;

	if (base == NULL || log_batch_init(&b, base) == -1)
		abort();
	/* Single lines and batches of 7 in turn, as a worker logs. */
	for (unsigned i = 0; i < ORDER_LINES; i++) {
		if (i / 70 % 2 == 0)
			log_info("order t%u %u", t, i);
		else
			log_batch_msg(&b, CONFIG_LOG_INFO, "order t%u %u", t, i);
		if (i % 7 == 6)
			log_batch_flush(&b);
	}
	log_batch_cleanup(&b);
	event_base_free(base);
	return NULL;
}

static void *
order_reader(void *arg)
{
	struct caught *c = arg;
	double end = now_s() + 60;

	/* Until EOF: once every write end (fd 2 too) is closed. */
	while (now_s() < end) {
		struct pollfd pfd = { .fd = c->rfd, .events = POLLIN };

		if (poll(&pfd, 1, 100) > 0 && read_some(c, 0) == 0)
			break;
	}
	return NULL;
}

static void
test_order_within_thread(void **state)
{
	pthread_t prod[ORDER_THREADS], rd;
	unsigned next[ORDER_THREADS + 1] = { 0 }, t, i, bad = 0;
	uint64_t dropped = log_dropped_total();
	struct caught c;
	char *p;
	int started;

	(void)state;
	catch_stderr(&c, 0);
	pthread_create(&rd, NULL, order_reader, &c);
	started = log_writer_start();
	for (t = 0; t < ORDER_THREADS; t++)
		pthread_create(&prod[t], NULL, order_producer, (void *)(uintptr_t)t);
	for (i = 0; i < ORDER_LINES; i++)   /* and this thread */
		log_info("order t%u %u", ORDER_THREADS, i);
	for (t = 0; t < ORDER_THREADS; t++)
		pthread_join(prod[t], NULL);
	log_writer_stop();
	dup2(c.saved, STDERR_FILENO);       /* the reader sees EOF */
	close(c.saved);
	pthread_join(rd, NULL);
	close(c.rfd);

	assert_int_equal(started, 0);
	assert_int_equal(log_dropped_total(), dropped);
	for (p = c.buf; (p = strstr(p, " info: order t")) != NULL; p++) {
		if (sscanf(p, " info: order t%u %u", &t, &i) != 2 || t > ORDER_THREADS)
			fail_msg("a line that does not parse: %.40s", p);
		if (i != next[t])
			bad++;
		next[t] = i + 1;
	}
	assert_int_equal(bad, 0);
	for (t = 0; t <= ORDER_THREADS; t++)
		assert_int_equal(next[t], ORDER_LINES);
	release_free(&c);
}

/* ---- drops ------------------------------------------------------------ */

#define DROP_LINES 2000         /* 1 MB: far more than a queue and the pipe */
#define DROP_BATCH 10

static void
test_drops_counted_and_warned(void **state)
{
	struct event_base *base = event_base_new();
	uint64_t before = log_dropped_total(), after_lines, after_batch;
	unsigned i, got = 0, in_order = 0;
	struct log_batch b;
	struct caught c;
	double end;
	char *p, *warning;
	int started;

	(void)state;
	assert_non_null(base);
	assert_int_equal(log_batch_init(&b, base), 0);
	catch_stderr(&c, 4096);
	started = log_writer_start();
	for (i = 0; i < DROP_LINES; i++)
		log_long(i);
	after_lines = log_dropped_total();
	/* The queue is full and the writer stuck: the batch goes whole. */
	for (i = 0; i < DROP_BATCH; i++)
		log_batch_msg(&b, CONFIG_LOG_INFO, "batch %u %0*d", i, LONG_LINE, 0);
	log_batch_flush(&b);
	after_batch = log_dropped_total();
	/* The reader comes back: the queued lines, then the warning. */
	end = now_s() + 10;
	while (now_s() < end && strstr(c.buf, "log lines dropped") == NULL)
		read_some(&c, 100);
	log_writer_stop();
	release_stderr(&c);
	log_batch_cleanup(&b);
	event_base_free(base);

	assert_int_equal(started, 0);
	assert_true(after_lines > before);
	assert_int_equal(after_batch - after_lines, DROP_BATCH);
	/* What came through is the start of the lines, in order; the rest is
	 * in the warning, which comes after them. */
	for (p = c.buf; (p = strstr(p, " info: long ")) != NULL; p++) {
		if (atoi(p + strlen(" info: long ")) == (int)got)
			in_order++;
		got++;
	}
	assert_int_equal(in_order, got);
	assert_int_equal(count(c.buf, " info: batch "), 0);
	print_message("%u lines written, %" PRIu64 " dropped\n", got,
	    after_batch - before);
	assert_int_equal(warned(c.buf), after_batch - before);
	assert_int_equal(got + warned(c.buf), DROP_LINES + DROP_BATCH);
	warning = strstr(c.buf, "log lines dropped");
	assert_non_null(warning);
	assert_null(strstr(warning, " info: long "));
	assert_non_null(strstr(c.buf, "Z warn: "));
	release_free(&c);
}

/* ---- stop ------------------------------------------------------------- */

#define STOP_LINES 100          /* 50 KB: fits a queue, not the pipe */

static void
test_stop_with_stalled_reader(void **state)
{
	uint64_t dropped;
	double t0, took, end;
	int started, busy, busy_errno, again = -1;
	struct caught c;

	(void)state;
	catch_stderr(&c, 4096);
	started = log_writer_start();
	/* More than the pipe holds: the writer cannot write it all, now or
	 * once it is told to stop. */
	for (unsigned i = 0; i < STOP_LINES; i++)
		log_long(i);
	t0 = now_s();
	log_writer_stop();
	took = now_s() - t0;
	/* Stopped, but stuck: lines are counted, not written, not queued. */
	dropped = log_dropped_total();
	log_info("after the stop");
	dropped = log_dropped_total() - dropped;
	busy = log_writer_start();
	busy_errno = errno;
	/* The reader comes back: the stuck writer writes what it holds, then
	 * ends, and a writer can start again. */
	end = now_s() + 10;
	while (now_s() < end && (again = log_writer_start()) == -1)
		read_some(&c, 20);
	while (now_s() < end && unread(&c) > 0)   /* room for the next line */
		read_some(&c, 20);
	log_info("a new writer");
	log_writer_stop();
	log_info("direct again");
	release_stderr(&c);

	print_message("log_writer_stop() returned after %.3f s\n", took);
	assert_int_equal(started, 0);
	assert_true(took >= LOG_STOP_WAIT_MS / 1000.0 * 0.9);
	assert_true(took < LOG_STOP_WAIT_MS / 1000.0 + 3);
	assert_int_equal(dropped, 1);
	assert_int_equal(busy, -1);
	assert_int_equal(busy_errno, EBUSY);
	assert_int_equal(again, 0);
	assert_int_equal(count(c.buf, " info: long "), STOP_LINES);
	assert_null(strstr(c.buf, "after the stop"));
	assert_non_null(strstr(c.buf, " info: a new writer\n"));
	assert_non_null(strstr(c.buf, " info: direct again\n"));
	release_free(&c);
}

static void
test_stop_without_writer(void **state)
{
	(void)state;
	log_writer_stop();          /* a no-op */
	assert_int_equal(log_writer_start(), 0);
	assert_int_equal(log_writer_start(), -1);
	assert_int_equal(errno, EBUSY);
	log_writer_stop();
	log_writer_stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct_without_writer),
		cmocka_unit_test(test_order_within_thread),
		cmocka_unit_test(test_drops_counted_and_warned),
		cmocka_unit_test(test_stop_with_stalled_reader),
		cmocka_unit_test(test_stop_without_writer),
	};

	log_set_level(CONFIG_LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
