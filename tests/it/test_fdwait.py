#!/usr/bin/env python3
"""Out of fds, an accepted client is never dropped: it waits and is served.

The proxy runs unprivileged (as nobody when the test runs as root) with
RLIMIT_NOFILE = 128 and two workers in auto mode. Three bulk downloads of
24 MiB, read at 6 MiB/s, hold pipes and sockets throughout; meanwhile 300
clients connect at once, and each sends one byte, shuts down writing and
reads its echo to EOF. Far fewer than 300 fit in 128 fds, so the proxy
runs out of them again and again.

Asserted: every one of the 300 gets its byte back and a clean EOF (none is
reset), 300 access lines say client_eof (none connect_failed); the bulk
downloads arrive whole (sha256, clean EOF); the proxy logged its fd
shortage at most about once a second per worker; at the end its fd count
is back at the baseline. On a proxy that closes an accepted client whose
backend socket finds no fd, some of the 300 are reset."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

NOFILE = 128
CLIENTS = 300
BULK = 3
BULK_SIZE = 24 * H.MiB
BULK_RATE = 6 * H.MiB
FD_RE = r"(?i)too many open files|\bfds?\b"


def test_fd_wait(ctx):
    who = H.unprivileged(ctx)
    ech = ctx.backend(H.echo(), name="echo")
    src = ctx.backend(H.closer(), name="src")
    p = ctx.proxy(glob={"splice": ctx.mode, "workers": 2},
                  listeners={"web": {"backend": "echo"}, "bulk": {"backend": "src"}},
                  backends={"echo": {"server": "e " + ech.addr},
                            "src": {"server": "s " + src.addr}},
                  nofile=NOFILE, user=who[0] if who else None,
                  group=who[1] if who else None)
    p.allow(FD_RE, r"(?i)accept|socket|pipe|reserve")
    p.start()
    mark = p.mark()

    bulk = {}

    def download(i):
        c = H.dial(p.port("bulk"), rcvbuf=256 * H.KiB)
        bulk[i] = H.read_stream(c, rate=BULK_RATE, deadline=time.monotonic() + 120)
        c.close()
    threads = []
    for i in range(BULK):
        src.expect(H.source(BULK_SIZE, seed=600 + i))
        t = threading.Thread(target=download, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        src.wait_accepted(i + 1)

    t0 = time.monotonic()
    jobs = [H.ClientJob(seed=1000 + i, send_size=1) for i in range(CLIENTS)]
    H.drive_clients(p.port("web"), jobs, timeout=120)
    H.log("%d clients done in %.1f s; proxy fds now %d (limit %d)" % (
        CLIENTS, time.monotonic() - t0, p.fd_count(), NOFILE))
    bad = [j for j in jobs if (j.end, j.recv_n, j.recv_sha) != ("eof", 1, j.sent_sha)]
    H.check(not bad, "each of %d clients: its byte echoed, then a clean EOF" % CLIENTS,
            "all", "%d differ, e.g. %r" % (len(bad), bad[:5]))

    for t in threads:
        t.join(150)
    for i in range(BULK):
        r = src.result(i)
        got = bulk.get(i)
        H.check(got is not None, "bulk download %d finished" % i, "finished", "still running")
        H.check_eq((got.end, got.n, got.sha), ("eof", BULK_SIZE, r.get("sha")),
                   "bulk download %d (end, bytes, sha256)" % i)

    n = p.wait_access_count(CLIENTS + BULK, since=mark, timeout=60)
    H.check_eq(n, CLIENTS + BULK, "access lines")
    reasons = H.collections.Counter(a.get("reason") for a in p.access(mark))
    H.log("access reasons: %s" % dict(reasons))
    H.check_eq(reasons.get("client_eof", 0), CLIENTS,
               "clients that ended normally (reason=client_eof)")
    secs = time.monotonic() - t0 + 1
    fd_lines = [m for lvl, m in p.parsed(mark)
                if lvl in ("warn", "error") and H.re.search(FD_RE, m)]
    H.log("fd warnings: %d over %.1f s, e.g. %s" % (len(fd_lines), secs, fd_lines[:3]))
    H.check(fd_lines, "the proxy ran out of fds (the test's premise)",
            "fd warnings", "none")
    H.check(len(fd_lines) <= 2 * secs + 2, "fd warnings: at most one a second per worker",
            "<= %d" % (2 * secs + 2), len(fd_lines))
    p.finish()


if __name__ == "__main__":
    H.main([test_fd_wait], deadline=280, doc=__doc__)
