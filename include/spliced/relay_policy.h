/* include/spliced/relay_policy.h: which mover a direction reads with next.
 *
 * splice = never copies every byte and always splices from the first; auto
 * starts a burst in copy mode unless the kernel already holds a stream, and
 * splices once the burst has carried `threshold` bytes, or after
 * RELAY_STREAMER_READS reads in a row that filled the whole holder. A burst
 * ends after RELAY_IDLE_WAKES wake-ups in a row that each carried less than
 * a copy buffer.
 *
 * auto asks what the kernel holds on `in` (relay.c asks SIOCINQ) where the
 * answer changes the choice: before a direction's first read, before the
 * first read of a burst that follows one which reached the threshold, and
 * after a copy read that filled the buffer. A buffer or more queued, with
 * the burst reaching the threshold, is a stream: it splices from there to
 * the end of the burst, so a 256 KiB response is not copied a buffer at a
 * time before it splices. Less than a buffer is a tail that one copy read
 * takes whole: it is copied, not given a pipe for a few hundred bytes.
 * Nothing queued is no answer: the counters decide. So a direction of small
 * exchanges asks once, at its first read, and then no more.
 *
 * A direction's policy state is one struct that only the functions below
 * change. They are pure (no I/O, no clock, no globals), so the decisions are
 * unit tested without sockets; relay.c calls them when it picks a mover
 * (with the bytes queued, when they are asked for), after a read, when it
 * copies for the rest of a burst, and when it waits for `in`. */
#ifndef SPLICED_RELAY_POLICY_H
#define SPLICED_RELAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spliced/config.h"

/* Consecutive reads that fill the whole copy buffer before auto splices: the
 * kernel holds more than a buffer, so this is a stream, not an exchange. */
#define RELAY_STREAMER_READS 2
/* Consecutive wake-ups carrying less than a buffer that end a burst: one
 * alone is as likely a stream whose sender paused for a moment. */
#define RELAY_IDLE_WAKES 2

enum relay_mode { RELAY_MODE_COPY, RELAY_MODE_SPLICE, RELAY_MODE_MAX_ };

/* What the kernel's queue said, for auto. */
enum relay_queue {
	RELAY_QUEUE_UNKNOWN,        /* not asked, or nothing was queued */
	RELAY_QUEUE_TAIL,           /* the next read takes all that is queued */
	RELAY_QUEUE_STREAM,         /* a stream: splice until the burst ends */
};

struct relay_policy_state {
	enum config_splice splice;  /* never, always or auto */
	size_t threshold;           /* auto: bytes of a burst before it splices */
	uint64_t burst;             /* bytes carried in the current burst */
	uint64_t wake_bytes;        /* bytes read since `in` last ran dry */
	unsigned full_reads;        /* consecutive reads that filled the holder */
	unsigned short_wakes;       /* consecutive wake-ups under a buffer */
	bool no_splice;             /* a pipe could not be had this burst */
	bool ask;                   /* ask the queue before the next read */
	enum relay_queue queue;     /* its last answer, while it holds */
};

/* The decision from the counters alone. splice_ok: the platform can splice
 * and a pipe may be tried. */
enum relay_mode relay_policy(enum config_splice splice, size_t threshold,
    uint64_t burst, unsigned full_reads, bool splice_ok);

/* A direction that has carried nothing yet: its first burst starts. */
void relay_policy_init(struct relay_policy_state *, enum config_splice splice,
    size_t threshold);
/* The mover for the next read. splice_ok: the platform can splice and the
 * worker has a pipe pool; a burst that could not have a pipe copies anyway. */
enum relay_mode relay_policy_next(const struct relay_policy_state *,
    bool splice_ok);
/* Whether auto wants the bytes queued on `in` before the next read: the
 * direction's first read, the first of a burst after one that reached the
 * threshold, or the one after a copy read that filled the buffer. copying:
 * the current mover copies (the last read was a copy). Never with
 * threshold 0, which splices every byte as it always has. */
bool relay_policy_ask_queued(const struct relay_policy_state *,
    bool splice_ok, bool copying);
/* The kernel holds `queued` bytes on `in`; a copy read takes up to
 * `capacity` of them. At least capacity, with the burst reaching the
 * threshold: a stream, spliced until the burst ends. Less: the next read is
 * a copy that takes them all. None: no answer, and not asked again before
 * a read fills the buffer. */
void relay_policy_queued(struct relay_policy_state *, size_t queued,
    size_t capacity);
/* A read carried n > 0 bytes into a holder of `capacity` bytes. Returns
 * whether it was short (did not fill the holder): `in` is drained for now. */
bool relay_policy_read(struct relay_policy_state *, size_t n, size_t capacity);
/* No pipe for this burst (none to be had, or splice cannot go on): copy
 * until the burst ends. */
void relay_policy_copy_for_burst(struct relay_policy_state *);
/* The direction waits for `in` again. A wake-up that carried less than
 * buffer_size bytes was an exchange; RELAY_IDLE_WAKES of them in a row end
 * the burst, and the next read starts a new one. */
void relay_policy_wait(struct relay_policy_state *, size_t buffer_size);

#endif
