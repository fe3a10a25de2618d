#!/usr/bin/env python3
"""An RST after a half-close is passed on, within 2 s, while the other peer
is silent (nothing would otherwise read the half-closed socket).

client: the client sends 64 KiB and shuts down writing; the backend reads
  the 64 KiB (sha256 equal) and the EOF and stays silent, its socket in
  CLOSE_WAIT. The client then resets (SO_LINGER 0). Within 2 s the
  backend's socket leaves CLOSE_WAIT (the proxy reset it); reason=
  client_reset. timeout_idle is 1 minute, so only the reset can end it.
backend: the mirror. The backend sends 64 KiB, shuts down writing, and
  resets once the client has read it all and the EOF; the client's socket
  leaves CLOSE_WAIT within 2 s; reason=server_reset."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.KiB
LIMIT = 2.0


def left_close_wait(sock, since, timeout):
    """Seconds from `since` until sock left CLOSE_WAIT, or None if it is
    still there after timeout."""
    if H.wait_until(lambda: H.tcp_state(sock) != H.TCP_CLOSE_WAIT, timeout, 0.01):
        return time.monotonic() - since
    return None


def proxy(ctx, be):
    return ctx.proxy(glob={"splice": ctx.mode},
                     listeners={"web": {"backend": "app", "timeout_idle": "1m"}},
                     backends={"app": {"server": "a " + be.addr}}).start()


def test_client_half_close_then_reset(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = proxy(ctx, be)
    for i in range(2):
        what = "client half-close then RST, backend silent (round %d)" % (i + 1)
        got_eof = threading.Event()
        rst_at = {}

        def silent_reader(conn, be, idx):
            res = {}
            r = H.read_stream(conn, deadline=time.monotonic() + 30)
            res.update(sha=r.sha, n=r.n, end=r.end)
            got_eof.set()
            # Wait for the client's RST, then for the proxy's.
            if not H.wait_until(lambda: "t" in rst_at, 30, 0.01):
                return res
            res["secs"] = left_close_wait(conn, rst_at["t"], 10)
            return res
        be.expect(silent_reader)
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        sha = H.send_stream(c, 90 + i, SIZE)
        c.shutdown(socket.SHUT_WR)
        H.check(got_eof.wait(30), what + ": the backend read the client's bytes and EOF",
                "within 30 s", "not yet")
        rst_at["t"] = time.monotonic()
        H.rst_close(c)
        r = be.result(i)
        H.check_eq((r.get("end"), r.get("n"), r.get("sha")), ("eof", SIZE, sha),
                   what + ": what the backend read (end, bytes, sha256)")
        secs = r.get("secs")
        H.check(secs is not None and secs <= LIMIT,
                what + ": the backend's socket leaves CLOSE_WAIT after the RST",
                "within %.0f s" % LIMIT, "%s" % ("not within 10 s" if secs is None
                                                 else "%.2f s" % secs))
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=SIZE, down=0, reason="client_reset", what=what)
        H.log("%s: passed on after %.2f s" % (what, secs))
    p.finish()


def test_backend_half_close_then_reset(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = proxy(ctx, be)
    for i in range(2):
        what = "backend half-close then RST, client silent (round %d)" % (i + 1)
        client_eof = threading.Event()

        def send_then_reset(conn, be, idx):
            res = {"sha": H.send_stream(conn, 95 + idx, SIZE)}
            conn.shutdown(socket.SHUT_WR)
            if client_eof.wait(30):
                res["t"] = time.monotonic()
                H.rst_close(conn)
            return res
        be.expect(send_then_reset)
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        got = H.read_stream(c, deadline=time.monotonic() + 30)
        client_eof.set()
        r = be.result(i)
        H.check_eq((got.end, got.n, got.sha), ("eof", SIZE, r.get("sha")),
                   what + ": what the client read (end, bytes, sha256)")
        H.check("t" in r, what + ": the backend reset", "reset", r)
        secs = left_close_wait(c, r["t"], 10)
        c.close()
        H.check(secs is not None and secs <= LIMIT,
                what + ": the client's socket leaves CLOSE_WAIT after the RST",
                "within %.0f s" % LIMIT, "not within 10 s" if secs is None
                else "%.2f s" % secs)
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, down=SIZE, reason="server_reset", what=what)
        H.log("%s: passed on after %.2f s" % (what, secs))
    p.finish()


if __name__ == "__main__":
    H.main([test_client_half_close_then_reset, test_backend_half_close_then_reset],
           deadline=200, doc=__doc__)
