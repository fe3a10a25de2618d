#!/usr/bin/env python3
"""GET /metrics while bytes move, per splice mode.

Two workers, an admin endpoint on 127.0.0.1, three listeners:
  down: 6 downloads of 8 MiB and 40 of 1 KiB, run 8 at a time;
  up:   3 uploads of 8 MiB;
  held: one upload of 1 MiB whose client then stays open, silent.
- A scrape taken while the transfers run passes `promtool check metrics`
  (promtool from Debian's prometheus package, which tools/setup unpacks
  into .deps/; without it the test fails under CI=true and skips by hand).
- The held connection's 1 MiB shows in spliced_bytes_total{listener="held",
  direction="up"} while it is open (active = 1, no access line yet): bytes
  are counted as they move, not when a connection closes.
- After everything closed, spliced_bytes_total summed over modes equals,
  per listener and direction, exactly what the test moved (every stream's
  sha256 checked end to end), and connections_total / closed_total agree
  with the count of connections made.
- Which path ran shows: never: copy only; always (where splice exists):
  splice only; auto: the 1 KiB downloads copied and the 8 MiB ones
  mostly spliced (from their first byte, when the kernel already holds a
  buffer of them), so both modes have bytes."""

import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIG, SMALL, HELD = 8 * H.MiB, H.KiB, H.MiB
NBIG, NSMALL, NUP = 6, 40, 3


def promtool():
    """The promtool tools/setup unpacked, or one on PATH."""
    for p in (os.path.join(ROOT, ".deps", "promtool"),
              shutil.which("promtool")):
        if p and os.access(p, os.X_OK):
            return p
    if os.environ.get("CI") == "true":
        H.fail("promtool", "tools/setup unpacked it into .deps/", "not found")
    raise H.Skip("no promtool: run tools/setup")


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=H.IO_TIMEOUT) as r:
        H.check_eq(r.status, 200, "GET /metrics: status")
        ctype = r.headers.get("Content-Type", "")
        H.check(ctype.startswith("text/plain") and "version=0.0.4" in ctype,
                "GET /metrics: Content-Type", "text/plain; version=0.0.4", ctype)
        return r.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        H.check(m is not None, "a sample line", "NAME{LABELS} VALUE", line)
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(samples, name, **want):
    """The sum of name's samples whose labels include want."""
    n = 0
    for (k, labels), v in samples.items():
        d = dict(labels)
        if k == name and all(d.get(a) == b for a, b in want.items()):
            n += v
    return int(n)


def download(port, size, sha_of):
    c = H.dial(port)
    got = H.read_stream(c)
    c.close()
    H.check_eq((got.end, got.n, got.sha), ("eof", size, sha_of),
               "download of %d B: (end, bytes, sha256)" % size)


def upload(port, seed, size, be, results):
    c = H.dial(port)
    sha = H.send_stream(c, seed, size)
    c.shutdown(H.socket.SHUT_WR)
    H.read_stream(c)
    c.close()
    results.append(sha)


