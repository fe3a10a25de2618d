/* tests/test_admin.c: the admin endpoint's decisions without a server:
 * routes, the token, the query, POST bodies (form and flat JSON), what a
 * POST may set, JSON strings, the admin keys of the config, and binding
 * (a unix socket's stale file, an address in use). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../proxy/admin_int.h"
#include "spliced/admin.h"
#include "spliced/backend.h"
#include "config_fixture.h"

static void
test_routes(void **state)
{
	char b[16], s[16];

	(void)state;
	assert_int_equal(admin_route("/", b, s, sizeof(b)), ADMIN_ROUTE_PAGE);
	assert_int_equal(admin_route("/metrics", b, s, sizeof(b)),
	    ADMIN_ROUTE_METRICS);
	assert_int_equal(admin_route("/status", b, s, sizeof(b)),
	    ADMIN_ROUTE_STATUS);
	assert_int_equal(admin_route("/connections", b, s, sizeof(b)),
	    ADMIN_ROUTE_CONNECTIONS);
	assert_int_equal(admin_route("/healthz", b, s, sizeof(b)),
	    ADMIN_ROUTE_HEALTHZ);
	assert_int_equal(admin_route("/servers/app/a-1.x", b, s, sizeof(b)),
	    ADMIN_ROUTE_SERVER);
	assert_string_equal(b, "app");
	assert_string_equal(s, "a-1.x");
	/* Anything else is not found. */
	static const char *const none[] = { "", "/status/", "/metricsx",
	    "/servers", "/servers/", "/servers/app", "/servers/app/",
	    "/servers//a", "/servers/app/a/b", "/servers/app/%61",
	    "/servers/a b/c", "/servers/app/0123456789abcdef", "//status",
	    "/../status", NULL };
	for (size_t i = 0; none[i] != NULL; i++)
		if (admin_route(none[i], b, s, sizeof(b)) != ADMIN_ROUTE_NONE)
			fail_msg("'%s' routed", none[i]);
	assert_int_equal(admin_route(NULL, b, s, sizeof(b)), ADMIN_ROUTE_NONE);
	assert_true(admin_route_posts(ADMIN_ROUTE_SERVER));
	assert_true(admin_route_posts(ADMIN_ROUTE_HEALTHZ));
	assert_false(admin_route_posts(ADMIN_ROUTE_STATUS));
	assert_false(admin_route_posts(ADMIN_ROUTE_METRICS));
	assert_false(admin_route_posts(ADMIN_ROUTE_PAGE));
}

