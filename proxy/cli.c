/* proxy/cli.c: the command line: spliced's options, the flags that go
 * together, and the one-off relay's config.
 *
 * A usage error is a message naming what the user wrote (the option as
 * typed, without its "=VALUE"; the flag rather than the config key it
 * sets), returned, never printed here: main.c prints it with the usage
 * and exits 2. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spliced/addr.h"
#include "spliced/cli.h"
#include "spliced/config.h"
#include "spliced/zerocopy.h"

static const struct option cli_longopts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "test", no_argument, NULL, 't' },
	{ "listen", required_argument, NULL, 'L' },
	{ "backend", required_argument, NULL, 'B' },
	{ "splice", required_argument, NULL, 'S' },
	{ "splice-threshold", required_argument, NULL, 'T' },
	{ "workers", required_argument, NULL, 'W' },
	{ "admin", required_argument, NULL, 'A' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

void
cli_usage(FILE *f)
{
	fprintf(f,
	    "usage: spliced -c FILE              run with a config file\n"
	    "       spliced -t -c FILE           check the config and the kernel's zero-copy support\n"
	    "       spliced --listen ADDR:PORT [--listen ...]\n"
	    "               --backend ADDR:PORT [--backend ...]\n"
	    "               [--splice auto|always|never] [--splice-threshold SIZE] [--workers N]\n"
	    "               [--admin ADDR:PORT|unix:PATH]\n"
	    "       spliced ctl [--admin ADDR:PORT|unix:PATH] [--token-file FILE] COMMAND ...\n"
	    "                                    talk to a running spliced (spliced ctl --help)\n"
	    "       spliced --version\n"
	    "ADDR:PORT is 127.0.0.1:8080, [::1]:8080, *:8080 or host.name:8080.\n");
}

void
cli_version(FILE *f)
{
	fprintf(f, "spliced %s (zero-copy: %s)\n", SPLICED_VERSION,
	    zc_backend_name());
}

/* A usage error: -1 with EINVAL, the message in err. */
static int cli_usage_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
cli_usage_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	errno = EINVAL;
	return -1;
}

static int
cli_no_memory(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	errno = ENOMEM;
	return -1;
}

/* One more value of a flag that may repeat. 0 or -1 (ENOMEM). */
static int
cli_push(const char ***arr, size_t *n, const char *value)
{
	const char **a = realloc(*arr, (*n + 1) * sizeof(*a));

	if (a == NULL)
		return -1;
	a[(*n)++] = value;
	*arr = a;
	return 0;
}

/* getopt_long() refused an option (ch is '?' or ':'): name it as written.
 * A long one is the element getopt_long() moved past, without "=VALUE";
 * a short one is optopt, for inside a cluster ("-xt") optind has not
 * moved and argv[optind - 1] is another argument (the program, or the
 * file of -c). prev: optind before the call. -1 with EINVAL. */
static int
cli_bad_option(int ch, char **argv, int prev, char *err, size_t errlen)
{
	const char *el = optind > prev ? argv[optind - 1] : "";
	char name[64];
	size_t len, matches = 0;

	if (strncmp(el, "--", 2) != 0)
		return cli_usage_error(err, errlen, ch == ':' ?
		    "-%c needs a value" : "unknown option '-%c'", optopt);
	len = strcspn(el, "=");
	snprintf(name, sizeof(name), "%.*s", (int)len, el);
	if (ch == ':')
		return cli_usage_error(err, errlen, "%s needs a value", name);
	/* optopt: the option matched, and its value was not wanted. */
	if (optopt != 0)
		return cli_usage_error(err, errlen, "option '%s' takes no value",
		    name);
	for (const struct option *lo = cli_longopts; lo->name != NULL; lo++)
		matches += strncmp(lo->name, el + 2, len - 2) == 0;
	return cli_usage_error(err, errlen, matches > 1 ?
	    "ambiguous option '%s'" : "unknown option '%s'", name);
}

/* The flags given must go together: a config file, or the one-off relay. */
static int
cli_check_mix(const struct cli_opts *o, char *err, size_t errlen)
{
	bool oneoff = o->nlistens > 0 || o->nbackends > 0;
	bool tuning = o->splice || o->threshold || o->workers || o->admin;

	if (o->config != NULL && oneoff)
		return cli_usage_error(err, errlen,
		    "-c and --listen/--backend do not mix");
	if (o->config == NULL && !oneoff && tuning)
		return cli_usage_error(err, errlen, "--splice, --splice-threshold, "
		    "--workers and --admin go with --listen and --backend");
	if (o->config == NULL && !oneoff)
		return cli_usage_error(err, errlen,
		    "nothing to do: give -c FILE, or --listen and --backend");
	if (o->config == NULL && (o->nlistens == 0 || o->nbackends == 0))
		return cli_usage_error(err, errlen,
		    "--listen and at least one --backend go together");
	if (o->config != NULL && tuning)
		return cli_usage_error(err, errlen, "--splice, --splice-threshold, "
		    "--workers and --admin go with --listen; use the config "
		    "file's keys with -c");
	return 0;
}

