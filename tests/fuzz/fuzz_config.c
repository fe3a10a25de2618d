/* tests/fuzz/fuzz_config.c: the config reader, as a file reaches it.
 *
 * The input is the text of a config file (up to its first NUL, as a C
 * string must be), read by config_load_string(): the real inih reader,
 * every key's handler and config_finish()'s validation. Promises checked
 * beyond "no sanitizer report, no leak":
 *   - a refused config says why in one line of err, naming the file;
 *   - an accepted one is whole: every listener binds somewhere and has
 *     its backend or routes to backends (their names in the form route.h
 *     matches), every backend a server, and the reference count is 1;
 *   - no DNS query, no file opened and no user looked up while parsing
 *     (fuzz_guard.h). */
#include <string.h>

#include "spliced/config.h"

#include "fuzz.h"
#include "fuzz_guard.h"

static void
check_accepted(const struct config *cfg)
{
	FUZZ_CHECK(atomic_load(&cfg->refs) == 1);
	FUZZ_CHECK(cfg->nlisteners > 0);
	FUZZ_CHECK(config_workers(cfg) >= 1);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		FUZZ_CHECK(l->nbinds > 0);
		/* A backend, or routes to backends (it is their default). */
		FUZZ_CHECK(l->backend != NULL || l->nroutes > 0);
		FUZZ_CHECK(l->backend == NULL || l->backend->nservers > 0);
		FUZZ_CHECK(!(l->naccept_proxy_from > 0 && !l->accept_proxy));
		FUZZ_CHECK(l->sni_max_bytes >= 4096 &&
		    l->sni_max_bytes <= 1 << 20);
		for (size_t r = 0; r < l->nroutes; r++) {
			const struct config_route *rt = &l->routes[r];

			FUZZ_CHECK(rt->backend != NULL &&
			    rt->backend->nservers > 0);
			/* Kept as route.h matches: lower-case, no '*', a
			 * wildcard's leading dot, none at the end. */
			FUZZ_CHECK(rt->name[0] != '\0' &&
			    strchr(rt->name, '*') == NULL);
			FUZZ_CHECK((rt->name[0] == '.') == rt->wildcard);
			FUZZ_CHECK(rt->name[strlen(rt->name) - 1] != '.');
			for (const char *c = rt->name; *c != '\0'; c++)
				FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
		}
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];

		for (size_t k = 0; k < b->nservers; k++) {
			const struct config_server *s = &b->servers[k];

			FUZZ_CHECK(s->weight >= 1 &&
			    s->weight <= CONFIG_WEIGHT_MAX);
			/* A name is left to resolve.c; else the address is
			 * whole. */
			FUZZ_CHECK(s->dnsname != NULL ?
			    s->addr.ss.ss_family == AF_UNSPEC :
			    s->addr.len > 0);
		}
	}
	(void)config_dns_servers(cfg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	char *text;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 0x55, sizeof(err));  /* an unterminated err shows */

	fuzz_guard_begin();
	cfg = config_load_string(text, "fuzz.ini", err, sizeof(err));
	fuzz_guard_end();

	if (cfg == NULL) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(strchr(err, '\n') == NULL);
		FUZZ_CHECK(strstr(err, "fuzz.ini") != NULL);
	} else {
		check_accepted(cfg);
		config_unref(cfg);
	}
	free(text);
	return 0;
}