static void
test_auth(void **state)
{
	(void)state;
	assert_true(admin_auth_ok("s3cret", "Bearer s3cret"));
	assert_true(admin_auth_ok("s3cret", "bearer  s3cret "));
	assert_false(admin_auth_ok("s3cret", NULL));
	assert_false(admin_auth_ok("s3cret", ""));
	assert_false(admin_auth_ok("s3cret", "Bearer "));
	assert_false(admin_auth_ok("s3cret", "Bearer s3cre"));
	assert_false(admin_auth_ok("s3cret", "Bearer s3crett"));
	assert_false(admin_auth_ok("s3cret", "Bearer S3cret"));
	assert_false(admin_auth_ok("s3cret", "Basic s3cret"));
	assert_false(admin_auth_ok("s3cret", "s3cret"));
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_token_file(void **state)
{
	char dir[] = "/tmp/test_admin.XXXXXX", path[64], why[256];
	char *token = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/token", dir);
	write_file(path, "  abc.DEF-123\n\n");
	assert_int_equal(admin_token_load(path, &token, why, sizeof(why)), 0);
	assert_string_equal(token, "abc.DEF-123");
	free(token);
	write_file(path, " \n\t\n");
	assert_int_equal(admin_token_load(path, &token, why, sizeof(why)), -1);
	assert_null(token);
	assert_non_null(strstr(why, "empty"));
	write_file(path, "two words\n");
	assert_int_equal(admin_token_load(path, &token, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "white space"));
	unlink(path);
	assert_int_equal(admin_token_load(path, &token, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "cannot read"));
	assert_non_null(strstr(why, path));
	rmdir(dir);
}

static void
test_limit(void **state)
{
	char why[200];
	size_t limit;

	(void)state;
	assert_int_equal(admin_limit_parse(NULL, &limit, why, sizeof(why)), 0);
	assert_int_equal(limit, ADMIN_CONN_LIMIT_DEFAULT);
	assert_int_equal(admin_limit_parse("", &limit, why, sizeof(why)), 0);
	assert_int_equal(limit, ADMIN_CONN_LIMIT_DEFAULT);
	assert_int_equal(admin_limit_parse("limit=7", &limit, why, sizeof(why)), 0);
	assert_int_equal(limit, 7);
	assert_int_equal(admin_limit_parse("limit=10000", &limit, why,
	    sizeof(why)), 0);
	static const char *const bad[] = { "limit=0", "limit=10001", "limit=x",
	    "limit=", "limit=-1", "limit=1e3", "limit=99999999999", "other=1",
	    "limit", NULL };
	for (size_t i = 0; bad[i] != NULL; i++)
		if (admin_limit_parse(bad[i], &limit, why, sizeof(why)) != -1)
			fail_msg("'%s' taken", bad[i]);
}

static void
test_format(void **state)
{
	char why[200];
	bool text = true;

	(void)state;
	assert_int_equal(admin_format_parse(NULL, &text, why, sizeof(why)), 0);
	assert_false(text);
	assert_int_equal(admin_format_parse("format=json", &text, why,
	    sizeof(why)), 0);
	assert_false(text);
	assert_int_equal(admin_format_parse("format=text", &text, why,
	    sizeof(why)), 0);
	assert_true(text);
	assert_int_equal(admin_format_parse("format=xml", &text, why,
	    sizeof(why)), -1);
	assert_non_null(strstr(why, "format=json or format=text"));
	assert_int_equal(admin_format_parse("limit=1", &text, why,
	    sizeof(why)), -1);
}

/* Parse text; expect it taken, with name=value pairs as given. */
static void
params_ok(const char *text, ...)
{
	struct admin_params ps;
	char why[200] = "";
	const char *name;
	size_t n = 0;
	va_list ap;

	if (admin_params_parse(text, strlen(text), &ps, why, sizeof(why)) == -1)
		fail_msg("'%s' refused: %s", text, why);
	va_start(ap, text);
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *want = va_arg(ap, const char *);
		const char *got = admin_params_get(&ps, name);

		if (got == NULL || strcmp(got, want) != 0)
			fail_msg("'%s': %s is '%s', not '%s'", text, name,
			    got ? got : "(none)", want);
		n++;
	}
	va_end(ap);
	assert_int_equal(ps.n, n);
}

#define PARAMS_OK(...) params_ok(__VA_ARGS__, (const char *)NULL)

static void
params_bad(const char *text, size_t len, const char *want)
{
	struct admin_params ps;
	char why[200] = "";

	if (admin_params_parse(text, len, &ps, why, sizeof(why)) != -1)
		fail_msg("'%s' taken", text);
	if (strstr(why, want) == NULL)
		fail_msg("'%s': '%s' lacks '%s'", text, why, want);
	assert_null(strchr(why, '\n'));
}

#define PARAMS_BAD(text, want) params_bad(text, strlen(text), want)

static void
test_params_form(void **state)
{
	(void)state;
	PARAMS_OK("state=drain", "state", "drain");
	PARAMS_OK("state=drain&weight=3\n", "state", "drain", "weight", "3");
	PARAMS_OK("state=a%20b+c", "state", "a b c");
	PARAMS_OK("state=", "state", "");
	PARAMS_BAD("", "empty body");
	PARAMS_BAD("  \n", "empty body");
	PARAMS_BAD("drain", "neither a form");
	PARAMS_BAD("state=a&state=b", "given twice");
	PARAMS_BAD("=x", "neither a form");
	PARAMS_BAD("state&weight=1", "neither a form");
	PARAMS_BAD("a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9", "more than 8");
	PARAMS_BAD("state=0123456789012345678901234567890123456789012345678901234567890123",
	    "longer than 63");
	params_bad("state=a\0b", 9, "NUL");
}

