#!/usr/bin/env python3
"""Type=notify: what spliced tells systemd, on a NOTIFY_SOCKET the test owns.
(Runs once.)

The test binds a unix datagram socket, starts spliced with NOTIFY_SOCKET
naming it, and records every datagram with the time it arrived.

lifecycle: one listener over an echo backend.
  READY=1 first, with a STATUS= that mentions connections and listeners;
  right when it arrives a connect to the listener succeeds (READY means
  bound), and 1 MiB echoes back byte-exact (sha256).
  STATUS= alone again while serving (the periodic status), within 10 s.
  SIGHUP with a valid changed config (a second listener): RELOADING=1 with
  MONOTONIC_USEC= between the test's CLOCK_MONOTONIC before the signal and
  on arrival, then READY=1; the new listener serves.
  SIGHUP with an invalid config: RELOADING=1 (with MONOTONIC_USEC), then
  READY=1 whose STATUS says the reload failed; both listeners keep serving
  byte-exact.
  SIGTERM: STOPPING=1, then exit 0. The messages that change state are
  exactly READY, RELOADING, READY, RELOADING, READY, STOPPING, in order.
  Without NOTIFY_SOCKET nothing of this matters: every other script runs so.
watchdog: WATCHDOG_USEC=400000 (a ping expected every 200 ms), once with
  WATCHDOG_PID unset and once with WATCHDOG_PID = spliced's own pid (a
  wrapper: sh exports WATCHDOG_PID=$$, then execs spliced). Over 2 s, 5 to
  20 WATCHDOG=1. Then ONE worker thread (named spliced-w<N> in
  /proc/PID/task/*/comm) is stopped with ptrace (PTRACE_SEIZE +
  PTRACE_INTERRUPT), the others untouched: after a grace of 1 s no
  WATCHDOG=1 for 1.5 s, while the main thread still answers (a SIGHUP gets
  RELOADING=1 and READY=1). After PTRACE_DETACH the pings come back within
  2 s. If ptrace is not permitted here, that part is skipped (said why).
watchdog_other_pid: WATCHDOG_PID names another process: no WATCHDOG=1."""

import copy
import ctypes
import ctypes.util
import errno
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# The test decides what spliced sees of systemd.
for _v in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID",
           "LISTEN_FDS", "LISTEN_FDNAMES", "JOURNAL_STREAM"):
    os.environ.pop(_v, None)

SIZE = 1 * H.MiB
STATES = ("READY", "RELOADING", "STOPPING")


def require_libsystemd(ctx):
    """Skip unless this spliced was built with libsystemd (a build without
    it is a plain foreground daemon: no notify, no passed sockets)."""
    try:
        with open(ctx.spliced, "rb") as f:
            data = f.read()
    except OSError as e:
        H.fail("reading the spliced binary", "readable", repr(e))
    if b"libsystemd.so" not in data and b"sd_listen_fds_with_names" not in data:
        raise H.Skip("spliced was built without libsystemd (SPLICED_SYSTEMD=OFF "
                     "or not found): nothing to test here")


