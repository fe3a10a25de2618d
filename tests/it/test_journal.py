#!/usr/bin/env python3
"""Logging under journald: "<N>" priority prefixes when JOURNAL_STREAM names
stderr. (Runs once.)

systemd connects a service's stderr to journald and sets JOURNAL_STREAM to
that stream's "DEV:INODE"; spliced then starts every line with its syslog
priority (error <3>, warn <4>, info <6>, debug <7>) and leaves the
timestamp out (journald stamps each line itself). Here the stream is a pipe
the test reads, and JOURNAL_STREAM names it, or does not.

journal: JOURNAL_STREAM = the pipe's dev:ino, log_level = debug, a listener
  whose server refuses connects (health checks on, fall = 1) and a
  host-name server that does not resolve (the name server is not there):
  the ready line is "<6>info: ready...", the health check gives
  "<4>warn: server ... is down", a client gets an access line, and evdns's
  chatter comes as "<7>debug: dns: ..." (libevent's messages reach the log
  through log.c too, so this also shows they are prefixed). Every line
  is "<N>level: text" with N matching level, and none carries a timestamp.
  SIGTERM: exit 0, the last lines prefixed too.
journal_error: a bind on a port that is taken: spliced exits non-zero and
  its error line is "<3>error: ...".
no_journal: without JOURNAL_STREAM, with one that names another file, and
  with a malformed one: every line is "TIMESTAMP level: text", no prefix."""

import ctypes
import ctypes.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

PRIO = {"error": 3, "warn": 4, "info": 6, "debug": 7}
JOURNAL_RE = re.compile(r"^<(\d)>(error|warn|info|debug): (.*)$")
PLAIN_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (error|warn|info|debug): (.*)$")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG


class Run:
    """spliced with its stderr on a pipe this test reads; journal:
    'match' (JOURNAL_STREAM names that pipe), None (unset), or a string
    to put in JOURNAL_STREAM as it is."""

    def __init__(self, ctx, config_text, journal, name="proxy"):
        self.ctx = ctx
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        path = ctx.write_file(name + ".ini", config_text)
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal == "match":
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        elif journal is not None:
            env["JOURNAL_STREAM"] = journal
        self.journal_stream = env.get("JOURNAL_STREAM")
        self.argv = [ctx.spliced, "-c", path]
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=w, env=env,
                                         preexec_fn=_die_with_parent)
        finally:
            os.close(w)
        self.pid = self.proc.pid
        # Kept for harness.py's failure report (it prints a Proxy's tail).
        ctx.register(self)
        self.reader = threading.Thread(target=self._read, args=(os.fdopen(r, "rb"),),
                                       daemon=True)
        self.reader.start()

    def _read(self, f):
        with f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if H.VERBOSE:
                    sys.stdout.write("  %s| %s\n" % (self.name, line))
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return None
                self.cond.wait(min(left, 0.2))

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def tail(self, n=30):
        return "\n      ".join(self.snapshot()[-n:])

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            H.fail("%s exits after SIGTERM" % self.name, "within %ds" % timeout,
                   "still running; killed")
        self.reader.join(10)
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def config(port, server, glob=None, backend=None):
    g = {"workers": 2, "log_level": "info", "shutdown_timeout": "5s"}
    g.update(glob or {})
    out = ["[global]"] + ["%s = %s" % kv for kv in g.items()]
    out += ["", "[listener web]", "bind = %s:%d" % (H.LOCAL, port), "backend = app",
            "timeout_connect = 1s", "", "[backend app]", "server = s1 " + server]
    out += ["%s = %s" % kv for kv in (backend or {}).items()]
    return "\n".join(out) + "\n"


def check_journal_lines(lines, what):
    """Every line "<N>level: text" with N = level's priority; returns
    [(level, text)]."""
    out = []
    bad = []
    for l in lines:
        m = JOURNAL_RE.match(l)
        if not m:
            bad.append("not '<N>level: ': %r" % l)
            continue
        if int(m.group(1)) != PRIO[m.group(2)]:
            bad.append("wrong priority for %s (want <%d>): %r" % (
                m.group(2), PRIO[m.group(2)], l))
            continue
        out.append((m.group(2), m.group(3)))
    if bad:
        H.fail("%s: every line carries its journald priority" % what,
               "'<3>error: ', '<4>warn: ', '<6>info: ' or '<7>debug: ', and no timestamp",
               "%d bad of %d:\n      %s" % (len(bad), len(lines), "\n      ".join(bad[:20])))
    return out


