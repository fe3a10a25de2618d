#!/usr/bin/env python3
"""The kernel's per-user pipe budget (/proc/sys/fs/pipe-user-pages-soft,
16384 pages = 64 MiB by default): past it, an unprivileged user's new pipes
shrink to one page and F_SETPIPE_SZ is refused. Root is exempt, so the
proxy runs as an unprivileged user here: as `nobody` through setpriv when
the test runs as root (skipped, with the reason, when that is impossible),
as the current user otherwise.

splice = always, pipe_size = 1m, and 100 concurrent 8 MiB downloads: each
backend waits until all 100 connections are up before it sends, and the
clients start reading only 1.5 s later, so pipes fill and are held at once
(100 x 1 MiB is past the 64 MiB budget). Asserted: nothing is lost (each
stream's sha256 matches one the backends sent, each ends in a clean EOF, and
its access line counts 8 MiB); in a build with splice, most bytes were still
spliced: the pools hand out smaller pipes as more are out instead of running
into one-page pipes or copying (pipepool.h); and the proxy keeps serving
afterwards (a 1 MiB download, sha256 equal)."""

import collections
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

STREAMS = 100
SIZE = 8 * H.MiB


def test_pipe_budget(ctx):
    who = H.unprivileged(ctx)
    try:
        with open("/proc/sys/fs/pipe-user-pages-soft") as f:
            soft = int(f.read())
    except (OSError, ValueError):
        soft = -1
    H.log("running the proxy as %s; pipe-user-pages-soft = %d" % (
        "%s:%s" % who if who else "the current user (uid %d)" % os.geteuid(), soft))

    barrier = threading.Barrier(STREAMS, timeout=60)
    seeds = iter(range(STREAMS * 10))
    seed_lock = threading.Lock()

    def bulk(conn, be, idx):
        with seed_lock:
            seed = 9000 + next(seeds)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        res = H.source(SIZE, seed)(conn, be, idx)
        res["seed"] = seed
        return res
    be = ctx.backend(bulk, name="bulk")
    p = ctx.proxy(glob={"splice": "always", "pipe_size": "1m", "workers": 2},
                  listeners={"web": {"backend": "bulk"}},
                  backends={"bulk": {"server": "b " + be.addr}},
                  user=who[0] if who else None, group=who[1] if who else None)
    p.allow(r"(?i)pipe")
    p.start()
    # The premise: the kernel applies the budget to this process (not root,
    # neither CAP_SYS_RESOURCE nor CAP_SYS_ADMIN).
    euid = int(p.status_field("Uid").split()[1])
    cap_eff = int(p.status_field("CapEff"), 16)
    exempt = euid == 0 or cap_eff & ((1 << 24) | (1 << 21))
    H.check(not exempt, "the proxy runs unprivileged (the pipe budget applies to it)",
            "euid != 0, no CAP_SYS_RESOURCE/CAP_SYS_ADMIN",
            "euid %d, CapEff %x" % (euid, cap_eff))
    mark = p.mark()
    jobs = [H.ClientJob(seed=i, send_size=0, half_close=False, read_delay=1.5)
            for i in range(STREAMS)]
    H.drive_clients(p.port(), jobs, timeout=240)
    results = be.wait_results(STREAMS, timeout=60)
    bad = [j for j in jobs if j.end != "eof" or j.recv_n != SIZE]
    H.check(not bad, "each of %d streams: 8 MiB, then a clean EOF" % STREAMS, "all",
            "%d differ, e.g. %r" % (len(bad), bad[:5]))
    bad_send = [r for r in results if not r.get("sent_ok")]
    H.check(not bad_send, "every backend sent its 8 MiB", "all %d" % STREAMS,
            "%d failed, e.g. %r" % (len(bad_send), bad_send[:3]))
    sent = collections.Counter(r["sha"] for r in results)
    got = collections.Counter(j.recv_sha for j in jobs)
    H.check_eq(got, sent, "the sha256 of the streams received vs those sent (multiset)")
    H.check_eq(p.wait_access_count(STREAMS, since=mark, timeout=60), STREAMS, "access lines")
    lines = p.access(mark)
    wrong = [a for a in lines if H.access_total(a, "down") != SIZE]
    H.check(not wrong, "access lines count 8 MiB down each", "all", wrong[:3])
    spliced = sum(a["down_splice"] for a in lines)
    copied = sum(a["down_copy"] for a in lines)
    H.log("down bytes: %d spliced, %d copied (%.1f%% copied); warnings: %s" % (
        spliced, copied, 100.0 * copied / max(1, spliced + copied), p.warnings()[:3]))
    if ctx.can_splice:
        # With 1 MiB pipes only 56 streams would fit the budget's 7/8.
        H.check(spliced > copied, "most bytes spliced past the 1 MiB pipes' budget "
                "(smaller pipes, not copying)", "> %d" % copied, spliced)
    else:
        H.check_eq(spliced, 0, "bytes spliced in a build with zero-copy %s" % ctx.zc_backend)

    # still serving
    be.default = H.source(H.MiB, seed=77)
    mark = p.mark()
    c = H.dial(p.port())
    cport = H.local_port(c)
    r = H.read_stream(c)
    c.close()
    H.check_eq((r.end, r.n, r.sha), ("eof", H.MiB, H.stream_sha(77, H.MiB)),
               "a download after the burst (end, bytes, sha256)")
    H.check_access(p.access_for(cport, since=mark), up=0, down=H.MiB, reason="server_eof",
                   what="download after the burst")
    p.finish()


if __name__ == "__main__":
    H.main([test_pipe_budget], deadline=330, doc=__doc__)
