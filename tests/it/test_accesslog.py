#!/usr/bin/env python3
"""access_log = PATH, SIGUSR1 and log_format = json (issue 12, logs).

reopen_under_load: access_log names a file. 16 client threads make short
  echo connections back to back (1 KiB and 96 KiB in turn, sha256 checked
  both ways; 96 KiB passes splice_threshold, so always and auto splice).
  After ROUND connections the test renames the file (os.rename, as
  logrotate does) and sends SIGUSR1; the clients keep going until ROUND
  more are done after spliced said "access_log: reopened". Then: every
  connection the test made has exactly one access line across the old
  file and the new one (matched by client port, with its byte counts),
  both files have lines, every line of both is a whole access line, none
  is on stderr, and the fd count is back at its baseline (the old file
  was closed).
json: the same with log_format = json, fewer connections: every line of
  stderr and of both files parses with json.loads; event lines have time,
  level and msg; access lines the text line's fields and an id, unique
  per connection; exactly one per connection across the two files.

bad_path: access_log in a directory that does not exist: `spliced -t` and
  the start fail (exit 1) naming FILE:LINE: [global] access_log.
reload_path: a SIGHUP that names another file: later connections log
  there, earlier ones stayed in the first; one that names a file that
  cannot be opened fails the reload, and lines keep going where they went.

On a spliced that loses lines across the reopen, or writes the access
lines to stderr, or does not reopen, the counts differ and it fails."""

import collections
import json
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CLIENTS = 16
ROUND = 1500            # connections before the rename, and after the reopen
ROUND_JSON = 400
SIZES = (H.KiB, 96 * H.KiB)
TEXT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: (access .*)$")
ACCESS_KEYS = ("listener", "client", "server", "up_splice", "up_copy", "down_splice",
               "down_copy", "duration_ms", "reason")


class JsonProxy(H.Proxy):
    """A Proxy whose stderr is JSON lines: the harness's patterns and
    parsing see them as the text lines they stand for."""

    def wait_line(self, pattern, timeout, since=0, stop_on_exit=False):
        if pattern == r" info: ready":
            pattern = r'"level":"info","msg":"ready: '
        return super().wait_line(pattern, timeout, since, stop_on_exit)

    def parsed(self, since=0):
        out = []
        with self.cond:
            lines = list(self.lines[since:])
        for line in lines:
            try:
                d = json.loads(line)
                out.append((d["level"], d["msg"]))
            except (ValueError, KeyError, TypeError):
                out.append((None, line))
        return out


