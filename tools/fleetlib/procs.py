"""The processes of the fleet: the backends (threads of this process,
listening in the backend namespace) and the spliced instances (a copy of
the binary per run, started with `ip netns exec`; its pid changes with each
binary upgrade, its stderr stays one pipe)."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from .base import (ADMIN, ALLOWED, BACKEND_PORT, INSTANCES, LOG_RE, PORT, READY_TIMEOUT,
                   SERVERS, STOP_TIMEOUT, UPGRADE_WAIT, VIP, CaseFailure, backend_addr,
                   check, check_eq, inst_addr, wait_until)


class Backends:
    """be1..be4 in the backend namespace, served by threads of this
    process: the identifying line, then an echo."""

    def __init__(self, ns):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.open = set()
        self.listeners = []
        self.threads = []
        for name in SERVERS:
            s = ns.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((backend_addr(name), BACKEND_PORT))
            s.listen(1024)
            s.settimeout(0.2)
            self.listeners.append(s)
            t = threading.Thread(target=self._accept, args=(name, s), daemon=True,
                                 name="accept-" + name)
            t.start()
            self.threads.append(t)

    def _accept(self, name, s):
        while not self.stop.is_set():
            try:
                c, peer = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._serve, args=(name, c, peer[0]),
                             daemon=True).start()

    def _serve(self, name, c, peer):
        with self.lock:
            self.open.add(c)
        try:
            c.settimeout(120)
            c.sendall(("%s %s\n" % (name, peer)).encode())
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open.discard(c)
            c.close()

    def close(self):
        """Accepting stops (each loop sees the flag within its 0.2 s
        timeout, and only then is its socket closed), open connections are
        shut down."""
        self.stop.set()
        for t in self.threads:
            t.join(2)
        for s in self.listeners:
            s.close()
        with self.lock:
            left = list(self.open)
        for c in left:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


CONFIG = """; written by tools/fleet: instance %(k)d of a fleet of %(n)d
[global]
workers = 2
splice = %(mode)s
admin = %(admin)s
shutdown_timeout = 5s
upgrade_timeout = 30s

[listener vip]
bind = %(vip)s:%(port)d
backend = app
timeout_connect = 2s

