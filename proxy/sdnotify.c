/* proxy/sdnotify.c: sd_notify(3), sd_listen_fds(3) and the watchdog, through
 * libsystemd; without it (SPLICED_HAVE_SYSTEMD undefined) the same calls do
 * nothing, as sdnotify.h promises. */
#include "spliced/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/log.h"

#ifdef SPLICED_HAVE_SYSTEMD

#include <systemd/sd-daemon.h>
#include <time.h>

#define MSG_MAX 1024                    /* a notify datagram; longer STATUS is cut */

bool
sdnotify_built_in(void)
{
	return true;
}

/* Appends "STATUS=<status>" to msg (which holds len bytes). A newline inside
 * the status would start a new assignment of the protocol (a STATUS built
 * from a file name could then say READY=1): newlines become spaces. */
static void
append_status(char *msg, size_t cap, size_t len, const char *status)
{
	int r;

	r = snprintf(msg + len, cap - len, "%sSTATUS=", len > 0 ? "\n" : "");
	if (r < 0 || (size_t)r >= cap - len)
		return;
	len += (size_t)r;
	for (; *status != '\0' && len < cap - 1; status++)
		msg[len++] = *status == '\n' ? ' ' : *status;
	msg[len] = '\0';
}

/* Sends msg; 0 without NOTIFY_SOCKET, -1 with errno when it could not. */
static int
notify(const char *msg)
{
	int r;

	/* The common case outside systemd: not even a socket() call. */
	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	r = sd_notify(0, msg);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

/* state, then STATUS=status when status is not NULL. */
static int
notify_state(const char *state, const char *status)
{
	char msg[MSG_MAX];
	size_t len;

	len = strlen(state);
	if (len >= sizeof(msg)) {
		errno = EMSGSIZE;
		return -1;
	}
	memcpy(msg, state, len + 1);
	if (status != NULL)
		append_status(msg, sizeof(msg), len, status);
	return notify(msg);
}

int
sdnotify_ready(const char *status)
{
	return notify_state("READY=1", status);
}

int
sdnotify_mainpid_ready(long pid, const char *status)
{
	char state[64];

	snprintf(state, sizeof(state), "MAINPID=%ld\nREADY=1", pid);
	return notify_state(state, status);
}

int
sdnotify_reloading(const char *status)
{
	struct timespec ts;
	char state[64];

	/* Type=notify-reload (systemd 253) matches RELOADING=1 to the
	 * reload it started by this stamp, taken on CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	return notify_state(state, status);
}

int
sdnotify_stopping(const char *status)
{
	return notify_state("STOPPING=1", status);
}

int
sdnotify_status(const char *fmt, ...)
{
	char status[MSG_MAX];
	char msg[MSG_MAX];
	va_list ap;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	va_start(ap, fmt);
	vsnprintf(status, sizeof(status), fmt, ap);
	va_end(ap);
	msg[0] = '\0';
	append_status(msg, sizeof(msg), 0, status);
	return notify(msg);
}

int
sdnotify_watchdog(void)
{
	return notify("WATCHDOG=1");
}

uint64_t
sdnotify_watchdog_usec(void)
{
	uint64_t usec = 0;

	/* unset_environment 0: asked again after a reload, the answer must
	 * not change. A malformed WATCHDOG_USEC or WATCHDOG_PID is < 0:
	 * no watchdog, as when it is unset. */
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}

int
sdnotify_listen_fds(struct sdnotify_fd **out, size_t *n, char *err,
    size_t errlen)
{
	struct sdnotify_fd *fds;
	char **names = NULL;
	char fdsvar[32], namesvar[128];
	const char *e;
	int r, i;

	*out = NULL;
	*n = 0;
	/* Kept for the error message: libsystemd unsets them. */
	e = getenv("LISTEN_FDS");
	snprintf(fdsvar, sizeof(fdsvar), "%s", e != NULL ? e : "(unset)");
	e = getenv("LISTEN_FDNAMES");
	snprintf(namesvar, sizeof(namesvar), "%s", e != NULL ? e : "(unset)");

	/* unset_environment 1: nothing we start later may take them for its
	 * own. Unset LISTEN_PID, or one naming another process: 0. The
	 * fds are made close-on-exec here. */
	r = sd_listen_fds_with_names(1, &names);
	if (r < 0) {
		/* LISTEN_FDS not a positive number, LISTEN_PID not a pid,
		 * as many names as fds, or a passed fd that is not open. */
		snprintf(err, errlen, "LISTEN_FDS: the passed sockets cannot "
		    "be taken (LISTEN_FDS=%s, LISTEN_FDNAMES=%s): %s", fdsvar,
		    namesvar, strerror(-r));
		errno = -r;
		return -1;
	}
	if (r == 0)
		return 0;
	fds = calloc((size_t)r, sizeof(*fds));
	if (fds == NULL) {
		snprintf(err, errlen, "LISTEN_FDS: %s", strerror(ENOMEM));
		for (i = 0; i < r; i++)
			free(names[i]);
		free(names);
		errno = ENOMEM;
		return -1;
	}
	for (i = 0; i < r; i++) {
		fds[i].fd = SD_LISTEN_FDS_START + i;
		fds[i].name = names[i];     /* "unknown" when LISTEN_FDNAMES is unset */
	}
	free(names);                        /* the array; its strings are ours now */
	*out = fds;
	*n = (size_t)r;
	return 0;
}

#else /* !SPLICED_HAVE_SYSTEMD */

#include <unistd.h>

bool
sdnotify_built_in(void)
{
	return false;
}

int
sdnotify_ready(const char *status)
{
	(void)status;
	return 0;
}

int
sdnotify_mainpid_ready(long pid, const char *status)
{
	(void)pid, (void)status;
	return 0;
}

int
sdnotify_reloading(const char *status)
{
	(void)status;
	return 0;
}

int
sdnotify_stopping(const char *status)
{
	(void)status;
	return 0;
}

int
sdnotify_status(const char *fmt, ...)
{
	(void)fmt;
	return 0;
}

int
sdnotify_watchdog(void)
{
	return 0;
}

uint64_t
sdnotify_watchdog_usec(void)
{
	return 0;
}

int
sdnotify_listen_fds(struct sdnotify_fd **out, size_t *n, char *err,
    size_t errlen)
{
	const char *pid;

	(void)err, (void)errlen;
	*out = NULL;
	*n = 0;
	/* Sockets passed to a build that cannot take them: every bind is
	 * bound as usual (and may then fail with EADDRINUSE if the passed
	 * socket holds the port). Said once, unless LISTEN_PID names another
	 * process; the variables are dropped as libsystemd would drop them. */
	pid = getenv("LISTEN_PID");
	if (getenv("LISTEN_FDS") != NULL &&
	    (pid == NULL || strtol(pid, NULL, 10) == (long)getpid()))
		log_warn("LISTEN_FDS is set, but this build of spliced has no "
		    "libsystemd and cannot take passed sockets: binding every "
		    "address itself");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return 0;
}

#endif /* SPLICED_HAVE_SYSTEMD */

void
sdnotify_fds_free(struct sdnotify_fd *fds, size_t n)
{
	size_t i;

	if (fds == NULL)
		return;
	for (i = 0; i < n; i++)
		free(fds[i].name);
	free(fds);
}
