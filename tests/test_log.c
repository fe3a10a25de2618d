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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spliced/config.h"
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


/* ---- JSON --------------------------------------------------------------- */

/* A strict reader of the one shape the log writes: an object whose values
 * are strings, integers or null. Fills up to 16 key/value pairs (values
 * unescaped for the simple escapes, \uXXXX kept as written). NULL when
 * it parses, else where it stopped. */
struct jfield {
	char key[32];
	char val[1024];
	bool string;
};

static const char *
jstring(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	if (*p++ != '"')
		return NULL;
	while (*p != '"') {
		char c = *p++;

		if ((unsigned char)c < 0x20)
			return NULL;
		if (c == '\\') {
			c = *p++;
			if (c == 'u') {
				for (int i = 0; i < 4; i++)
					if (!strchr("0123456789abcdefABCDEF", *p++) || p[-1] == '\0')
						return NULL;
				c = '?';
			} else if (c == 'n')
				c = '\n';
			else if (c == 't')
				c = '\t';
			else if (c == 'r')
				c = '\r';
			else if (c != '"' && c != '\\' && c != '/')
				return NULL;
		}
		if (n + 1 < cap)
			out[n++] = c;
	}
	out[n] = '\0';
	return p + 1;
}

/* 0 and the fields when line (up to its newline) is one such object. */
static int
jparse(const char *line, struct jfield *f, size_t *nf)
{
	const char *p = line;

	*nf = 0;
	if (*p++ != '{')
		return -1;
	for (;;) {
		struct jfield *x = &f[*nf < 16 ? *nf : 15];

		if ((p = jstring(p, x->key, sizeof(x->key))) == NULL || *p++ != ':')
			return -1;
		x->string = *p == '"';
		if (x->string) {
			if ((p = jstring(p, x->val, sizeof(x->val))) == NULL)
				return -1;
		} else if (strncmp(p, "null", 4) == 0) {
			strcpy(x->val, "null");
			p += 4;
		} else {
			size_t n = strspn(p, "-0123456789");

			if (n == 0 || n >= sizeof(x->val))
				return -1;
			memcpy(x->val, p, n);
			x->val[n] = '\0';
			p += n;
		}
		(*nf)++;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return -1;
	}
	p++;
	return *p == '\n' || *p == '\0' ? 0 : -1;
}

static const char *
jget(const struct jfield *f, size_t nf, const char *key)
{
	for (size_t i = 0; i < nf; i++)
		if (strcmp(f[i].key, key) == 0)
			return f[i].val;
	return NULL;
}

static void
test_json_escape(void **state)
{
	char out[256];
	size_t n;

	(void)state;
	n = log_json_escape(out, sizeof(out), "a\"b\\c\nd\te\rf\x01g\x7fh");
	out[n] = '\0';
	assert_string_equal(out, "a\\\"b\\\\c\\nd\\te\\rf\\u0001g\\u007fh");
	/* UTF-8 passes; bytes that are not UTF-8 are escaped one by one. */
	n = log_json_escape(out, sizeof(out), "caf\xc3\xa9 \xff\xc3( \xed\xa0\x80");
	out[n] = '\0';
	assert_string_equal(out, "caf\xc3\xa9 \\u00ff\\u00c3( \\u00ed\\u00a0\\u0080");
	/* Cut, never inside an escape or a sequence. */
	assert_int_equal(log_json_escape(out, 3, "ab\""), 2);
	assert_int_equal(log_json_escape(out, 4, "ab\""), 4);
	assert_int_equal(log_json_escape(out, 5, "abc\x01"), 3);
	assert_int_equal(log_json_escape(out, 4, "ab\xc3\xa9"), 4);
	assert_int_equal(log_json_escape(out, 3, "ab\xc3\xa9"), 2);
	assert_int_equal(log_json_escape(out, 0, "x"), 0);
}

static void
batch_access(struct log_batch *b, uint64_t id, const char *client,
    const char *server)
{
	struct log_access a = { .id = id, .listener = "web", .client = client,
	    .server = server, .up_splice = 1, .up_copy = 2, .down_splice = 3,
	    .down_copy = 4, .duration_ms = 5, .reason = "client_eof" };

	log_batch_access(b, &a);
}

