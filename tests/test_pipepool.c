/* tests/test_pipepool.c: the per-worker pipe pool.
 *
 * Real pipes from the real kernel, with pipe2(2) and fcntl(2) wrapped
 * (-Wl,--wrap=pipe2 -Wl,--wrap=fcntl) so that their failures can be tried:
 * EMFILE from pipe2, and the kernel's per-user pipe budget, where
 * F_SETPIPE_SZ fails with EPERM and the pipe stays at one page. Every test
 * ends with the process's fd count back where it started. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spliced/clock.h"
#include "spliced/pipepool.h"
#include "spliced/zerocopy.h"

/* ---- the wrapped syscalls --------------------------------------------- */

int __real_pipe2(int fds[2], int flags);
int __wrap_pipe2(int fds[2], int flags);
int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);

enum fcntl_mode {
	FCNTL_REAL,
	FCNTL_SETSZ_EPERM,      /* F_SETPIPE_SZ refused; the pipe keeps its size */
	FCNTL_BUDGET,           /* ... and the kernel reports one page */
};

static int pipe2_errno;         /* 0: forward to the real pipe2 */
static unsigned pipe2_calls;
static enum fcntl_mode fcntl_mode;
static unsigned setsz_calls;

int
__wrap_pipe2(int fds[2], int flags)
{
	pipe2_calls++;
	if (pipe2_errno != 0) {
		errno = pipe2_errno;
		return -1;
	}
	return __real_pipe2(fds, flags);
}

int
__wrap_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	int arg;

	switch (cmd) {
	case F_GETFD:
	case F_GETFL:
	case F_GETPIPE_SZ:      /* the commands without an argument */
		if (cmd == F_GETPIPE_SZ && fcntl_mode == FCNTL_BUDGET)
			return 4096;
		return __real_fcntl(fd, cmd);
	case F_SETFD:
	case F_SETFL:
	case F_SETPIPE_SZ:
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:   /* ... and those with an int */
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
		if (cmd == F_SETPIPE_SZ) {
			setsz_calls++;
			if (fcntl_mode != FCNTL_REAL) {
				errno = EPERM;
				return -1;
			}
		}
		return __real_fcntl(fd, cmd, arg);
	default:
		/* Only the pool and its zero-copy layer run here. */
		fail_msg("unexpected fcntl command %d", cmd);
		return -1;
	}
}

/* ---- helpers ------------------------------------------------------------ */

/* Whether fd is an open descriptor. */
static bool
fd_valid(int fd)
{
	errno = 0;
	if (fcntl(fd, F_GETFD) != -1)
		return true;
	assert_int_equal(errno, EBADF);
	return false;
}

static void
need_pipes(void)
{
	if (!zc_splice_supported()) {
		print_message("skipped: this build has no pipes for splicing (%s)\n",
		    zc_backend_name());
		skip();
	}
}

static struct pipepool_stats
stats(const struct pipepool *pp)
{
	struct pipepool_stats st;

	pipepool_stats(pp, &st);
	return st;
}

/* Per test: the pool under test lives in the fixture so that teardown frees
 * it even when an assertion failed half-way, and checks the fd count. */
struct fx {
	struct pipepool *pp;
	int fds_before;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	pipe2_errno = 0;
	pipe2_calls = 0;
	fcntl_mode = FCNTL_REAL;
	setsz_calls = 0;
	f->fds_before = count_fds();
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int before = f->fds_before;

	pipepool_free(f->pp);
	free(f);
	pipe2_errno = 0;
	fcntl_mode = FCNTL_REAL;
	assert_int_equal(count_fds(), before);
	return 0;
}

static struct pipepool *
new_budget_pool(void **state, unsigned max, size_t pipe_size, size_t min_size,
    size_t budget)
{
	struct fx *f = *state;

	f->pp = pipepool_new(max, pipe_size, min_size, budget);
	assert_non_null(f->pp);
	return f->pp;
}

