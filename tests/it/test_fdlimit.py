#!/usr/bin/env python3
"""fd exhaustion: the proxy runs with RLIMIT_NOFILE = 64 (one worker) and 80
clients connect to an echo backend, more than its fds can hold.

While saturated (its fd count near the limit), the proxy must not busy-loop
on accept: its utime+stime grows by less than 0.5 s over 2 s of wall time,
and it logs the condition at most about once a second. Then every client
closes; once the proxy's fd count is back at its baseline, 20 new
connections are each fully served (64 KiB echoed, sha256 equal, clean EOF),
and at the end the fd count is back at the baseline again.

warn/error lines about running out of fds (EMFILE/ENFILE, "Too many open
files", accept, socket, pipe and connect failures caused by it) are expected
here; any other is not."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

NOFILE = 64
CLIENTS = 80
FD_RE = r"(?i)too many open files|emfile|enfile|file descriptor|fd limit|\bfds?\b"


def test_fd_exhaustion(ctx):
    be = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(glob={"splice": ctx.mode, "workers": 1},
                  listeners={"web": {"backend": "echo"}},
                  backends={"echo": {"server": "e " + be.addr}},
                  nofile=NOFILE)
    p.allow(FD_RE, r"(?i)accept|socket|pipe|connect")
    p.start()
    port = p.port()

    clients = []
    mark = p.mark()
    t_sat = time.monotonic()
    for i in range(CLIENTS):
        c = H.dial(port, timeout=10)
        c.sendall(b"client %d\n" % i)
        clients.append(c)
    saturated = H.wait_until(lambda: p.fd_count() >= NOFILE - 4, 15, 0.1)
    time.sleep(1.0)
    fds = p.fd_count()
    H.log("proxy holds %d fds with %d clients (limit %d, baseline %d); backend accepted %d"
          % (fds, CLIENTS, NOFILE, p.baseline_fds, be.accepted))
    H.check(saturated and fds >= NOFILE // 2, "the proxy is out of fds (the test's premise)",
            ">= %d fds in use" % (NOFILE - 4), fds)
    cpu0 = p.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(2.0)
    cpu1 = p.cpu_seconds()
    wall = time.monotonic() - t0
    H.log("while saturated: %.2f s CPU over %.2f s wall" % (cpu1 - cpu0, wall))
    H.check(p.running(), "the proxy is still running while out of fds", "running", "exited")
    H.check(cpu1 - cpu0 < 0.5, "proxy CPU (utime+stime) while out of fds, over %.1f s" % wall,
            "< 0.5 s (no busy loop)", "%.2f s" % (cpu1 - cpu0))
    sat_secs = time.monotonic() - t_sat
    fd_lines = [m for lvl, m in p.parsed(mark)
                if lvl in ("warn", "error") and H.re.search(FD_RE, m)]
    H.log("fd warnings while saturated (%.1f s): %d, e.g. %s" % (
        sat_secs, len(fd_lines), fd_lines[:2]))
    H.check(len(fd_lines) <= sat_secs + 3, "fd-exhaustion log lines: at most about one a second",
            "<= %d over %.1f s" % (int(sat_secs + 3), sat_secs), len(fd_lines))

    for c in clients:
        c.close()
    clients = []
    back = H.wait_until(lambda: p.fd_count() <= p.baseline_fds, H.FD_SETTLE, 0.2)
    H.check(back, "fd count back at the baseline after every client closed",
            "<= %d" % p.baseline_fds, "%d:\n      %s" % (
                p.fd_count(), "\n      ".join(H.describe_fds(p.pid))))

    for i in range(20):
        what = "new connection %d after the exhaustion" % (i + 1)
        mark = p.mark()
        c = H.dial(port)
        cport = H.local_port(c)
        sha = H.send_stream(c, 500 + i, 64 * H.KiB)
        c.shutdown(H.socket.SHUT_WR)
        got = H.read_stream(c, deadline=time.monotonic() + 60)
        c.close()
        H.check_eq((got.end, got.n, got.sha), ("eof", 64 * H.KiB, sha),
                   what + ": echoed whole (end, bytes, sha256)")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=64 * H.KiB, down=64 * H.KiB, reason="client_eof", what=what)
    p.finish()


if __name__ == "__main__":
    H.main([test_fd_exhaustion], deadline=200, doc=__doc__)
