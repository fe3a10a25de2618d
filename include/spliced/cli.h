/* include/spliced/cli.h: the command line (DESIGN.md section 3).
 *
 * cli_parse() reads argv into a struct cli_opts and checks that the flags
 * given go together; cli_config() turns the one-off relay's flags
 * (--listen, --backend, --splice, ...) into a config, setting the same keys
 * a file would, so they get the same validation. Neither prints nor exits:
 * a usage error comes back as -1 with EINVAL and a message naming the bad
 * argument as the user wrote it, which the caller prints as
 * "spliced: MESSAGE" followed by cli_usage() on stderr, and exits 2.
 *
 * `spliced ctl COMMAND` (the admin endpoint's client, ctl.h) is told
 * apart by argv[1] in main() before these options are parsed. */
#ifndef SPLICED_CLI_H
#define SPLICED_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "spliced/config.h"

enum cli_action {
	CLI_RUN,                    /* serve: -c FILE, or --listen/--backend */
	CLI_CHECK,                  /* -t: check the config and the kernel */
	CLI_VERSION,                /* --version: cli_version() on stdout, exit 0 */
	CLI_HELP,                   /* -h, --help: cli_usage() on stdout, exit 0 */
};

/* Caller-owned: cli_opts_cleanup(). The strings point into argv. */
struct cli_opts {
	enum cli_action action;
	const char *config;         /* -c FILE; NULL: the one-off relay */
	const char **listens;       /* --listen, in order: binds of [listener cli] */
	size_t nlistens;
	const char **backends;      /* --backend, in order: servers s1, s2, ... */
	size_t nbackends;
	const char *splice, *threshold, *workers;   /* NULL: not given */
	const char *admin;          /* --admin: [global] admin; NULL: not given */
};

/* Parse argv with getopt_long (which may permute argv, as GNU getopt does).
 * --version and --help end the parse where they stand: what follows them
 * is not looked at. o is zeroed first. 0, or -1 with errno: EINVAL, err
 * says what is wrong ("unknown option '-x'", "--listen needs a value", "-c
 * and --listen/--backend do not mix"); ENOMEM. Call cli_opts_cleanup()
 * either way. Not thread-safe: getopt's state is global. */
int cli_parse(int argc, char **argv, struct cli_opts *o, char *err,
    size_t errlen);
void cli_opts_cleanup(struct cli_opts *);    /* a zeroed one is fine */

/* The one-off relay of o (o->config NULL, after cli_parse() returned 0):
 * [listener cli] binds every --listen and serves [backend cli], whose
 * servers s1, s2, ... are the --backend addresses; --workers, --splice,
 * --splice-threshold and --admin set [global]'s keys. Validated (config_finish()); refs
 * is 1. NULL with errno: EINVAL, err names the flag rather than the
 * section the user never wrote ("--workers: 'x' is not a number or auto",
 * "--listen 127.0.0.1:80: given twice"); ENOMEM. */
struct config *cli_config(const struct cli_opts *, char *err, size_t errlen);

void cli_usage(FILE *);
/* "spliced X.Y.Z (zero-copy: NAME)", NAME from zc_backend_name(). */
void cli_version(FILE *);

#endif