static struct pipepool *
new_pool(void **state, unsigned max, size_t pipe_size, size_t min_size)
{
	return new_budget_pool(state, max, pipe_size, min_size, 0);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_free_null(void **state)
{
	(void)state;
	pipepool_free(NULL);
}

/* The pool hands out what the kernel granted, not what it asked for: the
 * kernel rounds a pipe up to a power-of-two number of pages. */
static void
test_get_reports_granted_size(void **state)
{
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why;
	char c;

	need_pipes();
	pp = new_pool(state, 8, 100000, 16384);
	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	assert_int_equal(p.size, 131072);
	assert_int_equal(fcntl(p.wfd, F_GETPIPE_SZ), (int)p.size);
	assert_int_equal(setsz_calls, 1);
	assert_int_equal(p.queued, 0);
	assert_true(fcntl(p.rfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(p.wfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(p.rfd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(p.wfd, F_GETFD) & FD_CLOEXEC);
	/* A working pipe, read end and write end the right way round. */
	assert_int_equal(write(p.wfd, "z", 1), 1);
	assert_int_equal(read(p.rfd, &c, 1), 1);
	assert_int_equal(c, 'z');
	assert_int_equal(stats(pp).created, 1);
	assert_int_equal(stats(pp).in_use, 1);
	pipepool_put(pp, &p);
}

static void
test_reuse_empty(void **state)
{
	struct pipepool *pp;
	struct spipe p, q;
	enum pipepool_fail why;
	int rfd, wfd;

	need_pipes();
	pp = new_pool(state, 8, 65536, 16384);
	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	rfd = p.rfd;
	wfd = p.wfd;
	pipepool_put(pp, &p);
	assert_int_equal(p.rfd, -1);            /* *p is cleared */
	assert_int_equal(p.wfd, -1);
	assert_int_equal(stats(pp).pooled, 1);
	assert_int_equal(stats(pp).in_use, 0);
	assert_true(fd_valid(rfd));             /* kept open for reuse */

	assert_int_equal(pipepool_get(pp, &q, &why), 0);
	assert_int_equal(q.rfd, rfd);
	assert_int_equal(q.wfd, wfd);
	assert_int_equal(q.size, 65536);
	assert_int_equal(q.queued, 0);
	assert_int_equal(pipe2_calls, 1);       /* no new pipe was made */
	assert_int_equal(stats(pp).reused, 1);
	assert_int_equal(stats(pp).created, 1);
	assert_int_equal(stats(pp).pooled, 0);
	assert_int_equal(stats(pp).in_use, 1);
	pipepool_put(pp, &q);
}

static void
test_cap(void **state)
{
	struct pipepool *pp;
	struct spipe a, b, c;
	enum pipepool_fail why = PIPEPOOL_FAIL_MAX_;

	need_pipes();
	pp = new_pool(state, 2, 65536, 16384);
	assert_int_equal(pipepool_get(pp, &a, &why), 0);
	assert_int_equal(pipepool_get(pp, &b, &why), 0);
	assert_int_equal(pipepool_get(pp, &c, &why), -1);
	assert_int_equal(why, PIPEPOOL_FAIL_CAP);
	assert_int_equal(pipe2_calls, 2);       /* the refusal made no pipe */
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_CAP], 1);
	assert_int_equal(stats(pp).in_use, 2);

	/* One back: the next get has it again, still within the cap. */
	pipepool_put(pp, &a);
	assert_int_equal(pipepool_get(pp, &c, &why), 0);
	assert_int_equal(stats(pp).reused, 1);
	assert_int_equal(stats(pp).created, 2);
	assert_int_equal(pipepool_get(pp, &a, &why), -1);
	assert_int_equal(why, PIPEPOOL_FAIL_CAP);
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_CAP], 2);
	pipepool_put(pp, &b);
	pipepool_put(pp, &c);
	assert_int_equal(stats(pp).pooled, 2);
	assert_int_equal(stats(pp).in_use, 0);
}

/* Needs no pipe at all, so it runs in the portable build too. */
static void
test_cap_zero(void **state)
{
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why = PIPEPOOL_FAIL_MAX_;

	pp = new_pool(state, 0, 65536, 16384);
	assert_int_equal(pipepool_get(pp, &p, &why), -1);
	assert_int_equal(why, PIPEPOOL_FAIL_CAP);
	assert_int_equal(pipe2_calls, 0);
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_CAP], 1);
	assert_int_equal(stats(pp).in_use, 0);
}

/* A pipe that still holds bytes would leak them into the next connection:
 * it is closed on put, and the next get makes a fresh, empty pipe. */
static void
test_dirty_closed(void **state)
{
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why;
	char buf[100], c;
	int rfd, wfd;

	need_pipes();
	pp = new_pool(state, 8, 65536, 16384);
	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(write(p.wfd, buf, sizeof(buf)), sizeof(buf));
	p.queued = sizeof(buf);
	rfd = p.rfd;
	wfd = p.wfd;
	pipepool_put(pp, &p);
	assert_int_equal(p.rfd, -1);
	assert_int_equal(p.wfd, -1);
	assert_int_equal(p.queued, 0);
	assert_false(fd_valid(rfd));
	assert_false(fd_valid(wfd));
	assert_int_equal(stats(pp).closed_dirty, 1);
	assert_int_equal(stats(pp).pooled, 0);
	assert_int_equal(stats(pp).in_use, 0);

	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	assert_int_equal(stats(pp).created, 2);
	assert_int_equal(stats(pp).reused, 0);
	assert_int_equal(read(p.rfd, &c, 1), -1);       /* empty */
	assert_int_equal(errno, EAGAIN);
	pipepool_put(pp, &p);
	assert_int_equal(stats(pp).pooled, 1);
}

