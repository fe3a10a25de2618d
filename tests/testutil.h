/* tests/testutil.h: small pieces the cmocka programs share.
 * Include after <cmocka.h>. */
#ifndef SPLICED_TESTUTIL_H
#define SPLICED_TESTUTIL_H

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* Open descriptors of this process (with the one opendir uses), to check
 * that what a test opened was closed again. */
static inline int
count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(dir);
	while (readdir(dir) != NULL)
		n++;
	closedir(dir);
	return n;
}

/* A connected pair over 127.0.0.1: *out the connecting end (blocking),
 * *in the accepted one, taken with accept4's flags (SOCK_NONBLOCK...).
 * Both close on exec; the listener is closed again. */
static inline void
tcp_connected_pair(int *out, int *in, int flags)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	*out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*out >= 0);
	assert_int_equal(connect(*out, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*in = accept4(lfd, NULL, NULL, flags | SOCK_CLOEXEC);
	assert_true(*in >= 0);
	close(lfd);
}

#endif
