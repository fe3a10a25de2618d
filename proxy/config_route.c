/* proxy/config_route.c: a listener's `route = NAME BACKEND` lines (DESIGN
 * section 8).
 *
 * A name is kept in the form route.h matches: lower-case, without a
 * trailing dot, a wildcard "*.b.example" as ".b.example". Names are DNS
 * host names (letters, digits, '-', '_' and dots between non-empty
 * labels), since that is all a ClientHello's server_name may carry
 * (RFC 6066 §3; tlshello.h refuses the rest): anything else could never
 * match, and is more likely a typing mistake. Whether the backend exists
 * is config_finish.c's to check, once every section is read. */
#include "config_keys.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/tlshello.h"

/* name as a route keeps it, into out (TLSHELLO_NAME_MAX + 1 bytes). */
static int
route_name(const char *name, char *out, bool *wildcard, char *why, size_t n)
{
	size_t len = strlen(name), label = 0;
	const char *s = name;

	*wildcard = strncmp(s, "*.", 2) == 0;
	if (*wildcard)
		s++;                    /* keep the dot: ".b.example" */
	if (len > 0 && name[len - 1] == '.')
		len--;                  /* the root's dot, as tlshello drops it */
	len -= (size_t)(s - name);
	if (len == 0 || len > TLSHELLO_NAME_MAX)
		goto bad;
	for (size_t i = *wildcard; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			if (label == 0)
				goto bad;
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			label++;
		} else
			goto bad;
		out[i] = (char)tolower(ch);
	}
	if (label == 0)
		goto bad;
	if (*wildcard)
		out[0] = '.';
	out[len] = '\0';
	return 0;
bad:
	snprintf(why, n, "'%.64s' is not a server name (a host name such as "
	    "api.example.com, or *.example.com for every name under it)", name);
	return -1;
}

int
config_route_set(void *base, const char *v, int line, char *why, size_t n)
{
	struct config_listener *l = base;
	char name[TLSHELLO_NAME_MAX + 1], *word, *backend = NULL, *copy, *save;
	struct config_route *r;
	bool wildcard;
	int rc = -1;

	if ((copy = strdup(v)) == NULL)
		goto nomem;
	word = strtok_r(copy, " \t", &save);
	if (word != NULL)
		backend = strtok_r(NULL, " \t", &save);
	if (word == NULL || backend == NULL || strtok_r(NULL, " \t",
	    &save) != NULL) {
		snprintf(why, n, "'%.64s' is not NAME BACKEND (a server name "
		    "and the [backend NAME] its clients go to)", v);
		goto out;
	}
	if (route_name(word, name, &wildcard, why, n) == -1)
		goto out;
	if (!config_name_ok(backend)) {
		snprintf(why, n, "'%.64s' is not a backend name", backend);
		goto out;
	}
	for (size_t i = 0; i < l->nroutes; i++)
		if (l->routes[i].wildcard == wildcard &&
		    strcmp(l->routes[i].name, name) == 0) {
			snprintf(why, n, "%.64s is routed twice (first at "
			    "line %d)", word, l->routes[i].line);
			goto out;
		}
	if ((r = config_grow(l->routes, l->nroutes, sizeof(*r))) == NULL)
		goto nomem;
	l->routes = r;
	r = &l->routes[l->nroutes];
	*r = (struct config_route){ .wildcard = wildcard, .line = line };
	if ((r->name = strdup(name)) == NULL ||
	    (r->backend_name = strdup(backend)) == NULL) {
		free(r->name);
		goto nomem;
	}
	l->nroutes++;
	rc = 0;
	goto out;
nomem:
	snprintf(why, n, "out of memory");
out:
	free(copy);
	return rc;
}
