"""Section bulk: iperf3 through the proxy, one stream and four (-P 4).

One iperf3 server (127.0.0.1, a free port) is the backend for the whole
section; for each proxy, `iperf3 -c 127.0.0.1 -p PROXY -t SECONDS -P N -J`
sends client -> backend through it. Measured:

  Gbit/s      end.sum_received.bits_per_second of iperf3's JSON
  CPU s/GB    the proxy's CPU seconds (utime+stime, every process and
              thread) while the client ran, per 10^9 bytes received
"""

import json
import os
import subprocess

from .common import ProcWindow, RunError, free_port, note, stop_process, wait_listening, which


class IperfServer:
    def __init__(self, workdir):
        self.workdir, self.proc, self.port, self.n = workdir, None, None, 0
        self.log = None

    def start(self):
        self.stop()
        self.n += 1
        self.port = free_port()
        self.log = os.path.join(self.workdir, f"iperf3-server-{self.n}.log")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_listening(self.proc, self.port, "iperf3 -s", self.log)

    def stop(self):
        stop_process(self.proc, 5)
        self.proc = None


class Section:
    name = "bulk"
    title = "Bulk: iperf3"
    columns = [
        ("gbps", "Gbit/s", 2, "higher"),
        ("cpu_per_gb", "CPU s/GB", 3, "lower"),
    ]
    ratio_keys = ["gbps", "cpu_per_gb"]
    STREAMS = {"1 stream": 1, "4 streams": 4}

    def __init__(self, ctx):
        self.ctx = ctx
        self.seconds = ctx.args.seconds
        self.server = IperfServer(ctx.workdir)

    @staticmethod
    def available():
        if not which("iperf3"):
            return False, "iperf3 is not installed"
        return True, ""

    def describe(self):
        return [
            f"iperf3 client -> proxy -> iperf3 server, {self.seconds} s per run, client to "
            "backend; `-P 4` for four parallel streams.",
            "Gbit/s: what the server received (iperf3 JSON end.sum_received). CPU s/GB: the "
            "proxy's CPU seconds (utime+stime of all its processes and threads, from /proc) "
            "during the transfer, per 10^9 bytes. iperf3 client and server share the machine's "
            "cores with the proxy, so Gbit/s is bounded by them too; CPU s/GB is the steadier "
            "figure.",
        ]

    def cases(self):
        return list(self.STREAMS)

    def start_backends(self):
        self.server.start()
        return [("127.0.0.1", self.server.port)]

    def proxy_opts(self, case):
        return {}

    def measure(self, proxy, case):
        if self.server.proc is None or self.server.proc.poll() is not None:
            note("iperf3 server had exited: restarting it on the same port")
            self._restart_server()
        n = self.STREAMS[case]
        cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(proxy.port), "-t", str(self.seconds),
               "-P", str(n), "-J"]
        limit = self.seconds + 30
        with ProcWindow(proxy) as w:
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                     stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                res = None
        if res is None:
            self._restart_server()
            raise RunError(f"iperf3 -c did not finish within {limit} s", proxy.log)
        try:
            report = json.loads(res.stdout)
        except ValueError:
            self._restart_server()
            raise RunError(f"iperf3 -c exited {res.returncode} without a JSON report: "
                           f"{(res.stderr or res.stdout).strip()[:300]}", proxy.log)
        if report.get("error"):
            self._restart_server()
            raise RunError(f"iperf3 -c: {report['error']}", proxy.log)
        received = report["end"]["sum_received"]
        nbytes = received["bytes"]
        if nbytes <= 0:
            raise RunError("iperf3 received no bytes through the proxy", proxy.log)
        d = w.delta
        out = dict(d)
        out.update({
            "gbps": received["bits_per_second"] / 1e9,
            "bytes": nbytes,
            "cpu_per_gb": d["cpu_s"] / (nbytes / 1e9),
        })
        return out

    def _restart_server(self):
        # A failed test can leave iperf3 -s stuck in it. The proxies are
        # given the backends once per section, so the port stays.
        port = self.server.port
        self.server.stop()
        with open(self.server.log, "a") as out:
            self.server.proc = subprocess.Popen(
                ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_listening(self.server.proc, port, "iperf3 -s (restarted)", self.server.log)
        except RunError as e:
            note(str(e))

    def stop_backends(self):
        self.server.stop()

    def charts(self):
        return [
            {"file": "bulk-gbps.png", "title": "Bulk (iperf3): Gbit/s through the proxy",
             "kind": "bars", "metric": "gbps", "ylabel": "Gbit/s (higher is better)"},
            {"file": "bulk-cpu-per-gb.png",
             "title": "Bulk (iperf3): proxy CPU seconds per GB relayed",
             "kind": "bars", "metric": "cpu_per_gb", "ylabel": "CPU s / GB (lower is better)"},
        ]
