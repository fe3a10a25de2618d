#!/usr/bin/env python3
"""A stream that spliced cuts never looks as if it ended: when the proxy ends
a connection on its own, a peer whose incoming stream had not ended gets an
RST, never a clean EOF; a peer that got its whole stream may get a FIN.

idle, backend silent mid-stream: the backend sends 1 MiB and goes quiet
  without closing; timeout_idle = 1s. The client gets the 1 MiB (sha256
  equal) and then ECONNRESET; the backend, whose client never finished
  sending, gets ECONNRESET too; reason=idle_timeout.
idle, client finished: the same, but the client shut down writing first.
  The client still gets its 1 MiB and then ECONNRESET; the backend got the
  client's EOF, and its socket is left in CLOSE_WAIT (no RST followed the
  FIN it had).
shutdown_timeout: the same silent backend, shutdown_timeout = 1s, SIGTERM
  once the client has the 1 MiB: the client then gets ECONNRESET, the
  backend too; reason=shutdown; the proxy exits 0.
On a proxy that closes such connections with a FIN the client's read ends
in a clean EOF after 1 MiB, and these checks fail."""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 1 * H.MiB


def silent_source(seed, done):
    """Send SIZE bytes of stream seed, then read without sending until the
    proxy ends the connection (or `done` is set and the state is read).
    Result: sha, sent_ok, end (how its read ended), state (TCP state when
    `done` was set, if it was)."""
    def h(conn, be, idx):
        res = {"sha": H.send_stream(conn, seed, SIZE), "sent_ok": True}
        conn.settimeout(0.1)
        deadline = time.monotonic() + 30
        eof = False
        while time.monotonic() < deadline:
            if done.is_set():
                res["state"] = H.tcp_state(conn)
                break
            try:
                b = conn.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                res["end"] = "reset"
                return res
            if b == b"" and not eof:
                eof = True
                res["end"] = "eof"
            elif b == b"":
                # At EOF recv returns at once: wait for `done` instead.
                done.wait(0.1)
        res.setdefault("end", "timeout")
        return res
    return h


def read_cut(c, what):
    got = H.read_stream(c, deadline=time.monotonic() + 30)
    c.close()
    H.check_eq((got.end, got.n), ("reset", SIZE),
               what + ": the client's stream (how it ended, bytes before)")
    return got


def test_idle_cut(ctx):
    be = ctx.backend(H.closer(), name="src")
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "src", "timeout_idle": "1s"}},
                  backends={"src": {"server": "s " + be.addr}})
    p.start()
    for i, half in enumerate((False, True)):
        what = "backend silent after 1 MiB, client %s" % (
            "done sending" if half else "still open")
        done = threading.Event()
        be.expect(silent_source(70 + i, done))
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        if half:
            c.shutdown(socket.SHUT_WR)
        got = read_cut(c, what)
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, down=SIZE, reason="idle_timeout", what=what)
        done.set()
        r = be.result(i)
        H.check_eq(got.sha, r.get("sha"), what + ": sha256 of what the client got")
        if half:
            H.check_eq((r.get("end"), r.get("state")), ("eof", H.TCP_CLOSE_WAIT),
                       what + ": the backend got a clean EOF and no RST "
                       "(how its read ended, its TCP state)")
        else:
            H.check_eq(r.get("end"), "reset",
                       what + ": how the backend's connection ended")
        H.log("%s: client got %d bytes then a reset; backend %s" % (
            what, got.n, r.get("end")))
    p.finish()


def test_shutdown_cut(ctx):
    be = ctx.backend(H.closer(), name="src")
    p = ctx.proxy(glob={"splice": ctx.mode, "shutdown_timeout": "1s"},
                  listeners={"web": {"backend": "src"}},
                  backends={"src": {"server": "s " + be.addr}})
    p.allow(r"(?i)shut|drain|stop|signal|terminat|timeout|clos")
    p.start()
    what = "backend silent after 1 MiB, SIGTERM with shutdown_timeout = 1s"
    done = threading.Event()
    be.expect(silent_source(80, done))
    mark = p.mark()
    c = H.dial(p.port())
    cport = H.local_port(c)
    first = H.read_stream(c, limit=SIZE, deadline=time.monotonic() + 30)
    H.check_eq((first.end, first.n), ("limit", SIZE), what + ": 1 MiB before SIGTERM")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    rest = H.read_stream(c, deadline=time.monotonic() + 30)
    c.close()
    H.check_eq((rest.end, rest.n), ("reset", 0),
               what + ": the client's stream after the 1 MiB (how it ended, bytes)")
    r = be.result(0)
    done.set()
    H.check_eq(first.sha, r.get("sha"), what + ": sha256 of what the client got")
    H.check_eq(r.get("end"), "reset", what + ": how the backend's connection ended")
    rc = p.wait_exit(30)
    H.check_eq(rc, 0, what + ": the proxy's exit status")
    a = p.access_for(cport, since=mark, timeout=5)
    H.check_access(a, up=0, down=SIZE, reason="shutdown", what=what)
    H.log("%s: reset %.1fs after SIGTERM" % (what, time.monotonic() - t0))
    p.stop()


if __name__ == "__main__":
    H.main([test_idle_cut, test_shutdown_cut], deadline=200, doc=__doc__)