class Clients:
    """CLIENTS threads of echo round trips until stopped; for each
    connection its client port and size, and every failure."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.done = []          # (client port, size)
        self.failures = []
        self.stop_flag = False
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        k = 0
        while not self.stop_flag:
            k += 1
            size = SIZES[(i + k) % len(SIZES)]
            ports = []
            what = H.echo_trip(self.port, 7000 + i * 100000 + k, size, ports=ports)
            with self.cond:
                if what is not None:
                    self.failures.append(what)
                if ports:
                    self.done.append((ports[0], size))
                self.cond.notify_all()
            if len(self.failures) > 20:
                return

    def count(self):
        with self.lock:
            return len(self.done)

    def wait_count(self, n, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.done) < n and not self.failures:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
            return len(self.done)

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(120)
        H.check(not any(t.is_alive() for t in self.threads), "client threads finished",
                "within 120 s", "still running")
        H.check(not self.failures, "every round trip intact (sha256 both ways)",
                "no failure", "%d, e.g. %s" % (len(self.failures), self.failures[:3]))


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    H.check(data == b"" or data.endswith(b"\n"), "%s ends with a whole line" % path,
            "a newline last", repr(data[-80:]))
    return data.decode("utf-8").split("\n")[:-1]


def parse_text(line):
    m = TEXT_RE.match(line)
    if not m:
        H.fail("an access-log file line", "TIME info: access k=v ...", line)
    return H.parse_access(m.group(1))


def parse_json(line):
    try:
        d = json.loads(line)
    except ValueError as e:
        H.fail("an access-log file line parses as JSON", "json.loads", "%r: %s" % (line, e))
    H.check(d.get("msg") == "access" and d.get("level") == "info" and "time" in d,
            "JSON access line: time, level info, msg access", "all", line)
    for k in ACCESS_KEYS + ("id",):
        H.check(k in d, "JSON access line: field %s" % k, "present", line)
    d["client_port"] = int(d["client"].rsplit(":", 1)[1])
    return d


def run(ctx, fmt, round_n):
    path = os.path.join(ctx.tmp, "access-%s.log" % fmt)
    moved = path + ".1"
    be = ctx.backend(H.echo(bufsize=64 * H.KiB), name="echo")
    cls = JsonProxy if fmt == "json" else H.Proxy
    p = cls(ctx, glob={"splice": ctx.mode, "access_log": path, "log_format": fmt},
            listeners={"web": {"backend": "echo"}},
            backends={"echo": {"server": "e " + be.addr}}).start()
    H.check(os.path.exists(path), "access-log file made at start", path, "missing")
    cl = Clients(p.port())
    ctx.register(lambda: setattr(cl, "stop_flag", True))
    got = cl.wait_count(round_n, 240)
    H.check(got >= round_n, "connections before the rename", ">= %d" % round_n, got)
    os.rename(path, moved)
    mark = p.mark()
    p.signal(signal.SIGUSR1)
    pat = r'"msg":"access_log: reopened ' if fmt == "json" else r" info: access_log: reopened "
    H.check(p.wait_line(pat, 30, since=mark) is not None,
            "spliced says it reopened the file after SIGUSR1", "a line within 30 s", None)
    after = cl.count()
    got = cl.wait_count(after + round_n, 240)
    H.check(got >= after + round_n, "connections after the reopen",
            ">= %d" % (after + round_n), got)
    cl.stop()
    made = collections.Counter(port for port, _ in cl.done)
    sizes = {}
    for port, size in cl.done:
        sizes.setdefault(port, []).append(size)
    parse = parse_json if fmt == "json" else parse_text
    n = len(cl.done)

    def lines_now():
        return len(read_lines(moved)) + len(read_lines(path))
    H.wait_until(lambda: lines_now() >= n, 60, 0.1)
    p.finish()          # fds back at baseline: the old file was closed
    old = [parse(l) for l in read_lines(moved)]
    new = [parse(l) for l in read_lines(path)]
    H.log("%s: %d connections; %d access lines in the renamed file, %d in the new one"
          % (fmt, n, len(old), len(new)))
    H.check(old and new, "both files have access lines (the reopen happened under load)",
            "both", "old %d, new %d" % (len(old), len(new)))
    logged = collections.Counter(a["client_port"] for a in old + new)
    missing = made - logged
    extra = logged - made
    H.check(not missing and not extra,
            "exactly one access line per connection across the two files",
            "%d lines for %d connections" % (n, n),
            "%d lines; missing %d (e.g. ports %s), extra %d (e.g. %s)"
            % (len(old) + len(new), sum(missing.values()), list(missing)[:5],
               sum(extra.values()), list(extra)[:5]))
    for a in old + new:
        H.check_access(a, reason=("client_eof", "server_eof"),
                       what="connection from port %d" % a["client_port"])
        total = H.access_total(a, "up")
        H.check(total in sizes[a["client_port"]] and H.access_total(a, "down") == total,
                "byte counts of port %d" % a["client_port"],
                "up = down = one of %r" % sizes[a["client_port"]], a)
    if ctx.splices:
        spliced = sum(a["up_splice"] + a["down_splice"] for a in old + new)
        H.check(spliced > 0, "splice %s: bytes spliced" % ctx.mode, "> 0", spliced)
    with p.cond:
        stderr = list(p.lines)
    H.check(not any("access listener=" in l or '"msg":"access"' in l for l in stderr),
            "no access line on stderr", "none", [l for l in stderr if "access" in l][:3])
    return p, old + new, stderr


def test_reopen_under_load(ctx):
    run(ctx, "text", ROUND)


def test_json(ctx):
    p, access, stderr = run(ctx, "json", ROUND_JSON)
    for line in stderr:
        try:
            d = json.loads(line)
        except ValueError as e:
            H.fail("every stderr line parses as JSON", "json.loads", "%r: %s" % (line, e))
        H.check(set(d) == {"time", "level", "msg"}, "event line fields",
                "time, level, msg", line)
    ids = collections.Counter(a["id"] for a in access)
    dup = [i for i, c in ids.items() if c > 1]
    H.check(not dup and all(isinstance(i, int) and i > 0 for i in ids),
            "connection ids: positive integers, one per connection",
            "unique", "duplicates %s" % dup[:5])


def test_bad_path(ctx):
    bad = os.path.join(ctx.tmp, "no-such-dir", "access.log")
    text = H.render_config({"workers": 1, "access_log": bad},
                           {"web": {"backend": "b"}}, {"b": {"server": "a 127.0.0.1:9"}},
                           {"web": [H.free_port()]})
    path = ctx.write_file("bad.ini", text)
    line = [i + 1 for i, l in enumerate(text.split("\n")) if l.startswith("access_log")][0]
    want = "%s:%d: [global] access_log: " % (path, line)
    for argv, what in (([ctx.spliced, "-t", "-c", path], "spliced -t"),
                       ([ctx.spliced, "-c", path], "the start")):
        r = H.subprocess.run(argv, capture_output=True, timeout=30)
        err = r.stderr.decode("utf-8", "replace")
        H.check_eq(r.returncode, 1, "%s with access_log in a missing directory: exit" % what)
        H.check(want in err and bad in err, "%s names file:line:key and the path" % what,
                want + "... " + bad, err.strip())


def write_config(p, glob):
    g = dict(p.glob)
    g.update(glob)
    with open(p.config_path, "w") as f:
        f.write(H.render_config(g, p.listeners, p.backends, p.ports))


def trips(p, n, seed):
    ports = []
    for i in range(n):
        what = H.echo_trip(p.port(), seed + i, H.KiB, ports=ports)
        H.check(what is None, "round trip %d" % i, "intact", what)
    return collections.Counter(ports)


def test_reload_path(ctx):
    first = os.path.join(ctx.tmp, "first.log")
    second = os.path.join(ctx.tmp, "second.log")
    be = ctx.backend(H.echo(bufsize=64 * H.KiB), name="echo")
    p = H.Proxy(ctx, glob={"splice": ctx.mode, "access_log": first},
                listeners={"web": {"backend": "echo"}},
                backends={"echo": {"server": "e " + be.addr}}).start()
    before = trips(p, 20, 100)
    # Their lines written (a connection ends in the proxy a moment after
    # its client saw EOF), so that none may go to the second file.
    H.wait_until(lambda: len(read_lines(first)) >= 20, 30, 0.05)
    write_config(p, {"access_log": second})
    mark = p.mark()
    p.signal(signal.SIGHUP)
    H.check(p.wait_line(r" info: reloaded ", 20, since=mark) is not None,
            "reload to another access-log file", "info: reloaded", p.lines[-5:])
    after = trips(p, 20, 200)
    write_config(p, {"access_log": os.path.join(ctx.tmp, "missing", "x.log")})
    mark = p.mark()
    p.signal(signal.SIGHUP)
    H.check(p.wait_line(r" error: reload failed: .*\[global\] access_log: cannot open ", 20,
                        since=mark) is not None,
            "a reload to a file that cannot be opened fails", "error: reload failed", p.lines[-5:])
    p.allow(r"^reload failed: .*access_log: cannot open ")
    last = trips(p, 20, 300)

    def ports(path):
        return collections.Counter(parse_text(l)["client_port"] for l in read_lines(path))
    H.wait_until(lambda: sum(ports(second).values()) >= 40, 30, 0.1)
    p.finish()
    H.check_eq(ports(first), before, "client ports in the first file")
    H.check_eq(ports(second), after + last, "client ports in the second file")


if __name__ == "__main__":
    H.main([test_reopen_under_load, test_json, test_bad_path, test_reload_path],
           deadline=280, doc=__doc__)