def mono_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notify:
    """A NOTIFY_SOCKET: every datagram as (time.monotonic(), {key: value},
    raw text), in arrival order. on_ready, if set, runs in the receiving
    thread when the first READY=1 arrives (before the next datagram is
    read)."""

    def __init__(self, ctx, name="notify"):
        self.path = os.path.join(ctx.tmp, name + ".sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.msgs = []
        self.cond = threading.Condition()
        self.stopping = False
        self.on_ready = None
        self.ready_seen = False
        ctx.register(self)
        self.thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                k, _, v = line.partition("=")
                fields[k] = v
            if H.VERBOSE:
                sys.stdout.write("  notify| %.3f %r\n" % (t, text))
            if "READY" in fields and not self.ready_seen:
                self.ready_seen = True
                if self.on_ready is not None:
                    self.on_ready()
            with self.cond:
                self.msgs.append((t, fields, text))
                self.cond.notify_all()

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()

    def mark(self):
        with self.cond:
            return len(self.msgs)

    def snapshot(self, since=0):
        with self.cond:
            return list(self.msgs[since:])

    def wait(self, pred, timeout, since=0):
        """The index of the first message (from `since`) for which
        pred(fields) holds, or None after timeout."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(since, len(self.msgs)):
                    if pred(self.msgs[i][1]):
                        return i
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def expect(self, key, timeout, since, what):
        i = self.wait(lambda f: key in f, timeout, since)
        if i is None:
            H.fail(what, "%s=... within %.0f s" % (key, timeout),
                   "none; messages since: %s" % self.describe(since))
        return i, self.msgs[i][1]

    def states(self):
        """[(index, 'READY'|'RELOADING'|'STOPPING', fields)]."""
        out = []
        for i, (t, f, _) in enumerate(self.snapshot()):
            for s in STATES:
                if f.get(s) == "1":
                    out.append((i, s, f))
        return out

    def count(self, key, t0, t1):
        return sum(1 for t, f, _ in self.snapshot() if key in f and t0 <= t <= t1)

    def describe(self, since=0, n=20):
        msgs = self.snapshot(since)
        if not msgs:
            return "(none)"
        return "\n      " + "\n      ".join(
            "%.3f %r" % (t, raw) for t, _, raw in msgs[-n:])


def roundtrip(port, seed, size=SIZE):
    """size bytes of stream seed through an echo path; fails unless they
    come back byte-exact."""
    H.check_eq(H.echo_trip(port, seed, size), None,
               "an echo round trip of %d bytes through port %d" % (size, port))


def check_status(fields, what):
    st = fields.get("STATUS")
    H.check(st is not None and re.search(r"connection", st) and re.search(r"listener", st),
            "%s: STATUS=" % what, "a STATUS that mentions connections and listeners",
            repr(st))


def check_monotonic(fields, t0, t1, what):
    v = fields.get("MONOTONIC_USEC")
    H.check(v is not None and v.isdigit(), "%s: MONOTONIC_USEC=" % what,
            "a number of µs", repr(v))
    H.check(t0 <= int(v) <= t1, "%s: MONOTONIC_USEC within the test's clock" % what,
            "%d <= v <= %d" % (t0, t1), v)


def test_lifecycle(ctx):
    require_libsystemd(ctx)
    rx = Notify(ctx)
    be = ctx.backend(H.echo(), name="echo")
    listeners = {"web": {"backend": "echo"}}
    backends = {"echo": {"server": "e " + be.addr}}
    p = ctx.proxy(glob={"splice": ctx.mode}, listeners=listeners, backends=backends,
                  env={"NOTIFY_SOCKET": rx.path})
    p.allow(r"(?i)reload failed")
    probe = {}

    def on_ready():
        # READY=1 promises every listener is bound: a connect right now,
        # before anything else is read, succeeds.
        try:
            s = socket.create_connection((H.LOCAL, p.port()), timeout=5)
            s.close()
            probe["result"] = "connected"
        except OSError as e:
            probe["result"] = repr(e)
    rx.on_ready = on_ready
    p.start()

    i, f = rx.expect("READY", 10, 0, "READY=1 after start")
    H.check_eq(probe.get("result"), "connected",
               "a connect to the listener the moment READY=1 arrived")
    check_status(f, "READY=1 at start")
    H.log("READY=1 with STATUS=%r" % f.get("STATUS"))
    roundtrip(p.port(), seed=1)

    # The periodic status, while serving.
    j = rx.wait(lambda f: "STATUS" in f and not any(s in f for s in STATES), 10, i + 1)
    H.check(j is not None, "STATUS= alone while serving", "one within 10 s after READY",
            rx.describe(i + 1))
    check_status(rx.snapshot()[j][1], "periodic STATUS")
    H.log("periodic STATUS=%r" % rx.snapshot()[j][1].get("STATUS"))

    # A valid, changed config: a second listener.
    listeners2 = dict(listeners)
    listeners2["second"] = {"backend": "echo"}
    ports2 = dict(p.ports)
    ports2["second"] = [H.free_port()]
    with open(p.config_path, "w") as fh:
        fh.write(H.render_config(p.glob, listeners2, backends, ports2))
    m = rx.mark()
    t0 = mono_usec()
    p.signal(signal.SIGHUP)
    a, fa = rx.expect("RELOADING", 30, m, "RELOADING=1 after SIGHUP (valid config)")
    b, fb = rx.expect("READY", 30, a + 1, "READY=1 after the reload (valid config)")
    t1 = mono_usec()
    check_monotonic(fa, t0, t1, "RELOADING=1 (valid config)")
    H.check(not re.search(r"(?i)fail", fb.get("STATUS", "")),
            "READY=1 after a good reload", "a STATUS without 'fail'", fb.get("STATUS"))
    roundtrip(ports2["second"][0], seed=2)
    roundtrip(p.port(), seed=3)
    H.log("reload: RELOADING=1 MONOTONIC_USEC=%s, READY=1 STATUS=%r; the new "
          "listener serves" % (fa["MONOTONIC_USEC"], fb.get("STATUS")))

    # An invalid config: rejected, and nothing changes.
    with open(p.config_path, "w") as fh:
        fh.write("[global]\nbogus_key = 1\n" +
                 H.render_config(p.glob, listeners2, backends, ports2).split("[global]\n", 1)[1])
    m = rx.mark()
    t0 = mono_usec()
    p.signal(signal.SIGHUP)
    a, fa = rx.expect("RELOADING", 30, m, "RELOADING=1 after SIGHUP (invalid config)")
    b, fb = rx.expect("READY", 30, a + 1, "READY=1 after the failed reload")
    t1 = mono_usec()
    check_monotonic(fa, t0, t1, "RELOADING=1 (invalid config)")
    H.check(re.search(r"(?i)reload\w* fail|fail\w* .*reload", fb.get("STATUS", "")),
            "READY=1 after a failed reload", "a STATUS saying the reload failed",
            repr(fb.get("STATUS")))
    H.check(p.wait_line(r"error: .*reload failed", 10) is not None,
            "the failed reload in the log", "an error line 'reload failed...'", "none")
    roundtrip(p.port(), seed=4)
    roundtrip(ports2["second"][0], seed=5)
    H.log("failed reload: READY=1 STATUS=%r; both listeners still serve" % fb.get("STATUS"))

    # SIGTERM.
    m = rx.mark()
    p.stop()
    s, fs = rx.expect("STOPPING", 5, m, "STOPPING=1 on SIGTERM")
    seq = [st for _, st, _ in rx.states()]
    H.check_eq(seq, ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"],
               "the state messages, in order")
    H.log("STOPPING=1 STATUS=%r; exit 0" % fs.get("STATUS"))


# --------------------------------------------------------------------------
# the watchdog

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


class PtraceDenied(Exception):
    pass


def ptrace(req, tid):
    if _libc.ptrace(req, tid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, "ptrace(%d, %d): %s" % (req, tid, os.strerror(e)))


def worker_threads(pid):
    """{tid: comm} of the threads named spliced-w<N>."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if re.match(r"^spliced-w\d+$", comm):
            out[int(t)] = comm
    return out


def thread_state(pid, tid):
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        return f.read().rpartition(")")[2].split()[0]


def stop_thread(tid):
    """Stop one thread (not its process) under ptrace. PtraceDenied if this
    process may not trace it."""
    try:
        ptrace(PTRACE_SEIZE, tid)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS):
            raise PtraceDenied(str(e))
        raise
    try:
        ptrace(PTRACE_INTERRUPT, tid)
        end = time.monotonic() + 5
        while True:
            wpid, status = os.waitpid(tid, WALL | os.WNOHANG)
            if wpid == tid:
                break
            if time.monotonic() > end:
                raise OSError(errno.ETIMEDOUT, "thread %d did not stop within 5 s" % tid)
            time.sleep(0.01)
        if not os.WIFSTOPPED(status):
            raise OSError(errno.EINVAL, "thread %d: wait status %#x, not a stop" % (tid, status))
    except BaseException:
        _libc.ptrace(PTRACE_DETACH, tid, None, None)
        raise