static void
test_pipe2_fails(void **state)
{
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why = PIPEPOOL_FAIL_MAX_;

	need_pipes();
	pp = new_pool(state, 8, 65536, 16384);
	pipe2_errno = EMFILE;
	assert_int_equal(pipepool_get(pp, &p, &why), -1);
	assert_int_equal(why, PIPEPOOL_FAIL_ERROR);
	assert_int_equal(pipe2_calls, 1);
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_ERROR], 1);
	assert_int_equal(stats(pp).in_use, 0);
	assert_int_equal(stats(pp).created, 0);

	/* The failure leaves the pool usable. */
	pipe2_errno = 0;
	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	assert_int_equal(stats(pp).in_use, 1);
	pipepool_put(pp, &p);
}

/* Past pipe-user-pages-soft the kernel refuses F_SETPIPE_SZ with EPERM and
 * leaves new pipes at one page: such a pipe is refused and closed. */
static void
test_budget_refused(void **state)
{
	struct fx *f = *state;
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why = PIPEPOOL_FAIL_MAX_;

	need_pipes();
	pp = new_pool(state, 8, 262144, 16384);
	fcntl_mode = FCNTL_BUDGET;
	assert_int_equal(pipepool_get(pp, &p, &why), -1);
	assert_int_equal(why, PIPEPOOL_FAIL_BUDGET);
	assert_int_equal(pipe2_calls, 1);       /* a pipe was made ... */
	assert_int_equal(setsz_calls, 1);
	assert_int_equal(count_fds(), f->fds_before);   /* ... and closed */
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_BUDGET], 1);
	assert_int_equal(stats(pp).in_use, 0);
	assert_int_equal(stats(pp).pooled, 0);
	assert_int_equal(stats(pp).created, 0);
}

/* F_SETPIPE_SZ refused, but the pipe kept the kernel's default of 16 pages:
 * big enough, so it is used at the size it really has. */
static void
test_setsz_refused_default_kept(void **state)
{
	struct pipepool *pp;
	struct spipe p;
	enum pipepool_fail why;

	need_pipes();
	pp = new_pool(state, 8, 262144, 16384);
	fcntl_mode = FCNTL_SETSZ_EPERM;
	assert_int_equal(pipepool_get(pp, &p, &why), 0);
	assert_int_equal(setsz_calls, 1);
	assert_int_equal(p.size, 65536);
	assert_int_equal(stats(pp).created, 1);
	assert_int_equal(stats(pp).in_use, 1);
	pipepool_put(pp, &p);
}

/* With a budget, pipes shrink as more are out: each new pipe gets at most
 * budget / (2 x pipes out), never below min_size, and the pipes held never
 * add up to more than the budget; past that the pool says no (BUDGET). */
static void
test_budget_shares(void **state)
{
	enum { N = 9 };
	/* budget 4 MiB: shares 2m, 1m, 682k, 512k, 409k, 341k, 292k, 256k ... */
	static const size_t want[N] = { 1 << 20, 1 << 20, 512 << 10, 512 << 10,
	    256 << 10, 256 << 10, 256 << 10, 256 << 10, 0 };
	struct pipepool *pp;
	struct spipe p[N];
	enum pipepool_fail why = PIPEPOOL_FAIL_MAX_;
	size_t held = 0;
	int n;

	need_pipes();
	pp = new_budget_pool(state, 64, 1 << 20, 128 << 10, 4 << 20);
	for (n = 0; n < N; n++) {
		if (pipepool_get(pp, &p[n], &why) == -1)
			break;
		assert_int_equal(p[n].size, want[n]);
		assert_int_equal(fcntl(p[n].wfd, F_GETPIPE_SZ), (int)want[n]);
		held += p[n].size;
		assert_int_equal(stats(pp).held, held);
		assert_true(held <= 4 << 20);
	}
	/* 2x1m + 2x512k + 4x256k = 4 MiB: not even a 128k pipe fits now, and
	 * one below min_size is not worth having. */
	assert_int_equal(n, N - 1);
	assert_int_equal(why, PIPEPOOL_FAIL_BUDGET);
	assert_int_equal(stats(pp).fails[PIPEPOOL_FAIL_BUDGET], 1);
	/* One back (idle, still held): it is reused rather than a new one. */
	pipepool_put(pp, &p[0]);
	assert_int_equal(stats(pp).held, held);
	assert_int_equal(pipepool_get(pp, &p[0], &why), 0);
	assert_int_equal(stats(pp).reused, 1);
	for (n = 0; n < N - 1; n++)
		pipepool_put(pp, &p[n]);
	assert_int_equal(stats(pp).in_use, 0);
}