static void
test_params_json(void **state)
{
	(void)state;
	PARAMS_OK("{}");
	PARAMS_OK(" { \"state\" : \"drain\" } \n", "state", "drain");
	PARAMS_OK("{\"state\":\"maint\",\"weight\":12}", "state", "maint",
	    "weight", "12");
	PARAMS_OK("{\"s\\u0074ate\": \"a\\\"b\\\\c\\/d\\n\"}", "state",
	    "a\"b\\c/d\n");
	PARAMS_BAD("{", "string expected");
	PARAMS_BAD("{\"state\"}", "':' expected");
	PARAMS_BAD("{\"state\": }", "string or a non-negative integer");
	PARAMS_BAD("{\"state\": {\"x\": 1}}", "nothing nested");
	PARAMS_BAD("{\"state\": [1]}", "nothing nested");
	PARAMS_BAD("{\"state\": true}", "string or a non-negative integer");
	PARAMS_BAD("{\"weight\": -1}", "string or a non-negative integer");
	PARAMS_BAD("{\"weight\": 1.5}", "',' or '}' expected");
	PARAMS_BAD("{\"state\": \"drain\",}", "string expected");
	PARAMS_BAD("{\"state\": \"drain\"} x", "after the object");
	PARAMS_BAD("{\"state\": \"drain\"}{}", "after the object");
	PARAMS_BAD("{\"state\": \"dr", "unterminated");
	PARAMS_BAD("{\"state\": \"a\tb\"}", "control character");
	PARAMS_BAD("{\"state\": \"\\x\"}", "bad escape");
	PARAMS_BAD("{\"state\": \"\\u00e9\"}", "only ASCII");
	PARAMS_BAD("{\"state\": \"\\u0000\"}", "only ASCII");
	PARAMS_BAD("{\"state\": \"\\u12\"}", "bad \\u escape");
	PARAMS_BAD("{\"a\": 1, \"a\": 2}", "given twice");
	PARAMS_BAD("{\"\": 1}", "empty parameter name");
	params_bad("{\"a\": \"\0\"}", 9, "control character");
}

static void
server_bad(const char *text, const char *want)
{
	struct admin_params ps;
	char why[200] = "";
	unsigned weight;
	int st;

	assert_int_equal(admin_params_parse(text, strlen(text), &ps, why,
	    sizeof(why)), 0);
	if (admin_server_request(&ps, &st, &weight, why, sizeof(why)) != -1)
		fail_msg("'%s' taken", text);
	if (strstr(why, want) == NULL)
		fail_msg("'%s': '%s' lacks '%s'", text, why, want);
}

static void
test_server_request(void **state)
{
	struct admin_params ps;
	char why[200];
	unsigned weight;
	int st;
	bool up;

	(void)state;
	assert_int_equal(admin_params_parse("state=maint&weight=256", 22, &ps,
	    why, sizeof(why)), 0);
	assert_int_equal(admin_server_request(&ps, &st, &weight, why,
	    sizeof(why)), 0);
	assert_int_equal(st, BACKEND_ADMIN_MAINT);
	assert_int_equal(weight, 256);
	assert_int_equal(admin_params_parse("{\"weight\": 2}", 13, &ps, why,
	    sizeof(why)), 0);
	assert_int_equal(admin_server_request(&ps, &st, &weight, why,
	    sizeof(why)), 0);
	assert_int_equal(st, -1);
	assert_int_equal(weight, 2);
	server_bad("state=sleep", "bad state 'sleep'");
	server_bad("state=", "bad state ''");
	server_bad("weight=0", "bad weight '0' (1..256)");
	server_bad("weight=257", "bad weight");
	server_bad("weight=x", "bad weight");
	server_bad("{\"weight\": \"2x\"}", "bad weight");
	server_bad("{}", "nothing to set");
	server_bad("state=drain&color=red", "unknown parameter 'color'");

	assert_int_equal(admin_params_parse("state=down", 10, &ps, why,
	    sizeof(why)), 0);
	assert_int_equal(admin_health_request(&ps, &up, why, sizeof(why)), 0);
	assert_false(up);
	assert_int_equal(admin_params_parse("{\"state\":\"up\"}", 14, &ps, why,
	    sizeof(why)), 0);
	assert_int_equal(admin_health_request(&ps, &up, why, sizeof(why)), 0);
	assert_true(up);
	assert_int_equal(admin_params_parse("state=sideways", 14, &ps, why,
	    sizeof(why)), 0);
	assert_int_equal(admin_health_request(&ps, &up, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "up or down"));
	assert_int_equal(admin_params_parse("state=up&x=1", 12, &ps, why,
	    sizeof(why)), 0);
	assert_int_equal(admin_health_request(&ps, &up, why, sizeof(why)), -1);
}