def resume_thread(tid):
    ptrace(PTRACE_DETACH, tid)


def watchdog_run(ctx, with_pid):
    require_libsystemd(ctx)
    rx = Notify(ctx, name="notify-wd%d" % with_pid)
    be = ctx.backend(H.echo(), name="echo")
    env = {"NOTIFY_SOCKET": rx.path, "WATCHDOG_USEC": "400000"}
    pctx = ctx
    if with_pid:
        # WATCHDOG_PID must be spliced's own pid, known only once it runs:
        # sh exports its own pid and execs spliced, which keeps it.
        wrap = ctx.write_file("wd-wrap.sh", "#!/bin/sh\nexport WATCHDOG_PID=$$\n"
                              "exec '%s' \"$@\"\n" % ctx.spliced, mode=0o755)
        pctx = copy.copy(ctx)       # shares ctx's cleanup list
        pctx.spliced = wrap
    p = H.Proxy(pctx, glob={"splice": ctx.mode, "workers": 2},
                listeners={"web": {"backend": "echo"}},
                backends={"echo": {"server": "e " + be.addr}}, env=env,
                name="proxy-wd%d" % with_pid)
    # A stopped worker is what the watchdog is for: spliced says so.
    p.allow(r"(?i)watchdog")
    p.start()
    if with_pid:
        with open("/proc/%d/environ" % p.pid, "rb") as f:
            envs = f.read().split(b"\0")
        H.check(("WATCHDOG_PID=%d" % p.pid).encode() in envs,
                "spliced's environment", "WATCHDOG_PID=%d (its own pid)" % p.pid,
                [e for e in envs if e.startswith(b"WATCHDOG")])
    rx.expect("READY", 10, 0, "READY=1 at start")
    roundtrip(p.port(), seed=11)

    t0 = time.monotonic()
    time.sleep(2.0)
    n = rx.count("WATCHDOG", t0, time.monotonic())
    H.log("WATCHDOG_PID %s: %d WATCHDOG=1 in 2 s" % (
        "= spliced's pid" if with_pid else "unset", n))
    H.check(5 <= n <= 20, "WATCHDOG=1 with WATCHDOG_USEC=400000 (every 200 ms)",
            "5 to 20 in 2 s", "%d; messages: %s" % (n, rx.describe(0, 30)))
    H.check(p.wait_line(r"info: watchdog", 1) is not None,
            "the watchdog in the log", "an info line 'watchdog: ...'", "none")

    workers = wait_workers(p.pid)
    tid = sorted(workers)[0]
    try:
        stop_thread(tid)
    except PtraceDenied as e:
        H.log("SKIPPED the stuck-worker part: ptrace is not permitted here (%s)" % e)
        p.stop()
        return
    H.log("stopped %s (tid %d) with ptrace; state %s; the others run" % (
        workers[tid], tid, thread_state(p.pid, tid)))
    try:
        others = [t for t in worker_threads(p.pid) if t != tid]
        H.check(all(thread_state(p.pid, t) != "t" for t in others),
                "the other workers", "running (not traced)",
                {t: thread_state(p.pid, t) for t in others})
        # The ping sent before the stop may still have been answered: one
        # more WATCHDOG=1 can come within a period (200 ms); the rest of
        # the grace is for a loaded machine.
        time.sleep(1.0)
        w0 = time.monotonic()
        m = rx.mark()
        p.signal(signal.SIGHUP)     # the main thread still answers
        a, _ = rx.expect("RELOADING", 5, m, "RELOADING=1 with a worker stopped")
        rx.expect("READY", 5, a + 1, "READY=1 with a worker stopped")
        left = w0 + 1.5 - time.monotonic()
        if left > 0:
            time.sleep(left)
        w1 = time.monotonic()
        n = rx.count("WATCHDOG", w0, w1)
        H.check(p.running(), "spliced with one worker stopped", "still running", "exited")
        H.check_eq(thread_state(p.pid, tid), "t", "the stopped worker's state")
        H.check(n == 0, "WATCHDOG=1 while worker %s is stopped" % workers[tid],
                "none for %.1f s (from 1 s after the stop)" % (w1 - w0),
                "%d; messages: %s" % (n, rx.describe(m)))
        H.log("no WATCHDOG=1 for %.1f s with %s stopped; the main thread answered "
              "a SIGHUP" % (w1 - w0, workers[tid]))
        H.check(p.wait_line(r"(error|warn): watchdog", 2) is not None,
                "the stuck worker in the log", "a warn/error line 'watchdog: ...'",
                "none")
    finally:
        resume_thread(tid)
    r0 = time.monotonic()
    i = rx.wait(lambda f: "WATCHDOG" in f, 2.0, rx.mark())
    H.check(i is not None, "WATCHDOG=1 after the worker runs again", "within 2 s",
            "none; messages: %s" % rx.describe(rx.mark() - 10))
    H.log("pings resumed %.2f s after PTRACE_DETACH" % (rx.snapshot()[i][0] - r0))
    time.sleep(1.0)
    n = rx.count("WATCHDOG", r0 + 0.5, time.monotonic())
    H.check(n >= 2, "WATCHDOG=1 after the worker runs again", ">= 2 in 0.5 s", n)
    roundtrip(p.port(), seed=12)
    p.finish()


