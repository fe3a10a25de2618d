/* tests/config_fixture.h: what the config test programs share: a valid
 * config to add to, loading it, and expecting an error.
 * Include after <cmocka.h>. */
#ifndef SPLICED_CONFIG_FIXTURE_H
#define SPLICED_CONFIG_FIXTURE_H

#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>

#include "spliced/config.h"

/* A valid config the error tests add to. Its lines: 1 [global], 2 workers,
 * 3 [listener web], 4 bind, 5 backend, 6 [backend app], 7 server; a line
 * added after BASE is line 8, in [backend app]. */
#define BASE_GLOBAL "[global]\nworkers = 2\n"
#define BASE_LISTENER "[listener web]\nbind = 127.0.0.1:8080\nbackend = app\n"
#define BASE_BACKEND "[backend app]\nserver = a 127.0.0.1:9001\n"
#define BASE BASE_GLOBAL BASE_LISTENER BASE_BACKEND

static inline struct config *
load(const char *text, char *err)
{
	err[0] = '\0';
	return config_load_string(text, "t.ini", err, CONFIG_ERR_MAX);
}

static inline struct config *
load_ok(const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = load(text, err);

	if (cfg == NULL)
		fail_msg("expected a valid config, got: %s", err);
	return cfg;
}

/* The config is refused, and the message holds every piece given. */
static inline void
expect_err(const char *text, ...)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = load(text, err);
	const char *want;
	va_list ap;

	if (cfg != NULL) {
		config_unref(cfg);
		fail_msg("expected an error for:\n%s", text);
	}
	va_start(ap, text);
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (strstr(err, want) == NULL) {
			va_end(ap);
			fail_msg("error '%s' lacks '%s'", err, want);
		}
	}
	va_end(ap);
	if (strchr(err, '\n') != NULL)
		fail_msg("error is not one line: '%s'", err);
}

#define EXPECT_ERR(text, ...) expect_err(text, __VA_ARGS__, (const char *)NULL)

static inline unsigned
port_of(const struct addr *a)
{
	/* sin_port and sin6_port sit at the same offset */
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

#endif
