"""Section small: HTTP request/response through the proxy, with wrk.

The backend is a plain nginx HTTP server the section starts on a free
127.0.0.1 port, `worker_processes 1` (one core's worth of backend on a
2-core machine, so the backend does not take both cores), serving two
static files from the work directory, 1 KiB and 64 KiB, with keep-alive
(keepalive_requests raised so a keep-alive connection is never closed
during a run), sendfile on and no access log. For each proxy wrk runs
`wrk -t T -c C -d SECONDS --latency` against the proxy, per case:

  1k keep-alive, 64k keep-alive     requests on C persistent connections
  1k close, 64k close               -H 'Connection: close': the backend
                                    closes after each response, so every
                                    request is a new connection through the
                                    proxy (accept, connect to the backend,
                                    two closes)

Measured: requests/s and p50/p99 latency (wrk --latency), the proxy's CPU
microseconds per request (its utime+stime over the run / requests).

The floor (proxies: `floor`, build/floor-relay) runs in this section by
default and in no other: the report's "x floor" column divides each row's
CPU µs/req by the floor's. After the table, per case, spliced-auto against
the better of haproxy-default and nginx-stream (issue 14's target), and with
--syscalls the syscalls per request of each proxy (perfstat.py: perf stat on
tracepoints while wrk runs).
"""

import contextlib
import os
import re
import statistics
import subprocess

from . import perfstat
from .common import (ProcWindow, RunError, free_port, note, proc_pids, wait_listening,
                     which, write_file)
from .proxies import VARIANTS

BODIES = {"1k": 1024, "64k": 65536}
# Issue 14's target for spliced-auto against the better (lower CPU µs/req)
# of these two: CPU µs/req at most 0.9x theirs, req/s at least theirs, p99
# no worse.
TARGET_REFS = ["haproxy-default", "nginx-stream"]
TARGET = [("cpu_us_per_req", "CPU µs/req", "<=", 0.90), ("rps", "req/s", ">=", 1.00),
          ("p99_ms", "p99", "<=", 1.00)]
CASES = ["1k keep-alive", "1k close", "64k keep-alive", "64k close"]
SMOKE_CASES = ["1k keep-alive", "64k close"]     # both bodies, both modes, in half the time


