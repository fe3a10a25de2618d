/* tests/test_statuspage.c: the embedded status page.
 *
 * The bytes compiled into the binary (statuspage_html) are proxy/status.html
 * exactly, as it is in the source tree now (a stale build dir would show
 * here), followed by the one NUL the header promises. And the page stands
 * alone: no URL with a scheme or a host (http://, https://, //host), no
 * stylesheet, script, image or font from elsewhere, and only relative URLs
 * for the API, so that it works behind a path prefix.
 * STATUSPAGE_SOURCE is the path of the file, from tests/CMakeLists.txt. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spliced/statuspage.h"

/* The whole file at STATUSPAGE_SOURCE; *len its size. */
static char *
read_source(size_t *len)
{
	FILE *f = fopen(STATUSPAGE_SOURCE, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
test_embedded_is_the_file(void **state)
{
	size_t len;
	char *src = read_source(&len);

	(void)state;
	assert_int_equal(statuspage_html_len, len);
	assert_memory_equal(statuspage_html, src, len);
	assert_int_equal(statuspage_html[statuspage_html_len], 0);
	assert_int_equal(strncasecmp((const char *)statuspage_html, "<!doctype html>", 15), 0);
	free(src);
}

/* Where needle occurs in the page, ignoring case; NULL if nowhere. */
static const char *
page_find(const char *needle)
{
	return strcasestr((const char *)statuspage_html, needle);
}

static void
test_no_external_resource(void **state)
{
	/* What would load something from elsewhere, or point at the root of the
	 * admin server instead of beside the page. */
	static const char *const banned[] = {
		"http:", "https:", "ftp:", "ws:", "wss:", "<link", "<img", "<iframe",
		"<object", "<embed", "@import", "@font-face", "url(", " src=",
		" href=", "\"/status", "'/status", "\"/servers", "'/servers",
	};
	const char *page = (const char *)statuspage_html;
	const char *p;

	(void)state;
	for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++) {
		p = page_find(banned[i]);
		if (p != NULL)
			fail_msg("status.html contains \"%s\" at byte %td", banned[i], p - page);
	}
	/* A scheme-less URL to a host ("//cdn.example/x.js") starts with //
	 * right after a quote, a parenthesis or an equals sign. JS comments
	 * (a // after code or spaces) are fine. */
	for (p = strstr(page, "//"); p != NULL; p = strstr(p + 2, "//")) {
		if (p > page && strchr("\"'`(=", p[-1]) != NULL)
			fail_msg("status.html has a URL to a host at byte %td: %.40s", p - page, p);
	}
	/* And it does poll the relative URL. */
	assert_non_null(strstr(page, "\"status\""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_embedded_is_the_file),
		cmocka_unit_test(test_no_external_resource),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