int
cli_parse(int argc, char **argv, struct cli_opts *o, char *err, size_t errlen)
{
	int ch, prev;

	*o = (struct cli_opts){ .action = CLI_RUN };
	/* 0: glibc starts over (argv may be another one than last time);
	 * the first element it looks at is still argv[1]. */
	optind = 0;
	prev = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:th", cli_longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 't': o->action = CLI_CHECK; break;
		case 'L':
			if (cli_push(&o->listens, &o->nlistens, optarg) == -1)
				return cli_no_memory(err, errlen);
			break;
		case 'B':
			if (cli_push(&o->backends, &o->nbackends, optarg) == -1)
				return cli_no_memory(err, errlen);
			break;
		case 'S': o->splice = optarg; break;
		case 'T': o->threshold = optarg; break;
		case 'W': o->workers = optarg; break;
		case 'A': o->admin = optarg; break;
		case 'V':
			o->action = CLI_VERSION;
			return 0;
		case 'h':
			o->action = CLI_HELP;
			return 0;
		default:
			return cli_bad_option(ch, argv, prev, err, errlen);
		}
		prev = optind;
	}
	if (optind < argc)
		return cli_usage_error(err, errlen, "unexpected argument '%s'",
		    argv[optind]);
	return cli_check_mix(o, err, errlen);
}

void
cli_opts_cleanup(struct cli_opts *o)
{
	free(o->listens);
	free(o->backends);
	o->listens = o->backends = NULL;
	o->nlistens = o->nbackends = 0;
}

/* config_set() names "[section] key: "; on the command line the flag is
 * what the user wrote, so name that instead. -1 with EINVAL. */
static int
cli_flag_error(const char *flag, char *err, size_t errlen)
{
	char why[CONFIG_ERR_MAX];
	const char *colon = strstr(err, ": ");

	snprintf(why, sizeof(why), "%s", colon != NULL ? colon + 2 : err);
	return cli_usage_error(err, errlen, "%s: %s", flag, why);
}

/* Set the keys of o into cfg. 0, or -1 with EINVAL and err. */
static int
cli_set_keys(struct config *cfg, const struct cli_opts *o, char *err,
    size_t errlen)
{
	char name[32], line[300];
	struct { const char *flag, *section, *key, *value; } set[] = {
		{ "--workers", "global", "workers", o->workers },
		{ "--splice", "global", "splice", o->splice },
		{ "--splice-threshold", "global", "splice_threshold", o->threshold },
		{ "--admin", "global", "admin", o->admin },
		{ "--backend", "listener cli", "backend", "cli" },
	};

	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		if (set[i].value != NULL && config_set(cfg, set[i].section,
		    set[i].key, set[i].value, err, errlen) == -1)
			return cli_flag_error(set[i].flag, err, errlen);
	for (size_t i = 0; i < o->nlistens; i++) {
		if (config_set(cfg, "listener cli", "bind", o->listens[i], err,
		    errlen) == -1)
			return cli_flag_error("--listen", err, errlen);
		/* config_finish() would name [listener cli], which the user
		 * never wrote. */
		for (size_t j = 0; j < i; j++)
			if (addr_equal(&cfg->listeners[0].binds[j],
			    &cfg->listeners[0].binds[i]))
				return cli_usage_error(err, errlen,
				    "--listen %s: given twice", o->listens[i]);
	}
	for (size_t i = 0; i < o->nbackends; i++) {
		snprintf(name, sizeof(name), "s%zu", i + 1);
		snprintf(line, sizeof(line), "%s %s", name, o->backends[i]);
		if (config_set(cfg, "backend cli", "server", line, err,
		    errlen) == -1)
			return cli_flag_error("--backend", err, errlen);
	}
	if (config_finish(cfg, err, errlen) == -1) {
		/* The one cross-key check a flag can fail: name the flag. */
		if (o->admin != NULL && strncmp(err, "[global] admin: ", 16) == 0)
			return cli_flag_error("--admin", err, errlen);
		errno = EINVAL;
		return -1;
	}
	return 0;
}

struct config *
cli_config(const struct cli_opts *o, char *err, size_t errlen)
{
	struct config *cfg = config_new("command line");

	if (cfg == NULL) {
		cli_no_memory(err, errlen);
		return NULL;
	}
	if (cli_set_keys(cfg, o, err, errlen) == -1) {
		config_unref(cfg);
		errno = EINVAL;
		return NULL;
	}
	return cfg;
}
