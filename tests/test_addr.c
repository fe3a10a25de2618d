/* tests/test_addr.c: parsing, printing and comparing addresses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spliced/addr.h"

static char err[256];

static void
parse_ok(struct addr *a, const char *text, bool zero)
{
	err[0] = '\0';
	if (addr_parse(a, text, zero, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", text, err);
}

/* Refused, with a message that quotes the input and says why. */
static void
parse_bad(const char *text, const char *why)
{
	struct addr a;

	err[0] = '\0';
	if (addr_parse(&a, text, false, err, sizeof(err)) != -1)
		fail_msg("'%s' accepted", text);
	if (strstr(err, why) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text, err, why);
}

static const char *
fmt(const struct addr *a)
{
	static char buf[ADDR_TEXT_MAX];

	return addr_format((const struct sockaddr *)&a->ss, buf, sizeof(buf));
}

static unsigned
port_of(const struct addr *a)
{
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static bool
host_has_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void
test_ipv4(void **state)
{
	struct addr a;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;

	(void)state;
	parse_ok(&a, "127.0.0.1:8080", false);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_false(a.wildcard);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_string_equal(fmt(&a), "127.0.0.1:8080");

	parse_ok(&a, "0.0.0.0:1", false);
	assert_false(a.wildcard);   /* only "*" is written as a wildcard */
	assert_string_equal(fmt(&a), "0.0.0.0:1");
	parse_ok(&a, "10.1.2.3:65535", false);
	assert_string_equal(fmt(&a), "10.1.2.3:65535");
	parse_ok(&a, "10.1.2.3:0080", false);
	assert_int_equal(port_of(&a), 80);
}

static void
test_ipv6(void **state)
{
	struct addr a;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;

	(void)state;
	parse_ok(&a, "[::1]:8080", false);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 8080);
	assert_string_equal(fmt(&a), "[::1]:8080");

	parse_ok(&a, "[2001:db8::10]:443", false);
	assert_string_equal(fmt(&a), "[2001:db8::10]:443");
	parse_ok(&a, "[::]:80", false);
	assert_false(a.wildcard);
	assert_string_equal(fmt(&a), "[::]:80");
	parse_ok(&a, "[::ffff:1.2.3.4]:80", false);
	assert_string_equal(fmt(&a), "[::ffff:1.2.3.4]:80");
}

static void
test_wildcard(void **state)
{
	struct addr a;

	(void)state;
	parse_ok(&a, "*:8080", false);
	assert_true(a.wildcard);
	assert_int_equal(port_of(&a), 8080);
	if (host_has_ipv6()) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)&a.ss;

		assert_int_equal(a.ss.ss_family, AF_INET6);
		assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
		assert_string_equal(fmt(&a), "[::]:8080");
	} else {
		assert_int_equal(a.ss.ss_family, AF_INET);
		assert_string_equal(fmt(&a), "0.0.0.0:8080");
	}
}

static void
test_name(void **state)
{
	struct addr a;

	(void)state;
	parse_ok(&a, "localhost:9000", false);
	assert_false(a.wildcard);
	assert_int_equal(port_of(&a), 9000);
	if (a.ss.ss_family == AF_INET)
		assert_string_equal(fmt(&a), "127.0.0.1:9000");
	else
		assert_string_equal(fmt(&a), "[::1]:9000");
	parse_bad("no-such-host.invalid:80", "cannot resolve 'no-such-host."
	    "invalid' in 'no-such-host.invalid:80'");
}

static void
test_ports(void **state)
{
	struct addr a;

	(void)state;
	parse_bad("1.2.3.4:0", "port out of range in '1.2.3.4:0' (1..65535)");
	parse_bad("1.2.3.4:65536", "port out of range in '1.2.3.4:65536'");
	parse_bad("1.2.3.4:99999999999999999999", "port out of range");
	parse_bad("1.2.3.4:-1", "port is not a number in '1.2.3.4:-1'");
	parse_bad("1.2.3.4:+80", "port is not a number");
	parse_bad("1.2.3.4:80x", "port is not a number");
	parse_bad("1.2.3.4: 80", "port is not a number");
	parse_bad("1.2.3.4:http", "port is not a number");
	parse_bad("1.2.3.4:", "port is not a number in '1.2.3.4:'");
	parse_bad("[::1]:0", "port out of range in '[::1]:0'");
	parse_bad("*:0", "port out of range");

	/* tests bind to port 0 */
	parse_ok(&a, "127.0.0.1:0", true);
	assert_int_equal(port_of(&a), 0);
	parse_ok(&a, "[::1]:0", true);
	assert_string_equal(fmt(&a), "[::1]:0");
	assert_int_equal(addr_parse(&a, "127.0.0.1:65536", true, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "(0..65535)"));
}

