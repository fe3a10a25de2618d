/* include/spliced/route.h: which backend a TLS server name goes to, by a
 * listener's route lines (DESIGN section 8).
 *
 * An exact name wins; else the longest wildcard whose suffix the name
 * ends with, with at least one label before it ("*.b.example" takes
 * x.b.example and y.x.b.example, never b.example); else none, and the
 * listener's backend is the default. Names compare case-insensitively:
 * routes are kept lower-case (config_route.c) and so are the names
 * tlshello.h returns. Pure: a scan of the listener's routes, which are
 * few, per connection that asks. */
#ifndef SPLICED_ROUTE_H
#define SPLICED_ROUTE_H

#include <stddef.h>

#include "spliced/config.h"

/* The route name takes among routes[0..n), or NULL. */
const struct config_route *route_match(const struct config_route *routes,
    size_t n, const char *name);

#endif