def test_journal(ctx):
    refusing, dead_port = H.reserve_refusing_port()
    ctx.register(refusing)
    port = H.free_port()
    # Debug lines: evdns's own chatter ("Added nameserver ...") is logged at
    # debug; a host-name server asked of a name server that is not there
    # (UDP port 9 on loopback: refused) gives some, and a warn that it
    # cannot be resolved, within a few seconds.
    text = config(port, "%s:%d" % (H.LOCAL, dead_port),
                  glob={"log_level": "debug", "resolver": "%s:9" % H.LOCAL},
                  backend={"server": "s2 localhost:%d" % dead_port,
                           "health_check": "tcp", "health_interval": "200ms",
                           "health_timeout": "200ms", "fall": 1, "rise": 1})
    p = Run(ctx, text, "match")
    H.log("JOURNAL_STREAM=%s" % p.journal_stream)
    ready = p.wait_line(r"ready", H.READY_TIMEOUT)
    H.check(ready is not None, "spliced starts", "a ready line",
            "none; exit %s; stderr:\n      %s" % (p.proc.poll(), p.tail()))
    H.check(JOURNAL_RE.match(ready) and ready.startswith("<6>info: ready"),
            "the ready line under journald", "'<6>info: ready...'", repr(ready))
    # The health check finds the server down: a warn line.
    down = p.wait_line(r"warn: server app/s1 .* is down", 20)
    H.check(down is not None, "a warn line (server down by health check)",
            "within 20 s", "none; stderr:\n      %s" % p.tail())
    # A client: the connect fails (info), the client is closed, an access line.
    c = H.dial(port, timeout=10)
    what, secs = H.expect_closed(c, 15)
    c.close()
    H.log("client closed by the proxy: %s after %.1fs" % (what, secs))
    access = p.wait_line(r"^<6>info: access ", 15)
    H.check(access is not None, "the access line of the failed client",
            "'<6>info: access ...' within 15 s", "none; stderr:\n      %s" % p.tail())
    rc = p.stop()
    lines = p.snapshot()
    parsed = check_journal_lines(lines, "spliced under journald")
    levels = {lvl for lvl, _ in parsed}
    H.log("%d lines; levels seen: %s" % (len(lines), sorted(levels)))
    for want in ("warn", "info", "debug"):
        H.check(want in levels, "a %s line among spliced's lines" % want, "at least one",
                "none; lines:\n      %s" % "\n      ".join(lines[-30:]))
    H.check(down.startswith("<4>warn: "), "the server-down line", "'<4>warn: ...'", repr(down))
    unexpected = [m for lvl, m in parsed if lvl == "error"]
    H.check(not unexpected, "no error line", "none", unexpected)
    H.check_eq(rc, 0, "exit status after SIGTERM")


def test_journal_error(ctx):
    taken = socket.socket()
    ctx.register(taken)
    taken.bind((H.LOCAL, 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    p = Run(ctx, config(port, "%s:9" % H.LOCAL), "match")
    try:
        rc = p.proc.wait(H.READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.close()
        H.fail("spliced with a bind on a taken port", "exits non-zero",
               "still running; stderr:\n      %s" % p.tail())
    p.reader.join(10)
    lines = p.snapshot()
    H.check(rc != 0, "exit status with the port taken", "non-zero", rc)
    parsed = check_journal_lines(lines, "spliced failing to bind, under journald")
    errors = [m for lvl, m in parsed if lvl == "error"]
    H.check(errors, "an error line", "'<3>error: ...' naming the bind",
            "none; lines:\n      %s" % "\n      ".join(lines))
    H.log("the error, as journald gets it: <3>error: %s" % errors[0])


def test_no_journal(ctx):
    be = ctx.backend(H.echo(), name="echo")
    other = os.stat(ctx.tmp)
    cases = [
        ("unset", None),
        ("another file's dev:ino", "%d:%d" % (other.st_dev, other.st_ino)),
        ("malformed", "journal"),
        ("half", "%d:" % other.st_dev),
    ]
    for what, value in cases:
        port = H.free_port()
        p = Run(ctx, config(port, be.addr), value, name="proxy-" + what.split()[0])
        ready = p.wait_line(r"info: ready", H.READY_TIMEOUT)
        H.check(ready is not None, "spliced starts (JOURNAL_STREAM %s)" % what,
                "a ready line", "none; stderr:\n      %s" % p.tail())
        c = H.dial(port)
        c.sendall(b"ping\n")
        H.check_eq(c.recv(5), b"ping\n", "echo through the proxy (JOURNAL_STREAM %s)" % what)
        c.close()
        p.wait_line(r" info: access ", 15)
        rc = p.stop()
        lines = p.snapshot()
        bad = [l for l in lines if not PLAIN_RE.match(l)]
        H.check(not bad, "JOURNAL_STREAM %s (%r): plain lines" % (what, value),
                "every line 'YYYY-MM-DDTHH:MM:SS.mmmZ level: text', no '<N>'",
                "%d of %d not:\n      %s" % (len(bad), len(lines), "\n      ".join(bad[:20])))
        H.check_eq(rc, 0, "exit status after SIGTERM (JOURNAL_STREAM %s)" % what)
        H.log("JOURNAL_STREAM %s: %d plain lines" % (what, len(lines)))


if __name__ == "__main__":
    H.main([test_journal, test_journal_error, test_no_journal], deadline=240, doc=__doc__)
