"""Section idle: what an idle connection costs the proxy.

The backend is build/spliced-demo (it echoes anything that does not start
with GET or HEAD) on a free 127.0.0.1 port. For each proxy (started with
maxconn N + 100):

  1. one warm-up connection sends a byte, gets it back and closes; 0.5 s
     later the proxy's RSS (VmRSS, summed over its processes) and open fds
     are read: "before";
  2. `spliced-load idle --connections N` opens N connections through the
     proxy, at most 100 connecting at once; each sends one byte and waits for
     its echo, so every connection was connected through to the backend and
     has carried a byte each way (buffers a proxy allocates on first use
     are in);
  3. 1 s after the last one is open, RSS and fds again: "with";
  4. the client's stdin is closed: it closes them all and says whether any
     had been closed under it (an error).

N is 10,000 (smoke: 50), or less when the fd limit cannot fit it: a proxy
holds two sockets per connection and here the hard RLIMIT_NOFILE caps every
process (common.max_clients()).

Metrics: KiB/conn = (RSS with - RSS before) / N, fds/conn = (fds with - fds
before) / N, RSS MiB = RSS with all N open, open s = how long the client took
to open them all.
"""

import json
import os
import selectors
import socket
import subprocess
import time

from .common import (RunError, free_port, max_clients, note, proc_snapshot, stop_process,
                     wait_listening)
from .sizes import nofile_preexec, tool_path, tools_missing

TARGET = 10000
SMOKE = 50


