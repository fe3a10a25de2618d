#!/usr/bin/env python3
"""Backend connection: refusals and timeouts, retries, and a client that is
never left hanging. (Not about the data path mode: runs once.)

refused, next serves: servers a (refuses: a port bound but not listening)
  and b (echo), retries = 2: four connections in a row are all served, by b.
all refuse: servers a and b both refuse: the client is closed (EOF or reset)
  well within timeout_connect (2s) + a 5 s margin; reason=connect_failed,
  server=-.
timeout, next serves: server a drops SYNs (a listener with a full accept
  queue), b echoes; timeout_connect = 1s, retries = 1: served by b.
all time out: a and b both drop SYNs; timeout_connect = 1s, retries = 1:
  the client is closed after at least one timeout_connect and within
  (retries + 1) * timeout_connect + 5 s; reason=connect_failed, server=-."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def echo_roundtrip(port, seed, size=H.KiB):
    c = H.dial(port)
    cport = H.local_port(c)
    sha = H.send_stream(c, seed, size)
    c.shutdown(H.socket.SHUT_WR)
    got = H.read_stream(c)
    c.close()
    return cport, sha, got


def dead_port(ctx):
    s, port = H.reserve_refusing_port()
    ctx.register(s)
    return port


def test_refused_next_serves(ctx):
    live = ctx.backend(H.echo(), name="live")
    dead = dead_port(ctx)
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "2s"}},
                  backends={"app": {"server": ["a %s:%d" % (H.LOCAL, dead), "b " + live.addr],
                                    "retries": 2}})
    p.allow(r":%d\b" % dead, r"\ba/")
    p.start()
    for i in range(4):
        mark = p.mark()
        cport, sha, got = echo_roundtrip(p.port(), 80 + i)
        what = "connection %d with server a refusing" % (i + 1)
        H.check_eq((got.end, got.n, got.sha), ("eof", H.KiB, sha),
                   what + ": echoed by b (end, bytes, sha256)")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=H.KiB, down=H.KiB, reason="client_eof",
                       server="b/" + live.addr, what=what)
    H.check_eq(live.accepted, 4, "connections server b accepted")
    H.log("warn/error lines: %s" % p.warnings()[:6])
    p.finish()


def test_all_refuse(ctx):
    d1, d2 = dead_port(ctx), dead_port(ctx)
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "2s"}},
                  backends={"app": {"server": ["a %s:%d" % (H.LOCAL, d1),
                                               "b %s:%d" % (H.LOCAL, d2)],
                                    "retries": 2}})
    p.allow(r":(%d|%d)\b" % (d1, d2), r"\b[ab]/", r"(?i)connect")
    p.start()
    for i in range(3):
        what = "all servers refuse (client %d)" % (i + 1)
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        c.sendall(b"hello?\n")
        end, secs = H.expect_closed(c, 2 + 5)
        c.close()
        H.check(end in ("eof", "reset"), what + ": the client is closed",
                "EOF or reset within 7 s", "%s after %.1fs" % (end, secs))
        a = p.access_for(cport, since=mark)
        H.check_access(a, down=0, reason="connect_failed", server="-", what=what)
        H.log("%s: client saw %s after %.2fs" % (what, end, secs))
    H.log("warn/error lines: %s" % p.warnings()[:6])
    p.finish()


def blackhole(ctx):
    bh = H.blackhole()
    if bh is None:
        raise H.Skip("this kernel answers SYNs to a full accept queue: no way to make "
                     "a connect time out on 127.0.0.1")
    port, closer = bh
    ctx.register(closer)
    return port


def test_timeout_next_serves(ctx):
    live = ctx.backend(H.echo(), name="live")
    hole = blackhole(ctx)
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "1s"}},
                  backends={"app": {"server": ["a %s:%d" % (H.LOCAL, hole), "b " + live.addr],
                                    "retries": 1}})
    p.allow(r":%d\b" % hole, r"\ba/", r"(?i)timed? ?out")
    p.start()
    for i in range(2):
        mark = p.mark()
        t0 = time.monotonic()
        cport, sha, got = echo_roundtrip(p.port(), 90 + i)
        what = "connection %d with server a not answering" % (i + 1)
        H.check_eq((got.end, got.n, got.sha), ("eof", H.KiB, sha),
                   what + ": echoed by b (end, bytes, sha256)")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=H.KiB, down=H.KiB, reason="client_eof",
                       server="b/" + live.addr, what=what)
        H.log("%s: served in %.2fs" % (what, time.monotonic() - t0))
    H.log("warn/error lines: %s" % p.warnings()[:6])
    p.finish()


def test_all_time_out(ctx):
    h1, h2 = blackhole(ctx), blackhole(ctx)
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "1s"}},
                  backends={"app": {"server": ["a %s:%d" % (H.LOCAL, h1),
                                               "b %s:%d" % (H.LOCAL, h2)],
                                    "retries": 1}})
    p.allow(r":(%d|%d)\b" % (h1, h2), r"\b[ab]/", r"(?i)connect|timed? ?out")
    p.start()
    what = "all servers time out"
    mark = p.mark()
    c = H.dial(p.port())
    cport = H.local_port(c)
    c.sendall(b"hello?\n")
    end, secs = H.expect_closed(c, 2 * 1 + 5)
    c.close()
    H.check(end in ("eof", "reset"), what + ": the client is closed",
            "EOF or reset within 7 s", "%s after %.1fs" % (end, secs))
    H.check(secs >= 0.9, what + ": the proxy waited for timeout_connect (1s) at least",
            ">= 0.9 s", "%.2f s" % secs)
    a = p.access_for(cport, since=mark)
    H.check_access(a, down=0, reason="connect_failed", server="-", what=what)
    H.log("%s: client saw %s after %.2fs" % (what, end, secs))
    H.log("warn/error lines: %s" % p.warnings()[:6])
    p.finish()


if __name__ == "__main__":
    H.main([test_refused_next_serves, test_all_refuse, test_timeout_next_serves,
            test_all_time_out], deadline=240, doc=__doc__)