/* A small idle pipe handed to a lone stream is grown to the share it may
 * have now; a dirty pipe's bytes leave the budget when it is closed. */
static void
test_budget_reuse_grows(void **state)
{
	enum { N = 6 };
	struct pipepool *pp;
	struct spipe p[N], q;
	enum pipepool_fail why;
	size_t small;
	int rfd;

	need_pipes();
	pp = new_budget_pool(state, 64, 1 << 20, 128 << 10, 4 << 20);
	for (int i = 0; i < N; i++)
		assert_int_equal(pipepool_get(pp, &p[i], &why), 0);
	small = p[N - 1].size;
	assert_true(small < (1 << 20));
	for (int i = 0; i < N - 1; i++) {
		assert_int_equal(write(p[i].wfd, "x", 1), 1);
		p[i].queued = 1;                /* dirty: closed, not kept */
		pipepool_put(pp, &p[i]);
	}
	assert_int_equal(stats(pp).held, small);
	rfd = p[N - 1].rfd;
	pipepool_put(pp, &p[N - 1]);            /* the only idle pipe */
	assert_int_equal(pipepool_get(pp, &q, &why), 0);
	assert_int_equal(q.rfd, rfd);
	assert_int_equal(q.size, 1 << 20);
	assert_int_equal(fcntl(q.wfd, F_GETPIPE_SZ), 1 << 20);
	assert_int_equal(stats(pp).held, 1 << 20);
	assert_int_equal(stats(pp).created, N);
	pipepool_put(pp, &q);
}

/* Idle pipes beyond PIPEPOOL_KEEP are closed, oldest first, once they have
 * been idle PIPEPOOL_IDLE_MS; the first PIPEPOOL_KEEP stay whatever the age. */
static void
test_trim(void **state)
{
	enum { N = PIPEPOOL_KEEP + 4 };
	struct pipepool *pp;
	struct spipe p[N];
	enum pipepool_fail why;
	int rfd[N], wfd[N];
	uint64_t t0, t1;

	need_pipes();
	pp = new_pool(state, 16, 65536, 16384);
	for (int i = 0; i < N; i++) {
		assert_int_equal(pipepool_get(pp, &p[i], &why), 0);
		rfd[i] = p[i].rfd;
		wfd[i] = p[i].wfd;
	}
	t0 = clock_coarse_ms();
	for (int i = 0; i < N; i++)
		pipepool_put(pp, &p[i]);        /* p[0] is idle longest */
	t1 = clock_coarse_ms();
	assert_int_equal(stats(pp).pooled, N);

	/* Not idle long enough yet: nothing goes. */
	pipepool_trim(pp, t0 + PIPEPOOL_IDLE_MS - 1);
	assert_int_equal(stats(pp).pooled, N);
	for (int i = 0; i < N; i++)
		assert_true(fd_valid(rfd[i]) && fd_valid(wfd[i]));

	pipepool_trim(pp, t1 + PIPEPOOL_IDLE_MS);
	assert_int_equal(stats(pp).pooled, PIPEPOOL_KEEP);
	for (int i = 0; i < N - PIPEPOOL_KEEP; i++) {
		assert_false(fd_valid(rfd[i]));
		assert_false(fd_valid(wfd[i]));
	}
	for (int i = N - PIPEPOOL_KEEP; i < N; i++)
		assert_true(fd_valid(rfd[i]) && fd_valid(wfd[i]));

	/* The few kept stay for a while ... */
	pipepool_trim(pp, t0 + PIPEPOOL_KEEP_MS - 1);
	assert_int_equal(stats(pp).pooled, PIPEPOOL_KEEP);

	/* ... and are still handed out, most recently returned first. */
	assert_int_equal(pipepool_get(pp, &p[0], &why), 0);
	assert_int_equal(p[0].rfd, rfd[N - 1]);
	assert_int_equal(stats(pp).reused, 1);
	assert_int_equal(stats(pp).pooled, PIPEPOOL_KEEP - 1);
	pipepool_put(pp, &p[0]);

	/* A pool left idle long enough holds no pipe at all. */
	pipepool_trim(pp, clock_coarse_ms() + PIPEPOOL_KEEP_MS);
	assert_int_equal(stats(pp).pooled, 0);
	for (int i = 0; i < N; i++)
		assert_false(fd_valid(rfd[i]) || fd_valid(wfd[i]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_free_null, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_reports_granted_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reuse_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipe2_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setsz_refused_default_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_shares, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_reuse_grows, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
