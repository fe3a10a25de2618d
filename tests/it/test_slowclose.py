#!/usr/bin/env python3
"""The backend writes 8 MiB and closes at once, while the client (with a small
receive buffer) waits a moment and then reads slowly. The proxy still holds
bytes when the backend's FIN arrives: the client must get every byte, then a
clean EOF (recv returns b"", never ConnectionResetError), and the access line
says reason=server_eof with all 8 MiB counted."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 8 * H.MiB
RATE = 4 * H.MiB        # bytes/s: about 2 s of reading


def test_close_while_client_reads_slowly(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + be.addr}}).start()
    for i in range(2):
        what = "8 MiB then close, slow reader (round %d)" % (i + 1)
        be.expect(H.source(SIZE, seed=7 + i))
        mark = p.mark()
        c = H.dial(p.port(), rcvbuf=32 * H.KiB)
        cport = H.local_port(c)
        time.sleep(0.5)      # let the backend fill every buffer on the way
        got = H.read_stream(c, rate=RATE)
        c.close()
        r = be.result(i)
        H.check(r.get("sent_ok"), what + ": the backend sent everything and closed",
                "sent_ok", r)
        H.check_eq(got.end, "eof", what + ": how the client's stream ended")
        H.check_eq(got.n, SIZE, what + ": bytes the client received")
        H.check_eq(got.sha, r["sha"], what + ": sha256 received vs sent")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=0, down=SIZE, reason="server_eof", what=what)
        H.log("%s ok in %.1fs" % (what, got.elapsed))
    p.finish()


if __name__ == "__main__":
    H.main([test_close_while_client_reads_slowly], deadline=240, doc=__doc__)
