#!/usr/bin/env python3
"""An RST on one side reaches the other side as an RST, never as a clean EOF.

backend RST (download): the backend sends 4 MiB, then closes with SO_LINGER 0
  while the client is still reading: the client's recv must end in
  ConnectionResetError (after at most the 4 MiB, a prefix of what was sent).
  reason=server_reset.
client RST (upload): the client sends 4 MiB, then closes with SO_LINGER 0
  while the backend is still reading: the backend's recv must end in
  ConnectionResetError. reason=client_reset. This is the case that tells an
  RST from a FIN: the backend only reads, so a proxy that closed with a FIN
  would show up as a clean EOF there.
client RST (download): the client reads 1 MiB of a 64 MiB stream, then
  closes with SO_LINGER 0: the backend's send fails with a reset (ECONNRESET,
  or EPIPE once the reset was taken). reason=client_reset."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def start(ctx, be):
    return ctx.proxy(glob={"splice": ctx.mode},
                     listeners={"web": {"backend": "app"}},
                     backends={"app": {"server": "a " + be.addr}}).start()


def test_backend_rst(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = start(ctx, be)
    size = 4 * H.MiB
    for i, rate in enumerate((None, 8 * H.MiB)):
        what = "backend RST after %s, client reading %s" % (
            H.human(size), "at full speed" if rate is None else "slowly")
        be.expect(H.rst_after(size, seed=50 + i))
        mark = p.mark()
        c = H.dial(p.port(), rcvbuf=64 * H.KiB if rate else None)
        cport = H.local_port(c)
        got = H.read_stream(c, rate=rate, deadline=time.monotonic() + 120)
        c.close()
        r = be.result(i)
        H.check(r.get("sent_ok"), what + ": the backend sent its bytes", "sent_ok", r)
        H.check_eq(got.end, "reset", what + ": how the client's stream ended "
                   "(%d bytes read)" % got.n)
        H.check(got.n <= size, what + ": bytes the client got", "<= %d" % size, got.n)
        if got.n > 0:
            prefix = H.hashlib.sha256()
            left = got.n
            for chunk in H.stream_chunks(50 + i, size):
                prefix.update(chunk[:left])
                left -= min(left, len(chunk))
                if left == 0:
                    break
            H.check_eq(got.sha, prefix.hexdigest(),
                       what + ": what the client got is a prefix of what was sent")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, reason="server_reset", what=what)
        H.check(access_ok(a, "down", size), what + ": down bytes counted",
                "<= %d" % size, a)
        H.log("%s ok: client got %d bytes then a reset" % (what, got.n))
    p.finish()


def access_ok(a, d, size):
    return 0 <= H.access_total(a, d) <= size


def test_client_rst_upload(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = start(ctx, be)
    size = 4 * H.MiB
    for i in range(2):
        what = "client RST after sending %s (round %d)" % (H.human(size), i + 1)
        be.expect(H.sink())
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        H.send_stream(c, 60 + i, size)
        H.rst_close(c)
        r = be.result(i)
        H.check_eq(r.get("end"), "reset",
                   what + ": how the backend's stream ended (%s bytes read)" % r.get("n"))
        a = p.access_for(cport, since=mark)
        H.check_access(a, down=0, reason="client_reset", what=what)
        H.check(access_ok(a, "up", size), what + ": up bytes counted", "<= %d" % size, a)
        H.log("%s ok: backend read %d bytes then a reset" % (what, r.get("n")))
    p.finish()


def test_client_rst_download(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = start(ctx, be)
    size = 64 * H.MiB
    what = "client RST after reading 1 MiB of a 64 MiB download"
    be.expect(H.source(size, seed=70))
    mark = p.mark()
    c = H.dial(p.port())
    cport = H.local_port(c)
    got = H.read_stream(c, limit=H.MiB)
    H.check_eq((got.end, got.n), ("limit", H.MiB), what + ": the first MiB arrived")
    H.rst_close(c)
    r = be.result(0)
    H.check(r.get("sent_ok") is False and
            ("ConnectionResetError" in r.get("send_error", "") or
             "BrokenPipeError" in r.get("send_error", "")),
            what + ": the backend's send fails with a reset",
            "ConnectionResetError (or BrokenPipeError once the reset was taken)", r)
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=0, reason="client_reset", what=what)
    H.log("%s ok: backend got %s" % (what, r.get("send_error")))
    p.finish()


if __name__ == "__main__":
    H.main([test_backend_rst, test_client_rst_upload, test_client_rst_download],
           deadline=240, doc=__doc__)
