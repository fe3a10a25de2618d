/* tests/testutil.h: small pieces the cmocka programs share.
 * Include after <cmocka.h>. */
#ifndef SPLICED_TESTUTIL_H
#define SPLICED_TESTUTIL_H

#include <dirent.h>

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

#endif