/* Expect f's verdict on its arguments: ok, or refused naming want, in one
 * line. */
#define WHO_OK(call) do {						\
	char why_[300] = "";						\
	if ((call) != 0)						\
		fail_msg("%s refused: %s", #call, why_);		\
} while (0)
#define WHO_BAD(call, want) do {					\
	char why_[300] = "";						\
	if ((call) != -1)						\
		fail_msg("%s taken", #call);				\
	if (strstr(why_, (want)) == NULL || strchr(why_, '\n') != NULL)	\
		fail_msg("%s: '%s' lacks '%s'", #call, why_, (want));	\
} while (0)
#define W why_, sizeof(why_)

static void
test_origin(void **state)
{
	(void)state;
	WHO_OK(admin_origin_ok(NULL, "127.0.0.1:9090", W));
	WHO_OK(admin_origin_ok(NULL, NULL, W));
	WHO_OK(admin_origin_ok("http://127.0.0.1:9090", "127.0.0.1:9090", W));
	WHO_OK(admin_origin_ok("HTTP://LocalHost:9", "localhost:9", W));
	WHO_OK(admin_origin_ok("http://[::1]:9", "[::1]:9", W));
	WHO_BAD(admin_origin_ok("https://evil.example", "127.0.0.1:9090", W),
	    "Origin 'https://evil.example' is not this endpoint's");
	WHO_BAD(admin_origin_ok("http://evil.example", "evil.example:9090", W),
	    "not this endpoint's");
	WHO_BAD(admin_origin_ok("null", "127.0.0.1:9090", W), "'null'");
	WHO_BAD(admin_origin_ok("https://127.0.0.1:9090", "127.0.0.1:9090", W),
	    "not this endpoint's");
	WHO_BAD(admin_origin_ok("http://127.0.0.1:9091", "127.0.0.1:9090", W),
	    "not this endpoint's");
	WHO_BAD(admin_origin_ok("http://127.0.0.1:9090", NULL, W),
	    "not this endpoint's");
	WHO_BAD(admin_origin_ok("http://127.0.0.1:9090/", "127.0.0.1:9090", W),
	    "not this endpoint's");
}

static void
test_host(void **state)
{
	static const char *const ok[] = { "127.0.0.1", "127.0.0.1:9090",
	    "127.1.2.3:1", "localhost", "LOCALHOST:65535", "[::1]", "[::1]:9090",
	    NULL };
	static const char *const bad[] = { "evil.example", "evil.example:9090",
	    "128.0.0.1", "10.0.0.1:9090", "127.0.0.1:", "127.0.0.1:65536",
	    "127.0.0.1:x", "127.1", "0x7f.0.0.1", "127.0.0.1.evil.example",
	    "localhost.evil.example", "[::2]:9", "[::1]x", "[::1", "::1",
	    "[::ffff:127.0.0.1]", "localhost:9:9", NULL };

	(void)state;
	for (size_t i = 0; ok[i] != NULL; i++)
		WHO_OK(admin_host_ok(ok[i], W));
	for (size_t i = 0; bad[i] != NULL; i++)
		WHO_BAD(admin_host_ok(bad[i], W), "is not 127.0.0.1, [::1] or "
		    "localhost");
	WHO_BAD(admin_host_ok(NULL, W), "a Host header is required");
	WHO_BAD(admin_host_ok("", W), "a Host header is required");
}

static void
test_type(void **state)
{
	(void)state;
	WHO_OK(admin_type_ok("application/x-www-form-urlencoded", W));
	WHO_OK(admin_type_ok("Application/JSON", W));
	WHO_OK(admin_type_ok("application/json; charset=utf-8", W));
	WHO_OK(admin_type_ok(" application/x-www-form-urlencoded ;charset=UTF-8",
	    W));
	WHO_BAD(admin_type_ok("text/plain", W), "Content-Type 'text/plain': a "
	    "POST is application/x-www-form-urlencoded or application/json");
	WHO_BAD(admin_type_ok("text/plain; charset=utf-8", W), "text/plain");
	WHO_BAD(admin_type_ok(NULL, W), "Content-Type ''");
	WHO_BAD(admin_type_ok("", W), "a POST is");
	WHO_BAD(admin_type_ok("multipart/form-data; boundary=x", W), "a POST is");
	WHO_BAD(admin_type_ok("application/jsonx", W), "a POST is");
	WHO_BAD(admin_type_ok("application/json; boundary=x", W), "a POST is");
}

static void
test_gather_whole(void **state)
{
	(void)state;
	WHO_OK(admin_gather_whole(4, 4, W));
	WHO_OK(admin_gather_whole(0, 0, W));
	WHO_BAD(admin_gather_whole(3, 4, W), "only 3 of 4 workers answered in "
	    "time");
}

static void
test_proc_start(void **state)
{
	const char *self = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 "
	    "0 1 2 0 0 20 0 1 0 12345 1000 100 18446744073709551615\n";
	const char *stat = "cpu  1 2 3\nintr 5\nctxt 9\nbtime 1700000000\n"
	    "processes 77\n";
	double start = 0;

	(void)state;
	assert_int_equal(admin_proc_start(self, stat, 100, &start), 0);
	assert_true(start > 1700000123.44 && start < 1700000123.46);
	assert_int_equal(admin_proc_start(self, "btime 10\n", 100, &start), 0);
	assert_true(start > 133.44 && start < 133.46);
	assert_int_equal(admin_proc_start(self, "cpu 1\n", 100, &start), -1);
	assert_int_equal(admin_proc_start("4242 (x) S 1 2 3\n", stat, 100,
	    &start), -1);
	assert_int_equal(admin_proc_start("garbage", stat, 100, &start), -1);
	assert_int_equal(admin_proc_start(self, stat, 0, &start), -1);
}

static void
test_json_str(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char out[128];
	size_t n;

	(void)state;
	admin_json_str(b, "a\"b\\c\n\x01" "d");
	n = evbuffer_remove(b, out, sizeof(out) - 1);
	out[n] = '\0';
	assert_string_equal(out, "\"a\\\"b\\\\c\\u000a\\u0001d\"");
	admin_json_str(b, "");
	n = evbuffer_remove(b, out, sizeof(out) - 1);
	out[n] = '\0';
	assert_string_equal(out, "\"\"");
	evbuffer_free(b);
}

static void
test_config_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(BASE_GLOBAL "admin = 127.0.0.1:9090\n" BASE_LISTENER
	    BASE_BACKEND);
	assert_int_equal(port_of(&cfg->admin.addr), 9090);
	assert_null(cfg->admin.unix_path);
	assert_null(cfg->admin_token_file);
	config_unref(cfg);
	cfg = load_ok(BASE_GLOBAL "admin = [::1]:9090\n" BASE_LISTENER
	    BASE_BACKEND);
	config_unref(cfg);
	cfg = load_ok(BASE_GLOBAL "admin = unix:/run/spliced/admin.sock\n"
	    BASE_LISTENER BASE_BACKEND);
	assert_string_equal(cfg->admin.unix_path, "/run/spliced/admin.sock");
	config_unref(cfg);
	cfg = load_ok(BASE_GLOBAL "admin = *:9090\nadmin_token_file = /x/t\n"
	    BASE_LISTENER BASE_BACKEND);
	assert_true(cfg->admin.addr.wildcard);
	assert_string_equal(cfg->admin_token_file, "/x/t");
	config_unref(cfg);
	/* No admin key: off. */
	cfg = load_ok(BASE);
	assert_int_equal(cfg->admin.addr.len, 0);
	assert_null(cfg->admin.unix_path);
	config_unref(cfg);

	/* Reachable from elsewhere without a token: the admin line. */
	EXPECT_ERR(BASE_GLOBAL "admin = *:9090\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3: [global] admin: *:9090 is not a loopback address",
	    "admin_token_file");
	EXPECT_ERR(BASE_LISTENER BASE_BACKEND "[global]\nadmin = 0.0.0.0:9090\n",
	    "t.ini:7: [global] admin: 0.0.0.0:9090");
	EXPECT_ERR(BASE_GLOBAL "admin = [::]:9090\n" BASE_LISTENER BASE_BACKEND,
	    "t.ini:3: [global] admin:", "not a loopback");
	EXPECT_ERR(BASE_GLOBAL "admin = 192.0.2.1:9090\n" BASE_LISTENER
	    BASE_BACKEND, "t.ini:3: [global] admin: 192.0.2.1:9090");
	EXPECT_ERR(BASE_GLOBAL "admin = 127.0.0.1\n", "t.ini:3: [global] admin:",
	    "missing port");
	EXPECT_ERR(BASE_GLOBAL "admin = unix:\n", "t.ini:3: [global] admin:",
	    "unix:PATH");
	EXPECT_ERR(BASE_GLOBAL "admin = unix:/" "0123456789012345678901234567890"
	    "1234567890123456789012345678901234567890123456789012345678901234567"
	    "890123456789\n", "t.ini:3: [global] admin:", "shorter than 108");
	EXPECT_ERR(BASE_GLOBAL "admin_token_file =\n",
	    "t.ini:3: [global] admin_token_file: empty value");
	EXPECT_ERR(BASE_GLOBAL "admin = 127.0.0.1:1\nadmin = 127.0.0.1:2\n",
	    "t.ini:4: [global] admin: set twice");
}