def wait_workers(pid):
    """The worker threads by name; fails (never skips) if there are none."""
    workers = H.wait_until(lambda: worker_threads(pid), 5)
    if not workers:
        names = []
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                    names.append("%s=%s" % (t, f.read().strip()))
            except OSError:
                pass
        H.fail("worker threads named spliced-w<N> (/proc/PID/task/*/comm; set with "
               "pthread_setname_np)", "at least one", "none: %s" % ", ".join(names))
    return workers


def test_watchdog(ctx):
    watchdog_run(ctx, with_pid=False)


def test_watchdog_pid(ctx):
    watchdog_run(ctx, with_pid=True)


def test_watchdog_other_pid(ctx):
    require_libsystemd(ctx)
    rx = Notify(ctx, name="notify-other")
    be = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(glob={"splice": ctx.mode}, listeners={"web": {"backend": "echo"}},
                  backends={"echo": {"server": "e " + be.addr}},
                  env={"NOTIFY_SOCKET": rx.path, "WATCHDOG_USEC": "400000",
                       "WATCHDOG_PID": "1"})
    p.start()
    rx.expect("READY", 10, 0, "READY=1 at start")
    t0 = time.monotonic()
    time.sleep(1.5)
    n = rx.count("WATCHDOG", 0, time.monotonic())
    H.check_eq(n, 0, "WATCHDOG=1 when WATCHDOG_PID names another process")
    H.log("no WATCHDOG=1 in %.1f s with WATCHDOG_PID=1" % (time.monotonic() - t0))
    p.finish()


if __name__ == "__main__":
    H.main([test_lifecycle, test_watchdog, test_watchdog_pid, test_watchdog_other_pid],
           deadline=240, doc=__doc__)
