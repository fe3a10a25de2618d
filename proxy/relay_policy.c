/* proxy/relay_policy.c: the auto policy's state and decisions, pure. */
#include "spliced/relay_policy.h"

enum relay_mode
relay_policy(enum config_splice splice, size_t threshold, uint64_t burst,
    unsigned full_reads, bool splice_ok)
{
	if (!splice_ok || splice == CONFIG_SPLICE_NEVER)
		return RELAY_MODE_COPY;
	if (splice == CONFIG_SPLICE_ALWAYS)
		return RELAY_MODE_SPLICE;
	if (burst >= threshold || full_reads >= RELAY_STREAMER_READS)
		return RELAY_MODE_SPLICE;
	return RELAY_MODE_COPY;
}

void
relay_policy_init(struct relay_policy_state *s, enum config_splice splice,
    size_t threshold)
{
	*s = (struct relay_policy_state){ .splice = splice,
	    .threshold = threshold, .ask = true };
}

enum relay_mode
relay_policy_next(const struct relay_policy_state *s, bool splice_ok)
{
	splice_ok = splice_ok && !s->no_splice;
	if (splice_ok && s->splice == CONFIG_SPLICE_AUTO) {
		if (s->queue == RELAY_QUEUE_TAIL)
			return RELAY_MODE_COPY;
		if (s->queue == RELAY_QUEUE_STREAM)
			return RELAY_MODE_SPLICE;
	}
	return relay_policy(s->splice, s->threshold, s->burst, s->full_reads,
	    splice_ok);
}

bool
relay_policy_ask_queued(const struct relay_policy_state *s, bool splice_ok,
    bool copying)
{
	/* After a burst that spliced, the mover is still the splice one:
	 * `ask` stands without `copying`. */
	return s->splice == CONFIG_SPLICE_AUTO && s->threshold > 0 &&
	    splice_ok && !s->no_splice && s->queue == RELAY_QUEUE_UNKNOWN &&
	    (s->ask || (copying && s->full_reads > 0));
}

void
relay_policy_queued(struct relay_policy_state *s, size_t queued,
    size_t capacity)
{
	/* Nothing yet: the direction started before its peer spoke (or is
	 * at EOF). Asking again at each wake-up would cost every exchange a
	 * syscall; the counters decide, and a read that fills the buffer
	 * asks again. */
	if (queued == 0) {
		s->ask = false;
		return;
	}
	if (queued < capacity)
		s->queue = RELAY_QUEUE_TAIL;
	else if (s->burst + queued >= s->threshold)
		s->queue = RELAY_QUEUE_STREAM;
}

bool
relay_policy_read(struct relay_policy_state *s, size_t n, size_t capacity)
{
	bool short_read = n < capacity;

	s->ask = false;
	if (s->queue == RELAY_QUEUE_TAIL)
		s->queue = RELAY_QUEUE_UNKNOWN;
	s->burst += n;
	s->wake_bytes += n;
	s->full_reads = short_read ? 0 : s->full_reads + 1;
	return short_read;
}

void
relay_policy_copy_for_burst(struct relay_policy_state *s)
{
	s->no_splice = true;
}

void
relay_policy_wait(struct relay_policy_state *s, size_t buffer_size)
{
	if (s->wake_bytes >= buffer_size)
		s->short_wakes = 0;
	else if (++s->short_wakes >= RELAY_IDLE_WAKES) {
		/* A stream that paused is likely to stream again: its next
		 * burst asks the queue rather than copy a buffer first. A
		 * question not answered yet still stands. */
		s->ask = s->ask || s->queue == RELAY_QUEUE_STREAM ||
		    s->burst >= s->threshold;
		s->burst = 0;
		s->full_reads = 0;
		s->no_splice = false;
		s->queue = RELAY_QUEUE_UNKNOWN;
	}
	s->wake_bytes = 0;
}