static void
test_bind(void **state)
{
	char dir[] = "/tmp/test_admin.XXXXXX", text[512], err[CONFIG_ERR_MAX];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct admin *a = NULL, *b = NULL;
	struct config *cfg;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/admin.sock", dir);
	/* A stale socket file: nobody listens on it. */
	assert_true((fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	snprintf(text, sizeof(text), BASE_GLOBAL "admin = unix:%s\n"
	    BASE_LISTENER BASE_BACKEND, sun.sun_path);
	cfg = load_ok(text);
	assert_int_equal(admin_bind(cfg, &a, err, sizeof(err)), 0);
	assert_non_null(a);
	assert_int_equal(stat(sun.sun_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	/* In use: refused, naming the key, and left alone. */
	assert_int_equal(admin_bind(cfg, &b, err, sizeof(err)), -1);
	assert_null(b);
	assert_non_null(strstr(err, "t.ini:3: [global] admin:"));
	assert_non_null(strstr(err, "in use"));
	admin_free(a);
	assert_int_equal(stat(sun.sun_path, &st), -1);
	/* Not a socket: never removed. */
	write_file(sun.sun_path, "x");
	assert_int_equal(admin_bind(cfg, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(stat(sun.sun_path, &st), 0);
	unlink(sun.sun_path);
	config_unref(cfg);
	/* A token file that cannot be read: the token key. */
	snprintf(text, sizeof(text), BASE_GLOBAL "admin = unix:%s\n"
	    "admin_token_file = %s/none\n" BASE_LISTENER BASE_BACKEND,
	    sun.sun_path, dir);
	cfg = load_ok(text);
	assert_int_equal(admin_bind(cfg, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "t.ini:4: [global] admin_token_file: "
	    "cannot read"));
	config_unref(cfg);
	/* Off: nothing to bind. */
	cfg = load_ok(BASE);
	assert_int_equal(admin_bind(cfg, &b, err, sizeof(err)), 0);
	assert_null(b);
	config_unref(cfg);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_token_file),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_params_form),
		cmocka_unit_test(test_params_json),
		cmocka_unit_test(test_server_request),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_type),
		cmocka_unit_test(test_gather_whole),
		cmocka_unit_test(test_proc_start),
		cmocka_unit_test(test_json_str),
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_bind),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
