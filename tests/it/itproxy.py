"""Shared pieces of the spliced integration tests: the Proxy class (start,
stderr, access log, /proc, end-of-test checks) and access-log expectations.
Part of harness.py (see there)."""

import ctypes
import ctypes.util
import grp
import os
import pwd
import re
import resource
import signal
import subprocess
import sys
import threading
import time

from itcore import (FD_SETTLE, LOCAL, READY_TIMEOUT, VERBOSE, Skip, TestFailure,
                    check, check_eq, fail, log, wait_until)
from itnet import free_port


# --------------------------------------------------------------------------
# /proc

def proc_fds(pid):
    try:
        return os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return []


def proc_fd_count(pid):
    return len(proc_fds(pid))


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def tcp_table():
    """[(local_port, remote_port, state, inode)] for IPv4 and IPv6 TCP."""
    rows = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if len(p) < 10:
                        continue
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    rows.append((lport, rport, TCP_STATES.get(p[3], p[3]), int(p[9])))
        except OSError:
            pass
    return rows


def describe_fds(pid):
    """One string per fd: 'N -> target [tcp state ports]'."""
    tcp = {r[3]: r for r in tcp_table()}
    out = []
    for fd in sorted(proc_fds(pid), key=int):
        try:
            tgt = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", tgt)
        if m and int(m.group(1)) in tcp:
            lp, rp, st, _ = tcp[int(m.group(1))]
            tgt += " tcp %s local=%d remote=%d" % (st, lp, rp)
        out.append("%s -> %s" % (fd, tgt))
    return out


def socket_inodes(pid):
    res = set()
    for fd in proc_fds(pid):
        try:
            tgt = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", tgt)
        if m:
            res.add(int(m.group(1)))
    return res


# --------------------------------------------------------------------------
# the proxy

LOG_RE = re.compile(r"^(\S+) (error|warn|info|debug): (.*)$")
KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
ACCESS_INTS = ("up_splice", "up_copy", "down_splice", "down_copy", "duration_ms")


def parse_access(message):
    """'access k=v k=v ...' -> dict (byte counts and duration as int)."""
    d = {}
    for k, v in KV_RE.findall(message[len("access "):]):
        if v.startswith('"'):
            v = v[1:-1]
        d[k] = v
    for k in ACCESS_INTS:
        if k in d:
            try:
                d[k] = int(d[k])
            except ValueError:
                pass
    if "client" in d:
        try:
            d["client_port"] = int(d["client"].rsplit(":", 1)[1])
        except (ValueError, IndexError):
            pass
    return d


def render_config(glob, listeners, backends, ports):
    """INI text. Values that are lists become repeated keys. Each listener
    gets `bind = 127.0.0.1:P` for its ports (ports[name] is a list)."""
    out = ["; written by tests/it/harness.py", "[global]"]

    def kv(k, v):
        if isinstance(v, (list, tuple)):
            for x in v:
                out.append("%s = %s" % (k, x))
        else:
            out.append("%s = %s" % (k, v))
    for k, v in glob.items():
        kv(k, v)
    for name, opts in listeners.items():
        out.append("")
        out.append("[listener %s]" % name)
        for p in ports[name]:
            out.append("bind = %s:%d" % (LOCAL, p))
        for k, v in opts.items():
            if k == "binds":
                continue
            kv(k, v)
    for name, opts in backends.items():
        out.append("")
        out.append("[backend %s]" % name)
        for k, v in opts.items():
            kv(k, v)
    return "\n".join(out) + "\n"


_libc = None


def _child_setup(nofile):
    """Runs in the child before exec: die with the test (PDEATHSIG), and the
    optional fd limit. Only syscalls here (the parent has threads)."""
    def f():
        if _libc is not None:
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return f


