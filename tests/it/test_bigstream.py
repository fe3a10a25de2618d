#!/usr/bin/env python3
"""One 4 GiB stream through the proxy: every byte arrives (sha256 of what was
sent equals what arrived), the stream ends in a clean EOF, and the access
line counts exactly 4294967296 bytes (no 32-bit wrap anywhere).

Direction: a download (backend -> client) in modes always and auto, an
upload (client -> backend) in mode never, so both counters are taken past
2^32 across the three runs without doubling the cost of each.

SPLICED_IT_QUICK=1 shrinks the stream to 512 MiB: the ASan+UBSan run of the
suite sets it, because there every byte the proxy copies costs several times
more; the normal and portable runs keep 4 GiB."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 512 * H.MiB if H.QUICK else 4 * H.GiB


def test_big_stream(ctx):
    src = ctx.backend(H.closer(), name="src")
    snk = ctx.backend(H.closer(), name="snk")
    p = ctx.proxy(
        glob={"splice": ctx.mode},
        listeners={"down": {"backend": "src"}, "up": {"backend": "snk"}},
        backends={"src": {"server": "s " + src.addr},
                  "snk": {"server": "k " + snk.addr}}).start()
    download = ctx.mode != "never"
    what = "%s of %s" % ("download" if download else "upload", H.human(SIZE))
    H.log("%s starts" % what)
    mark = p.mark()
    if download:
        src.expect(H.source(SIZE, seed=4242))
        c = H.dial(p.port("down"))
        cport = H.local_port(c)
        got = H.read_stream(c)
        c.close()
        sent = src.result(0)
        H.check(sent.get("sent_ok"), what + ": the backend sent everything", "sent_ok", sent)
        H.check_eq(got.end, "eof", what + ": how the client's stream ended")
        H.check_eq(got.n, SIZE, what + ": bytes the client received")
        H.check_eq(got.sha, sent["sha"], what + ": sha256 received vs sent")
        elapsed = got.elapsed
    else:
        snk.expect(H.sink())
        c = H.dial(p.port("up"))
        cport = H.local_port(c)
        t0 = time.monotonic()
        sha = H.send_stream(c, 4242, SIZE)
        c.shutdown(H.socket.SHUT_WR)
        tail = H.read_stream(c)
        c.close()
        elapsed = time.monotonic() - t0
        got = snk.result(0)
        H.check_eq(got.get("end"), "eof", what + ": how the backend's stream ended")
        H.check_eq(got.get("n"), SIZE, what + ": bytes the backend received")
        H.check_eq(got.get("sha"), sha, what + ": sha256 received vs sent")
        H.check_eq((tail.end, tail.n), ("eof", 0), what + ": clean EOF at the client")
    a = p.access_for(cport, since=mark)
    if download:
        H.check_access(a, up=0, down=SIZE, reason="server_eof", what=what)
    else:
        H.check_access(a, up=SIZE, down=0, reason="client_eof", what=what)
    d = "down" if download else "up"
    if not ctx.splices:
        H.check_eq(a[d + "_splice"], 0, what + ": %s_splice with splice=%s, zero-copy %s"
                   % (d, ctx.mode, ctx.zc_backend))
    elif ctx.mode == "always":
        H.check_eq(a[d + "_copy"], 0, what + ": %s_copy with splice=always" % d)
    else:
        H.check(a[d + "_splice"] > SIZE // 2, what + ": most bytes spliced with splice=auto",
                "%s_splice > %d" % (d, SIZE // 2), a[d + "_splice"])
    H.log("%s ok in %.1fs: %s" % (what, elapsed, {k: a[k] for k in H.ACCESS_INTS[:4]}))
    p.finish()


if __name__ == "__main__":
    H.main([test_big_stream], deadline=840, doc=__doc__)
