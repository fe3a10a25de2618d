#!/usr/bin/env python3
"""The access log proves which path ran.

With [global] splice = <mode under test>, through one listener:
  a 1 KiB echo exchange (1 KiB each way), a 64 MiB download, a 64 MiB upload.
  never:  every *_splice = 0 (all bytes copied).
  always: every *_copy = 0 (spliced from the first byte).
  auto:   the 1 KiB exchange is copied (up_splice = down_splice = 0); the
          64 MiB streams are mostly spliced (*_splice > half the bytes).
  In a build without splice (--version says "zero-copy: none") always and
  auto copy everything: every *_splice = 0.
A second listener overrides the mode (splice = never under a global
always/auto, splice = always under a global never): its 64 MiB download
follows the listener's mode, not the global one. Every stream's sha256 is
checked."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

BIG = 64 * H.MiB


def expect_mode(ctx, mode, a, what, big):
    """Check the splice/copy split of access line a for splice=mode."""
    splices = ctx.can_splice and mode in ("always", "auto")
    for d in ("up", "down"):
        total = H.access_total(a, d)
        if total == 0:
            continue
        sp, cp = a[d + "_splice"], a[d + "_copy"]
        label = "%s: %s bytes with splice=%s (zero-copy %s): %r" % (
            what, d, mode, ctx.zc_backend, {k: a[k] for k in H.ACCESS_INTS[:4]})
        if not splices:
            H.check_eq(sp, 0, label + " -> %s_splice" % d)
        elif mode == "always":
            H.check_eq(cp, 0, label + " -> %s_copy" % d)
        elif not big:
            H.check_eq(sp, 0, label + " -> %s_splice (a small exchange is copied)" % d)
        else:
            H.check(sp > total // 2, label + " -> most bytes spliced",
                    "%s_splice > %d" % (d, total // 2), sp)


def test_access_log_shows_the_path(ctx):
    ech = ctx.backend(H.echo(), name="echo")
    src = ctx.backend(H.closer(), name="src")
    snk = ctx.backend(H.closer(), name="snk")
    other = "always" if ctx.mode == "never" else "never"
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"echo": {"backend": "echo"},
                             "down": {"backend": "src"},
                             "up": {"backend": "snk"},
                             "over": {"backend": "src", "splice": other}},
                  backends={"echo": {"server": "e " + ech.addr},
                            "src": {"server": "s " + src.addr},
                            "snk": {"server": "k " + snk.addr}}).start()

    what = "1 KiB echo exchange"
    mark = p.mark()
    c = H.dial(p.port("echo"))
    cport = H.local_port(c)
    sha = H.send_stream(c, 1, H.KiB)
    got = H.read_stream(c, limit=H.KiB)
    c.shutdown(H.socket.SHUT_WR)
    tail = H.read_stream(c)
    c.close()
    H.check_eq((got.n, got.sha), (H.KiB, sha), what + ": echoed (bytes, sha256)")
    H.check_eq((tail.end, tail.n), ("eof", 0), what + ": clean EOF")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=H.KiB, down=H.KiB, reason="client_eof", what=what)
    expect_mode(ctx, ctx.mode, a, what, big=False)
    H.log("%s: %s" % (what, {k: a[k] for k in H.ACCESS_INTS[:4]}))

    def download(listener, mode, seed, idx):
        what = "64 MiB download via listener %s (splice=%s)" % (listener, mode)
        src.expect(H.source(BIG, seed))
        mark = p.mark()
        c = H.dial(p.port(listener))
        cport = H.local_port(c)
        got = H.read_stream(c)
        c.close()
        r = src.result(idx)
        H.check_eq((got.end, got.n, got.sha), ("eof", BIG, r.get("sha")),
                   what + ": (end, bytes, sha256)")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, down=BIG, reason="server_eof", what=what)
        expect_mode(ctx, mode, a, what, big=True)
        H.log("%s: %s" % (what, {k: a[k] for k in H.ACCESS_INTS[:4]}))

    download("down", ctx.mode, 2, 0)

    what = "64 MiB upload"
    snk.expect(H.sink())
    mark = p.mark()
    c = H.dial(p.port("up"))
    cport = H.local_port(c)
    sha = H.send_stream(c, 3, BIG)
    c.shutdown(H.socket.SHUT_WR)
    tail = H.read_stream(c)
    c.close()
    r = snk.result(0)
    H.check_eq((r.get("end"), r.get("n"), r.get("sha")), ("eof", BIG, sha),
               what + ": at the backend (end, bytes, sha256)")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=BIG, down=0, reason="client_eof", what=what)
    expect_mode(ctx, ctx.mode, a, what, big=True)
    H.log("%s: %s" % (what, {k: a[k] for k in H.ACCESS_INTS[:4]}))

    download("over", other, 4, 1)
    p.finish()


if __name__ == "__main__":
    H.main([test_access_log_shows_the_path], deadline=240, doc=__doc__)
