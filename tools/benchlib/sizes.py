"""Section sizes: one response size at a time, many connections each.

The backend is build/zc-source (sendfile(2): it spends next to no CPU per
byte) on one 127.0.0.1 port for the whole section, serving the case's size
to every connection; it is restarted on the same port only when the size
changes, so every proxy of one case talks to the same backend process. The
client is build/spliced-load:

  spliced-load fetch --connect PROXY --size SIZE --connections TOTAL
                     --concurrency C --seconds S --discard

C connections in flight (16 below 1 MiB, 8 from 1 MiB), each connecting,
reading to EOF (--discard: the kernel drops the bytes, MSG_TRUNC, so the
client costs next to nothing per byte) and checking it got exactly SIZE
bytes. TOTAL scales with the size so every proxy does the same work: enough
connections to move 4 GB, at most 20,000 (1 KiB: 20,000 connections,
100 MiB: 39); --seconds (the run's --seconds) only caps a slow proxy, and
the connections in flight then finish. The proxy's CPU is read from /proc
around the client's run (common.ProcWindow).

Metrics: Gbit/s and connections/s as the client saw them (bytes / first
connect to last EOF), CPU s/GB (the proxy's utime+stime per 10^9 bytes),
errors (connections that failed or got a wrong byte count), plus the
generic CPU, user, sys and context switches/s.

This module also holds what flows.py and sni.py share: ZcSource,
run_fetch(), fetch_metrics(), tool_path().
"""

import json
import os
import subprocess

from .common import ProcWindow, RunError, free_port, note, stop_process, wait_listening
from .proxies import DEFAULT_SPLICED

KIB, MIB = 1024, 1 << 20
SIZES = [("1 KiB", KIB), ("16 KiB", 16 * KIB), ("64 KiB", 64 * KIB), ("256 KiB", 256 * KIB),
         ("1 MiB", MIB), ("16 MiB", 16 * MIB), ("100 MiB", 100 * MIB)]
SMOKE_SIZES = ["1 KiB", "1 MiB"]
SHORT = {KIB: "1k", 16 * KIB: "16k", 64 * KIB: "64k", 256 * KIB: "256k", MIB: "1m",
         16 * MIB: "16m", 100 * MIB: "100m"}


def tool_path(ctx, name):
    """build/<name>: the directory of the spliced binary the run uses."""
    spliced = ((getattr(ctx, "opts", None) or {}).get("spliced") or
               getattr(ctx.args, "spliced", None) or DEFAULT_SPLICED)
    return os.path.join(os.path.dirname(os.path.abspath(spliced)), name)


def tools_missing(ctx, names):
    """(False, why) when a build/ tool is missing, else (True, "")."""
    for name in names:
        path = tool_path(ctx, name)
        if not os.access(path, os.X_OK):
            return False, f"{path} is not an executable (build first: ninja -C build)"
    return True, ""


def nofile_preexec(need=0):
    """A preexec_fn: the soft fd limit up to the hard one, and both up to
    need when that is more and allowed (root with CAP_SYS_RESOURCE)."""
    def fn():
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and need > hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
                return
            except (ValueError, OSError):
                pass
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return fn


class ZcSource:
    """build/zc-source on one port for the life of the section. serve(size)
    (re)starts it with that size on the same port when it is not already
    serving it. The data lives in files under the work directory (one per
    size, made once: zc-source --file creates a missing one)."""

    def __init__(self, binary, workdir, tag="zc-source"):
        self.binary, self.workdir, self.tag = binary, workdir, tag
        self.proc, self.size, self.n = None, None, 0
        self.port = free_port()
        self.log = os.path.join(workdir, f"{tag}.log")

    def serve(self, size):
        if self.proc is not None and self.proc.poll() is None and self.size == size:
            return
        if self.proc is not None and self.proc.poll() is not None:
            note(f"{self.tag} had exited ({self.proc.returncode}): restarting it")
        self.stop()
        self.n += 1
        data = os.path.join(self.workdir, f"zc-{size}.bin")
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--listen", f"127.0.0.1:{self.port}", "--size", str(size),
                 "--file", data],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=nofile_preexec())
        # Writing a 100 MiB file first takes a moment.
        wait_listening(self.proc, self.port, self.tag, self.log, timeout=60.0)
        self.size = size

    def stop(self):
        stop_process(self.proc, 10)
        self.proc, self.size = None, None


