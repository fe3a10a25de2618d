#!/usr/bin/env python3
"""Downloads and uploads of 0, 1, 65535, 65536, 65537 bytes, 1 MiB and 64 MiB,
and a bidirectional echo of 64 MiB running both ways at once, through one
proxy in the mode under test. For each: sha256 of what was sent equals what
arrived, the stream ends in a clean EOF, and the access line carries exactly
the byte counts, the reason and the server."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZES = [0, 1, 65535, 65536, 65537, H.MiB, 64 * H.MiB]


def start(ctx):
    src = ctx.backend(H.closer(), name="src")
    snk = ctx.backend(H.closer(), name="snk")
    ech = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(
        glob={"splice": ctx.mode},
        listeners={
            "down": {"backend": "src"},
            "up": {"backend": "snk"},
            "echo": {"backend": "echo"},
        },
        backends={
            "src": {"server": "s " + src.addr},
            "snk": {"server": "k " + snk.addr},
            "echo": {"server": "e " + ech.addr},
        }).start()
    return p, src, snk, ech


def test_downloads(ctx):
    p, src, _, _ = start(ctx)
    for i, size in enumerate(SIZES):
        what = "download of %s" % H.human(size)
        src.expect(H.source(size, seed=100 + i))
        mark = p.mark()
        c = H.dial(p.port("down"))
        cport = H.local_port(c)
        got = H.read_stream(c)
        c.close()
        sent = src.result(i)
        H.check(sent.get("sent_ok"), what + ": the backend sent everything",
                "sent_ok", sent)
        H.check_eq(got.end, "eof", what + ": how the client's stream ended")
        H.check_eq(got.n, size, what + ": bytes the client received")
        H.check_eq(got.sha, sent["sha"], what + ": sha256 received vs sent")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, down=size, reason="server_eof",
                       server="s/" + src.addr, what=what)
        H.log("%s ok: %s" % (what, {k: a[k] for k in H.ACCESS_INTS[:4]}))
    p.finish()


def test_uploads(ctx):
    p, _, snk, _ = start(ctx)
    for i, size in enumerate(SIZES):
        what = "upload of %s" % H.human(size)
        snk.expect(H.sink())
        mark = p.mark()
        c = H.dial(p.port("up"))
        cport = H.local_port(c)
        sha = H.send_stream(c, 200 + i, size)
        c.shutdown(H.socket.SHUT_WR)
        # The sink closes once it saw EOF: the client then sees EOF too.
        tail = H.read_stream(c)
        c.close()
        got = snk.result(i)
        H.check_eq(got.get("end"), "eof", what + ": how the backend's stream ended")
        H.check_eq(got.get("n"), size, what + ": bytes the backend received")
        H.check_eq(got.get("sha"), sha, what + ": sha256 received vs sent")
        H.check_eq((tail.end, tail.n), ("eof", 0),
                   what + ": client sees a clean EOF after the backend closed")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=size, down=0, reason="client_eof",
                       server="k/" + snk.addr, what=what)
        H.log("%s ok: %s" % (what, {k: a[k] for k in H.ACCESS_INTS[:4]}))
    p.finish()


def test_echo_both_ways(ctx):
    """The client writes 64 MiB while it reads the echo back, so both
    directions carry bulk data at the same time."""
    p, _, _, ech = start(ctx)
    size = 64 * H.MiB
    mark = p.mark()
    c = H.dial(p.port("echo"))
    cport = H.local_port(c)
    sent = {}

    def writer():
        try:
            sent["sha"] = H.send_stream(c, 300, size)
            c.shutdown(H.socket.SHUT_WR)
        except OSError as e:
            sent["error"] = repr(e)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    got = H.read_stream(c)
    t.join(H.IO_TIMEOUT)
    c.close()
    H.check("error" not in sent and not t.is_alive(), "echo: the client's writer finished",
            "sent everything", sent)
    H.check_eq(got.end, "eof", "echo: how the client's stream ended")
    H.check_eq(got.n, size, "echo: bytes echoed back")
    H.check_eq(got.sha, sent["sha"], "echo: sha256 echoed vs sent")
    r = ech.result(0)
    H.check_eq((r.get("n"), r.get("sha")), (size, sent["sha"]),
               "echo: what the backend received (n, sha)")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=size, down=size, reason="client_eof", what="echo")
    H.log("echo ok: %s" % {k: a[k] for k in H.ACCESS_INTS[:4]})
    p.finish()


if __name__ == "__main__":
    H.main([test_downloads, test_uploads, test_echo_both_ways], deadline=540,
           doc=__doc__)
