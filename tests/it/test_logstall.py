#!/usr/bin/env python3
"""A log reader that stalls never stops the proxy (issue 10).

spliced's stderr is a pipe this test owns and reads only when it chooses:
until "info: ready", then not at all, as with `spliced ... 2>&1 | sleep
3600`. The pipe (64 KiB) fills after a few hundred access lines; from then
on the log writer thread is stuck in write(2) and the workers' queues fill
and drop lines.

stalled_reader: 10,000 short echo round trips (64 bytes, sha256 checked
  both ways) from 16 client threads, all while nobody reads stderr: every
  one completes, and the pipe is seen full (its 16 pages taken: more than
  half its bytes, as writes that do not fill a page leave the rest unused). Then the test reads again: every
  line is whole and in the log format, a line "warn: N log lines dropped
  while the log reader was stalled" comes (N > 0), and the access lines that
  arrive plus the N dropped make exactly one per connection. 300 more round
  trips with the reader keeping up: each gets its access line, nothing more
  is dropped. SIGTERM: exit 0, "info: stopped" last.
exit_while_stalled: the pipe full and unread, SIGTERM: spliced exits 0 within
  a few seconds (the writer gives up after 1 s), and does not hang.

On a spliced whose workers write stderr themselves, both fail within their
own deadlines: no round trip completes for STALL_GRACE seconds, or the
process does not exit."""

import ctypes
import ctypes.util
import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

N_STALLED = 10000
N_AFTER = 300
CLIENTS = 16
# A round trip of 64 bytes takes milliseconds; none at all for this long
# means the proxy stopped serving.
STALL_GRACE = 15.0
DROPPED_RE = re.compile(r" warn: (\d+) log lines dropped while the log reader was stalled$")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_test():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG


class Stderr:
    """The read end of spliced's stderr: read in the foreground (read_until)
    or by a thread (follow), never both at once; lines kept in order."""

    def __init__(self, fd):
        self.fd = fd
        self.partial = b""
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.thread = None

    def _take(self, timeout):
        """One read of what is there, waiting at most timeout."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        data = os.read(self.fd, 1 << 16)
        with self.cond:
            if not data:
                self.eof = True
            *whole, self.partial = (self.partial + data).split(b"\n")
            self.lines.extend(l.decode("utf-8", "replace") for l in whole)
            self.cond.notify_all()

    def read_until(self, pattern, timeout):
        """Reads until a line matches; the line, or None (timeout, EOF)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        seen = 0
        while True:
            with self.cond:
                for line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.lines)
            left = end - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self._take(min(left, 0.2))

    def follow(self):
        """From now on a thread reads everything, until EOF."""
        def run():
            while not self.eof:
                self._take(0.2)
        self.thread = threading.Thread(target=run, name="stderr-reader", daemon=True)
        self.thread.start()

    def unread(self):
        """Bytes in the pipe that nobody has read."""
        return int.from_bytes(fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4),
                              "little")

    def snapshot(self, since=0):
        with self.cond:
            return list(self.lines[since:])

    def tail(self, n=20):
        return "\n      ".join(self.snapshot()[-n:])


class Spliced:
    """spliced with stderr on a pipe the test owns (the Proxy class reads
    its stderr all the time, which is what this test must not do)."""

    def __init__(self, ctx, backend):
        self.port = H.free_port()
        text = H.render_config({"workers": 2, "log_level": "info", "splice": ctx.mode,
                                "shutdown_timeout": "5s"},
                               {"web": {"backend": "echo"}},
                               {"echo": {"server": "e " + backend.addr}},
                               {"web": [self.port]})
        path = ctx.write_file("proxy.ini", text)
        r, w = os.pipe()
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        try:
            self.proc = subprocess.Popen([ctx.spliced, "-c", path], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=w, env=env,
                                         preexec_fn=_die_with_test)
        finally:
            os.close(w)
        self.err = Stderr(r)
        ctx.register(self.close)
        line = self.err.read_until(r" info: ready", H.READY_TIMEOUT)
        H.check(line is not None, "spliced starts", "an 'info: ready' line",
                "none; exit %s; stderr:\n      %s" % (self.proc.poll(), self.err.tail()))
        self.capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.err.thread is not None:
            self.err.thread.join(5)
        os.close(self.err.fd)


def round_trips(p, n):
    """n echo round trips of 64 bytes from CLIENTS threads; fails as soon as
    one goes wrong or none completes for STALL_GRACE seconds. The exact
    number made (n, give or take the ones in flight at the end)."""
    clients = H.EchoClients(p.port, n=CLIENTS, sizes=(64,))
    t0 = time.monotonic()
    last = (0, t0)
    while clients.done < n and not clients.failures:
        done = clients.done
        if done != last[0]:
            last = (done, time.monotonic())
        elif time.monotonic() - last[1] > STALL_GRACE:
            clients.close()         # they are stuck: not joined
            H.fail("round trips go on while nobody reads spliced's stderr",
                   "%d, none taking %.0f s" % (n, STALL_GRACE),
                   "stuck at %d for %.0f s (%d bytes unread in the pipe): the "
                   "proxy stopped serving" % (done, STALL_GRACE, p.err.unread()))
        H.wait_until(lambda: clients.done >= n or clients.failures, 0.5, 0.02)
    clients.stop()
    H.check(not clients.failures, "every round trip echoes its bytes", "no failure",
            "%d, e.g. %s" % (len(clients.failures), clients.failures[:3]))
    H.log("%d round trips in %.1fs" % (clients.done, time.monotonic() - t0))
    return clients.done


