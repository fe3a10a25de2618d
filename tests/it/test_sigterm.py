#!/usr/bin/env python3
"""SIGTERM: stop accepting, drain, exit 0.

drain: a 64 MiB download is in flight (the client reads at about 16 MiB/s
  through a small receive buffer, so it lasts ~4 s) when the proxy gets
  SIGTERM after 4 MiB arrived. New connections are then refused (a connect
  gets ECONNREFUSED within 10 s of the signal, and the next three attempts
  too); the transfer in flight completes intact (sha256, clean EOF, access
  line with 64 MiB and reason=server_eof); the proxy exits 0.
shutdown_timeout: with shutdown_timeout = 1s, an idle connection still open
  at SIGTERM is closed by the proxy (EOF or reset) within 1 s + 10 s, its
  access line says reason=shutdown, and the proxy exits 0."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB


def refused(port):
    """'refused', or 'accepted' (TCP connect succeeded)."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((H.LOCAL, port))
        return "accepted"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "error %r" % (e,)
    finally:
        s.close()


def test_drain_on_sigterm(ctx):
    be = ctx.backend(H.closer(), name="src")
    p = ctx.proxy(glob={"splice": ctx.mode, "shutdown_timeout": "60s"},
                  listeners={"web": {"backend": "src"}},
                  backends={"src": {"server": "s " + be.addr}})
    p.allow(r"(?i)shut|drain|stop|signal|terminat")
    p.start()
    port = p.port()
    be.expect(H.source(SIZE, seed=31))
    mark = p.mark()
    c = H.dial(port, rcvbuf=64 * H.KiB)
    cport = H.local_port(c)
    state = {"sent": False}

    def progress(n):
        if n >= 4 * H.MiB and not state["sent"]:
            state["sent"] = True
            state["t"] = time.monotonic()
            p.signal(signal.SIGTERM)
            # While the transfer goes on, new connections must be refused.
            outcomes = []
            end = time.monotonic() + 10
            while time.monotonic() < end:
                o = refused(port)
                outcomes.append(o)
                if o == "refused":
                    break
                time.sleep(0.05)
            for _ in range(3):
                outcomes.append(refused(port))
            state["outcomes"] = outcomes
    got = H.read_stream(c, rate=16 * H.MiB, on_progress=progress,
                        deadline=time.monotonic() + 120)
    c.close()
    H.check(state["sent"], "SIGTERM was sent mid-transfer", "sent", "not sent")
    outs = state["outcomes"]
    H.log("connect attempts after SIGTERM: %s" % outs)
    H.check("refused" in outs and all(o == "refused" for o in outs[outs.index("refused"):]),
            "new connections after SIGTERM", "refused within 10 s, and from then on",
            outs)
    r = be.result(0)
    H.check(r.get("sent_ok"), "the backend sent everything", "sent_ok", r)
    H.check_eq(got.end, "eof", "how the transfer in flight ended")
    H.check_eq(got.n, SIZE, "bytes of the transfer in flight")
    H.check_eq(got.sha, r["sha"], "sha256 of the transfer in flight vs sent")
    rc = p.wait_exit(90)
    H.check(rc is not None, "the proxy exits after draining", "exit within 90 s", "running")
    a = p.access_for(cport, since=mark, timeout=5)
    H.check_access(a, up=0, down=SIZE, reason="server_eof", what="transfer during drain")
    H.log("drained and exited %s, %.1fs after SIGTERM" % (rc, time.monotonic() - state["t"]))
    p.stop()


def test_shutdown_timeout(ctx):
    be = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(glob={"splice": ctx.mode, "shutdown_timeout": "1s"},
                  listeners={"web": {"backend": "echo"}},
                  backends={"echo": {"server": "e " + be.addr}})
    p.allow(r"(?i)shut|drain|stop|signal|terminat|timeout|clos")
    p.start()
    mark = p.mark()
    c = H.dial(p.port())
    cport = H.local_port(c)
    c.sendall(b"ping\n")
    H.check_eq(c.recv(5), b"ping\n", "echo before SIGTERM")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    end, secs = H.expect_closed(c, 11)
    c.close()
    H.check(end in ("eof", "reset"), "an idle connection at SIGTERM + shutdown_timeout",
            "closed by the proxy within 11 s", "%s after %.1fs" % (end, secs))
    rc = p.wait_exit(30)
    H.check(rc is not None, "the proxy exits after shutdown_timeout", "exit within 30 s",
            "running")
    a = p.access_for(cport, since=mark, timeout=5)
    H.check_access(a, up=5, down=5, reason="shutdown", what="connection cut at shutdown")
    H.log("idle connection closed (%s) %.1fs after SIGTERM; exit %s after %.1fs" % (
        end, secs, rc, time.monotonic() - t0))
    p.stop()


if __name__ == "__main__":
    H.main([test_drain_on_sigterm, test_shutdown_timeout], deadline=240, doc=__doc__)
