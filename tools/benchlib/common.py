"""Shared pieces of tools/bench: ports, waiting for a listener, errors,
the proxy's processes and what they cost (/proc), package checks.

The interface the sections use (tools/benchlib/<section>.py):

  free_port() -> int
  wait_listening(proc, port, what, logpath, timeout=10.0)
  RunError(msg, logpath=None)          .logpath: the log to show with it
  note(msg)                            progress/problems on stderr
  proc_pids(proxy) -> [pid, ...]       the proxy's process and its descendants
  ProcWindow(proxy)                    with ProcWindow(proxy) as w: <load>
                                       w.delta: seconds, cpu_s, user_s, sys_s,
                                       vcsw, ivcsw, cs_per_s (all processes,
                                       all threads)
  proc_snapshot(proxy) -> dict         rss_kib, fds, procs, threads (summed)
  max_clients() -> int                 the most concurrent client connections
                                       opts["maxconn"] may ask of a proxy
                                       here (bounded by RLIMIT_NOFILE)

A "proxy" here is anything with a .pid attribute (proxies.Proxy), or a pid.
Everything is read from /proc of the running processes: nothing is asked of
the proxies themselves.
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def note(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class RunError(Exception):
    """A measurement (or a start) that failed; logpath: the log to look at."""

    def __init__(self, msg, logpath=None):
        super().__init__(msg)
        self.logpath = logpath


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something listens on port, from /proc/net/tcp*: no probe
    connection (iperf3 would take one for a client, and it would show in the
    proxy's counters)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def wait_listening(proc, port, what, logpath, timeout=10.0):
    """Wait until port listens; RunError if proc (a Popen) exits first or
    the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RunError(f"{what} exited with status {proc.returncode} before listening",
                           logpath)
        if listening(port):
            return
        time.sleep(0.02)
    raise RunError(f"{what} is not listening on port {port} after {timeout:.0f} s", logpath)


def stop_process(proc, wait=10.0):
    """SIGTERM, up to `wait` seconds, then SIGKILL. None and exited are fine."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# The proxy's processes

def _pid_of(proxy):
    return proxy if isinstance(proxy, int) else proxy.pid


def _ppids():
    """{pid: ppid} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        out[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def proc_pids(proxy):
    """The proxy's main process and all its descendants (nginx's and
    HAProxy's master and workers; spliced is one process)."""
    root = _pid_of(proxy)
    if not os.path.exists(f"/proc/{root}"):
        return []
    children = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def _read_stat(pid):
    """(utime, stime) in ticks of the whole process (every thread, live or
    exited)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()    # fields[0] is field 3 (state)
    return int(fields[11]), int(fields[12])


def _status_fields(path, keys):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


_CS_KEYS = ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")


def _sample(pids):
    """{pid: (utime, stime, {tid: (vcsw, ivcsw)})} of the live ones.
    Context switches are per thread in /proc (/proc/PID/status shows the
    main thread's only), so every task is read."""
    out = {}
    for pid in pids:
        try:
            ut, st = _read_stat(pid)
            tasks = {}
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    f = _status_fields(f"/proc/{pid}/task/{tid}/status", _CS_KEYS)
                except OSError:
                    continue
                tasks[int(tid)] = (f.get(_CS_KEYS[0], 0), f.get(_CS_KEYS[1], 0))
            out[pid] = (ut, st, tasks)
        except OSError:
            continue
    return out


class ProcWindow:
    """What the proxy's processes spent while the with-block ran:

        with ProcWindow(proxy) as w:
            run_load()
        w.delta  # seconds, cpu_s, user_s, sys_s, vcsw, ivcsw, cs_per_s

    CPU from utime/stime of /proc/PID/stat (every thread; 1/CLK_TCK s
    ticks), context switches from /proc/PID/task/*/status, summed over the
    proxy's process and its descendants. A process or thread that appears
    during the window counts in full; one that ends during it is lost (the
    proxies here keep theirs for their whole life)."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.delta = None

    def __enter__(self):
        self.pids0 = proc_pids(self.proxy)
        self.s0 = _sample(self.pids0)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        t1 = time.monotonic()
        s1 = _sample(proc_pids(self.proxy) or self.pids0)
        ut = st = v = iv = 0
        for pid, (u1, st1, tasks1) in s1.items():
            u0, st0, tasks0 = self.s0.get(pid, (0, 0, {}))
            ut += u1 - u0
            st += st1 - st0
            for tid, (v1, iv1) in tasks1.items():
                v0, iv0 = tasks0.get(tid, (0, 0))
                v += v1 - v0
                iv += iv1 - iv0
        secs = max(t1 - self.t0, 1e-9)
        self.delta = {
            "seconds": secs,
            "cpu_s": (ut + st) / CLK_TCK,
            "user_s": ut / CLK_TCK,
            "sys_s": st / CLK_TCK,
            "vcsw": v,
            "ivcsw": iv,
            "cs_per_s": (v + iv) / secs,
        }
        return False


def proc_snapshot(proxy):
    """rss_kib (sum of VmRSS), fds (entries of /proc/PID/fd), procs, threads,
    summed over the proxy's processes."""
    rss = fds = threads = 0
    pids = proc_pids(proxy)
    for pid in pids:
        try:
            f = _status_fields(f"/proc/{pid}/status", ("VmRSS", "Threads"))
            rss += f.get("VmRSS", 0)
            threads += f.get("Threads", 0)
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return {"rss_kib": rss, "fds": fds, "procs": len(pids), "threads": threads}


# --------------------------------------------------------------------------
# File descriptor limits

def nr_open():
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def can_raise_nofile():
    """Whether this process may raise its hard RLIMIT_NOFILE (root with
    CAP_SYS_RESOURCE; containers often drop it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except (OSError, ValueError):
        pass
    return False


def nofile_hard():
    """The hard fd limit a proxy can be given."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if can_raise_nofile():
        return nr_open()
    return nr_open() if hard == resource.RLIM_INFINITY else hard


def max_clients():
    """The most concurrent client connections a proxy can be asked to hold
    (opts["maxconn"]): each takes two fds (client, backend), HAProxy adds
    pipes for a quarter of them (2 fds each), plus slack: (hard - 512) / 2.5.
    Bigger maxconn makes start_proxy() fail."""
    return int((nofile_hard() - 512) / 2.5)


# --------------------------------------------------------------------------
# Packages and the machine

def apt_install(packages):
    """apt-get install the Debian packages (with sudo when not root);
    returns whether apt-get succeeded (update and retry once on failure)."""
    note("installing with apt-get: " + " ".join(packages))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + list(packages)
    if subprocess.call(cmd, env=env, stdout=sys.stderr) == 0:
        return True
    subprocess.call(sudo + ["apt-get", "update", "-q"], env=env, stdout=sys.stderr)
    return subprocess.call(cmd, env=env, stdout=sys.stderr) == 0


def which(prog):
    return shutil.which(prog) or (os.path.exists(f"/usr/sbin/{prog}") and f"/usr/sbin/{prog}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def loadavg():
    """The 1-minute load average, from /proc/loadavg (None if unreadable)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def command_output(cmd, timeout=10):
    """stdout+stderr of a short command, or '' when it cannot run."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return (r.stdout or "") + (r.stderr or "")
    except (OSError, subprocess.SubprocessError):
        return ""


def make_workdir(prefix="spliced-bench-"):
    """A temporary directory every user can read (the proxies may run as
    nobody and must read their configs; the HTTP backend serves files from
    it)."""
    import tempfile
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path
