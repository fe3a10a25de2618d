/* include/spliced/check.h: spliced -t, the config check and the kernel facts.
 *
 * The config was parsed and validated already (config_load). This adds what
 * only this machine can tell: every host-name server resolves, [global]
 * user exists, and the facts that decide how spliced will run here, printed
 * on stdout one "key: value" line each (easy to grep), e.g.
 *
 *     configuration spliced.ini is valid: 1 listener(s), 1 backend(s)
 *     zero-copy: sendfile+splice
 *     pipe-max-size: 1048576 bytes
 *     pipe_size: asked 1048576, granted 1048576
 *     pipe-user-pages-soft: 16384 pages (64 MiB)
 *     pipe budget: as user nobody: not exempt (...)
 *     RLIMIT_NOFILE: soft 1024, hard 524288, need 60084 for max_connections 10000, at start 60084
 *     user: nobody (uid 65534, gid 65534, 1 supplementary group)
 *     warning: ...
 *
 * A fact that cannot be read (a hardened unit may hide part of /proc) is
 * printed as "unknown (why)", never a failure. Problems that fail the
 * check go to stderr as "spliced: FILE:LINE: [section] key: why". */
#ifndef SPLICED_CHECK_H
#define SPLICED_CHECK_H

#include "spliced/config.h"

/* path names the config in the first line. Returns the exit status: 0
 * (valid; warnings are printed but do not fail), or 1. May lower the log
 * level (the resolver's info lines are not news here). */
int check_run(struct config *, const char *path);

#endif