def unprivileged(ctx):
    """(user, group) to run the proxy as so that it holds no privilege (the
    pipe budget and fd limits apply to it): nobody when the test runs as
    root, None (the current user) otherwise. Skips when root cannot run
    the binary as nobody."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("nobody")
        group = "nogroup"
        try:
            grp.getgrnam(group)
        except KeyError:
            group = "nobody"
            grp.getgrnam(group)
    except KeyError as e:
        raise Skip("running as root and there is no nobody user/group (%s)" % e)
    try:
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=" + group,
                            "--clear-groups", "--inh-caps=-all", "--", ctx.spliced,
                            "--version"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Skip("running as root and cannot run setpriv (%r)" % (e,))
    if r.returncode != 0:
        raise Skip("running as root and `setpriv --reuid=nobody ... spliced --version` "
                   "fails (exit %d: %s): is the binary reachable by nobody?"
                   % (r.returncode, (r.stderr or r.stdout).decode(errors="replace").strip()))
    return "nobody", group


class ProxyStartError(Exception):
    pass


class Proxy:
    """One spliced process.

    Either a config (glob, listeners, backends; listeners get fresh ports) or
    raw argv (args, with '{port}' placeholders filled from `ports`).
    nofile: RLIMIT_NOFILE for the proxy. user: run through setpriv as that
    user (the config then lives in a world-readable directory)."""

    def __init__(self, ctx, glob=None, listeners=None, backends=None, args=None,
                 nofile=None, user=None, group=None, env=None, name="proxy"):
        self.ctx = ctx
        self.name = name
        g = {"workers": 2, "log_level": "info", "shutdown_timeout": "10s"}
        g.update(glob or {})
        self.glob = g
        self.listeners = listeners or {}
        self.backends = backends or {}
        self.args = args
        self.nofile = nofile
        self.user = user
        self.group = group
        self.env = env
        self.proc = None
        self.pid = None
        self.ports = {}
        self.lines = []
        self.cond = threading.Condition()
        self.reader = None
        self.baseline_fds = None
        self.baseline_map = {}
        self.config_path = None
        self.exit_code = None
        self.stopped = False
        # regexes of warn/error messages the test expects. The tests run as
        # root without `user`, and a container's hard fd limit may be below
        # what the default max_connections needs: both are warned about.
        self.allowed = [re.compile(r"^running as root: set \[global\] user"),
                        re.compile(r"^RLIMIT_NOFILE: hard limit \d+ is below")]
        ctx.register(self)

    # -- start / stop -------------------------------------------------------

    def start(self, attempts=5):
        last = None
        for attempt in range(attempts):
            try:
                self._start_once()
                return self
            except ProxyStartError as e:
                last = e
                if "in use" in str(e).lower() or "EADDRINUSE" in str(e):
                    log("%s: a port was taken, retrying (%d)" % (self.name, attempt + 1))
                    continue
                raise
        raise last

    def _start_once(self):
        global _libc
        if _libc is None:
            try:
                _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                                    use_errno=True)
            except OSError:
                pass
        self.lines = []
        self.exit_code = None
        self.stopped = False
        if self.args is not None:
            self.ports = {k: free_port() for k in self.ctx_ports_needed()}
            argv = [self.ctx.spliced] + [a.format(**self.ports) for a in self.args]
        else:
            self.ports = {name: [free_port() for _ in range(opts.get("binds", 1))]
                          for name, opts in self.listeners.items()}
            text = render_config(self.glob, self.listeners, self.backends, self.ports)
            self.config_path = self.ctx.write_file(self.name + ".ini", text)
            argv = [self.ctx.spliced, "-c", self.config_path]
        if self.user:
            argv = ["setpriv", "--reuid=" + self.user, "--regid=" + (self.group or self.user),
                    "--clear-groups", "--inh-caps=-all", "--"] + argv
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env,
                                     preexec_fn=_child_setup(self.nofile))
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read_stderr, args=(self.proc,),
                                       name="stderr-" + self.name, daemon=True)
        self.reader.start()
        ok = self.wait_line(r" info: ready", READY_TIMEOUT, stop_on_exit=True)
        if not ok:
            rc = self.proc.poll()
            text = "\n".join(self.lines[-20:])
            if rc is None:
                self.kill()
                raise TestFailure("%s did not print 'info: ready' within %.0fs; stderr:\n%s"
                                  % (self.name, READY_TIMEOUT, text))
            raise ProxyStartError("%s exited with %s before ready; argv: %s\nstderr:\n%s"
                                  % (self.name, rc, " ".join(argv), text))
        self.baseline_fds = self.settled_fd_count()
        self.baseline_map = self.fd_targets()
        log("%s: pid %d ready, listening on %s, %d fds" % (
            self.name, self.pid, self.ports, self.baseline_fds))

    def ctx_ports_needed(self):
        names = set()
        for a in self.args:
            names.update(re.findall(r"\{(\w+)\}", a))
        return sorted(names)

    def _read_stderr(self, proc):
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if VERBOSE:
                sys.stdout.write("  %s| %s\n" % (self.name, line))
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def port(self, listener=None, i=0):
        if self.args is not None:
            return self.ports[listener or "port"]
        if listener is None:
            listener = next(iter(self.listeners))
        return self.ports[listener][i]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.reader:
            self.reader.join(5)
        return self.exit_code

    def stop(self, timeout=None):
        """SIGTERM and wait; fails unless it exits 0 within shutdown_timeout + margin."""
        if self.proc is None or self.stopped:
            return self.exit_code
        self.stopped = True
        if timeout is None:
            timeout = 60.0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
            fail("%s exits after SIGTERM" % self.name, "exit within %.0fs" % timeout,
                 "still running; killed")
        self.check_log()
        check_eq(rc, 0, "%s exit status after SIGTERM" % self.name)
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.stopped = True

    # -- stderr -------------------------------------------------------------

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern, timeout, since=0, stop_on_exit=False):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    if rx.search(line):
                        return line
                since = max(since, len(self.lines))
                left = end - time.monotonic()
                if left <= 0:
                    return None
                if stop_on_exit and self.proc.poll() is not None and \
                        not self.reader.is_alive():
                    return None
                self.cond.wait(min(left, 0.2))

    def parsed(self, since=0):
        """[(level, message)] of lines that follow the log format; None for others."""
        out = []
        with self.cond:
            lines = list(self.lines[since:])
        for line in lines:
            m = LOG_RE.match(line)
            out.append((m.group(2), m.group(3)) if m else (None, line))
        return out

    def access(self, since=0):
        return [parse_access(msg) for lvl, msg in self.parsed(since)
                if lvl == "info" and msg.startswith("access ")]

    def access_for(self, client_port, since=0, timeout=30.0):
        """The access line of the connection from client_port (after mark
        `since`); waits for it."""
        end = time.monotonic() + timeout
        while True:
            for a in self.access(since):
                if a.get("client_port") == client_port:
                    return a
            if time.monotonic() > end:
                fail("access log line for client port %d" % client_port,
                     "one within %.0fs" % timeout,
                     "none; last lines:\n      " + "\n      ".join(self.lines[-8:]))
            with self.cond:
                self.cond.wait(0.2)

    def wait_access_count(self, n, since=0, timeout=60.0):
        end = time.monotonic() + timeout
        while True:
            got = len(self.access(since))
            if got >= n or time.monotonic() > end:
                return got
            with self.cond:
                self.cond.wait(0.2)

    def allow(self, *patterns):
        """warn/error messages matching one of these are expected by the test."""
        self.allowed.extend(re.compile(p) for p in patterns)

    def unexpected_lines(self):
        bad = []
        for lvl, msg in self.parsed():
            if lvl is None:
                bad.append("(not a log line) " + msg)
            elif lvl in ("error", "warn"):
                if not any(rx.search(msg) for rx in self.allowed):
                    bad.append("%s: %s" % (lvl, msg))
        return bad

    def check_log(self):
        bad = self.unexpected_lines()
        if bad:
            fail("%s stderr: no unexpected warn/error line" % self.name, "none",
                 "%d line(s):\n      %s" % (len(bad), "\n      ".join(bad[:30])))

    def warnings(self):
        return ["%s: %s" % (l, m) for l, m in self.parsed() if l in ("warn", "error")]

    # -- /proc --------------------------------------------------------------

    def fd_count(self):
        return proc_fd_count(self.pid)

    def status_field(self, name):
        """A line of /proc/PID/status, e.g. 'Uid' or 'CapEff' (the text after the colon)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
        return None

    def rss_kib(self):
        return proc_rss_kib(self.pid)

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)

    def settled_fd_count(self, timeout=3.0):
        """The fd count once it stops changing (two equal samples 0.3s apart)."""
        end = time.monotonic() + timeout
        prev = self.fd_count()
        while time.monotonic() < end:
            time.sleep(0.3)
            cur = self.fd_count()
            if cur == prev:
                return cur
            prev = cur
        return prev

    def close_wait_sockets(self):
        inodes = socket_inodes(self.pid)
        return [r for r in tcp_table() if r[3] in inodes and r[2] == "CLOSE_WAIT"]

    def fd_targets(self):
        """{fd: target} as /proc/PID/fd shows them (with tcp state for sockets)."""
        out = {}
        for line in describe_fds(self.pid):
            fd, _, tgt = line.partition(" -> ")
            out[fd] = tgt
        return out

    def check_fds(self, timeout=FD_SETTLE):
        """The fd count back at the baseline (after a settle wait), and no
        socket of the proxy in CLOSE_WAIT."""
        n = wait_until(lambda: self.fd_count() <= self.baseline_fds, timeout, 0.2)
        count = self.fd_count()
        if count > self.baseline_fds:
            now = self.fd_targets()
            extra = ["%s -> %s" % (fd, t) for fd, t in sorted(now.items(), key=lambda x: int(x[0]))
                     if self.baseline_map.get(fd) != t]
            kinds = {}
            for e in extra:
                k = "pipe" if "pipe:" in e else "socket" if "socket:" in e else "other"
                kinds[k] = kinds.get(k, 0) + 1
            fail("%s fd count back at its baseline within %.0fs" % (self.name, timeout),
                 "<= %d (as after start-up)" % self.baseline_fds,
                 "%d; new since start-up: %s:\n      %s" % (
                     count, ", ".join("%d %s" % (v, k) for k, v in sorted(kinds.items())),
                     "\n      ".join(extra)))
        cw = self.close_wait_sockets()
        if cw:
            fail("%s: no socket in CLOSE_WAIT" % self.name, "none",
                 "; ".join("local=%d remote=%d" % (r[0], r[1]) for r in cw))
        return n

    def finish(self):
        """End of a test: fds back at baseline, no CLOSE_WAIT, nothing
        unexpected on stderr, SIGTERM -> exit 0."""
        self.check_fds()
        self.stop()

    def tail(self, n=40):
        with self.cond:
            lines = list(self.lines)
        non_access = [l for l in lines if " info: access " not in l]
        access = [l for l in lines if " info: access " in l]
        return non_access[-n:], access[-8:], len(access)


# --------------------------------------------------------------------------
# access-log expectations

def access_total(a, direction):
    return a.get(direction + "_splice", 0) + a.get(direction + "_copy", 0)


def check_access(a, up=None, down=None, reason=None, server=None, what="access line"):
    for k in ACCESS_INTS[:4]:
        if not isinstance(a.get(k), int):
            fail("%s: field %s" % (what, k), "an integer", repr(a.get(k)))
    if up is not None:
        check_eq(access_total(a, "up"), up, "%s: up_splice+up_copy (%r)" % (what, a))
    if down is not None:
        check_eq(access_total(a, "down"), down, "%s: down_splice+down_copy (%r)" % (what, a))
    if reason is not None:
        reasons = reason if isinstance(reason, (list, tuple, set)) else (reason,)
        check(a.get("reason") in reasons, "%s: reason (%r)" % (what, a),
              " or ".join(reasons), a.get("reason"))
    if server is not None:
        check_eq(a.get("server"), server, "%s: server" % what)


