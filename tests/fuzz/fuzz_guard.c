/* tests/fuzz/fuzz_guard.c: no DNS, no file, no user look-up from a parser
 * under fuzzing (fuzz_guard.h says how). */
#include "fuzz_guard.h"

#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/types.h>

#include "fuzz.h"

/* --wrap's names: the real function is __real_X, what callers reach is
 * __wrap_X. Declared here, as no header does. */
int __real_getaddrinfo(const char *, const char *, const struct addrinfo *,
    struct addrinfo **);
int __wrap_getaddrinfo(const char *, const char *, const struct addrinfo *,
    struct addrinfo **);
FILE *__real_fopen(const char *, const char *);
FILE *__wrap_fopen(const char *, const char *);
int __real_open(const char *, int, ...);
int __wrap_open(const char *, int, ...);
struct passwd *__real_getpwnam(const char *);
struct passwd *__wrap_getpwnam(const char *);
int __real_getpwnam_r(const char *, struct passwd *, char *, size_t,
    struct passwd **);
int __wrap_getpwnam_r(const char *, struct passwd *, char *, size_t,
    struct passwd **);
struct group *__real_getgrnam(const char *);
struct group *__wrap_getgrnam(const char *);

static bool guarding;
static const char *touched;     /* the first forbidden call, while guarding */

static void
note(const char *what)
{
	if (guarding && touched == NULL)
		touched = what;
}

void
fuzz_guard_begin(void)
{
	guarding = true;
	touched = NULL;
}

void
fuzz_guard_end(void)
{
	guarding = false;
	if (touched != NULL) {
		fprintf(stderr, "fuzz_guard: the parser called %s\n", touched);
		abort();
	}
}

int
__wrap_getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	struct addrinfo h;

	if (hints != NULL)
		h = *hints;
	else
		memset(&h, 0, sizeof(h));
	h.ai_flags |= AI_NUMERICHOST;
	return __real_getaddrinfo(node, service, &h, res);
}

FILE *
__wrap_fopen(const char *path, const char *mode)
{
	note("fopen");
	return __real_fopen(path, mode);
}

int
__wrap_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	note("open");
	/* The mode argument is there only with these flags (open(2)). */
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	return __real_open(path, flags, mode);
}

struct passwd *
__wrap_getpwnam(const char *name)
{
	note("getpwnam");
	return __real_getpwnam(name);
}

int
__wrap_getpwnam_r(const char *name, struct passwd *pw, char *buf,
    size_t len, struct passwd **res)
{
	note("getpwnam_r");
	return __real_getpwnam_r(name, pw, buf, len, res);
}

struct group *
__wrap_getgrnam(const char *name)
{
	note("getgrnam");
	return __real_getgrnam(name);
}
