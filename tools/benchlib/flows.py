"""Section flows: many bulk flows at once through a proxy run as nobody.

An unprivileged user may hold /proc/sys/fs/pipe-user-pages-soft pages of
pipes in all (16384 pages, 64 MiB, by default); past that the kernel hands
out one-page pipes (and refuses F_SETPIPE_SZ), which move bytes slower than
copying. Root is exempt, so this section runs each proxy as `nobody`
(proxy_opts user=nobody, maxconn 400) and puts 300 bulk flows through it at
once (smoke: 10):

  spliced-load fetch --size 16m --concurrency 300 --seconds S --cut --discard

from build/zc-source (sendfile) as the backend: 300 connections in flight
the whole time, each reading a 16 MiB response, a new one as soon as one
ends; at S seconds (the run's --seconds) those in flight are closed (--cut),
so the run is S seconds of exactly 300 flows. The proxy's CPU is read from
/proc around it; its pipes are counted from /proc/PID/fd every 0.25 s
(fds that are pipes, halved, minus those it had idle).

Metrics: Gbit/s, CPU s/GB (the proxy's utime+stime per 10^9 bytes),
errors, pipes (the most pipes the proxy held at once during the run).

Skipped unless run as root (the proxy could not be started as another
user).
"""

import os
import pwd
import subprocess
import threading

from .common import ProcWindow, RunError, proc_pids
from .sizes import MIB, ZcSource, fetch_metrics, run_fetch, tool_path, tools_missing

FLOWS = 300
SMOKE_FLOWS = 10
SIZE = 16 * MIB
USER = "nobody"


def pipe_fds(proxy):
    """fds of the proxy's processes that are pipes."""
    n = 0
    for pid in proc_pids(proxy):
        d = f"/proc/{pid}/fd"
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(f"{d}/{name}").startswith("pipe:"):
                    n += 1
            except OSError:
                continue
    return n


class PipeSampler:
    """The most pipe fds the proxy held at once while the with-block ran,
    read every `every` seconds by a thread."""

    def __init__(self, proxy, every=0.25):
        self.proxy, self.every, self.peak = proxy, every, 0
        self.stop = threading.Event()

    def _run(self):
        while not self.stop.wait(self.every):
            self.peak = max(self.peak, pipe_fds(self.proxy))

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False


def budget_pages():
    try:
        with open("/proc/sys/fs/pipe-user-pages-soft") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


class Section:
    name = "flows"
    title = f"Flows: many bulk flows at once, proxy run as {USER} (the pipe budget)"
    columns = [
        ("gbps", "Gbit/s", 2, "higher"),
        ("cpu_per_gb", "CPU s/GB", 3, "lower"),
        ("errors", "errors", 0, "lower"),
        ("pipes", "pipes", 0, None),
    ]
    ratio_keys = ["gbps", "cpu_per_gb"]

    @staticmethod
    def available():
        if os.geteuid() != 0:
            return False, f"not root: the proxies cannot be run as {USER}"
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return False, f"there is no user {USER}"
        return True, ""

    def __init__(self, ctx):
        self.ctx = ctx
        a = ctx.args
        self.smoke = bool(getattr(a, "smoke", False))
        self.seconds = float(getattr(a, "seconds", 10) or 10)
        self.flows = SMOKE_FLOWS if self.smoke else FLOWS
        self.load = tool_path(ctx, "spliced-load")
        self.source = None

    def describe(self):
        pages = budget_pages()
        budget = (f"{pages} pages ({pages * 4096 // MIB} MiB)" if pages is not None
                  else "unknown")
        return [
            f"{self.flows} connections in flight for {self.seconds:g} s through the proxy, run "
            f"as `{USER}`, each reading a {SIZE // MIB} MiB response from `zc-source` "
            "(`spliced-load fetch --concurrency "
            f"{self.flows} --cut`: a new one as each ends, those in flight closed at the "
            f"end). The per-user pipe budget here (pipe-user-pages-soft) is {budget}; past "
            "it the kernel gives one-page pipes. spliced (pipe_size 1m) hands out smaller "
            "pipes as more are out, down to 128 KiB, within 7/8 of that budget, caps its "
            "pipes at an eighth of its fd limit, and copies beyond; HAProxy makes a pipe per "
            "splicing "
            "connection up to maxpipes (maxconn/4), of tune.pipesize (the kernel's 64 KiB "
            "default, 1 MiB for haproxy-tuned).",
            "Gbit/s: what the client received. CPU s/GB: the proxy's CPU seconds per 10^9 "
            "bytes. pipes: the most pipes the proxy held at once (its pipe fds / 2, sampled "
            "every 0.25 s from /proc, minus those it held idle).",
        ]

    def cases(self):
        return [f"{self.flows} x {SIZE // MIB} MiB"]

    def start_backends(self):
        ok, why = tools_missing(self.ctx, ["zc-source", "spliced-load"])
        if not ok:
            raise RunError(why)
        self.source = ZcSource(tool_path(self.ctx, "zc-source"), self.ctx.workdir,
                               tag="flows-zc-source")
        self.source.serve(SIZE)
        return [("127.0.0.1", self.source.port)]

    def proxy_opts(self, case):
        return {"user": USER, "maxconn": max(400, self.flows + 100)}

    def measure(self, proxy, case):
        self.source.serve(SIZE)
        idle_pipes = pipe_fds(proxy)
        with ProcWindow(proxy) as w, PipeSampler(proxy) as p:
            report = run_fetch(self.load, proxy.port, SIZE, 10 ** 9, self.flows, self.seconds,
                               proxy.log, cut=True, timeout=60)
        out = fetch_metrics(report, w.delta, proxy.log, f"{case} through {proxy.variant}")
        out["pipes"] = max(0, p.peak - idle_pipes) // 2
        out["cut"] = report.get("cut", 0)
        return out

    def stop_backends(self):
        if self.source:
            self.source.stop()

    def charts(self):
        return [
            {"file": "flows-gbps.png",
             "title": f"Flows: Gbit/s, {self.flows} bulk flows at once, proxy as {USER}",
             "kind": "bars", "metric": "gbps", "ylabel": "Gbit/s (higher is better)"},
            {"file": "flows-cpu-per-gb.png",
             "title": f"Flows: proxy CPU seconds per GB, {self.flows} flows, proxy as {USER}",
             "kind": "bars", "metric": "cpu_per_gb", "ylabel": "CPU s / GB (lower is better)"},
        ]
