/* tests/fuzz/fuzz_guard.h: what a parser under fuzzing must not do.
 *
 * The targets that link fuzz_guard.c are linked with --wrap for
 * getaddrinfo, fopen, open, getpwnam, getpwnam_r and getgrnam
 * (tests/fuzz/CMakeLists.txt): every call of these from splicedcore, the
 * target or libFuzzer's runtime goes through fuzz_guard.c first.
 *
 * getaddrinfo: addr_parse() resolves a host name of a bind or admin line
 * (start-up only, addr.h). A fuzzer must never send a DNS query, so every
 * lookup is made numeric (AI_NUMERICHOST): numeric forms ("0x7f.1",
 * "[fe80::1%lo]") keep their meaning, and a name fails as a name that
 * does not resolve would, down the same error path.
 *
 * The others: config.h promises that parsing opens no file (access_log
 * and admin_token_file are opened at start) and looks up no user. Between
 * fuzz_guard_begin() and fuzz_guard_end() such a call is recorded (and
 * then made: libFuzzer writes its crash file with them);
 * fuzz_guard_end() aborts if any was. */
#ifndef SPLICED_FUZZ_GUARD_H
#define SPLICED_FUZZ_GUARD_H

void fuzz_guard_begin(void);
void fuzz_guard_end(void);

#endif
