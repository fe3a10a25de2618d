/* proxy/keepalive.c: tcp_keepalive onto a socket.
 *
 * Linux and FreeBSD name the three options TCP_KEEPIDLE, TCP_KEEPINTVL and
 * TCP_KEEPCNT; macOS calls the idle time TCP_KEEPALIVE, and older systems
 * lack some. A missing option fails with ENOPROTOOPT at run time (only when
 * the config sets it), never the build. */
#include "spliced/keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#if defined(TCP_KEEPIDLE)
#define KA_IDLE		TCP_KEEPIDLE
#elif defined(TCP_KEEPALIVE)
#define KA_IDLE		TCP_KEEPALIVE   /* macOS */
#else
#define KA_IDLE		(-1)
#endif
#ifdef TCP_KEEPINTVL
#define KA_INTERVAL	TCP_KEEPINTVL
#else
#define KA_INTERVAL	(-1)
#endif
#ifdef TCP_KEEPCNT
#define KA_COUNT	TCP_KEEPCNT
#else
#define KA_COUNT	(-1)
#endif

/* An IPPROTO_TCP option, unless v is 0 (the kernel's default stays).
 * opt < 0: this system lacks it. */
static int
tcp_opt(int fd, int opt, unsigned v)
{
	int x = (int)v;

	if (v == 0)
		return 0;
	if (opt < 0)
		return errno = ENOPROTOOPT, -1;
	return setsockopt(fd, IPPROTO_TCP, opt, &x, sizeof(x));
}

int
keepalive_apply(int fd, const struct config_keepalive *ka)
{
	int on = 1;

	if (!ka->on)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
	    tcp_opt(fd, KA_IDLE, ka->idle_s) < 0 ||
	    tcp_opt(fd, KA_INTERVAL, ka->interval_s) < 0 ||
	    tcp_opt(fd, KA_COUNT, ka->count) < 0)
		return -1;
	return 0;
}
