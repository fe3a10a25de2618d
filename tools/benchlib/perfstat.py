"""The syscalls a proxy makes while a load runs, counted by `perf stat` on
tracepoints (tools/bench --syscalls).

  KINDS                             the syscalls counted one by one, in order
  events() -> ([event], why)        the tracepoints this kernel has ([] and
                                    why not when perf or tracing is missing)
  SyscallCount(pids, workdir, evs)  with SyscallCount(...) as c: <load>
                                    c.counts: {"total": n, kind: n, ...}

perf attaches to every process of the proxy (`-p` with a comma list; each
process's threads are counted with it) with its events disabled (`-D -1`),
and is told through a control fifo to enable them when the load starts and
to disable them when it ends, waiting for perf's ack each time: so its
start-up and the idle moments around the load count nothing. perf is then
stopped with SIGINT and its CSV output (`-x,`) read from a file.

Counting costs the proxy something on every syscall (two tracepoints fire),
so the CPU figures of a run with --syscalls are a little worse than without.
"""

import os
import select
import time
import signal
import subprocess

from .common import RunError, which

PERF = "/usr/bin/perf"
TOTAL = "raw_syscalls:sys_enter"
KINDS = ["epoll_wait", "epoll_pwait", "epoll_ctl", "read", "write", "recvfrom", "sendto",
         "readv", "writev", "splice", "ioctl", "accept4", "connect", "close", "shutdown",
         "socket", "setsockopt", "getsockopt"]
ACK_TIMEOUT = 10.0

_events = []


def _perf():
    return PERF if os.access(PERF, os.X_OK) else which("perf")


def events():
    """(the tracepoints to count, why not): TOTAL and the KINDS' sys_enter
    tracepoints this kernel has; ([], reason) when none can be counted."""
    if _events:
        return list(_events), ""
    perf = _perf()
    if not perf:
        return [], "perf is not installed (linux-perf)"
    try:
        r = subprocess.run([perf, "list", "--raw-dump", "tracepoint"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return [], f"perf list failed: {e}"
    have = set(r.stdout.split())
    if TOTAL not in have:
        return [], ("perf lists no raw_syscalls:sys_enter tracepoint (tracefs not mounted, "
                    "or not allowed: run as root)")
    _events[:] = [TOTAL] + [f"syscalls:sys_enter_{k}" for k in KINDS
                            if f"syscalls:sys_enter_{k}" in have]
    return list(_events), ""


def kind_of(event):
    """'syscalls:sys_enter_read' -> 'read'; TOTAL -> 'total'."""
    return "total" if event == TOTAL else event.rsplit("sys_enter_", 1)[-1]


def parse(text):
    """{kind: count} from perf stat -x, output. `<not counted>` (the task
    never ran while counting) is 0; `<not supported>` and lines that are not
    counts are left out."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 3:
            continue
        value, event = fields[0].strip(), fields[2].strip()
        if not event.startswith(("raw_syscalls:", "syscalls:")):
            continue
        if value == "<not counted>":
            n = 0
        else:
            try:
                n = int(float(value))
            except ValueError:
                continue
        out[kind_of(event)] = out.get(kind_of(event), 0) + n
    return out


class SyscallCount:
    """perf stat on pids, counting from __enter__ to __exit__ of the
    with-block. Raises RunError when perf does not start or answer."""

    def __init__(self, pids, workdir, evs, tag="perf"):
        self.pids, self.evs = [str(p) for p in pids], evs
        base = os.path.join(workdir, tag)
        self.out, self.log = base + ".csv", base + ".log"
        self.ctl_path, self.ack_path = base + ".ctl", base + ".ack"
        self.proc = self.ctl = self.ack = None
        self.counts = None

    def __enter__(self):
        for p in (self.ctl_path, self.ack_path, self.out):
            if os.path.exists(p):
                os.unlink(p)
        os.mkfifo(self.ctl_path)
        os.mkfifo(self.ack_path)
        cmd = [_perf(), "stat", "-x,", "-o", self.out, "-e", ",".join(self.evs),
               "-p", ",".join(self.pids), "-D", "-1",
               "--control", f"fifo:{self.ctl_path},{self.ack_path}"]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            # perf opens the ack fifo for writing and blocks until it has a
            # reader; opened here without blocking (and the control fifo
            # read-write), neither side can hang on the other.
            self.ack = os.open(self.ack_path, os.O_RDONLY | os.O_NONBLOCK)
            self.ctl = os.open(self.ctl_path, os.O_RDWR)
            self._command("enable")
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self._command("disable")
        finally:
            self._stop()
        if exc[0] is None:
            try:
                with open(self.out) as f:
                    self.counts = parse(f.read())
            except OSError as e:
                raise RunError(f"perf stat wrote no output: {e}", self.log)
            if "total" not in self.counts:
                raise RunError("perf stat counted nothing (raw_syscalls:sys_enter missing "
                               "from its output)", self.out)
        return False

    def _command(self, what):
        os.write(self.ctl, what.encode() + b"\n")
        got = b""
        deadline = time.monotonic() + ACK_TIMEOUT
        while b"ack" not in got:
            if self.proc.poll() is not None:
                raise RunError(f"perf stat exited with status {self.proc.returncode} before "
                               f"its {what} was acknowledged", self.log)
            if time.monotonic() > deadline:
                raise RunError(f"perf stat did not acknowledge {what} within "
                               f"{ACK_TIMEOUT:.0f} s", self.log)
            # Short slices: a perf that died is seen at once, not after
            # the whole timeout.
            ready, _, _ = select.select([self.ack], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.ack, 64)
            except BlockingIOError:
                continue
            if not chunk:
                # No writer yet (perf still starting): the fifo reads EOF.
                select.select([], [], [], 0.01)
            got += chunk

    def _stop(self):
        """SIGINT (perf then writes its counts), up to 10 s, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self.ctl, self.ack):
            if fd is not None:
                os.close(fd)
        self.ctl = self.ack = None
        for p in (self.ctl_path, self.ack_path):
            try:
                os.unlink(p)
            except OSError:
                pass
