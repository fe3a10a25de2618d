/* tests/fuzz/fuzz.h: what every fuzz target shares.
 *
 * A target is one LLVMFuzzerTestOneInput; libFuzzer calls it with each
 * input and treats an abort (or a sanitizer report) as a crash, saving the
 * input. FUZZ_CHECK is that abort, with the broken promise named, so a
 * crash report says which rule failed and not only where. */
#ifndef SPLICED_FUZZ_H
#define SPLICED_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do {                                           \
	if (!(cond)) {                                                  \
		fprintf(stderr, "%s:%d: broken: %s\n", __FILE__,        \
		    __LINE__, #cond);                                   \
		abort();                                                \
	}                                                               \
} while (0)

#endif