def access_and_dropped(lines):
    access = sum(1 for l in lines if " info: access " in l)
    dropped = [int(m.group(1)) for m in map(DROPPED_RE.search, lines) if m]
    return access, dropped


def test_stalled_reader(ctx):
    be = ctx.backend(H.echo(bufsize=4 * H.KiB), name="echo")
    p = Spliced(ctx, be)
    mark = len(p.err.snapshot())
    t0 = time.monotonic()
    made = round_trips(p, N_STALLED)
    unread = p.err.unread()
    H.log("%d bytes unread in the %d-byte pipe" % (unread, p.capacity))
    H.check(unread > p.capacity // 2, "the reader was stalled", "the pipe full",
            "%d of %d bytes in it" % (unread, p.capacity))
    H.check(p.proc.poll() is None, "spliced runs", "running", p.proc.poll())

    p.err.follow()

    def counted():
        a, d = access_and_dropped(p.err.snapshot(mark))
        return a + sum(d) >= made and d
    H.wait_until(counted, 30, 0.1)
    lines = p.err.snapshot(mark)
    access, dropped = access_and_dropped(lines)
    H.log("after reading again: %d access lines, dropped %s, %.1fs since the first "
          "round trip" % (access, dropped, time.monotonic() - t0))
    H.check(dropped and min(dropped) > 0, "a warning with the count of dropped lines",
            "'warn: N log lines dropped while the log reader was stalled', N > 0",
            "none; last lines:\n      %s" % "\n      ".join(lines[-10:]))
    H.check_eq(access + sum(dropped), made, "access lines written plus lines dropped")
    bad = [l for l in lines if not H.LOG_RE.match(l)]
    H.check(not bad, "every line written is whole", "'TIMESTAMP level: text'",
            "%d not, e.g. %r" % (len(bad), bad[:3]))
    others = [l for l in lines if " info: access " not in l and not DROPPED_RE.search(l)]
    H.check(not others, "nothing else logged", "access lines and the warning", others[:10])

    # The reader keeps up again: every line arrives, nothing is dropped.
    mark = len(p.err.snapshot())
    made = round_trips(p, N_AFTER)
    H.wait_until(lambda: access_and_dropped(p.err.snapshot(mark))[0] >= made, 30, 0.1)
    access, dropped = access_and_dropped(p.err.snapshot(mark))
    H.check_eq((access, dropped), (made, []),
               "access lines, and warnings, with the reader keeping up")

    p.proc.send_signal(signal.SIGTERM)
    try:
        rc = p.proc.wait(30)
    except subprocess.TimeoutExpired:
        H.fail("spliced exits after SIGTERM", "within 30 s", "still running")
    p.err.thread.join(10)
    H.check_eq(rc, 0, "exit status after SIGTERM")
    last = p.err.snapshot()[-1:]
    H.check(last and last[0].endswith(" info: stopped"), "the last line",
            "'info: stopped'", last)


def test_exit_while_stalled(ctx):
    be = ctx.backend(H.echo(bufsize=4 * H.KiB), name="echo")
    p = Spliced(ctx, be)
    clients = H.EchoClients(p.port, n=CLIENTS, sizes=(64,))
    ctx.register(clients)
    # 2000 access lines (340 KB) cannot all be in a 64 KiB pipe: the writer
    # is in write(2). A spliced that blocks gets stuck at a few hundred.
    H.wait_until(lambda: clients.done >= 2000, 30, 0.05)
    clients.close()
    end = time.monotonic() + 10
    for t in clients.threads:
        t.join(max(0.0, end - time.monotonic()))
    unread = p.err.unread()
    H.log("%d round trips, %d bytes unread in the %d-byte pipe" % (
        clients.done, unread, p.capacity))
    H.check(unread > p.capacity // 2, "the reader is stalled", "the pipe full",
            "%d of %d bytes in it" % (unread, p.capacity))
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    try:
        rc = p.proc.wait(15)
    except subprocess.TimeoutExpired:
        H.fail("spliced exits after SIGTERM with its stderr unread",
               "within 15 s", "still running (%d round trips were made)" % clients.done)
    H.log("exited %s in %.2fs" % (rc, time.monotonic() - t0))
    H.check_eq(rc, 0, "exit status after SIGTERM")


if __name__ == "__main__":
    H.main([test_stalled_reader, test_exit_while_stalled], deadline=240, doc=__doc__)
