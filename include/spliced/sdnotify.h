/* include/spliced/sdnotify.h: systemd's service protocols, through libsystemd.
 *
 * Type=notify: state changes go to $NOTIFY_SOCKET as sd_notify(3) messages.
 * Without NOTIFY_SOCKET (not started by systemd) every call does nothing and
 * returns 0, so the callers never ask whether they run under systemd.
 *
 * Socket activation: listening sockets passed with LISTEN_FDS, LISTEN_PID and
 * LISTEN_FDNAMES (sd_listen_fds_with_names(3)) are taken once, at start; the
 * variables are then removed from the environment.
 *
 * The watchdog: sdnotify_watchdog_usec() tells whether systemd expects
 * WATCHDOG=1 pings (WatchdogSec=, WATCHDOG_USEC and WATCHDOG_PID) and how
 * often at least; who decides that the process is well enough to ping is
 * the caller (supervise.c asks the workers first).
 *
 * A build without libsystemd (SPLICED_HAVE_SYSTEMD undefined) is a plain
 * foreground daemon: the notify calls do nothing, sdnotify_listen_fds()
 * finds no socket (and logs one warning if LISTEN_FDS was set for this
 * process), and sdnotify_watchdog_usec() is 0.
 *
 * Errors of the notify calls (-1 with errno: ENOENT or ECONNREFUSED when
 * nothing listens at NOTIFY_SOCKET, EINVAL when it is neither an absolute
 * path nor "@abstract") are never fatal; callers log them at debug at most.
 * A STATUS= text is cut at about 1 KiB and its newlines become spaces (a
 * newline would start a protocol assignment of its own).
 *
 * Called from the main thread only. */
#ifndef SPLICED_SDNOTIFY_H
#define SPLICED_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether this build speaks the protocols (it was built with libsystemd). */
bool sdnotify_built_in(void);

/* READY=1 with STATUS=status (NULL: no STATUS). Every listener is bound. */
int sdnotify_ready(const char *status);
/* MAINPID=pid and READY=1 (with STATUS=status), in one message: after a
 * binary upgrade, the new process (pid) tells systemd it is the main one
 * now (the unit needs NotifyAccess=all: the sender is not MAINPID yet). */
int sdnotify_mainpid_ready(long pid, const char *status);
/* RELOADING=1 with MONOTONIC_USEC= of CLOCK_MONOTONIC now, as systemd's
 * reload protocol (Type=notify-reload) asks; a READY=1 must follow. */
int sdnotify_reloading(const char *status);
/* STOPPING=1: the drain has begun. */
int sdnotify_stopping(const char *status);
/* STATUS=... alone, printf-style. */
int sdnotify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* WATCHDOG=1. */
int sdnotify_watchdog(void);
/* The watchdog interval systemd expects pings within, in µs; 0: none
 * (unset, malformed, meant for another PID, or not built in). Ping at
 * half of it. WATCHDOG_USEC and WATCHDOG_PID stay in the environment, so
 * asking again (after a reload) gives the same answer. */
uint64_t sdnotify_watchdog_usec(void);

struct sdnotify_fd {
	int fd;                     /* a listening socket, ours from now on */
	char *name;                 /* FileDescriptorName=, "unknown" if unnamed */
};

/* The sockets systemd passed (LISTEN_FDS for this PID, fds 3, 4, ...),
 * made close-on-exec, in order; their type is not checked here. *out is a
 * malloc'd array of *n (free with sdnotify_fds_free). 0 with *out = NULL
 * and *n = 0 when none were passed (no LISTEN_PID, or another process's).
 * -1 with errno and err ("LISTEN_FDS: ...") as libsystemd judges the
 * variables: EINVAL when LISTEN_FDS is not a positive number, LISTEN_PID
 * not a pid, or LISTEN_FDNAMES has another count of names; EBADF when a
 * passed fd is not open. In every case LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are removed from the environment: call it once. */
int sdnotify_listen_fds(struct sdnotify_fd **out, size_t *n, char *err,
    size_t errlen);
void sdnotify_fds_free(struct sdnotify_fd *, size_t n);   /* names only; fds stay */

#endif
