/* include/spliced/statcarry.h: a process's counters as bytes, so that a
 * binary upgrade's new process continues them (upgrade.h): each
 * listener's, backend's and server's counters (stats.h) and the totals
 * logged at exit (worker.h). Gauges (open connections, pipes in use) do
 * not travel: they describe the process that reports them.
 *
 * The bytes carry the sizes of every array (reasons, denials, modes,
 * buckets...); a decoder whose sizes differ refuses them rather than
 * guess: the counters then restart, and the upgrade goes on. Decoding
 * is a pure function of the bytes, bounds-checked throughout. */
#ifndef SPLICED_STATCARRY_H
#define SPLICED_STATCARRY_H

#include <stddef.h>
#include <stdint.h>

struct stats_sample;
struct worker_totals;

/* s's listeners, backends and servers (not its connections, not its
 * `active` figures) and t, into *out (malloc'd, *len bytes). 0, or -1
 * with ENOMEM. */
int statcarry_encode(const struct stats_sample *s, const struct worker_totals *t,
    uint8_t **out, size_t *len);
/* The reverse, into s (initialised by stats_sample_init(); filled here,
 * the caller cleans it up either way) and t (zeroed first). 0, or -1
 * with errno: EINVAL for bytes that are not an encoding of this build's
 * shape, ENOMEM. */
int statcarry_decode(const uint8_t *in, size_t len, struct stats_sample *s,
    struct worker_totals *t);

#endif