class HttpBackend:
    """nginx serving workdir/www/{1k,64k}.bin; worker_processes 1."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "http-backend")
        self.proc, self.port = None, None
        self.log = os.path.join(self.dir, "error.log")

    def start(self):
        www = os.path.join(self.dir, "www")
        os.makedirs(www, exist_ok=True)
        for d in (self.dir, www):
            os.chmod(d, 0o755)
        for name, size in BODIES.items():
            with open(os.path.join(www, f"{name}.bin"), "wb") as f:
                f.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
            os.chmod(os.path.join(www, f"{name}.bin"), 0o644)
        self.port = free_port()
        d = self.dir
        conf = write_file(os.path.join(d, "nginx.conf"), f"""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        root {www};
    }}
}}
""")
        cmd = [which("nginx"), "-p", d + "/", "-e", self.log, "-c", conf, "-g", "daemon off;"]
        with open(os.path.join(d, "stdout.log"), "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.proc, self.port, "nginx (HTTP backend)", self.log)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        self.proc = None


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.match(r"([0-9.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(text):
    """requests, rps, p50_ms, p99_ms, errors (socket errors + non-2xx/3xx)
    from wrk --latency output."""
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(\w+),", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            out[key] = _ms(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
        out["socket_errors"] = m.group(0)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
        out["non2xx"] = int(m.group(1))
    out["errors"] = errors
    return out


def _variant_order(v):
    return VARIANTS.index(v) if v in VARIANTS else len(VARIANTS)


class Section:
    name = "small"
    title = "Small: HTTP requests (wrk)"
    columns = [
        ("rps", "req/s", 0, "higher"),
        ("p50_ms", "p50 ms", 3, "lower"),
        ("p99_ms", "p99 ms", 3, "lower"),
        ("cpu_us_per_req", "CPU µs/req", 1, "lower"),
    ]
    ratio_keys = ["rps", "p50_ms", "p99_ms", "cpu_us_per_req"]
    floor_key = "cpu_us_per_req"         # the report's "x floor" column
    extra_variants = ["floor"]           # proxies.OPT_IN variants run here

    @staticmethod
    def add_arguments(p):
        p.add_argument("--wrk-threads", type=int, default=1,
                       help="small: wrk -t (default 1)")
        p.add_argument("--wrk-connections", type=int, default=32,
                       help="small: wrk -c, connections kept open (default 32)")
        p.add_argument("--syscalls", action="store_true",
                       help="small: count the proxy's syscalls per request with perf stat "
                       "(tracepoints; adds a little CPU per syscall to the proxy's figures)")

    @staticmethod
    def available():
        if not which("wrk"):
            return False, "wrk is not installed"
        if not which("nginx"):
            return False, "nginx (the HTTP backend) is not installed"
        return True, ""

    def __init__(self, ctx):
        self.ctx = ctx
        a = ctx.args
        self.seconds = a.seconds
        self.threads = getattr(a, "wrk_threads", 1) or 1
        self.conns = getattr(a, "wrk_connections", 32) or 32
        if self.conns < self.threads:
            self.conns = self.threads
        self.backend = HttpBackend(ctx.workdir)
        self.seen = {}                  # (case, variant) -> [metrics]
        self.events, self.no_syscalls = [], ""
        if getattr(a, "syscalls", False):
            self.events, self.no_syscalls = perfstat.events()
            if not self.events:
                note(f"small: --syscalls skipped: {self.no_syscalls}")

    def describe(self):
        return [
            f"wrk -t{self.threads} -c{self.conns} -d{self.seconds}s --latency through the "
            "proxy to an nginx HTTP backend (worker_processes 1, keep-alive, sendfile, no "
            "access log) serving static 1 KiB and 64 KiB files.",
            "keep-alive: the connections stay open; close: `-H 'Connection: close'`, a new "
            "connection through the proxy per request. CPU µs/req: the proxy's CPU "
            "(utime+stime, all processes and threads) over the run / requests completed.",
        ] + self._describe_syscalls()

    def _describe_syscalls(self):
        if not getattr(self.ctx.args, "syscalls", False):
            return []
        if not self.events:
            return [f"--syscalls: skipped ({self.no_syscalls})."]
        return ["--syscalls: `perf stat` counted the proxy's syscalls (tracepoints "
                "raw_syscalls:sys_enter and syscalls:sys_enter_*, every process and thread) "
                "while wrk ran; counting costs the proxy a little on every syscall, so this "
                "run's CPU and req/s figures are somewhat worse than without it, the more so "
                "for the proxies that make more syscalls."]

    def cases(self):
        return list(SMOKE_CASES if self.ctx.args.smoke else CASES)

    def start_backends(self):
        self.backend.start()
        return [("127.0.0.1", self.backend.port)]

    def proxy_opts(self, case):
        return {}

    def measure(self, proxy, case):
        body, mode = case.split()
        cmd = ["wrk", f"-t{self.threads}", f"-c{self.conns}", f"-d{self.seconds}s", "--latency"]
        if mode == "close":
            cmd += ["-H", "Connection: close"]
        cmd.append(f"http://127.0.0.1:{proxy.port}/{body}.bin")
        limit = self.seconds + 30
        counter = contextlib.nullcontext()
        if self.events:
            tag = os.path.splitext(os.path.basename(proxy.log))[0] + "-perf"
            counter = perfstat.SyscallCount(proc_pids(proxy), self.ctx.workdir, self.events,
                                            tag)
        with ProcWindow(proxy) as w, counter as sc:
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                     stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise RunError(f"wrk did not finish within {limit} s", proxy.log)
        if res.returncode != 0:
            raise RunError(f"wrk exited {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()[:300]}", proxy.log)
        r = parse_wrk(res.stdout)
        for k in ("requests", "rps", "p50_ms", "p99_ms"):
            if k not in r:
                raise RunError(f"wrk's output has no {k}: {res.stdout.strip()[:300]}", proxy.log)
        if r["requests"] <= 0:
            raise RunError("wrk completed no request through the proxy", proxy.log)
        out = dict(w.delta)
        out.update({k: r[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "errors")})
        out["cpu_us_per_req"] = out["cpu_s"] / r["requests"] * 1e6
        if self.events:
            counts = sc.counts
            out["syscalls_per_req"] = counts["total"] / r["requests"]
            out["syscalls"] = {k: n / r["requests"] for k, n in counts.items() if k != "total"}
            out["syscall_counts"] = counts
        warnings = []
        if r["errors"]:
            # A few errors among thousands of requests do not make a failure,
            # but they are shown; many do.
            what = ", ".join(x for x in (r.get("socket_errors"),
                                         f"non-2xx/3xx {r['non2xx']}" if r.get("non2xx") else None)
                             if x)
            if r["errors"] > max(10, r["requests"] // 100):
                raise RunError(f"wrk: {r['errors']} errors in {r['requests']} requests ({what})",
                               proxy.log)
            warnings.append(f"wrk: {r['errors']} errors in {r['requests']} requests ({what})")
        out["warnings"] = warnings
        self.seen.setdefault((case, proxy.variant), []).append(out)
        return out

    def stop_backends(self):
        self.backend.stop()

    def _med(self, case, variant, key):
        vals = [m[key] for m in self.seen.get((case, variant), []) if key in m]
        return statistics.median(vals) if vals else None

    def notes(self):
        return self._target_lines() + self._syscall_table()

    def _target_lines(self):
        """Per case: spliced-auto against the better (lower CPU µs/req) of
        TARGET_REFS, medians of this run, each figure checked against
        TARGET."""
        lines = []
        for case in self.cases():
            refs = [(self._med(case, r, "cpu_us_per_req"), r) for r in TARGET_REFS]
            refs = [(c, r) for c, r in refs if c is not None]
            if self._med(case, "spliced-auto", "cpu_us_per_req") is None or not refs:
                continue
            ref = min(refs)[1]
            parts = []
            for key, head, op, bound in TARGET:
                a, b = self._med(case, "spliced-auto", key), self._med(case, ref, key)
                if a is None or not b:
                    parts.append(f"{head} -")
                    continue
                ratio = a / b
                ok = ratio <= bound if op == "<=" else ratio >= bound
                parts.append(f"{head} {ratio:.2f}x ({'ok' if ok else '**missed**'})")
            lines.append(f"- {case}: against `{ref}`: " + ", ".join(parts))
        if not lines:
            return []
        want = ", ".join(f"{head} {'≤' if op == '<=' else '≥'} {bound:.2f}x"
                         for _, head, op, bound in TARGET)
        return ["Target (issue 14): `spliced-auto` over the better (lower CPU µs/req) of " +
                " and ".join(f"`{r}`" for r in TARGET_REFS) + ", per case, medians of this "
                f"run: {want}.\n\n" + "\n".join(lines)]

    def _syscall_table(self):
        """Syscalls per request (medians): the total, then each kind that
        some row makes at least 0.01 times per request; `other` is the rest
        of the total."""
        rows = [(c, v) for c in self.cases()
                for v in sorted({v for cc, v in self.seen if cc == c}, key=_variant_order)
                if self._med(c, v, "syscalls_per_req") is not None]
        if not rows:
            return []
        per = {}
        for cv in rows:
            kinds = {}
            for m in self.seen[cv]:
                for k, x in (m.get("syscalls") or {}).items():
                    kinds.setdefault(k, []).append(x)
            per[cv] = {k: statistics.median(x) for k, x in kinds.items()}
        kinds = [k for k in perfstat.KINDS if any(per[cv].get(k, 0) >= 0.01 for cv in rows)]
        out = ["Syscalls per request (`--syscalls`; medians; `-`: under 0.005, kinds under "
               "0.01 in every row left out; `other`: the rest of the total):", "",
               "| case | proxy | total | " + " | ".join(kinds) + " | other |",
               "|---|---|" + "---:|" * (len(kinds) + 2)]
        for case, v in rows:
            total = self._med(case, v, "syscalls_per_req")
            cells = [per[(case, v)].get(k, 0.0) for k in kinds]
            other = max(0.0, total - sum(per[(case, v)].values()))
            out.append(f"| {case} | {v} | {total:.2f} | " +
                       " | ".join(f"{x:.2f}" if x >= 0.005 else "-" for x in cells) +
                       f" | {other:.2f} |")
        return ["\n".join(out)]

    def charts(self):
        return [
            {"file": "small-rps.png", "title": "Small (wrk): requests/s through the proxy",
             "kind": "bars", "metric": "rps", "ylabel": "requests/s (higher is better)"},
            {"file": "small-cpu-per-req.png",
             "title": "Small (wrk): proxy CPU microseconds per request",
             "kind": "bars", "metric": "cpu_us_per_req",
             "ylabel": "CPU µs / request (lower is better)"},
        ]
