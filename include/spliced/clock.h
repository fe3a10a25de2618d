/* include/spliced/clock.h: the cheap monotonic clock of the data path.
 * CLOCK_MONOTONIC_COARSE is a vDSO read with a few ms of resolution: plenty
 * for idle timeouts and pool trimming, and cheap enough to call per wake-up. */
#ifndef SPLICED_CLOCK_H
#define SPLICED_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t
clock_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ms as the struct timeval libevent's timers take. */
static inline struct timeval
clock_timeval_ms(uint64_t ms)
{
	return (struct timeval){ (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };
}

#endif
