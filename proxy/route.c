/* proxy/route.c: a server name against a listener's routes (route.h).
 *
 * One pass: an exact match ends it, the longest wildcard so far is kept.
 * Two wildcards of one length cannot both match a name (equal suffixes of
 * the name would be the same route, which config_route.c refuses twice). */
#include "spliced/route.h"

#include <string.h>
#include <strings.h>

const struct config_route *
route_match(const struct config_route *routes, size_t n, const char *name)
{
	const struct config_route *best = NULL;
	size_t len = strlen(name), blen = 0;

	for (size_t i = 0; i < n; i++) {
		const struct config_route *r = &routes[i];
		size_t rlen = strlen(r->name);

		if (!r->wildcard) {
			if (rlen == len && strcasecmp(r->name, name) == 0)
				return r;
			continue;
		}
		/* ".b.example" under at least one label: len > rlen. */
		if (rlen < len && rlen > blen &&
		    strcasecmp(name + len - rlen, r->name) == 0) {
			best = r;
			blen = rlen;
		}
	}
	return best;
}