static void
test_garbage(void **state)
{
	struct addr a;

	(void)state;
	parse_bad("", "empty address");
	assert_int_equal(addr_parse(&a, NULL, false, err, sizeof(err)), -1);
	parse_bad("127.0.0.1", "missing port in '127.0.0.1' (write HOST:PORT)");
	parse_bad("localhost", "missing port in 'localhost'");
	parse_bad("[::1]", "missing port in '[::1]'");
	parse_bad("[::1]80", "missing port in '[::1]80'");
	parse_bad("[::1:80", "missing ']' in '[::1:80'");
	parse_bad("::1:80", "IPv6 address without brackets in '::1:80'");
	parse_bad(":80", "missing host in ':80'");
	parse_bad("[]:80", "missing host in '[]:80'");
	parse_bad("[1.2.3.4]:80", "'1.2.3.4' is not an IPv6 address in "
	    "'[1.2.3.4]:80'");
	parse_bad("[fe80::zz]:80", "is not an IPv6 address");
	parse_bad("1.2.3:80", "'1.2.3' is not an IPv4 address in '1.2.3:80'");
	parse_bad("256.1.1.1:80", "is not an IPv4 address");
	parse_bad("127.1:80", "is not an IPv4 address");

	/* A short buffer gets a cut message, not an overrun. */
	{
		char small[8];

		assert_int_equal(addr_parse(&a, "nonsense", false, small,
		    sizeof(small)), -1);
		assert_int_equal(strlen(small), 7);
	}
}

static void
test_format(void **state)
{
	static const char *const round[] = {
		"127.0.0.1:1", "192.168.10.200:65535", "[::1]:80",
		"[2001:db8:1:2:3:4:5:6]:9000", "[fe80::1]:22",
	};
	struct sockaddr_un_like { sa_family_t family; char path[20]; } other;
	char buf[ADDR_TEXT_MAX], small[6];
	struct addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(round) / sizeof(round[0]); i++) {
		parse_ok(&a, round[i], false);
		assert_string_equal(fmt(&a), round[i]);
	}
	/* The longest there is fits ADDR_TEXT_MAX. */
	parse_ok(&a, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", false);
	assert_string_equal(addr_format((const struct sockaddr *)&a.ss, buf,
	    sizeof(buf)), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	/* A link-local address keeps its scope, both ways. */
	parse_ok(&a, "[fe80::1%lo]:22", false);
	assert_int_not_equal(((struct sockaddr_in6 *)&a.ss)->sin6_scope_id, 0);
	assert_string_equal(fmt(&a), "[fe80::1%lo]:22");

	parse_ok(&a, "127.0.0.1:8080", false);
	assert_ptr_equal(addr_format((const struct sockaddr *)&a.ss, small,
	    sizeof(small)), small);
	assert_string_equal(small, "127.0");
	assert_string_equal(addr_format(NULL, buf, sizeof(buf)), "(none)");
	memset(&other, 0, sizeof(other));
	other.family = AF_UNIX;
	assert_string_equal(addr_format((const struct sockaddr *)&other, buf,
	    sizeof(buf)), "(address family 1)");
}

static void
test_equal(void **state)
{
	struct addr a, b;

	(void)state;
	parse_ok(&a, "127.0.0.1:80", false);
	parse_ok(&b, "127.0.0.1:80", false);
	assert_true(addr_equal(&a, &b));
	parse_ok(&b, "127.0.0.1:81", false);
	assert_false(addr_equal(&a, &b));
	parse_ok(&b, "127.0.0.2:80", false);
	assert_false(addr_equal(&a, &b));
	parse_ok(&b, "[::ffff:127.0.0.1]:80", false);
	assert_false(addr_equal(&a, &b));   /* another family */

	parse_ok(&a, "[::1]:80", false);
	parse_ok(&b, "[0:0:0:0:0:0:0:1]:80", false);
	assert_true(addr_equal(&a, &b));
	parse_ok(&b, "[::1]:81", false);
	assert_false(addr_equal(&a, &b));

	/* "*" and the address it stands for are one address; a wildcard and
	 * a specific address are not. */
	parse_ok(&a, "*:80", false);
	parse_ok(&b, host_has_ipv6() ? "[::]:80" : "0.0.0.0:80", false);
	assert_true(addr_equal(&a, &b));
	parse_ok(&b, "127.0.0.1:80", false);
	assert_false(addr_equal(&a, &b));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