/* Both kinds of line in both formats, as written without a writer. */
static void
test_formats(void **state)
{
	struct event_base *base = event_base_new();
	char msg[600], *line, *next, *access = NULL;
	struct jfield f[16];
	struct log_batch b;
	struct caught c;
	unsigned json = 0;
	size_t nf;

	(void)state;
	assert_non_null(base);
	assert_int_equal(log_batch_init(&b, base), 0);
	memset(msg, 'x', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	catch_stderr(&c, 0);
	batch_access(&b, 7, "127.0.0.1:4000", "a/127.0.0.1:9001");
	batch_access(&b, 8, "[::1]:4001", NULL);
	log_batch_flush(&b);
	log_set_format(CONFIG_LOG_FORMAT_JSON);
	log_warn("quote \" backslash \\ newline \n tab \t bell \a bad \xff end");
	log_info("%s %s %s %s", msg, msg, msg, msg);     /* cut at LOG_LINE_MAX */
	batch_access(&b, 9, "127.0.0.1:4002", "a\"b/127.0.0.1:9001");
	batch_access(&b, 10, "127.0.0.1:4003", NULL);
	log_batch_flush(&b);
	log_set_format(CONFIG_LOG_FORMAT_TEXT);
	release_stderr(&c);
	log_batch_cleanup(&b);
	event_base_free(base);

	/* Text: as it always was (no id). */
	assert_non_null(strstr(c.buf, "Z info: access listener=web "
	    "client=127.0.0.1:4000 server=a/127.0.0.1:9001 up_splice=1 up_copy=2 "
	    "down_splice=3 down_copy=4 duration_ms=5 reason=client_eof\n"));
	assert_non_null(strstr(c.buf, "Z info: access listener=web "
	    "client=[::1]:4001 server=- up_splice=1"));
	for (line = c.buf; *line != '\0'; line = next) {
		next = strchr(line, '\n');
		assert_non_null(next);
		next++;
		if (*line != '{')
			continue;
		if (jparse(line, f, &nf) != 0)
			fail_msg("not JSON: %.*s", (int)(next - line), line);
		json++;
		assert_non_null(jget(f, nf, "time"));
		assert_non_null(jget(f, nf, "level"));
		assert_non_null(jget(f, nf, "msg"));
		assert_true((size_t)(next - line) <= LOG_LINE_MAX);
		if (strcmp(jget(f, nf, "msg"), "access") == 0 &&
		    strcmp(jget(f, nf, "id"), "9") == 0)
			access = line;
		if (strcmp(jget(f, nf, "msg"), "access") == 0 &&
		    strcmp(jget(f, nf, "id"), "10") == 0)
			assert_string_equal(jget(f, nf, "server"), "null");
	}
	assert_int_equal(json, 4);
	assert_non_null(strstr(c.buf, "\"level\":\"warn\",\"msg\":\"quote \\\" "
	    "backslash \\\\ newline \\n tab \\t bell \\u0007 bad \\u00ff end\"}\n"));
	assert_non_null(access);
	assert_int_equal(jparse(access, f, &nf), 0);
	assert_string_equal(jget(f, nf, "level"), "info");
	assert_string_equal(jget(f, nf, "listener"), "web");
	assert_string_equal(jget(f, nf, "client"), "127.0.0.1:4002");
	assert_string_equal(jget(f, nf, "server"), "a\"b/127.0.0.1:9001");
	assert_string_equal(jget(f, nf, "up_splice"), "1");
	assert_string_equal(jget(f, nf, "up_copy"), "2");
	assert_string_equal(jget(f, nf, "down_splice"), "3");
	assert_string_equal(jget(f, nf, "down_copy"), "4");
	assert_string_equal(jget(f, nf, "duration_ms"), "5");
	assert_string_equal(jget(f, nf, "reason"), "client_eof");
	release_free(&c);
}

/* A listener with routes adds sni after server: the name, or "-" / null
 * when none was read; other listeners' lines leave it out. */
static void
test_format_sni(void **state)
{
	struct event_base *base = event_base_new();
	struct log_access a = { .id = 1, .listener = "tls",
	    .client = "127.0.0.1:4000", .server = "a/127.0.0.1:9001",
	    .routed = true, .sni = "a.example", .reason = "client_eof" };
	struct jfield f[16];
	struct log_batch b;
	struct caught c;
	char *line;
	size_t nf;

	(void)state;
	assert_non_null(base);
	assert_int_equal(log_batch_init(&b, base), 0);
	catch_stderr(&c, 0);
	log_batch_access(&b, &a);
	a.sni = NULL;
	log_batch_access(&b, &a);
	log_batch_flush(&b);
	log_set_format(CONFIG_LOG_FORMAT_JSON);
	a.id = 2;
	a.sni = "q\"x.example";
	log_batch_access(&b, &a);
	log_batch_flush(&b);
	a.id = 3;
	a.sni = NULL;
	log_batch_access(&b, &a);
	a.id = 4;
	a.routed = false;
	log_batch_access(&b, &a);
	log_batch_flush(&b);
	log_set_format(CONFIG_LOG_FORMAT_TEXT);
	release_stderr(&c);
	log_batch_cleanup(&b);
	event_base_free(base);

	assert_non_null(strstr(c.buf, "server=a/127.0.0.1:9001 sni=a.example "
	    "up_splice=0"));
	assert_non_null(strstr(c.buf, "server=a/127.0.0.1:9001 sni=- "
	    "up_splice=0"));
	assert_non_null(line = strstr(c.buf, "{"));
	assert_int_equal(jparse(line, f, &nf), 0);
	assert_string_equal(jget(f, nf, "sni"), "q\"x.example");
	assert_non_null(line = strchr(line, '\n'));
	assert_int_equal(jparse(line + 1, f, &nf), 0);
	assert_string_equal(jget(f, nf, "id"), "3");
	assert_string_equal(jget(f, nf, "sni"), "null");
	assert_non_null(line = strchr(line + 1, '\n'));
	assert_int_equal(jparse(line + 1, f, &nf), 0);
	assert_string_equal(jget(f, nf, "id"), "4");
	assert_null(jget(f, nf, "sni"));
	release_free(&c);
}

/* Under journald (JOURNAL_STREAM names stderr): the <N> prefix, then the
 * object, without "time". */
static void
test_json_journald(void **state)
{
	char stream[64];
	struct caught c;
	struct stat st;
	struct jfield f[16];
	size_t nf;

	(void)state;
	catch_stderr(&c, 0);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(stream, sizeof(stream), "%ju:%ju", (uintmax_t)st.st_dev,
	    (uintmax_t)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
	log_init();
	log_set_format(CONFIG_LOG_FORMAT_JSON);
	log_warn("under journald \"%s\"", "q");
	log_set_format(CONFIG_LOG_FORMAT_TEXT);
	log_info("text under journald");
	unsetenv("JOURNAL_STREAM");
	log_init();
	release_stderr(&c);

	assert_non_null(strstr(c.buf, "<4>{\"level\":\"warn\",\"msg\":"
	    "\"under journald \\\"q\\\"\"}\n"));
	assert_int_equal(jparse(c.buf + 3, f, &nf), 0);
	assert_null(jget(f, nf, "time"));
	assert_non_null(strstr(c.buf, "<6>info: text under journald\n"));
	release_free(&c);
}

/* ---- the access-log file ------------------------------------------------ */

static struct config *
access_config(const char *value)
{
	char text[512], err[CONFIG_ERR_MAX];
	struct config *cfg;

	snprintf(text, sizeof(text), "[global]\naccess_log = %s\n"
	    "[listener web]\nbind = 127.0.0.1:8080\nbackend = app\n"
	    "[backend app]\nserver = a 127.0.0.1:9001\n", value);
	cfg = config_load_string(text, "t.ini", err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	return cfg;
}

static void
test_access_open_errors(void **state)
{
	struct config *cfg = access_config("/nonexistent-spliced-dir/a.log");
	struct log_access_file af;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(log_access_open(&af, cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "t.ini:2: [global] access_log: cannot open "
	    "/nonexistent-spliced-dir/a.log: No such file or directory");
	assert_int_equal(log_access_check(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "t.ini:2: [global] access_log: cannot create "
	    "/nonexistent-spliced-dir/a.log: /nonexistent-spliced-dir: "));
	assert_int_equal(log_access_start(cfg, err, sizeof(err)), -1);
	config_unref(cfg);
	/* A directory is no file. */
	cfg = access_config("/");
	assert_int_equal(log_access_check(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "t.ini:2: [global] access_log: cannot open /: "));
	config_unref(cfg);
}

static unsigned
lines_in(const char *path, unsigned *bad)
{
	char line[LOG_LINE_MAX + 2];
	unsigned n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, " info: access listener=reopen ") == NULL ||
		    line[strlen(line) - 1] != '\n')
			(*bad)++;
		n++;
	}
	fclose(f);
	return n;
}

#define REOPEN_THREADS 3
#define REOPEN_LINES 20000

struct reopen_arg {
	unsigned t;
	atomic_uint *done;          /* lines logged, by every thread */
};

static void *
reopen_producer(void *arg)
{
	struct reopen_arg *ra = arg;
	struct event_base *base = event_base_new();
	char client[32];
	struct log_batch b;

	if (base == NULL || log_batch_init(&b, base) == -1)
		abort();
	for (unsigned i = 0; i < REOPEN_LINES; i++) {
		struct log_access a = { .id = i, .listener = "reopen",
		    .client = client, .reason = "client_eof" };

		snprintf(client, sizeof(client), "t%u:%u", ra->t, i);
		log_batch_access(&b, &a);
		if (i % 5 == 4) {
			log_batch_flush(&b);
			atomic_fetch_add(ra->done, 5);
		}
		/* At most 10 lines a ms (usleep only oversleeps): a queue
		 * holds 200 ms of them, enough for a writer thread the
		 * scheduler leaves waiting on a loaded machine (two busy
		 * loops beside three producers dropped lines at 50 a ms);
		 * nothing is dropped. */
		if (i % 10 == 9)
			usleep(1000);
	}
	log_batch_cleanup(&b);
	event_base_free(base);
	return NULL;
}

/* Lines go to the file, not stderr; a rename and log_reopen() under load:
 * every line is in the old file or the new one, each got some. */
static void
test_access_file_reopen(void **state)
{
	char dir[] = "/tmp/spliced-test-log-XXXXXX", path[64], moved[64], err[CONFIG_ERR_MAX];
	struct reopen_arg ra[REOPEN_THREADS];
	pthread_t prod[REOPEN_THREADS];
	atomic_uint done = 0;
	uint64_t dropped = log_dropped_total();
	unsigned in_old, in_new, bad = 0, at_reopen;
	struct config *cfg, *on;
	struct caught c;
	struct stat st;
	mode_t mask;
	double end;
	int started, rc;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/access.log", dir);
	snprintf(moved, sizeof(moved), "%s/access.log.1", dir);
	cfg = access_config(path);
	on = access_config("on");
	catch_stderr(&c, 0);
	rc = log_access_start(cfg, err, sizeof(err));
	started = log_writer_start();
	for (unsigned t = 0; t < REOPEN_THREADS; t++) {
		ra[t] = (struct reopen_arg){ t, &done };
		pthread_create(&prod[t], NULL, reopen_producer, &ra[t]);
	}
	end = now_s() + 30;
	while (now_s() < end && atomic_load(&done) < REOPEN_THREADS * REOPEN_LINES / 3)
		read_some(&c, 5);
	at_reopen = atomic_load(&done);
	rename(path, moved);
	log_reopen();
	/* The writer says so when it has. */
	while (now_s() < end && strstr(c.buf, "access_log: reopened") == NULL)
		read_some(&c, 20);
	for (unsigned t = 0; t < REOPEN_THREADS; t++)
		pthread_join(prod[t], NULL);
	log_writer_stop();
	log_access_start(on, err, sizeof(err));     /* back to stderr */
	release_stderr(&c);
	config_unref(cfg);
	config_unref(on);

	in_old = lines_in(moved, &bad);
	in_new = lines_in(path, &bad);
	print_message("%u lines before the reopen, %u after; %u logged when "
	    "it was asked\n", in_old, in_new, at_reopen);
	assert_int_equal(rc, 0);
	assert_int_equal(started, 0);
	assert_int_equal(log_dropped_total(), dropped);
	assert_int_equal(bad, 0);
	assert_int_equal(in_old + in_new, REOPEN_THREADS * REOPEN_LINES);
	assert_true(in_old >= at_reopen);
	assert_true(in_new > 0);
	assert_null(strstr(c.buf, "access listener="));     /* not on stderr */
	assert_non_null(strstr(c.buf, " info: access_log: reopened "));
	/* Made 0640, less what the umask takes away. */
	mask = umask(022);
	umask(mask);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640 & ~mask);
	unlink(path);
	unlink(moved);
	rmdir(dir);
	release_free(&c);
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
		cmocka_unit_test(test_json_escape),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_format_sni),
		cmocka_unit_test(test_json_journald),
		cmocka_unit_test(test_access_open_errors),
		cmocka_unit_test(test_access_file_reopen),
	};

	log_set_level(CONFIG_LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