[backend app]
balance = source
%(servers)s
"""


class Instance:
    """One instance: its namespace, its spliced process (the pid changes
    with each upgrade; stderr stays the same pipe), its log lines."""

    def __init__(self, fleet, k):
        self.fleet = fleet
        self.k = k
        self.name = "i%d" % k
        self.addr = inst_addr(k)
        self.ns = fleet.net.ns[self.name]
        self.config = os.path.join(fleet.tmp, "%s.ini" % self.name)
        self.proc = None
        self.pid = None
        self.lines = []
        self.cond = threading.Condition()
        self.pids = []              # every process this instance ran
        self.live = set()           # those not reaped yet: the only ones kill_all() signals
        self.killed = False
        self.baseline = None

    def write_config(self, servers):
        text = CONFIG % {"k": self.k, "n": len(INSTANCES), "mode": self.fleet.mode,
                         "admin": ADMIN, "vip": VIP, "port": PORT,
                         "servers": "\n".join("server = %s %s:%d" % (s, backend_addr(s),
                                                                      BACKEND_PORT)
                                              for s in servers)}
        with open(self.config, "w") as f:
            f.write(text)

    def start(self):
        self.lines = []
        self.killed = False
        argv = ["ip", "netns", "exec", self.ns.name, self.fleet.exe, "-c", self.config]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.pids.append(self.pid)
        self.live.add(self.pid)
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True,
                         name="stderr-" + self.name).start()
        if self.wait_line(r" info: ready", READY_TIMEOUT) is None:
            raise CaseFailure("%s: spliced prints 'info: ready'" % self.name,
                              "within %.0f s" % READY_TIMEOUT,
                              "exit status %s" % self.proc.poll())
        self.baseline = self.settled_fds()

    # -- /proc: fds and sockets ----------------------------------------------

    def fds(self):
        try:
            return os.listdir("/proc/%d/fd" % self.pid)
        except OSError:
            return []

    def settled_fds(self, timeout=3.0):
        """The fd count once two samples 0.3 s apart agree."""
        end, prev = time.monotonic() + timeout, len(self.fds())
        while time.monotonic() < end:
            time.sleep(0.3)
            cur = len(self.fds())
            if cur == prev:
                break
            prev = cur
        return prev

    def close_wait(self):
        """'local -> remote' of its sockets in CLOSE_WAIT (/proc/PID/net/tcp
        is the table of the process's own namespace)."""
        inodes = set()
        for fd in self.fds():
            try:
                m = re.match(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s"
                                                              % (self.pid, fd)))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
        out = []
        with open("/proc/%d/net/tcp" % self.pid) as f:
            next(f)
            for row in f:
                p = row.split()
                if p[3] == "08" and p[9] in inodes:
                    out.append("%s -> %s" % (p[1], p[2]))
        return out

    def check_fds(self, timeout=20.0):
        """Its fd count back at the first process's baseline (pooled pipes
        close about a second after their last use), none of its sockets in
        CLOSE_WAIT."""
        ok = wait_until(lambda: len(self.fds()) <= self.baseline, timeout, 0.2)
        check(ok, "%s: pid %d's fd count" % (self.name, self.pid),
              "back at the baseline of %d within %.0f s" % (self.baseline, timeout),
              len(self.fds()))
        cw = self.close_wait()
        check(not cw, "%s: pid %d's sockets in CLOSE_WAIT" % (self.name, self.pid),
              "none", cw)

    def _read(self, stream):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append("(%s: stderr closed)" % self.name)
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern, timeout, since=0):
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
                self.cond.wait(min(left, 0.2))

    def http(self, method, path, form=None, timeout=5.0):
        """(status, body) of a request to the admin endpoint; (None, why)
        when it does not answer."""
        host, port = ADMIN.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            s = self.ns.socket()
            s.settimeout(timeout)
            s.connect((host, int(port)))
            conn.sock = s
            headers = {}
            if form is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=form, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            return None, "%s: %s" % (type(e).__name__, e)
        finally:
            conn.close()

    def status(self):
        code, body = self.http("GET", "/status")
        check(code == 200, "%s: GET /status" % self.name, "200", "%s %s" % (code, body))
        return json.loads(body)

    def connections(self):
        code, body = self.http("GET", "/connections?limit=10000")
        check(code == 200, "%s: GET /connections" % self.name, "200", "%s %s" % (code, body))
        return json.loads(body)["connections"]

    def ctl(self, *args, timeout=60):
        return self.ns.run([self.fleet.exe, "ctl", "--admin", ADMIN] + list(args),
                           timeout=timeout)

    def reload(self):
        mark = self.mark()
        os.kill(self.pid, signal.SIGHUP)
        line = self.wait_line(r" info: reloaded ", 30, since=mark)
        check(line is not None, "%s: SIGHUP" % self.name, "a 'reloaded' line within 30 s",
              "none")

    def reap(self, pid, timeout):
        """The exit status of pid (a negative signal number), or None if it
        still runs after timeout. The first process is the Popen's child;
        the others were started by their predecessor and came to this
        process (a child subreaper) when it exited."""
        st = self._wait(pid, timeout)
        if st is not None:
            self.live.discard(pid)
        return st

    def _wait(self, pid, timeout):
        if self.proc is not None and pid == self.proc.pid:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        end = time.monotonic() + timeout
        while True:
            try:
                got, st = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                # Not a child of ours (cannot be: this process is a child
                # subreaper), or reaped already.
                return "not a child of this process"
            if got == pid:
                return os.waitstatus_to_exitcode(st)
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def upgrade(self):
        """A new binary on disk, SIGUSR2: (connections handed, new pid,
        the old process's figures)."""
        self.fleet.install_binary()
        old, mark = self.pid, self.mark()
        os.kill(old, signal.SIGUSR2)
        line = self.wait_line(r"upgrade: started |upgrade failed", 30, since=mark)
        m = re.search(r"upgrade: started (\S+) as pid (\d+)$", line or "")
        check(m is not None and m.group(1) == self.fleet.exe, "%s: SIGUSR2 to pid %d"
              % (self.name, old), "'upgrade: started %s as pid P' within 30 s"
              % self.fleet.exe, line)
        new = int(m.group(2))
        self.pids.append(new)
        self.live.add(new)
        line = self.wait_line(r"upgrade: handed \d+ connections to pid \d+|upgrade failed",
                              UPGRADE_WAIT, since=mark)
        m = re.search(r"upgrade: handed (\d+) connections to pid %d (.*); exiting$" % new,
                      line or "")
        check(m is not None, "%s: the upgrade from pid %d to %d" % (self.name, old, new),
              "'upgrade: handed N connections to pid %d ...; exiting' within %.0f s"
              % (new, UPGRADE_WAIT), line)
        n = int(m.group(1))
        st = self.reap(old, 30)
        check_eq(st, 0, "%s: the old process %d's exit status after the upgrade"
                 % (self.name, old))
        self.pid = new
        pid = wait_until(lambda: self.status().get("pid") == new, 15, 0.1)
        check(pid, "%s: /status pid after the upgrade" % self.name, new,
              self.status().get("pid"))
        return n, new, m.group(2)

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        self.killed = True
        st = self.reap(self.pid, 10)
        check_eq(st, -signal.SIGKILL, "%s: pid %d's exit status after SIGKILL"
                 % (self.name, self.pid))

    def stop(self):
        """Its fds back at the baseline, no socket in CLOSE_WAIT; SIGTERM:
        exit 0, and no line at warn or error the fleet did not expect."""
        if self.pid is None or self.killed:
            return
        self.check_fds()
        os.kill(self.pid, signal.SIGTERM)
        st = self.reap(self.pid, STOP_TIMEOUT)
        pid, self.pid = self.pid, None
        check(st == 0, "%s: pid %d after SIGTERM" % (self.name, pid),
              "exit status 0 within %.0f s" % STOP_TIMEOUT, st)
        self.wait_line(r"stderr closed", 5)
        self.check_log()

    def check_log(self):
        bad = []
        with self.cond:
            lines = list(self.lines)
        for line in lines:
            if line.startswith("(%s: stderr closed)" % self.name):
                continue
            m = LOG_RE.match(line)
            if m is None:
                bad.append("(not a log line) " + line)
            elif m.group(2) in ("warn", "error") and \
                    not any(re.search(a, m.group(3)) for a in ALLOWED):
                bad.append(line)
        check(not bad, "%s: its log" % self.name, "no unexpected warn or error line",
              "\n      " + "\n      ".join(bad[:20]))

    def tail(self, n=25):
        with self.cond:
            lines = [l for l in self.lines if " info: access " not in l]
            naccess = sum(1 for l in self.lines if " info: access " in l)
        return lines[-n:], naccess

    def kill_all(self):
        """Cleanup: SIGKILL this instance's processes that were not reaped
        (a pid that was could belong to another process by now)."""
        for pid in sorted(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                self.live.discard(pid)
                continue
            self.reap(pid, 5)
        self.pid = None
