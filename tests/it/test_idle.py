#!/usr/bin/env python3
"""timeout_idle = 1s. (Not about the data path mode: runs once.)

idle: after one 1 KiB echo exchange the client goes quiet: the proxy closes
  the connection (the client sees EOF or a reset) no sooner than ~1 s after
  the last byte and well within 1 s + 10 s; reason=idle_timeout.
active up: the client sends 1 byte every 200 ms for 3 s to a sink (nothing
  comes back): the connection stays up, the sink gets all 15 bytes, and it
  ends with reason=client_eof when the client shuts down writing.
active down: the backend sends 1 byte every 200 ms for 3 s and closes; the
  client only reads: it gets all 15 bytes and a clean EOF; reason=server_eof.
Bytes in either direction keep a connection alive."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TICKS = 15
TICK = 0.2


def trickle_source():
    def h(conn, be, idx):
        sent = 0
        for i in range(TICKS):
            conn.sendall(b"%c" % (65 + i))
            sent += 1
            time.sleep(TICK)
        return {"n": sent}
    return h


def test_idle_and_active(ctx):
    ech = ctx.backend(H.echo(), name="echo")
    snk = ctx.backend(H.sink(), name="snk")
    trk = ctx.backend(trickle_source(), name="trk")
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={
                      "echo": {"backend": "echo", "timeout_idle": "1s"},
                      "up": {"backend": "snk", "timeout_idle": "1s"},
                      "down": {"backend": "trk", "timeout_idle": "1s"}},
                  backends={"echo": {"server": "e " + ech.addr},
                            "snk": {"server": "s " + snk.addr},
                            "trk": {"server": "t " + trk.addr}})
    p.allow(r"(?i)idle")
    p.start()

    # idle
    what = "idle connection"
    mark = p.mark()
    c = H.dial(p.port("echo"))
    cport = H.local_port(c)
    msg = bytes(range(256)) * 4
    c.sendall(msg)
    r = bytearray()
    while len(r) < len(msg):
        b = c.recv(len(msg) - len(r))
        if not b:
            break
        r += b
    H.check_eq(bytes(r), msg, what + ": the 1 KiB echo before going quiet")
    t_last = time.monotonic()
    end, secs = H.expect_closed(c, 11.0)
    c.close()
    since_last = time.monotonic() - t_last
    H.check(end in ("eof", "reset"), what + ": closed by the proxy",
            "EOF or reset within 11 s", "%s after %.1fs" % (end, secs))
    H.check(since_last >= 0.9, what + ": not closed before timeout_idle",
            ">= 0.9 s after the last byte", "%.2f s" % since_last)
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=len(msg), down=len(msg), reason="idle_timeout", what=what)
    H.log("%s: client saw %s %.2fs after the last byte" % (what, end, since_last))

    # active, upstream only
    what = "trickle client->backend"
    mark = p.mark()
    c = H.dial(p.port("up"))
    cport = H.local_port(c)
    for i in range(TICKS):
        c.sendall(b"%c" % (97 + i))
        time.sleep(TICK)
    c.shutdown(H.socket.SHUT_WR)
    tail = H.read_stream(c)
    c.close()
    res = snk.result(0)
    H.check_eq((res.get("n"), res.get("end")), (TICKS, "eof"),
               what + ": the sink got every byte, then EOF (bytes, end)")
    H.check_eq((tail.end, tail.n), ("eof", 0), what + ": the client sees a clean EOF")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=TICKS, down=0, reason="client_eof", what=what)

    # active, downstream only
    what = "trickle backend->client"
    mark = p.mark()
    c = H.dial(p.port("down"))
    cport = H.local_port(c)
    got = H.read_stream(c, deadline=time.monotonic() + 60)
    c.close()
    H.check_eq((got.end, got.n), ("eof", TICKS),
               what + ": the client got every byte, then EOF (end, bytes)")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=0, down=TICKS, reason="server_eof", what=what)
    p.finish()


if __name__ == "__main__":
    H.main([test_idle_and_active], deadline=180, doc=__doc__)