def run_jobs(jobs, width):
    """Run the callables jobs, width at a time; re-raise the first failure."""
    errors = []
    sem = threading.Semaphore(width)

    def one(f):
        try:
            f()
        except BaseException as e:     # reported below
            errors.append(e)
        finally:
            sem.release()
    threads = []
    for f in jobs:
        sem.acquire()
        t = threading.Thread(target=one, args=(f,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(H.IO_TIMEOUT * 4)
    if errors:
        raise errors[0]


def test_metrics_under_load(ctx):
    tool = promtool()
    big = ctx.backend(H.source(BIG, 7), name="big")
    small = ctx.backend(H.source(SMALL, 8), name="small")
    snk = ctx.backend(H.sink(), name="snk")
    held_be = ctx.backend(H.sink(), name="held")
    aport = H.free_port()
    p = ctx.proxy(glob={"splice": ctx.mode, "admin": "127.0.0.1:%d" % aport},
                  listeners={"down": {"backend": "big"},
                             "small": {"backend": "small"},
                             "up": {"backend": "snk"},
                             "held": {"backend": "held"}},
                  backends={"big": {"server": "b " + big.addr},
                            "small": {"server": "s " + small.addr},
                            "snk": {"server": "k " + snk.addr},
                            "held": {"server": "h " + held_be.addr}}).start()

    s0 = parse(scrape(aport))
    for name in ("down", "small", "up", "held"):
        H.check_eq(total(s0, "spliced_connections_total", listener=name), 0,
                   "before any client: connections_total{listener=%s}" % name)

    # The held connection: 1 MiB up, then silence with the socket open.
    hc = H.dial(p.port("held"))
    held_sha = H.send_stream(hc, 9, HELD)
    H.wait_until(lambda: held_be.active == 1, 10)

    def held_bytes():
        s = parse(scrape(aport))
        return (total(s, "spliced_bytes_total", listener="held", direction="up"),
                total(s, "spliced_connections_active", listener="held"))
    H.wait_until(lambda: held_bytes() == (HELD, 1), 30)
    H.check_eq(held_bytes(), (HELD, 1),
               "held open: (bytes up of listener held, its active connections)")
    H.check_eq([a for a in p.access() if a["listener"] == "held"], [],
               "held open: no access line yet")

    big_sha = H.stream_sha(7, BIG)
    small_sha = H.stream_sha(8, SMALL)
    ups = []
    jobs = [lambda: download(p.port("down"), BIG, big_sha)] * NBIG
    jobs += [lambda: download(p.port("small"), SMALL, small_sha)] * NSMALL
    jobs += [lambda i=i: upload(p.port("up"), 20 + i, BIG, snk, ups) for i in range(NUP)]
    scrapes = []
    done = threading.Event()

    def scraper():
        while not done.is_set() and len(scrapes) < 200:
            scrapes.append(scrape(aport))
            done.wait(0.1)
    st = threading.Thread(target=scraper, daemon=True)
    st.start()
    run_jobs(jobs, 8)
    done.set()
    st.join(30)
    H.check(len(scrapes) >= 1, "scrapes taken during the transfers", ">= 1",
            len(scrapes))
    path = os.path.join(ctx.tmp, "scrape.txt")
    with open(path, "w") as f:
        f.write(scrapes[len(scrapes) // 2])
    r = subprocess.run([tool, "check", "metrics"], stdin=open(path),
                       capture_output=True, timeout=60)
    H.check_eq((r.returncode, (r.stdout + r.stderr).decode().strip()), (0, ""),
               "promtool check metrics on a scrape under load")

    hc.shutdown(H.socket.SHUT_WR)
    H.read_stream(hc)
    hc.close()
    nconn = NBIG + NSMALL + NUP + 1
    p.wait_access_count(nconn)
    H.wait_until(lambda: len(snk.results) == NUP and len(held_be.results) == 1, 30)
    got_ups = sorted(r.get("sha") for r in snk.results)
    H.check_eq(got_ups, sorted(ups), "uploads at the backend (sha256)")
    H.check_eq(held_be.results[0].get("sha") if held_be.results else None,
               held_sha, "held upload at the backend (sha256)")

    s = parse(scrape(aport))
    want = {("down", "down"): NBIG * BIG, ("down", "up"): 0,
            ("small", "down"): NSMALL * SMALL, ("small", "up"): 0,
            ("up", "up"): NUP * BIG, ("up", "down"): 0,
            ("held", "up"): HELD, ("held", "down"): 0}
    for (lst, d), n in want.items():
        H.check_eq(total(s, "spliced_bytes_total", listener=lst, direction=d), n,
                   "spliced_bytes_total{listener=%s,direction=%s} summed over modes"
                   % (lst, d))
    H.check_eq(total(s, "spliced_connections_total"), nconn, "connections_total")
    H.check_eq(total(s, "spliced_connections_closed_total"), nconn,
               "connections_closed_total")
    H.check_eq(total(s, "spliced_connections_active"), 0, "connections_active")
    H.check_eq(total(s, "spliced_server_connections_total", backend="big",
                     server="b"), NBIG, "server_connections_total{big/b}")
    H.check_eq(total(s, "spliced_connection_duration_seconds_count"), nconn,
               "connection_duration_seconds_count")

    splice = total(s, "spliced_bytes_total", mode="splice")
    copy = total(s, "spliced_bytes_total", mode="copy")
    small_splice = total(s, "spliced_bytes_total", listener="small", mode="splice")
    down_splice = total(s, "spliced_bytes_total", listener="down", mode="splice")
    down_copy = total(s, "spliced_bytes_total", listener="down", mode="copy")
    H.log("bytes: splice %d, copy %d (down: splice %d, copy %d)"
          % (splice, copy, down_splice, down_copy))
    if ctx.mode == "never" or not ctx.can_splice:
        H.check_eq(splice, 0, "splice=%s: spliced bytes" % ctx.mode)
    elif ctx.mode == "always":
        H.check_eq(copy, 0, "splice=always: copied bytes")
    else:
        # The 8 MiB downloads may splice from their first byte (auto
        # asks the kernel how much is queued), so `down` may copy nothing;
        # the 1 KiB ones are what shows copying.
        H.check_eq(small_splice, 0, "splice=auto: 1 KiB downloads spliced")
        H.check(copy > 0, "splice=auto: copied bytes", "> 0 (the 1 KiB downloads)", copy)
        H.check(down_splice > NBIG * BIG // 2,
                "splice=auto: 8 MiB downloads", "mostly spliced",
                (down_splice, down_copy))
    p.finish()


if __name__ == "__main__":
    H.main([test_metrics_under_load], deadline=240, doc=__doc__)