def _read_line(proc, timeout):
    """One line of proc.stdout within timeout seconds, or None."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.decode(errors="replace").split("\n", 1)[0] if buf else None


class EchoBackend:
    def __init__(self, binary, workdir, connections):
        self.binary, self.proc, self.port = binary, None, None
        self.need = connections + 256
        self.log = os.path.join(workdir, "idle-echo-backend.log")

    def start(self):
        self.port = free_port()
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--listen", f"127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=nofile_preexec(self.need))
        wait_listening(self.proc, self.port, "spliced-demo (echo backend)", self.log)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        stop_process(self.proc, 10)
        self.proc = None


class Section:
    name = "idle"
    title = "Idle: memory and fds per idle connection"
    columns = [
        ("kib_per_conn", "KiB/conn", 2, "lower"),
        ("fds_per_conn", "fds/conn", 2, "lower"),
        ("rss_mib", "RSS MiB", 1, "lower"),
        ("rss_before_mib", "RSS before MiB", 1, "lower"),
        ("open_s", "open s", 2, "lower"),
    ]
    ratio_keys = ["kib_per_conn", "fds_per_conn"]

    @staticmethod
    def available():
        return True, ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.smoke = bool(getattr(ctx.args, "smoke", False))
        fit = (max_clients() - 100) // 100 * 100
        self.n = SMOKE if self.smoke else min(TARGET, fit)
        self.fit_note = None
        if not self.smoke and self.n < TARGET:
            self.fit_note = (f"{TARGET:,} idle connections do not fit here: the hard "
                             f"RLIMIT_NOFILE cannot be raised, so a proxy may take at most "
                             f"{max_clients():,} clients (common.max_clients()); "
                             f"measured with {self.n:,}.")
        self.load = tool_path(ctx, "spliced-load")
        self.backend = None

    def describe(self):
        text = [
            f"{self.n:,} connections opened through the proxy by `spliced-load idle` (at most "
            "100 connecting at once) to an echo backend (`spliced-demo`); each sends one byte "
            "and waits for its echo, then stays open and silent. The proxy's RSS (VmRSS) and "
            "open fds, summed over its processes, are read once before (idle after one "
            "warm-up connection, 0.5 s after it closed) and once 1 s after all are open.",
            "KiB/conn and fds/conn: (with - before) / connections. RSS MiB: with all open. "
            "open s: how long the client took to open all of them through the proxy.",
        ]
        if self.fit_note:
            text.append(self.fit_note)
        return text

    def cases(self):
        return [f"{self.n} idle"]

    def start_backends(self):
        ok, why = tools_missing(self.ctx, ["spliced-demo", "spliced-load"])
        if not ok:
            raise RunError(why)
        if self.fit_note:
            note("idle: " + self.fit_note)
        self.backend = EchoBackend(tool_path(self.ctx, "spliced-demo"), self.ctx.workdir,
                                  self.n)
        self.backend.start()
        return [("127.0.0.1", self.backend.port)]

    def proxy_opts(self, case):
        return {"maxconn": self.n + 100}

    def _warm_up(self, proxy):
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                s.sendall(b"w")
                if s.recv(16) != b"w":
                    raise OSError("no echo")
        except OSError as e:
            raise RunError(f"warm-up connection through {proxy.variant}: {e}", proxy.log)

    def measure(self, proxy, case):
        if not self.backend.alive():
            raise RunError("the echo backend (spliced-demo) has exited", self.backend.log)
        self._warm_up(proxy)
        time.sleep(0.5)
        before = proc_snapshot(proxy)
        errlog = os.path.join(self.ctx.workdir, f"idle-load-{proxy.variant}.log")
        cmd = [self.load, "idle", "--connect", f"127.0.0.1:{proxy.port}",
               "--connections", str(self.n), "--concurrency", "100", "--timeout", "30"]
        with open(errlog, "a") as err:
            load = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err)
        try:
            line = _read_line(load, 60 + self.n / 200)
            if line is None:
                raise RunError(f"spliced-load idle opened nothing it could report within "
                               f"{60 + self.n / 200:.0f} s (exit {load.poll()})", proxy.log)
            opened = json.loads(line)
            if opened.get("open") != self.n:
                kinds = ", ".join(f"{k} {v}" for k, v in opened["error_kinds"].items() if v)
                raise RunError(f"{opened.get('open')} of {self.n} connections opened through "
                               f"{proxy.variant} ({kinds})", proxy.log)
            time.sleep(1.0)
            held = proc_snapshot(proxy)
            alive = proxy.alive()
        finally:
            # EOF on its stdin: the client closes them all, reports, exits.
            load.stdin.close()
            try:
                load.wait(60)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
            rest = load.stdout.read()
            load.stdout.close()
        if not alive:
            raise RunError(f"{proxy.variant} exited while holding the connections", proxy.log)
        closed = [json.loads(ln) for ln in rest.decode(errors="replace").splitlines()
                  if ln.startswith("{")]
        lost = closed[-1]["errors"] if closed else None
        warnings = []
        if lost is None:
            warnings.append(f"spliced-load idle (through {proxy.variant}) exited "
                            f"{load.returncode} without its last report")
        elif lost:
            raise RunError(f"{lost} of {self.n} held connections were closed by "
                           f"{proxy.variant} or the backend during the hold", proxy.log)
        time.sleep(1.0)
        after = proc_snapshot(proxy)
        kib = held["rss_kib"] - before["rss_kib"]
        fds = held["fds"] - before["fds"]
        return {
            "kib_per_conn": kib / self.n,
            "fds_per_conn": fds / self.n,
            "rss_mib": held["rss_kib"] / 1024,
            "rss_before_mib": before["rss_kib"] / 1024,
            "open_s": opened["seconds"],
            "fds_before": before["fds"],
            "fds_with": held["fds"],
            "fds_after": after["fds"],
            "connections": self.n,
            "warnings": warnings,
        }

    def stop_backends(self):
        if self.backend:
            self.backend.stop()

    def charts(self):
        return [
            {"file": "idle-kib-per-conn.png",
             "title": f"Idle: proxy RSS per idle connection ({self.n:,} open)",
             "kind": "bars", "metric": "kib_per_conn", "ylabel": "KiB / connection (lower is better)"},
            {"file": "idle-fds-per-conn.png",
             "title": f"Idle: proxy fds per idle connection ({self.n:,} open)",
             "kind": "bars", "metric": "fds_per_conn", "ylabel": "fds / connection (lower is better)"},
        ]