def run_fetch(binary, port, size, total, concurrency, seconds, logpath, cut=False,
              timeout=30, prefix=None):
    """One `spliced-load fetch` through 127.0.0.1:port; its JSON report.
    prefix: a file each connection sends first (--prefix). RunError when it
    cannot run or prints no report (a report with errors is returned: the
    caller judges)."""
    cmd = [binary, "fetch", "--connect", f"127.0.0.1:{port}", "--size", str(size),
           "--connections", str(total), "--concurrency", str(concurrency),
           "--seconds", f"{seconds:g}", "--discard", "--timeout", f"{timeout:g}",
           "--max-errors", str(max(100, concurrency))]
    if cut:
        cmd.append("--cut")
    if prefix:
        cmd += ["--prefix", prefix]
    # In flight at the deadline may still take a while to finish; each wait
    # for bytes is bounded by --timeout.
    limit = seconds * 3 + timeout + 30
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RunError(f"spliced-load fetch did not finish within {limit:.0f} s", logpath)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RunError(f"spliced-load fetch exited {res.returncode} without a report: "
                       f"{(res.stderr or res.stdout).strip()[:300]}", logpath)
    report["stderr"] = res.stderr.strip()
    return report


def fetch_metrics(report, delta, logpath, what):
    """Metrics of one fetch run (report) in a ProcWindow (delta); RunError
    when nothing got through or more than 1% failed, a warning for fewer."""
    nbytes, done, errors = report["bytes"], report["connections"], report["errors"]
    kinds = ", ".join(f"{k} {v}" for k, v in report["error_kinds"].items() if v)
    if done == 0 or nbytes == 0:
        raise RunError(f"{what}: no connection completed through the proxy "
                       f"({errors} errors: {kinds or report['stderr'][:200]})", logpath)
    if report.get("interrupted"):
        raise RunError(f"{what}: spliced-load was interrupted", logpath)
    out = dict(delta)
    out.update({
        "gbps": report["gbps"],
        "conns_per_s": report["conns_per_s"],
        "cpu_per_gb": delta["cpu_s"] / (nbytes / 1e9),
        "bytes": nbytes,
        "connections": done,
        "errors": errors,
        "p50_us": report["p50_us"],
        "p99_us": report["p99_us"],
        "load_seconds": report["seconds"],
    })
    warnings = []
    if errors:
        text = f"{what}: {errors} failed connections of {done + errors} ({kinds})"
        if errors > max(10, (done + errors) // 100):
            raise RunError(text, logpath)
        warnings.append(text)
    out["warnings"] = warnings
    return out


class Section:
    name = "sizes"
    title = "Sizes: one response size at a time (zc-source, spliced-load)"
    columns = [
        ("gbps", "Gbit/s", 2, "higher"),
        ("conns_per_s", "conn/s", 0, "higher"),
        ("cpu_per_gb", "CPU s/GB", 3, "lower"),
        ("errors", "errors", 0, "lower"),
    ]
    ratio_keys = ["gbps", "cpu_per_gb"]
    BYTES = 4e9                 # per measurement, so every size does the same work
    MAX_CONNS = 20000

    @staticmethod
    def available():
        return True, ""

    def __init__(self, ctx):
        self.ctx = ctx
        a = ctx.args
        self.smoke = bool(getattr(a, "smoke", False))
        self.seconds = float(getattr(a, "seconds", 10) or 10)
        if self.smoke:
            self.BYTES, self.MAX_CONNS = 2e8, 2000
        self.load = tool_path(ctx, "spliced-load")
        self.source = None
        self.seen = {}          # (case, variant): [metrics]; for notes()

    def describe(self):
        return [
            "`spliced-load fetch` through the proxy from `zc-source` (sendfile: the backend "
            "costs next to nothing per byte), one response size per case: each connection "
            "connects, reads to EOF and must get exactly that many bytes. Concurrency 16 "
            "below 1 MiB, 8 from 1 MiB; each proxy makes enough connections to move "
            f"{self.BYTES / 1e9:g} GB, at most {self.MAX_CONNS:,}, within {self.seconds:g} s "
            "(those in flight then finish). The client drops the bytes in the kernel "
            "(MSG_TRUNC), so it costs next to nothing per byte either.",
            "Gbit/s and conn/s: what the client received over its run. CPU s/GB: the proxy's "
            "CPU seconds (utime+stime of all its processes and threads, /proc) over the "
            "client's run per 10^9 bytes. errors: connections that failed or got a wrong "
            "byte count (only the count is checked, not the content).",
        ]

    def cases(self):
        names = [n for n, _ in SIZES]
        return [n for n in names if n in SMOKE_SIZES] if self.smoke else names

    def start_backends(self):
        ok, why = tools_missing(self.ctx, ["zc-source", "spliced-load"])
        if not ok:
            raise RunError(why)
        self.source = ZcSource(tool_path(self.ctx, "zc-source"), self.ctx.workdir)
        self.source.serve(dict(SIZES)[self.cases()[0]])
        return [("127.0.0.1", self.source.port)]

    def proxy_opts(self, case):
        return {}

    def plan(self, size):
        """(connections, concurrency) for one size."""
        conc = 16 if size < MIB else 8
        total = int(min(self.MAX_CONNS, max(4 * conc, -(-self.BYTES // size))))
        return total, conc

    def measure(self, proxy, case):
        size = dict(SIZES)[case]
        self.source.serve(size)
        total, conc = self.plan(size)
        with ProcWindow(proxy) as w:
            report = run_fetch(self.load, proxy.port, size, total, conc, self.seconds,
                               proxy.log)
        out = fetch_metrics(report, w.delta, proxy.log, f"{case} through {proxy.variant}")
        self.seen.setdefault((case, proxy.variant), []).append(out)
        return out

    def stop_backends(self):
        if self.source:
            self.source.stop()

    def notes(self):
        """The issue's target: spliced-auto's CPU/GB within 5% of the better
        of spliced-never and spliced-always, at every size."""
        import statistics

        def med(case, variant, key):
            runs = self.seen.get((case, variant)) or []
            vals = [r[key] for r in runs if key in r]
            return statistics.median(vals) if vals else None

        rows = []
        for case in self.cases():
            auto = med(case, "spliced-auto", "cpu_per_gb")
            never = med(case, "spliced-never", "cpu_per_gb")
            always = med(case, "spliced-always", "cpu_per_gb")
            if auto is None or (never is None and always is None):
                continue
            best, which = min((v, n) for v, n in ((never, "never"), (always, "always"))
                              if v is not None)
            ratio = auto / best if best else float("inf")
            rows.append(f"| {case} | {auto:.3f} | {best:.3f} ({which}) | {ratio:.2f} | "
                        f"{'yes' if ratio <= 1.05 else '**no**'} |")
        if not rows:
            return []
        return ["Target: `spliced-auto` CPU s/GB within 5% of the better of `spliced-never` "
                "and `spliced-always` at every size (medians of this run):",
                "| size | auto CPU s/GB | better of never/always | auto / better | within 5% |\n"
                "|---|---:|---:|---:|---|\n" + "\n".join(rows)]

    def charts(self):
        xs = {name: size for name, size in SIZES if name in self.cases()}
        xt = {size: SHORT[size] for size in xs.values()}
        common = {"kind": "lines", "x": xs, "xtics": xt, "logx": True, "logy": True,
                  "xlabel": "response size (bytes, log scale)"}
        return [
            dict(common, file="sizes-cpu-per-gb.png",
                 title="Sizes: proxy CPU seconds per GB relayed, by response size",
                 metric="cpu_per_gb", ylabel="CPU s / GB (log; lower is better)"),
            dict(common, file="sizes-gbps.png",
                 title="Sizes: Gbit/s through the proxy, by response size",
                 metric="gbps", ylabel="Gbit/s (log; higher is better)"),
        ]
