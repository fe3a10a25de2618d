/* include/spliced/statuspage.h: the status page, proxy/status.html, as bytes.
 *
 * The admin endpoint answers GET / with these bytes (text/html; charset=utf-8).
 * The build embeds the file (cmake/embed.cmake writes statuspage.c into the
 * build directory, again whenever the HTML changes), so the binary needs no
 * file at run time. The page is self-contained: inline CSS and script, no
 * external resource; it polls the relative URL `status` and POSTs
 * `servers/BACKEND/SERVER` (DESIGN.md section 6).
 *
 * statuspage_html holds statuspage_html_len bytes, the file exactly, and then
 * one NUL that the length does not count. Read-only, shared by all threads. */
#ifndef SPLICED_STATUSPAGE_H
#define SPLICED_STATUSPAGE_H

#include <stddef.h>

extern const unsigned char statuspage_html[];
extern const size_t statuspage_html_len;

#endif
