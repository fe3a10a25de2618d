/* tests/fuzz/fuzz_statcarry.c: the counters a binary upgrade carries
 * (statcarry.h), decoded from any bytes.
 *
 * What must hold: decoding never reads past the input or allocates more
 * than the input could describe (ASan sees both), and refuses with
 * EINVAL or ENOMEM only; what it accepts encodes back to exactly the
 * same bytes (the encoding is canonical: one shape, counts, names as
 * given), and decodes again to the same totals. */
#include <errno.h>
#include <string.h>

#include "spliced/statcarry.h"
#include "spliced/stats.h"
#include "spliced/worker.h"

#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stats_sample s, again;
	struct worker_totals t, t2;
	uint8_t *out = NULL;
	size_t len = 0;

	if (stats_sample_init(&s, 0) == -1)
		return 0;
	if (statcarry_decode(data, size, &s, &t) == -1) {
		FUZZ_CHECK(errno == EINVAL || errno == ENOMEM);
		stats_sample_cleanup(&s);
		return 0;
	}
	if (statcarry_encode(&s, &t, &out, &len) == 0) {
		FUZZ_CHECK(len == size && memcmp(out, data, size) == 0);
		FUZZ_CHECK(stats_sample_init(&again, 0) == 0);
		FUZZ_CHECK(statcarry_decode(out, len, &again, &t2) == 0);
		FUZZ_CHECK(memcmp(&t, &t2, sizeof(t)) == 0);
		FUZZ_CHECK(again.nl == s.nl && again.nb == s.nb && again.ns == s.ns);
		stats_sample_cleanup(&again);
	}
	free(out);
	stats_sample_cleanup(&s);
	return 0;
}
