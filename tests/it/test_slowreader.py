#!/usr/bin/env python3
"""Backpressure bounds the proxy's memory: 256 MiB from a fast backend to a
client that reads slowly (about 12 MiB/s, so roughly 20 s, through a 64 KiB
receive buffer). VmRSS of the proxy is sampled every 100 ms during the
transfer; its growth over the baseline (taken after a 1 MiB warm-up
transfer, so lazily allocated buffers are already counted) must stay under
16 MiB. Every byte arrives (sha256) and the stream ends in a clean EOF.

Under ASan, memory that is freed goes to a quarantine (256 MiB by default)
before it is reused, which would show up as RSS growth that is not the
proxy's: for this test only, the quarantine is turned off
(ASAN_OPTIONS quarantine_size_mb=0) when the binary is an ASan build."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 256 * H.MiB
RATE = 12 * H.MiB
LIMIT_KIB = 16 * 1024


def test_slow_reader_memory(ctx):
    be = ctx.backend(H.closer(), name="app")
    env = None
    if ctx.asan:
        opts = os.environ.get("ASAN_OPTIONS", "")
        env = {"ASAN_OPTIONS": (opts + ":" if opts else "") +
               "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"}
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + be.addr}}, env=env).start()
    # warm-up: one full transfer in the same mode
    be.expect(H.source(H.MiB, seed=1))
    c = H.dial(p.port())
    w = H.read_stream(c)
    c.close()
    H.check_eq((w.end, w.n), ("eof", H.MiB), "warm-up transfer")
    time.sleep(0.5)
    base = p.rss_kib()
    H.log("baseline VmRSS %d KiB" % base)

    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            try:
                samples.append(p.rss_kib())
            except OSError:
                return
            stop.wait(0.1)
    t = threading.Thread(target=sampler, daemon=True)
    be.expect(H.source(SIZE, seed=2))
    mark = p.mark()
    c = H.dial(p.port(), rcvbuf=64 * H.KiB)
    cport = H.local_port(c)
    t.start()
    got = H.read_stream(c, rate=RATE, deadline=time.monotonic() + 240)
    stop.set()
    t.join(5)
    c.close()
    r = be.result(1)
    peak = max(samples) if samples else base
    H.log("slow read of %s took %.1fs; VmRSS baseline %d KiB, peak %d KiB (+%d KiB), %d samples"
          % (H.human(SIZE), got.elapsed, base, peak, peak - base, len(samples)))
    H.check(r.get("sent_ok"), "the backend sent everything", "sent_ok", r)
    H.check_eq(got.end, "eof", "how the slow client's stream ended")
    H.check_eq(got.n, SIZE, "bytes the slow client received")
    H.check_eq(got.sha, r["sha"], "sha256 received vs sent")
    H.check(len(samples) >= 10, "VmRSS samples taken during the transfer", ">= 10",
            len(samples))
    H.check(peak - base < LIMIT_KIB, "proxy VmRSS growth during a 256 MiB slow read",
            "< %d KiB" % LIMIT_KIB, "%d KiB (baseline %d, peak %d)" % (peak - base, base, peak))
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=0, down=SIZE, reason="server_eof", what="slow reader")
    p.finish()


if __name__ == "__main__":
    H.main([test_slow_reader_memory], deadline=330, doc=__doc__)
