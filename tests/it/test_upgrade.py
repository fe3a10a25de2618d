#!/usr/bin/env python3
"""SIGUSR2: the binary upgrade hands every established connection to the
new process (issue 16; DESIGN.md section 9).

The test runs a copy of the binary from its temp dir (the upgrade starts the
file at the path the running process was started from, so replacing that
file swaps the binary), makes itself a child subreaper (prctl
PR_SET_CHILD_SUBREAPER), so that each new process, re-parented when its
parent exits, becomes the test's child and os.waitpid() gives every old
process's exit status, and owns the NOTIFY_SOCKET (a unix datagram socket
with SO_PASSCRED: each datagram comes with its sender's pid).

under_upgrades: two listeners: `long` over a backend that dispatches each
  connection by a 12-byte header the client sends first, `short` over an
  echo backend. 200 connections through `long`, all open before the first
  upgrade and all open until after the last:
    8 down, 8 up, 6 both: 12 MiB each way as said, read in steps: a reader
      takes 256 KiB after each upgrade, then stops reading; before every
      upgrade the test waits until each paused direction shows "writing"
      in GET /connections (the proxy holds bytes it cannot write: a full
      pipe in splice mode, "mode": "splice", a full buffer in copy mode).
    78 small: echo exchanges of 100 to 2,000 bytes every 50-250 ms, each
      compared, all through the run.
    16 client half-closed (4 KiB, then the client shuts down writing; the
      backend sends 16 KiB after every step) and 16 backend half-closed
      (4 KiB and the backend's FIN first; the client sends 16 KiB after
      every step): the half-close holds across every upgrade.
    68 idle: one "ok" at the start, silent through every upgrade, then a
      1,000-byte echo exchange at the end.
  Meanwhile two client threads make short echo round trips (200 B to
  100 KiB, sha256) through `short` without a break. After each step, before
  the next, every small connection completes another exchange and the short
  loop 3 more round trips: each process serves them.
  Steps: 10 good upgrades with 4 failing ones between them: the config on
  disk made invalid (the new process exits 1), a binary that exits 3 at
  once, and a binary SIGSTOPped (SPLICED_UPGRADE_FAULT, through a shell
  wrapper) after it took the listeners, then after the first
  connection, and SIGKILLed by the test (while the first is stopped, a
  second SIGUSR2 is ignored: an info line says so, no process starts).
  A good upgrade: "started PATH as pid P" names the binary's path and a
  new pid; the old says it handed >= 200 connections to P and exits 0;
  P says it took the same number of connections and the same number of
  listening sockets every time; GET /status "pid" is P; the NOTIFY_SOCKET
  gets a datagram from pid P with MAINPID=P and READY=1 (a build without
  libsystemd: that part is skipped, and says so).
  A failing one: "upgrade failed: WHY; still serving N connections" with
  WHY naming the pid and the cause (exit status 1 or 3, signal 9), N >= 200,
  the failed process reaped (gone from /proc), the old still serving (its
  pid in /status, no MAINPID= datagram, the traffic after the step), and
  the next good upgrade works.
  At the end every direction of every connection arrived whole (byte
  count and sha256 against what the other end sent) and ended in a clean
  EOF where the other end shut down, never a reset or an early EOF; each
  of the 200 has one access line with its whole life's byte counts
  (client_eof or server_eof); no short round trip failed; /status counts
  each connection once across the processes (listener totals); the last
  process's fd count is back at the first's baseline, none of its sockets
  in CLOSE_WAIT; SIGTERM makes it exit 0; no process of the test's binary
  copies is left. The only warnings are the 4 expected `upgrade failed`.

The smaller cases below reuse the same machinery (a copy of the binary the
upgrades start, the subreaper, the Chain that kills and reaps every pid at
cleanup). Each upgrade: "started ... as pid P", the old one's "handed N
connections to pid P ...; exiting" and exit 0, P's "took ... and N
connections", GET /status pid P. Each ends with SIGTERM: the last process
exits 0, nothing unexpected logged, no process left (and, where said, its fds
back at the first one's baseline).
handshake_waits: listener with accept_proxy = on; an established
  connection, and a client that sent half a PROXY v1 header when SIGUSR2
  comes: the old process says P took the listening sockets, then no verdict
  for 1.5 s (both processes running, /status still the old pid); a client
  that connects then gets no answer for 0.5 s and the old process's count
  of open connections stays 2 (it waits in the backlog). The rest
  of the header with 64 KiB: the handover follows (>= 2 connections); the
  connection echoes those 64 KiB and 2 MiB more through P byte-exact (sha256
  at the client and at the backend), as do the late client and the
  established one; its one access line, written after the old exited,
  names the PROXY source 192.0.2.7:4711 and the whole life's bytes. Fds at
  the baseline.
handshake_stuck: upgrade_timeout = 1s, timeout_handshake = 10s, a header
  half sent: "upgrade failed: 1 connections were still connecting or in a
  handshake ... upgrade_timeout ...; still serving N" within 10 s, P reaped,
  the old pid in /status; the established connection (1 MiB), a client that
  came during the hold, a new one, and then the stuck client with its header
  completed (1 MiB, access line with its PROXY source) are served byte-exact.
socket_activated (needs libsystemd): a listening socket made by the test,
  passed as LISTEN_FDS=1 (as test_sockact does; the test's copy closed once
  spliced runs), beside a listener spliced binds: two upgrades; after each
  the same inode is the only LISTEN socket on its port and among P's fds, P
  serves it (1 MiB each way, sha256 at both ends) and the bound listener
  (its LISTEN sockets all P's), the same number of listening sockets is
  taken, and a connection through the passed socket opened at the start
  stays byte-exact. Fds at the baseline.
admin_unix (auto only): admin = unix:PATH; 3 good upgrades and 3 failing
  ones (a binary exiting 3, one stopped after the listening sockets, one
  after the first connection, both SIGKILLed): after each the socket file is
  there with the same inode (never bound again) and GET /status over it and
  `spliced ctl --admin unix:PATH status --json` give the serving pid (also
  while a stopped new process holds the socket); an open connection flows
  throughout; the file is gone once the last process exits.
reload_after (auto only): after an upgrade, SIGHUP with a config without
  listener `gone`: "(0 added, 1 removed)", connects to its port refused
  within 10 s and no LISTEN socket left there (the handed sockets are
  closed like bound ones), `keep` serves, a connection through `gone`
  flows; SIGHUP with it again: "(1 added, 0 removed)", 20 clients served,
  its LISTEN sockets P's; a second upgrade hands those over (20 clients
  each through both). Fds at the baseline.
sigterm_frozen: SIGTERM to the old process while P (SPLICED_UPGRADE_FAULT=
  stop:listeners) is stopped; upgrade_timeout 30 s: the drain starts, the
  open connection flows, "upgrade failed: ..." within 5 s, P killed and
  reaped by the old process (gone from /proc), connects refused, the open
  connection finishes byte-exact, the old exits 0, no process left.
workers_change: workers = 2, edited to 1 before the first upgrade and to 3
  before the second: P's ready line and /status say so; a client loop of
  echo round trips across each upgrade fails none; afterwards 200 short
  clients in a row are each served within 5 s (none refused, none left in
  a backlog nobody reads); 4 held connections byte-exact throughout.
waiting_client (auto only): max_connections = 1, one connection holding
  the slot and a second client accepted and held waiting (one fd more in
  the old process): the upgrade hands over both (>= 2); once the first
  ends, the waiting client's 32 KiB come back and 256 KiB more, byte-exact.
stop_at_commit: upgrade_timeout = 3s, P stopped with COMMIT read and
  COMMITTED not sent (stop:commit): "upgrade failed: pid P did not answer
  within upgrade_timeout at the commit", P reaped; the open connection
  resumes in the old process (1 MiB byte-exact), a new client is served, and
  a good upgrade follows.
server_states (auto only): backend app with a (drained through `spliced
  ctl server app/a drain --weight 7`), b (nothing listens: down by its
  checks; rise 50 x 200 ms) and c: in P's first /status b is down, a is
  drain with weight 7, c up; 10 clients served (by c)."""

import ctypes
import ctypes.util
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# The test decides what spliced sees of systemd and of the fault hooks.
for _v in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID",
           "LISTEN_FDS", "LISTEN_FDNAMES", "JOURNAL_STREAM", "SPLICED_UPGRADE_FAULT",
           "SPLICED_UPGRADE_FD"):
    os.environ.pop(_v, None)

KINDS = (("down", 8), ("up", 8), ("both", 6), ("small", 78), ("half_c", 16),
         ("half_b", 16), ("idle", 68))
N_LONG = sum(n for _, n in KINDS)
BULK = 12 * H.MiB          # per bulk direction; ~5 MiB sit in buffers when paused
QUOTA = 256 * H.KiB        # what a paused bulk reader reads after each step
HALF_REQ = 4 * H.KiB       # what the half-closing side sends before its FIN
TICK = 16 * H.KiB          # what the other side sends after each step
IDLE_END = 1000            # the idle connections' one exchange at the end
SMALL_BUFS = 64 * H.KiB    # SO_RCVBUF/SO_SNDBUF of the bulk ends (keeps a stream in flight)
LONG_IO = 240.0            # socket timeout of the long connections (bounded by joins)
UPGRADE_TIMEOUT = "30s"    # [global] upgrade_timeout
UPGRADE_WAIT = 45.0        # for the old process's verdict: upgrade_timeout + 15 s
STEPS = ("good", "good", "bad_config", "good", "good", "exit", "good", "good",
         "stop:listeners", "good", "good", "stop:connections", "good", "good")
HDR = struct.Struct("<4sII")
MAGIC = b"UPIT"
PR_SET_CHILD_SUBREAPER = 36
GIVE_UP = 5.0              # sigterm_frozen: SIGTERM to 'upgrade failed', at most


# --------------------------------------------------------------------------
# processes

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper():
    """Orphans below the test (each new spliced once its parent exits) are
    re-parented to it, so that os.waitpid() reaps them with their status."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        H.fail("prctl(PR_SET_CHILD_SUBREAPER)", "0", os.strerror(e))


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def status_text(st):
    if st is None:
        return "unknown"
    return "exit %d" % st if st >= 0 else "killed by signal %d" % -st


class Chain:
    """The serving process and the ones that took over from it. Every pid
    seen is killed (SIGKILL) and reaped at cleanup, so that no process is
    left behind even when the test fails half-way."""

    def __init__(self, ctx, p):
        self.ctx = ctx
        self.p = p
        self.pid = p.pid
        self.seen = [p.pid]
        self.statuses = {}
        ctx.register(self.cleanup)

    def saw(self, pid):
        if pid not in self.seen:
            self.seen.append(pid)

    def reap(self, pid, timeout):
        """Wait for pid to exit; its status as waitstatus_to_exitcode() says
        (>= 0 an exit code, < 0 a signal), or None if it did not exit."""
        if pid in self.statuses:
            return self.statuses[pid]
        if pid == self.p.proc.pid:
            try:
                st = self.p.proc.wait(timeout)
            except H.subprocess.TimeoutExpired:
                return None
            self.p.exit_code = st
            self.statuses[pid] = st
            return st
        end = time.monotonic() + timeout
        while True:
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                H.fail("pid %d is the test's child (child subreaper)" % pid,
                       "waitpid() reaps it", "ECHILD (not our child)")
            if wpid == pid:
                st = os.waitstatus_to_exitcode(status)
                self.statuses[pid] = st
                return st
            if time.monotonic() > end:
                return None
            time.sleep(0.02)

    def alive(self, pid):
        st = proc_state(pid)
        return st is not None and st != "Z"

    def leftovers(self):
        """pids (alive or zombie) running one of the test's binary copies
        or seen in the chain."""
        out = set()
        for pid in self.seen:
            if proc_state(pid) is not None and pid not in self.statuses:
                out.add(pid)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                exe = os.readlink("/proc/%s/exe" % d)
            except OSError:
                continue
            if exe.startswith(self.ctx.tmp + "/"):
                out.add(int(d))
        return sorted(out)

    def cleanup(self):
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in list(self.seen):
            if pid not in self.statuses:
                try:
                    if pid == self.p.proc.pid:
                        self.p.proc.wait(5)
                    else:
                        end = time.monotonic() + 5
                        while time.monotonic() < end:
                            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                                break
                            time.sleep(0.02)
                except (ChildProcessError, H.subprocess.TimeoutExpired, OSError):
                    pass


# --------------------------------------------------------------------------
# the admin endpoint and the NOTIFY_SOCKET

def admin_json(aport, path, timeout=10.0):
    c = http.client.HTTPConnection(H.LOCAL, aport, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    H.check_eq(r.status, 200, "GET %s status" % path)
    return json.loads(body.decode())


def status_pid(aport):
    try:
        return admin_json(aport, "/status", 5).get("pid")
    except (OSError, ValueError, http.client.HTTPException):
        return None


def has_libsystemd(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"libsystemd.so" in data or b"sd_listen_fds_with_names" in data


class NotifyRx:
    """A NOTIFY_SOCKET with SO_PASSCRED: every datagram as ({key: value},
    sender pid from SCM_CREDENTIALS or None)."""

    def __init__(self, ctx):
        self.path = os.path.join(ctx.tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.msgs = []
        self.cond = threading.Condition()
        self.stopping = False
        ctx.register(self)
        self.thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self.thread.start()

    def _loop(self):
        ucred = struct.Struct("iII")
        while not self.stopping:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(ucred.size))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and \
                        len(cdata) >= ucred.size:
                    pid = ucred.unpack(cdata[:ucred.size])[0]
            fields = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                k, _, v = line.partition("=")
                if k:
                    fields[k] = v
            if H.VERBOSE:
                sys.stdout.write("  notify| pid %s %r\n" % (pid, fields))
            with self.cond:
                self.msgs.append((fields, pid))
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.msgs)

    def wait(self, pred, timeout, since=0):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.msgs[since:]:
                    if pred(m):
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def since(self, mark):
        with self.cond:
            return list(self.msgs[mark:])

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


# --------------------------------------------------------------------------
# the long connections: both ends are the test's

class Gate:
    """Steps: a paused (gated) reader may have read QUOTA * (step + 1)
    bytes; after finish() every reader reads freely."""

    def __init__(self):
        self.cond = threading.Condition()
        self.step = 0
        self.final = False

    def limit(self):
        with self.cond:
            return None if self.final else (self.step + 1) * QUOTA

    def wait_more(self, got, timeout):
        with self.cond:
            return self.cond.wait_for(
                lambda: self.final or (self.step + 1) * QUOTA > got, timeout)

    def wait_step(self, seen, timeout):
        """Until the step moves past `seen` (or the end); (step, final)."""
        with self.cond:
            self.cond.wait_for(lambda: self.final or self.step != seen, timeout)
            return self.step, self.final

    def advance(self):
        with self.cond:
            self.step += 1
            self.cond.notify_all()

    def finish(self):
        with self.cond:
            self.final = True
            self.cond.notify_all()


class EarlyEOF(Exception):
    pass


class Flow:
    """One direction of a long connection: what its writer sent (bytes,
    sha256, whether it shut down writing) and what its reader got (bytes,
    sha256, how the reading ended)."""

    def __init__(self, name):
        self.name = name
        self.sh = hashlib.sha256()
        self.sent = 0
        self.closed = False          # the writer shut down writing
        self.rh = hashlib.sha256()
        self.got = 0
        self.end = None              # eof | reset | timeout | error: ...
        self.parked = False          # a gated reader at its limit
        self.buf = bytearray(256 * H.KiB)

    def put(self, sock, data):
        sock.sendall(data)
        self.sh.update(data)
        self.sent += len(data)

    def put_stream(self, sock, seed, size):
        for c in H.stream_chunks(seed, size, chunk=64 * H.KiB):
            self.put(sock, c)

    def shut(self, sock):
        sock.shutdown(socket.SHUT_WR)
        self.closed = True

    def _recv(self, sock, want):
        mv = memoryview(self.buf)
        try:
            n = sock.recv_into(mv[:want])
        except ConnectionResetError:
            self.end = "reset"
            return None
        except socket.timeout:
            self.end = "timeout"
            return None
        except OSError as e:
            self.end = "error: %r" % (e,)
            return None
        if n == 0:
            self.end = "eof"
            return None
        self.rh.update(mv[:n])
        self.got += n
        return mv[:n]

    def recv_some(self, sock):
        """Up to 64 KiB, or None at the end (self.end says how)."""
        got = self._recv(sock, 64 * H.KiB)
        return None if got is None else bytes(got)

    def read_exact(self, sock, n):
        out = bytearray()
        while len(out) < n:
            got = self._recv(sock, min(n - len(out), len(self.buf)))
            if got is None:
                raise EarlyEOF("%s: %s after %d of %d bytes" % (self.name, self.end,
                                                                len(out), n))
            out += got
        return bytes(out)

    def read_all(self, sock, gate=None):
        """Until EOF (or reset, timeout...); with a gate, at most the gate's
        limit at a time, parked in between."""
        while True:
            lim = gate.limit() if gate else None
            if lim is not None and self.got >= lim:
                self.parked = True
                ok = gate.wait_more(self.got, LONG_IO)
                self.parked = False
                if not ok:
                    self.end = "gate never opened"
                    return
                continue
            want = len(self.buf) if lim is None else min(len(self.buf), lim - self.got)
            if self._recv(sock, want) is None:
                return

    def problems(self):
        """What is wrong with this direction once both ends are done."""
        out = []
        if not self.closed:
            out.append("its writer did not shut down writing")
        if self.end != "eof":
            out.append("read ended with %s" % self.end)
        if self.got != self.sent:
            out.append("%d bytes arrived of %d sent" % (self.got, self.sent))
        elif self.rh.hexdigest() != self.sh.hexdigest():
            out.append("sha256 differs (%d bytes)" % self.got)
        return out


class Long:
    """One of the 200 long connections."""

    def __init__(self, cid, kind):
        self.id = cid
        self.kind = kind
        self.seed = 50000 + cid * 7
        self.up = Flow("up")
        self.down = Flow("down")
        self.errors = []
        self.client_port = None
        self.exchanges = 0
        self.established = threading.Event()
        self.client_done = threading.Event()
        self.backend_done = threading.Event()
        self.after_close = None

    def gated(self):
        """The flows whose reader pauses at each step."""
        return {"down": [self.down], "up": [self.up],
                "both": [self.up, self.down]}.get(self.kind, [])

    def __repr__(self):
        return "%s#%d(client port %s, up %d/%d %s, down %d/%d %s, errors %s)" % (
            self.kind, self.id, self.client_port, self.up.got, self.up.sent, self.up.end,
            self.down.got, self.down.sent, self.down.end, self.errors)


class Run:
    def __init__(self):
        self.gate = Gate()
        self.conns = {}
        self.end_small = threading.Event()   # small ones stop, idle ones talk


def _sender(fn, conn, what):
    def run():
        try:
            fn()
        except Exception as e:
            conn.errors.append("%s: %r" % (what, e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _echo(c, sock):
    """Backend side: every byte of up back on down; at EOF, shut down."""
    while True:
        data = c.up.recv_some(sock)
        if data is None:
            break
        c.down.put(sock, data)
    if c.up.end == "eof":
        c.down.shut(sock)


def client_side(run, c, s):
    k = c.kind
    if k == "down":
        c.down.read_all(s, run.gate)
        c.up.shut(s)
    elif k == "up":
        c.up.put_stream(s, c.seed, BULK)
        c.up.shut(s)
        c.down.read_all(s)
    elif k == "both":
        def send():
            c.up.put_stream(s, c.seed, BULK)
            c.up.shut(s)
        t = _sender(send, c, "client sender")
        c.down.read_all(s, run.gate)
        t.join(LONG_IO)
    elif k == "small":
        rnd = random.Random(c.seed)
        while not run.end_small.is_set():
            data = rnd.randbytes(rnd.randint(100, 2000))
            c.up.put(s, data)
            back = c.down.read_exact(s, len(data))
            if back != data:
                c.errors.append("exchange %d: the echo differs" % c.exchanges)
                break
            c.exchanges += 1
            run.end_small.wait(rnd.uniform(0.05, 0.25))
        c.up.shut(s)
        c.down.read_all(s)
    elif k == "half_c":
        c.up.put(s, random.Random(c.seed).randbytes(HALF_REQ))
        c.up.shut(s)
        c.down.read_all(s)
    elif k == "half_b":
        c.down.read_all(s)                # HALF_REQ, then the backend's FIN
        seen = 0
        i = 0
        while True:
            c.up.put(s, random.Random(c.seed + i).randbytes(TICK))
            i += 1
            seen, final = run.gate.wait_step(seen, LONG_IO)
            if final:
                break
        c.up.shut(s)
        # The proxy closes once the backend got the FIN and closed: a
        # clean close, not a reset.
        c.backend_done.wait(LONG_IO)
        s.settimeout(10)
        try:
            b = s.recv(1)
            c.after_close = "eof" if b == b"" else "data %r" % b
        except ConnectionResetError:
            c.after_close = "reset"
        except OSError as e:
            c.after_close = "error %r" % (e,)
    elif k == "idle":
        ok = c.down.read_exact(s, 2)
        if ok != b"ok":
            c.errors.append("idle: got %r instead of ok" % ok)
        run.end_small.wait(LONG_IO)
        data = random.Random(c.seed).randbytes(IDLE_END)
        c.up.put(s, data)
        if c.down.read_exact(s, IDLE_END) != data:
            c.errors.append("idle: the final echo differs")
        c.up.shut(s)
        c.down.read_all(s)


def backend_side(run, c, conn):
    k = c.kind
    if k == "down":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFS)
        c.down.put_stream(conn, c.seed + 1, BULK)
        c.down.shut(conn)
        c.up.read_all(conn)
    elif k == "up":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFS)
        c.up.read_all(conn, run.gate)
        c.down.shut(conn)
    elif k == "both":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFS)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFS)

        def send():
            c.down.put_stream(conn, c.seed + 1, BULK)
            c.down.shut(conn)
        t = _sender(send, c, "backend sender")
        c.up.read_all(conn, run.gate)
        t.join(LONG_IO)
    elif k == "small":
        _echo(c, conn)
    elif k == "half_c":
        c.up.read_all(conn)               # HALF_REQ, then the client's FIN
        seen = 0
        i = 0
        while True:
            c.down.put(conn, random.Random(c.seed + 1000 + i).randbytes(TICK))
            i += 1
            seen, final = run.gate.wait_step(seen, LONG_IO)
            if final:
                break
        c.down.shut(conn)
    elif k == "half_b":
        c.down.put(conn, random.Random(c.seed + 1).randbytes(HALF_REQ))
        c.down.shut(conn)
        c.up.read_all(conn)
    elif k == "idle":
        c.down.put(conn, b"ok")
        _echo(c, conn)


def client_thread(run, c, port):
    s = None
    try:
        rcv = SMALL_BUFS if c.kind in ("down", "both") else None
        snd = SMALL_BUFS if c.kind in ("up", "both") else None
        s = H.dial(port, timeout=LONG_IO, rcvbuf=rcv, sndbuf=snd)
        c.client_port = H.local_port(s)
        s.sendall(HDR.pack(MAGIC, c.id, 0))
        client_side(run, c, s)
    except Exception as e:
        c.errors.append("client: %r" % (e,))
    finally:
        if s is not None:
            s.close()
        c.client_done.set()


def dispatcher(run):
    """The `long` backend's handler: the header names the connection."""
    def h(conn, be, idx):
        conn.settimeout(LONG_IO)
        hdr = b""
        while len(hdr) < HDR.size:
            b = conn.recv(HDR.size - len(hdr))
            if not b:
                return {"error": "EOF inside the header (%r)" % hdr}
            hdr += b
        magic, cid, _ = HDR.unpack(hdr)
        c = run.conns.get(cid) if magic == MAGIC else None
        if c is None:
            return {"error": "unknown header %r" % hdr}
        c.established.set()
        try:
            backend_side(run, c, conn)
        except Exception as e:
            c.errors.append("backend: %r" % (e,))
        finally:
            c.backend_done.set()
        return {"id": cid}
    return h


# --------------------------------------------------------------------------
# steps

def wait_parked(run, aport, mode_splices, step):
    """Before an upgrade: every gated reader at its limit, and the proxy
    showing each of those directions as writing (the bytes it holds cannot
    go on: a full pipe, or a full copy buffer)."""
    gated = [(c, f) for c in run.conns.values() for f in c.gated()]
    ok = H.wait_until(lambda: all(f.parked or f.end is not None for _, f in gated), 30)
    if not ok:
        late = [repr(c) for c, f in gated if not f.parked and f.end is None][:5]
        H.fail("step %d: every paused reader took its %d KiB" % (step, QUOTA // H.KiB),
               "all parked within 30 s", "not yet: %s" % late)
    ended = [repr(c) for c, f in gated if f.end is not None]
    H.check(not ended, "step %d: the bulk streams are still open" % step, "none ended",
            ended[:5])
    # auto picks the mover per burst: a paused reader's direction holds a
    # full pipe or a full buffer depending on how its sender's bytes came
    # (a loaded machine dribbles them: copy), so auto asks only for bytes
    # held; always and never say which.
    want_mode = {True: "splice", False: "copy", None: None}[mode_splices]
    last = {}

    def blocked():
        rows = admin_json(aport, "/connections?limit=1000")["connections"]
        by_client = {r["client"]: r for r in rows}
        bad = []
        for c, f in gated:
            r = by_client.get("%s:%d" % (H.LOCAL, c.client_port))
            d = r and r[f.name]
            if not d or d["state"] != "writing" or (want_mode is not None and
                                                   d["mode"] != want_mode):
                bad.append("%s %s: %r" % (c.kind, f.name, d))
        last["bad"] = bad
        return not bad
    if not H.wait_until(blocked, 15, 0.25):
        H.fail("step %d: each paused direction holds bytes in the proxy" % step,
               "GET /connections: state writing, mode %s" % (want_mode or "either"),
               "%d not so, e.g. %s" % (len(last["bad"]), last["bad"][:4]))
    return sum(1 for c, f in gated if f.sent == BULK)    # senders done


def traffic_after(run, short, step, what):
    """After a step, in the process serving now: every small connection
    completes another exchange, and the short loop 3 more round trips."""
    small = [c for c in run.conns.values() if c.kind == "small"]
    before = {c.id: c.exchanges for c in small}
    done0 = short.done
    ok = H.wait_until(lambda: all(c.exchanges > before[c.id] or c.errors for c in small)
                      and short.done >= done0 + 3, 30, 0.05)
    if not ok:
        late = [repr(c) for c in small if c.exchanges <= before[c.id]]
        H.fail("step %d (%s): traffic after it" % (step, what),
               "each small connection one more exchange, 3 more short round trips, "
               "within 30 s", "%d small connections stuck (e.g. %s), %d round trips" % (
                   len(late), late[:3], short.done - done0))


def good_upgrade(ctx, chain, aport, rx, binpath, step, figures):
    p = chain.p
    old = chain.pid
    mark = p.mark()
    nmark = rx.mark() if rx else 0
    t0 = time.monotonic()
    os.kill(old, signal.SIGUSR2)
    line = p.wait_line(r"upgrade: started .* as pid \d+", 20, since=mark)
    H.check(line, "step %d: SIGUSR2 to pid %d" % (step, old),
            "'upgrade: started PATH as pid N' within 20 s",
            "none; last lines:\n      " + "\n      ".join(p.lines[-10:]))
    m = re.search(r"upgrade: started (.*) as pid (\d+)", line)
    new = int(m.group(2))
    H.check(new not in chain.seen, "step %d: the new pid" % step,
            "one never seen before (%s)" % chain.seen, new)
    chain.saw(new)
    H.check_eq(m.group(1), binpath, "step %d: the binary the upgrade started" % step)
    line = None
    end = time.monotonic() + UPGRADE_WAIT
    while line is None and time.monotonic() < end:
        line = p.wait_line(r"upgrade: handed \d+ connections to pid %d |upgrade failed: "
                           % new, 0.5, since=mark)
        if line is None and not chain.alive(old):
            st = chain.reap(old, 5)
            H.fail("step %d: the old process (pid %d) during the handover to pid %d" % (
                step, old, new), "running until it logs 'handed ...; exiting'",
                "it ended (%s) without that line" % status_text(st))
    if line is None:
        t1 = time.monotonic()
        try:
            cpu = H.proc_cpu_seconds(old)
        except OSError:
            cpu = None
        H.fail("step %d: the handover to pid %d" % (step, new),
               "'upgrade: handed N connections to pid %d ...; exiting' (or 'upgrade "
               "failed') within upgrade_timeout (%s) + 15 s" % (new, UPGRADE_TIMEOUT),
               "neither after %.0f s; old pid %d: state %s, %s s of CPU; new pid %d: %s"
               % (t1 - t0, old, proc_state(old), cpu, new, proc_state(new)))
    H.check("upgrade failed" not in line, "step %d: the handover to pid %d" % (step, new),
            "'upgrade: handed N connections to pid %d in X ms (longest pause Y ms)"
            "; exiting'" % new, line)
    m = re.search(r"handed (\d+) connections to pid \d+ in ([\d.]+) ms \(longest pause "
                  r"([\d.]+) ms\); exiting", line)
    H.check(m, "step %d: the handover line" % step, "handed N connections ... in X ms "
            "(longest pause Y ms); exiting", line)
    handed, ms, pause = int(m.group(1)), float(m.group(2)), float(m.group(3))
    H.check(handed >= N_LONG, "step %d: connections handed over" % step,
            ">= %d (the long ones are all open)" % N_LONG, handed)
    took = p.wait_line(r"upgrade: took \d+ listening sockets and \d+ connections from pid "
                       r"%d\b" % old, 20, since=mark)
    H.check(took, "step %d: the new process's line" % step,
            "'upgrade: took N listening sockets and M connections from pid %d'" % old, took)
    m = re.search(r"took (\d+) listening sockets and (\d+) connections", took)
    nlisten, ntook = int(m.group(1)), int(m.group(2))
    H.check_eq(ntook, handed, "step %d: connections the new process took (vs handed)" % step)
    figures.setdefault("listening", nlisten)
    H.check_eq(nlisten, figures["listening"], "step %d: listening sockets taken "
               "(as at the first upgrade)" % step)
    st = chain.reap(old, 30)
    t1 = time.monotonic()
    H.check_eq(status_text(st), "exit 0", "step %d: how the old process (pid %d) ended"
               % (step, old))
    H.check(chain.alive(new), "step %d: the new process" % step, "running",
            "pid %d is %s" % (new, proc_state(new)))
    chain.pid = new
    p.pid = new
    got = H.wait_until(lambda: status_pid(aport) == new, 10, 0.1)
    H.check(got, "step %d: GET /status pid" % step, new, status_pid(aport))
    if rx:
        msg = rx.wait(lambda m: "MAINPID" in m[0], 10, since=nmark)
        H.check(msg, "step %d: the NOTIFY_SOCKET" % step, "a datagram with MAINPID= within "
                "10 s", "none; since the signal: %r" % rx.since(nmark))
        fields, sender = msg
        H.check_eq(fields.get("MAINPID"), str(new), "step %d: MAINPID=" % step)
        H.check_eq(fields.get("READY"), "1", "step %d: READY= in the MAINPID datagram" % step)
        H.check_eq(sender, new, "step %d: the sender of the MAINPID datagram" % step)
    figures.setdefault("upgrades", []).append((handed, ms, pause, t1 - t0))
    H.log("step %d: pid %d -> %d: handed %d connections in %.1f ms (longest pause %.1f ms)"
          ", %d listening sockets; old exited 0 %.2fs after SIGUSR2" % (
              step, old, new, handed, ms, pause, nlisten, t1 - t0))


def replace_file(path, data=None, src=None, mode=0o755):
    """As a package manager does: a new file renamed over the path."""
    tmp = path + ".new"
    if src is not None:
        shutil.copyfile(src, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(data)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def failed_upgrade(ctx, chain, aport, rx, binpath, realbin, kind, step):
    p = chain.p
    old = chain.pid
    saved_config = None
    if kind == "bad_config":
        with open(p.config_path) as f:
            saved_config = f.read()
        with open(p.config_path, "a") as f:
            f.write("\n[listener broken]\nbind = 127.0.0.1:1\nbackend = short\n"
                    "timeout_idle = 5x\n")
        why = r"exited with status 1\b"
    elif kind == "exit":
        replace_file(binpath, "#!/bin/sh\nexit 3\n")
        why = r"exited with status 3\b"
    else:
        replace_file(binpath, "#!/bin/sh\nSPLICED_UPGRADE_FAULT=%s exec %s \"$@\"\n"
                     % (kind, realbin))
        why = r"killed by signal 9\b"
    mark = p.mark()
    nmark = rx.mark() if rx else 0
    t0 = time.monotonic()
    try:
        os.kill(old, signal.SIGUSR2)
        line = p.wait_line(r"upgrade: started .* as pid \d+", 20, since=mark)
        H.check(line, "step %d (%s): SIGUSR2 to pid %d" % (step, kind, old),
                "'upgrade: started PATH as pid N' within 20 s", line)
        new = int(re.search(r"as pid (\d+)", line).group(1))
        chain.saw(new)
        if kind.startswith("stop:"):
            stopped = H.wait_until(lambda: proc_state(new) == "T", 30, 0.01)
            H.check(stopped, "step %d: the new process with SPLICED_UPGRADE_FAULT=%s"
                    % (step, kind), "stopped (state T) within 30 s",
                    "state %s (%s)" % (proc_state(new), proc_comm(new)))
            H.check_eq(proc_comm(new), "spliced", "step %d: the stopped process" % step)
            if kind == "stop:listeners":
                # An upgrade is running: another SIGUSR2 is ignored.
                m2 = p.mark()
                os.kill(old, signal.SIGUSR2)
                H.check(p.wait_line(r"info: upgrade: .*ignored", 10, since=m2),
                        "step %d: a second SIGUSR2 while the upgrade runs" % step,
                        "an info line 'upgrade: ... ignored' within 10 s", "none")
            os.kill(new, signal.SIGKILL)
        line = p.wait_line(r"upgrade failed: |upgrade: handed ", 60, since=mark)
        H.check_eq(len([l for l in p.lines[mark:] if re.search(r"upgrade: started ", l)]),
                   1, "step %d (%s): processes started" % (step, kind))
        H.check(line and "upgrade failed: " in line, "step %d (%s)" % (step, kind),
                "an 'upgrade failed: ...' warning within 60 s", line)
        m = re.search(r"warn: upgrade failed: (.*); still serving (\d+) connections$", line)
        H.check(m, "step %d (%s): the warning" % (step, kind),
                "warn: upgrade failed: WHY; still serving N connections", line)
        H.check(re.search(r"\bpid %d\b" % new, m.group(1)) and re.search(why, m.group(1)),
                "step %d (%s): why the upgrade failed" % (step, kind),
                "pid %d and /%s/" % (new, why), m.group(1))
        H.check(int(m.group(2)) >= N_LONG, "step %d (%s): connections still served" % (
            step, kind), ">= %d" % N_LONG, m.group(2))
        gone = H.wait_until(lambda: proc_state(new) is None, 10)
        H.check(gone, "step %d (%s): the failed process %d" % (step, kind, new),
                "reaped by the old one (gone from /proc) within 10 s",
                "state %s" % proc_state(new))
        chain.statuses[new] = "reaped by pid %d" % old
        H.check(chain.alive(old), "step %d (%s): the old process" % (step, kind),
                "still running", proc_state(old))
        H.check_eq(status_pid(aport), old, "step %d (%s): GET /status pid" % (step, kind))
        if rx:
            extra = [(f, pid) for f, pid in rx.since(nmark)
                     if "MAINPID" in f or ("READY" in f and pid != old)]
            H.check_eq(extra, [], "step %d (%s): datagrams with MAINPID=, or READY= "
                       "from another pid than %d" % (step, kind, old))
        if kind == "bad_config":
            H.check(p.wait_line(r"timeout_idle: '5x'", 5, since=mark),
                    "step %d: the new process's config error on stderr" % step,
                    "a line naming timeout_idle: '5x'", "none")
        H.log("step %d: %s: pid %d failed as expected (%s), pid %d serves on (%.2fs)" % (
            step, kind, new, m.group(1), old, time.monotonic() - t0))
    finally:
        if saved_config is not None:
            with open(p.config_path, "w") as f:
                f.write(saved_config)
        elif kind != "bad_config":
            replace_file(binpath, src=realbin)


# --------------------------------------------------------------------------
# the test

def check_log(p, nfailed):
    """Nothing at warn/error but the expected `upgrade failed`, and the
    config error the bad config's process printed (not in the log format)."""
    bad = [l for l in p.unexpected_lines()
           if not re.search(r"^\(not a log line\) spliced: .*timeout_idle: '5x'", l)]
    if bad:
        H.fail("stderr of the processes: no unexpected warn/error line", "none",
               "%d line(s):\n      %s" % (len(bad), "\n      ".join(bad[:30])))
    failed = [m for l, m in p.parsed() if l == "warn" and m.startswith("upgrade failed: ")]
    H.check_eq(len(failed), nfailed, "'upgrade failed' warnings")


def test_under_upgrades(ctx):
    become_subreaper()
    bindir = os.path.join(ctx.tmp, "bin")
    os.makedirs(os.path.join(bindir, "real"))
    binpath = os.path.join(bindir, "spliced")
    realbin = os.path.join(bindir, "real", "spliced")
    shutil.copyfile(ctx.spliced, realbin)
    os.chmod(realbin, 0o755)
    replace_file(binpath, src=realbin)
    rx = None
    if has_libsystemd(ctx.spliced):
        rx = NotifyRx(ctx)
    else:
        H.log("spliced was built without libsystemd: the NOTIFY_SOCKET part is not tested")
    run = Run()
    be_long = ctx.backend(dispatcher(run), name="long")
    be_short = ctx.backend(H.echo(), name="short")
    aport = H.free_port()
    env = {"NOTIFY_SOCKET": rx.path} if rx else {}
    orig = ctx.spliced
    ctx.spliced = binpath
    try:
        p = ctx.proxy(glob={"splice": ctx.mode, "admin": "%s:%d" % (H.LOCAL, aport),
                            "upgrade_timeout": UPGRADE_TIMEOUT},
                      listeners={"long": {"backend": "long"}, "short": {"backend": "short"}},
                      backends={"long": {"server": "l " + be_long.addr},
                                "short": {"server": "s " + be_short.addr}},
                      env=env)
        p.allow(r"^upgrade failed: ")
        p.start()
    finally:
        ctx.spliced = orig
    chain = Chain(ctx, p)
    H.check_eq(status_pid(aport), p.pid, "GET /status pid at start")
    port = p.port("long")

    # The 200, all open end to end before the first upgrade.
    cid = 0
    for kind, n in KINDS:
        for _ in range(n):
            cid += 1
            run.conns[cid] = Long(cid, kind)
    threads = []
    for i, c in enumerate(run.conns.values()):
        t = threading.Thread(target=client_thread, args=(run, c, port),
                             name="c%d" % c.id, daemon=True)
        t.start()
        threads.append(t)
        if i % 50 == 49:
            time.sleep(0.05)
    ok = H.wait_until(lambda: all(c.established.is_set() or c.errors
                                  for c in run.conns.values()), 60, 0.1)
    errs = [repr(c) for c in run.conns.values() if c.errors or not c.established.is_set()]
    H.check(ok and not errs, "the %d long connections" % N_LONG,
            "all reach the backend within 60 s", errs[:5])
    ok = H.wait_until(lambda: all(c.down.got >= 2 for c in run.conns.values()
                                  if c.kind == "idle"), 30)
    H.check(ok, "the idle connections' ok", "each within 30 s", "not all")
    H.log("%d long connections open (%s)" % (N_LONG, ", ".join("%d %s" % (n, k)
                                                               for k, n in KINDS)))
    short = ctx.register(H.EchoClients(p.port("short"), n=2,
                                       sizes=(200, 1500, 9000, 100 * H.KiB), pause=0.01,
                                       seed=9000))

    figures = {}
    nfailed = 0
    t_steps = time.monotonic()
    for step, what in enumerate(STEPS, 1):
        senders_done = wait_parked(run, aport, None if ctx.mode == "auto" and
                                   ctx.splices else ctx.splices, step)
        if senders_done:
            H.log("step %d: %d bulk senders had sent everything (the rest sits in "
                  "buffers)" % (step, senders_done))
        if what == "good":
            good_upgrade(ctx, chain, aport, rx, binpath, step, figures)
        else:
            failed_upgrade(ctx, chain, aport, rx, binpath, realbin, what, step)
            nfailed += 1
        traffic_after(run, short, step, what)
        bad = [repr(c) for c in run.conns.values() if c.errors]
        H.check(not bad, "step %d (%s): the long connections" % (step, what),
                "no error", bad[:5])
        H.check_eq(short.failures[:3], [], "step %d (%s): short round trips that failed"
                   % (step, what))
        run.gate.advance()
    H.log("%d steps in %.1fs" % (len(STEPS), time.monotonic() - t_steps))

    # The end: every reader free, small ones stop, idle ones talk.
    t_end = time.monotonic()
    run.gate.finish()
    run.end_small.set()
    ok = H.wait_until(lambda: all(c.client_done.is_set() and c.backend_done.is_set()
                                  for c in run.conns.values()), 120, 0.1)
    left = [repr(c) for c in run.conns.values()
            if not (c.client_done.is_set() and c.backend_done.is_set())]
    H.check(ok, "the long connections end", "all within 120 s", "%d not: %s" % (
        len(left), left[:5]))
    short.stop()
    H.log("long connections done in %.1fs; %d short round trips" % (
        time.monotonic() - t_end, short.done))
    H.check_eq(short.failures[:5], [], "short round trips that failed")
    H.check(short.done >= len(STEPS), "short round trips made", ">= %d" % len(STEPS),
            short.done)

    # Every byte, both ways.
    problems = []
    for c in run.conns.values():
        for f in (c.up, c.down):
            for pr in f.problems():
                problems.append("%r: %s %s" % (c, f.name, pr))
        problems.extend("%r: %s" % (c, e) for e in c.errors)
        want = {"down": (0, BULK), "up": (BULK, 0), "both": (BULK, BULK),
                "half_c": (HALF_REQ, None), "half_b": (None, HALF_REQ),
                "idle": (IDLE_END, IDLE_END + 2)}.get(c.kind)
        if want:
            for f, n in zip((c.up, c.down), want):
                if n is not None and f.sent != n:
                    problems.append("%r: %s sent %d, not %d" % (c, f.name, f.sent, n))
        if c.kind == "small" and c.exchanges < 2:
            problems.append("%r: %d exchanges" % (c, c.exchanges))
        if c.kind in ("half_c", "half_b"):
            ticks = (c.down if c.kind == "half_c" else c.up).sent // TICK
            if ticks < len(STEPS):
                problems.append("%r: %d ticks, not one per step" % (c, ticks))
        if c.kind == "half_b" and c.after_close != "eof":
            problems.append("%r: after both FINs the client socket read %s" % (
                c, c.after_close))
    H.check(not problems, "every direction of the %d long connections" % N_LONG,
            "all bytes (sha256), a clean EOF, no reset",
            "%d problem(s):\n      %s" % (len(problems), "\n      ".join(problems[:20])))
    H.log("%d long connections byte-exact both ways: %d MiB up, %d MiB down; %d small "
          "exchanges" % (N_LONG, sum(c.up.sent for c in run.conns.values()) // H.MiB,
                         sum(c.down.sent for c in run.conns.values()) // H.MiB,
                         sum(c.exchanges for c in run.conns.values())))

    # One access line each, with the bytes of the whole life.
    H.check(p.wait_access_count(N_LONG + short.done, timeout=30) >= N_LONG + short.done,
            "access lines", ">= %d" % (N_LONG + short.done), len(p.access()))
    lines = {}
    for a in p.access():
        if a.get("listener") == "long":
            lines.setdefault(a.get("client_port"), []).append(a)
    for c in run.conns.values():
        got = lines.get(c.client_port, [])
        H.check_eq(len(got), 1, "access lines of %r" % c)
        H.check_access(got[0], up=HDR.size + c.up.sent, down=c.down.sent,
                       reason=("client_eof", "server_eof"), what="access line of %r" % c)
    nshort = sum(1 for a in p.access() if a.get("listener") == "short")
    H.check_eq(nshort, short.done, "access lines of the short round trips")

    # Counted once across the processes.
    def totals():
        st = admin_json(aport, "/status")
        return {lst["name"]: lst["total"] for lst in st["listeners"]}
    want = {"long": N_LONG, "short": short.done}
    H.wait_until(lambda: totals() == want, 10, 0.2)
    H.check_eq(totals(), want, "/status listener totals after %d upgrades" % (
        len(STEPS) - nfailed))

    # The last process: fds back at the first one's baseline, SIGTERM.
    p.check_fds()
    last = chain.pid
    os.kill(last, signal.SIGTERM)
    st = chain.reap(last, 60)
    H.check_eq(status_text(st), "exit 0", "the last process (pid %d) after SIGTERM" % last)
    p.stopped = True
    check_log(p, nfailed)
    left = chain.leftovers()
    H.check_eq(left, [], "processes left behind")
    ups = figures.get("upgrades", [])
    H.check_eq(len(ups), STEPS.count("good"), "good upgrades")
    H.check_eq(len(set(chain.seen)), len(chain.seen), "pids (each new)")
    H.log("%d upgrades: handover %.0f-%.0f ms, longest pause %.0f ms; pids %s" % (
        len(ups), min(u[1] for u in ups), max(u[1] for u in ups),
        max(u[2] for u in ups), chain.seen))



# --------------------------------------------------------------------------
# the smaller cases: shared pieces

class Bins:
    """bin/spliced, the path the test starts (what every upgrade starts),
    and bin/real/spliced, the build's binary. The test becomes a child
    subreaper (see Chain)."""

    def __init__(self, ctx):
        become_subreaper()
        d = os.path.join(ctx.tmp, "bin")
        os.makedirs(os.path.join(d, "real"), exist_ok=True)
        self.path = os.path.join(d, "spliced")
        self.real = os.path.join(d, "real", "spliced")
        if not os.path.exists(self.real):
            shutil.copyfile(ctx.spliced, self.real)
            os.chmod(self.real, 0o755)
        self.restore()

    def restore(self):
        replace_file(self.path, src=self.real)

    def exiting(self, status):
        replace_file(self.path, "#!/bin/sh\nexit %d\n" % status)

    def fault(self, where):
        replace_file(self.path, "#!/bin/sh\nSPLICED_UPGRADE_FAULT=%s exec %s \"$@\"\n"
                     % (where, self.real))


def start_chain(ctx, bins, glob, listeners, backends, allow=(), admin=True, make=None):
    """A proxy started from bins.path (make: a function of the Ctx that
    returns an unstarted Proxy; by default ctx.proxy with these), and the
    Chain of its processes. glob gets the mode and, with admin, an admin
    port on 127.0.0.1 (unless it names one). (proxy, chain, admin port)."""
    g = {"splice": ctx.mode}
    aport = None
    if admin and "admin" not in glob:
        aport = H.free_port()
        g["admin"] = "%s:%d" % (H.LOCAL, aport)
    g.update(glob)
    orig = ctx.spliced
    ctx.spliced = bins.path
    try:
        if make is not None:
            p = make(ctx, g)
        else:
            p = ctx.proxy(glob=g, listeners=listeners, backends=backends)
        p.allow(*allow)
        p.start()
    finally:
        ctx.spliced = orig
    return p, Chain(ctx, p), aport


def sigusr2(chain, what):
    """SIGUSR2 to the serving process: (new pid, log mark before it)."""
    p = chain.p
    mark = p.mark()
    os.kill(chain.pid, signal.SIGUSR2)
    line = p.wait_line(r"upgrade: started .* as pid \d+", 20, since=mark)
    H.check(line, "%s: SIGUSR2 to pid %d" % (what, chain.pid),
            "'upgrade: started PATH as pid N' within 20 s",
            "none; last lines:\n      " + "\n      ".join(p.lines[-10:]))
    new = int(re.search(r"as pid (\d+)", line).group(1))
    H.check(new not in chain.seen, "%s: the new pid" % what,
            "one never seen before (%s)" % chain.seen, new)
    chain.saw(new)
    return new, mark


def await_verdict(chain, new, mark, what, timeout):
    """The old process's 'handed ...' or 'upgrade failed: ...' line, failing
    at once if the old one ends without it."""
    p = chain.p
    old = chain.pid
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.wait_line(r"upgrade: handed \d+ connections to pid %d |upgrade failed: "
                           % new, 0.25, since=mark)
        if line is not None:
            return line
        if not chain.alive(old):
            st = chain.reap(old, 5)
            H.fail("%s: the old process (pid %d) during the upgrade to pid %d" % (
                what, old, new), "running until its verdict", "it ended (%s)"
                % status_text(st))
    H.fail("%s: the upgrade to pid %d" % (what, new),
           "'upgrade: handed ...' or 'upgrade failed: ...' within %.0f s" % timeout,
           "neither; old pid %d: %s, new pid %d: %s" % (
               old, proc_state(old), new, proc_state(new)))


def await_handover(chain, new, mark, what, aport=None, timeout=45.0):
    """The old process hands over to new and exits 0: the chain moves on.
    The number of connections handed."""
    p = chain.p
    old = chain.pid
    line = await_verdict(chain, new, mark, what, timeout)
    m = re.search(r"handed (\d+) connections to pid \d+ in [\d.]+ ms \(longest pause "
                  r"[\d.]+ ms\); exiting", line)
    H.check(m, "%s: the old process's verdict" % what,
            "'upgrade: handed N connections to pid %d in X ms (longest pause Y ms); "
            "exiting'" % new, line)
    handed = int(m.group(1))
    took = p.wait_line(r"upgrade: took \d+ listening sockets and \d+ connections from pid "
                       r"%d\b" % old, 20, since=mark)
    H.check(took, "%s: the new process's line" % what,
            "'upgrade: took N listening sockets and M connections from pid %d'" % old, took)
    H.check_eq(int(re.search(r"and (\d+) connections", took).group(1)), handed,
               "%s: connections pid %d took (vs handed)" % (what, new))
    st = chain.reap(old, 30)
    H.check_eq(status_text(st), "exit 0", "%s: how the old process (pid %d) ended"
               % (what, old))
    H.check(chain.alive(new), "%s: the new process" % what, "running",
            "pid %d is %s" % (new, proc_state(new)))
    chain.pid = new
    p.pid = new
    if aport is not None:
        H.check(H.wait_until(lambda: status_pid(aport) == new, 10, 0.05),
                "%s: GET /status pid" % what, new, status_pid(aport))
    return handed


def upgrade(chain, what, aport=None):
    new, mark = sigusr2(chain, what)
    handed = await_handover(chain, new, mark, what, aport)
    H.log("%s: pid %d took over (%d connections)" % (what, new, handed))
    return new, handed


def await_failure(chain, new, mark, why, what, timeout=45.0):
    """The old process logs 'upgrade failed: WHY; still serving N
    connections' (WHY matching the regex why and naming new), reaps new,
    and runs on. (WHY, N)."""
    old = chain.pid
    line = await_verdict(chain, new, mark, what, timeout)
    m = re.search(r"warn: upgrade failed: (.*); still serving (\d+) connections$", line)
    H.check(m, "%s: the verdict" % what,
            "warn: upgrade failed: WHY; still serving N connections", line)
    H.check(re.search(why, m.group(1)), "%s: why the upgrade failed" % what,
            "/%s/" % why, m.group(1))
    gone = H.wait_until(lambda: proc_state(new) is None, 10)
    H.check(gone, "%s: the failed process %d" % (what, new),
            "reaped by the old one (gone from /proc) within 10 s",
            "state %s" % proc_state(new))
    chain.statuses[new] = "reaped by pid %d" % old
    H.check(chain.alive(old), "%s: the old process" % what, "still running",
            proc_state(old))
    return m.group(1), int(m.group(2))


def end_chain(chain, fds=True):
    """The end of a case: fds back at the first process's baseline (fds),
    nothing unexpected logged, SIGTERM: the last process exits 0, no
    process of the test's binaries left."""
    p = chain.p
    if fds:
        p.check_fds()
    last = chain.pid
    os.kill(last, signal.SIGTERM)
    st = chain.reap(last, 60)
    H.check_eq(status_text(st), "exit 0", "the last process (pid %d) after SIGTERM" % last)
    p.stopped = True
    p.check_log()
    H.check_eq(chain.leftovers(), [], "processes left behind")


class EchoConn:
    """A client connection through an echo backend, kept open across
    upgrades. exchange() sends blocks and compares each one's echo;
    finish() shuts down writing, wants a clean EOF after every byte, and the
    backend's record of what it got (byte count and sha256) to match what
    was sent."""

    def __init__(self, port, seed, header=b"", src=None, sock=None):
        if sock is None:
            sock = H.dial_from(src, port) if src else H.dial(port)
        self.sock = sock
        self.client_port = H.local_port(sock)
        if header:
            sock.sendall(header)
        self.rnd = random.Random(seed)
        self.sent = 0
        self.got = 0
        self.sh = hashlib.sha256()
        self.rh = hashlib.sha256()

    def send(self, data):
        self.sock.sendall(data)
        self.sh.update(data)
        self.sent += len(data)

    def recv_exact(self, n, what):
        out = bytearray()
        while len(out) < n:
            try:
                b = self.sock.recv(n - len(out))
            except OSError as e:
                H.fail("%s: the echo of %d bytes" % (what, n), "every byte",
                       "%r after %d" % (e, len(out)))
            if not b:
                H.fail("%s: the echo of %d bytes" % (what, n), "every byte",
                       "EOF after %d" % len(out))
            out += b
        self.rh.update(out)
        self.got += len(out)
        return bytes(out)

    def exchange(self, size, what, chunk=64 * H.KiB):
        left = size
        while left > 0:
            data = self.rnd.randbytes(min(chunk, left))
            self.send(data)
            back = self.recv_exact(len(data), what)
            if back != data:
                H.fail("%s: the echo" % what, "the bytes sent", "other bytes (at offset "
                       "%d of the connection)" % (self.got - len(data)))
            left -= len(data)

    def finish(self, be, what):
        self.sock.shutdown(socket.SHUT_WR)
        end, _ = H.expect_closed(self.sock, H.IO_TIMEOUT)
        self.sock.close()
        H.check_eq(end, "eof", "%s: after the client's FIN" % what)
        H.check_eq((self.got, self.rh.hexdigest()), (self.sent, self.sh.hexdigest()),
                   "%s: bytes and sha256 echoed (client side)" % what)
        want = (self.sent, self.sh.hexdigest(), "eof")
        ok = H.wait_until(lambda: any((r.get("n"), r.get("sha"), r.get("end")) == want
                                      for r in list(be.results)), 10)
        H.check(ok, "%s: what the backend got" % what, "%d bytes, sha256 %s..., EOF" % (
            self.sent, want[1][:12]), [r for r in list(be.results)][-4:])


def pp_header(src, port):
    return H.pp_v1(src, (H.LOCAL, port))


def served(port, seed, size=4 * H.KiB, header=b"", what="a new client", deadline=10.0):
    """One echo round trip through port (a PROXY header first, if given)."""
    try:
        c = H.dial(port, timeout=deadline)
        if header:
            c.sendall(header)
    except OSError as e:
        H.fail("%s through port %d" % (what, port), "connected", repr(e))
    res = H.echo_trip(port, seed, size, deadline=deadline, sock=c)
    H.check(res is None, "%s through port %d" % (what, port),
            "%d bytes echoed intact within %.0f s" % (size, deadline), res)


def no_line(p, pattern, window, since, what):
    """Nothing matching pattern for `window` seconds (a bounded wait for a
    line that must not come)."""
    line = p.wait_line(pattern, window, since=since)
    H.check(line is None, what, "no line /%s/ within %.1f s" % (pattern, window), line)



def listener_active(aport, name):
    try:
        st = admin_json(aport, "/status", 5)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    for lst in st["listeners"]:
        if lst["name"] == name:
            return lst["active"]
    return None


def wait_active(aport, name, n, what):
    ok = H.wait_until(lambda: listener_active(aport, name) == n, 10)
    H.check(ok, "%s: listener %s's open connections" % (what, name),
            "%d within 10 s" % n, listener_active(aport, name))


def pp_proxy(ctx, bins, glob, handshake="10s", allow=()):
    """A listener `pp` with accept_proxy = on (timeout_handshake =
    handshake) over an echo backend."""
    be = ctx.backend(H.echo(), name="echo")
    p, chain, aport = start_chain(
        ctx, bins, glob, {"pp": {"backend": "echo", "accept_proxy": "on",
                                 "timeout_handshake": handshake}},
        {"echo": {"server": "e " + be.addr}}, allow=allow)
    return p, chain, aport, be


def test_handshake_waits(ctx):
    """A connection in its PROXY header during an upgrade: the old process
    takes it to the end of its handshake, then hands it over."""
    bins = Bins(ctx)
    p, chain, aport, be = pp_proxy(ctx, bins, {"upgrade_timeout": "30s"})
    port = p.port("pp")
    est = EchoConn(port, 11, header=pp_header(("192.0.2.1", 4001), port))
    est.exchange(256 * H.KiB, "the established connection, before")
    src = ("192.0.2.7", 4711)
    hdr = pp_header(src, port)
    half = len(hdr) // 2
    hs = EchoConn(port, 12, sock=H.dial(port))
    hs.sock.sendall(hdr[:half])
    wait_active(aport, "pp", 2, "before SIGUSR2")
    old = chain.pid

    new, mark = sigusr2(chain, "SIGUSR2 with a header half sent")
    took = p.wait_line(r"upgrade: pid %d took \d+ listening sockets" % new, 20, since=mark)
    H.check(took, "the old process", "'upgrade: pid %d took N listening sockets' within "
            "20 s" % new, "none; last lines:\n      " + "\n      ".join(p.lines[-10:]))
    no_line(p, r"upgrade: handed |upgrade failed: ", 1.5, mark,
            "while a PROXY header is half sent (%d of %d bytes)" % (half, len(hdr)))
    H.check(chain.alive(new) and chain.alive(old), "both processes while the header "
            "waits", "running", "old %s, new %s" % (proc_state(old), proc_state(new)))
    H.check_eq(status_pid(aport), old, "GET /status pid while the header waits")
    # The old one stops accepting right after its 'took' line: a client
    # that comes now waits in the backlog, connected, neither accepted by
    # the old process (its count stays) nor served.
    late = EchoConn(port, 13, header=pp_header(("192.0.2.8", 4712), port))
    late.send(b"x" * 1000)
    late.sock.settimeout(0.5)
    try:
        early = late.sock.recv(1000)
    except socket.timeout:
        early = None
    late.sock.settimeout(H.IO_TIMEOUT)
    H.check(early is None, "a client that came during the hold", "no answer within "
            "0.5 s (it waits in the backlog)", repr(early))
    H.check_eq(listener_active(aport, "pp"), 2, "the old process's open connections "
               "once a client came during the hold")
    no_line(p, r"upgrade: handed |upgrade failed: ", 0, mark,
            "while a PROXY header is half sent, after a client came")
    H.log("pid %d took the listening sockets; no handover for 1.5 s while the header "
          "is half sent" % new)

    # The rest of the header and some data: the handshake ends in the old
    # process, then everything goes.
    first = hs.rnd.randbytes(64 * H.KiB)
    hs.sock.sendall(hdr[half:])
    hs.send(first)
    handed = await_handover(chain, new, mark, "after the header's end", aport)
    H.check(handed >= 2, "connections handed", ">= 2 (the established one and the one "
            "whose header ended)", handed)
    after = p.mark()
    H.check_eq(hs.recv_exact(len(first), "the first 64 KiB"), first,
               "the echo of the bytes sent with the header's end")
    hs.exchange(2 * H.MiB, "the handshake connection, in the new process")
    hs.finish(be, "the handshake connection")
    late.recv_exact(1000, "the client that waited in the backlog")
    late.exchange(64 * H.KiB, "the client that waited in the backlog")
    late.finish(be, "the client that waited in the backlog")
    est.exchange(512 * H.KiB, "the established connection, after")
    est.finish(be, "the established connection")
    a = p.access_for(src[1], since=after, timeout=20)
    H.check_eq(a.get("client"), "%s:%d" % src, "the handshake connection's access line: "
               "client (the PROXY source)")
    H.check_access(a, up=hs.sent, down=hs.got, reason="client_eof",
                   what="the handshake connection's access line")
    mine = [x for x in p.access() if x.get("client") == "%s:%d" % src]
    H.check_eq(len(mine), 1, "access lines of the handshake connection (one, written "
               "after pid %d exited)" % old)
    H.log("the handshake connection: %d bytes each way through pid %d, its access line "
          "names %s:%d" % (hs.sent, new, src[0], src[1]))
    end_chain(chain)



def test_handshake_stuck(ctx):
    """A PROXY header that does not end within upgrade_timeout fails the
    upgrade; the old process serves on, that client included."""
    bins = Bins(ctx)
    p, chain, aport, be = pp_proxy(ctx, bins, {"upgrade_timeout": "1s"}, handshake="10s",
                                   allow=(r"^upgrade failed: ",))
    # The new process's own deadline may pass as the old one's does: it
    # says so before the old one kills it.
    p.allow(r"^upgrade: reading from pid %d: Connection timed out$" % chain.pid)
    port = p.port("pp")
    est = EchoConn(port, 21, header=pp_header(("192.0.2.1", 4001), port))
    est.exchange(256 * H.KiB, "the established connection, before")
    src = ("192.0.2.9", 4721)
    hdr = pp_header(src, port)
    half = len(hdr) // 2
    stuck = EchoConn(port, 22, sock=H.dial(port))
    stuck.sock.sendall(hdr[:half])
    wait_active(aport, "pp", 2, "before SIGUSR2")
    old = chain.pid
    t0 = time.monotonic()
    new, mark = sigusr2(chain, "SIGUSR2 with a header stuck half way")
    H.check(p.wait_line(r"upgrade: pid %d took \d+ listening sockets" % new, 20,
                        since=mark), "the old process", "'upgrade: pid %d took N "
            "listening sockets' within 20 s" % new, "none")
    # A client that comes during the hold is served once it ends.
    late = EchoConn(port, 23, header=pp_header(("192.0.2.8", 4722), port))
    late.send(b"y" * 1000)
    why, still = await_failure(chain, new, mark, r"\b1 connections? (was|were) still "
                               r"connecting or in a handshake\b.*upgrade_timeout",
                               "an upgrade past upgrade_timeout (1s)", timeout=30)
    took = time.monotonic() - t0
    H.check(took < 10, "the failed upgrade", "its verdict about upgrade_timeout (1 s) "
            "after SIGUSR2", "%.1f s" % took)
    H.check(still >= 2, "connections still served", ">= 2", still)
    H.check_eq(status_pid(aport), old, "GET /status pid after the failed upgrade")
    no_line(p, r"upgrade: (handed|took \d+ listening sockets and)", 0, mark,
            "after the failed upgrade")
    H.log("upgrade failed after %.1f s: %s; pid %d serves on" % (took, why, old))

    late.recv_exact(1000, "the client that came during the hold")
    late.exchange(64 * H.KiB, "the client that came during the hold")
    late.finish(be, "the client that came during the hold")
    est.exchange(1 * H.MiB, "the established connection, after the failed upgrade")
    served(port, 24, 256 * H.KiB, header=pp_header(("192.0.2.10", 4723), port),
           what="a new client after the failed upgrade")
    stuck.sock.sendall(hdr[half:])
    stuck.exchange(1 * H.MiB, "the stuck client, its header complete")
    stuck.finish(be, "the stuck client")
    est.finish(be, "the established connection")
    a = p.access_for(src[1], since=mark, timeout=20)
    H.check_eq(a.get("client"), "%s:%d" % src, "the stuck client's access line: client")
    H.check_access(a, up=stuck.sent, down=stuck.got, reason="client_eof",
                   what="the stuck client's access line")
    H.check_eq(chain.pid, old, "the serving pid")
    end_chain(chain, fds=False)



def test_socket_activated(ctx):
    """A listening socket passed the systemd way (LISTEN_FDS) goes along:
    the same socket serves in every new process, none of spliced's own
    beside it."""
    import test_sockact as SA
    if not has_libsystemd(ctx.spliced):
        raise H.Skip("spliced was built without libsystemd: no socket activation")
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    web = ctx.register(SA.listen_socket())
    web_port, web_ino = web.getsockname()[1], SA.inode(web)
    other_port = H.free_port()
    listeners = {"web": {"backend": "echo"}, "other": {"backend": "echo"}}
    wrap = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$@"', "sh"]

    def make(ctx, g):
        return SA.ActivatedProxy(ctx, {"web": [web_port], "other": [other_port]}, wrap,
                                 fds={3: web}, glob=g, listeners=listeners,
                                 backends={"echo": {"server": "e " + be.addr}})
    p, chain, aport = start_chain(ctx, bins, {}, None, None, make=make)
    SA.check_only_passed(p, web_port, web_ino, "at start")
    web.close()          # from here on only spliced holds it
    est = EchoConn(web_port, 31)
    est.exchange(512 * H.KiB, "a connection through the passed socket, before")
    nlisten = None
    for k in (1, 2):
        what = "upgrade %d" % k
        mark = p.mark()
        new, _ = upgrade(chain, what, aport)
        took = p.wait_line(r"upgrade: took (\d+) listening sockets", 5, since=mark)
        n = int(re.search(r"took (\d+)", took).group(1))
        nlisten = n if nlisten is None else nlisten
        H.check_eq(n, nlisten, "%s: listening sockets taken (as at the first)" % what)
        SA.check_only_passed(p, web_port, web_ino, what)
        own = SA.listening_on(other_port)
        H.check(own and set(own) <= H.socket_inodes(new), "%s: LISTEN sockets on the "
                "bound listener's port %d" % (what, other_port), "all pid %d's" % new, own)
        SA.echo_both_ways(be, web_port, seed=32 + k, size=1 * H.MiB)
        SA.echo_both_ways(be, other_port, seed=34 + k, size=256 * H.KiB)
        est.exchange(512 * H.KiB, "the connection through the passed socket, %s" % what)
        H.log("%s: pid %d serves the passed socket:[%d] (the only LISTEN socket on "
              "port %d)" % (what, new, web_ino, web_port))
    est.finish(be, "the connection through the passed socket")
    end_chain(chain)



class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_status_pid(path):
    """GET /status over the admin unix socket: its "pid", or what failed."""
    c = UnixHTTPConnection(path, 5)
    try:
        c.request("GET", "/status")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            return "status %d" % r.status
        return json.loads(body.decode()).get("pid")
    except (OSError, ValueError, http.client.HTTPException) as e:
        return repr(e)
    finally:
        c.close()


def ctl_status_pid(ctx, path):
    """`spliced ctl --admin unix:PATH status --json`: its "pid", or what failed."""
    r = H.subprocess.run([ctx.spliced, "ctl", "--admin", "unix:" + path, "status",
                          "--json"], capture_output=True, timeout=30,
                         stdin=H.subprocess.DEVNULL)
    if r.returncode != 0:
        return "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip())
    try:
        return json.loads(r.stdout.decode()).get("pid")
    except ValueError as e:
        return "not JSON (%r): %r" % (e, r.stdout[:200])


def test_admin_unix(ctx):
    """admin = unix:PATH across upgrades: the socket file stays, the same
    one, answered by the serving process; removed at the last exit."""
    if ctx.mode != "auto":
        raise H.Skip("no byte is relayed here: runs with splice=auto only")
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    path = os.path.join(ctx.tmp, "admin.sock")
    p, chain, _ = start_chain(ctx, bins, {"admin": "unix:" + path,
                                          "upgrade_timeout": "30s"},
                              {"web": {"backend": "echo"}},
                              {"echo": {"server": "e " + be.addr}},
                              allow=(r"^upgrade failed: ",))
    ino = os.stat(path).st_ino

    def answers(what):
        H.check(os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode),
                "%s: the admin socket file %s" % (what, path), "there, a socket",
                "gone" if not os.path.exists(path) else oct(os.stat(path).st_mode))
        H.check_eq(os.stat(path).st_ino, ino, "%s: the admin socket file's inode "
                   "(the same socket, never bound again)" % what)
        H.check_eq(unix_status_pid(path), chain.pid, "%s: GET /status pid over %s"
                   % (what, path))
        H.check_eq(ctl_status_pid(ctx, path), chain.pid,
                   "%s: spliced ctl --admin unix:PATH status --json: pid" % what)
    answers("at start")
    est = EchoConn(p.port("web"), 41)
    est.exchange(64 * H.KiB, "an open connection, at start")
    steps = (("good", None), ("exit", r"exited with status 3\b"),
             ("stop:listeners", r"killed by signal 9\b"), ("good", None),
             ("stop:connections", r"killed by signal 9\b"), ("good", None))
    for k, (kind, why) in enumerate(steps, 1):
        what = "step %d (%s)" % (k, kind)
        if kind == "good":
            upgrade(chain, what)
        else:
            if kind == "exit":
                bins.exiting(3)
            else:
                bins.fault(kind)
            try:
                new, mark = sigusr2(chain, what)
                if kind.startswith("stop:"):
                    H.check(H.wait_until(lambda: proc_state(new) == "T", 30, 0.01),
                            "%s: the new process" % what, "stopped (state T) within "
                            "30 s", proc_state(new))
                    # It holds the admin socket now, stopped: the old one still
                    # answers on it.
                    H.check_eq(unix_status_pid(path), chain.pid, "%s: GET /status pid "
                               "while pid %d is stopped" % (what, new))
                    os.kill(new, signal.SIGKILL)
                reason, _ = await_failure(chain, new, mark, why, what)
            finally:
                bins.restore()
            H.log("%s: %s" % (what, reason))
        answers("after " + what)
        est.exchange(64 * H.KiB, "the open connection, after " + what)
    est.finish(be, "the open connection")
    last = chain.pid
    end_chain(chain, fds=False)
    H.check(not os.path.exists(path), "the admin socket file after pid %d exited" % last,
            "removed", "still there")



def listening_on(port):
    return [r[3] for r in H.tcp_table() if r[0] == port and r[2] == "LISTEN"]


def refuses(port):
    """Whether a connect to 127.0.0.1:port is refused now (one that gets
    through lands in some backlog: closed again)."""
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((H.LOCAL, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def reload_to(chain, listeners, what):
    """The config file with these listeners (same ports), SIGHUP, and the
    'reloaded' line; returns it."""
    p = chain.p
    with open(p.config_path, "w") as f:
        f.write(H.render_config(p.glob, listeners, p.backends,
                                {n: p.ports[n] for n in listeners}))
    mark = p.mark()
    os.kill(chain.pid, signal.SIGHUP)
    line = p.wait_line(r"info: reloaded |(warn|error): .*(reload|SIGHUP)", 20, since=mark)
    H.check(line and "info: reloaded " in line, "%s: SIGHUP to pid %d" % (what, chain.pid),
            "'reloaded PATH: ...' within 20 s", line)
    return line


def test_reload_after(ctx):
    """After an upgrade the handed listening sockets are the process's own:
    a reload that removes their listener closes every one of them (its port
    refuses connects), one that adds it back binds and serves."""
    if ctx.mode != "auto":
        raise H.Skip("no byte is relayed here: runs with splice=auto only")
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    listeners = {"keep": {"backend": "echo"}, "gone": {"backend": "echo"}}
    p, chain, aport = start_chain(ctx, bins, {"upgrade_timeout": "30s"}, listeners,
                                  {"echo": {"server": "e " + be.addr}})
    keep, gone = p.port("keep"), p.port("gone")
    est = EchoConn(gone, 51)
    est.exchange(64 * H.KiB, "a connection through `gone`, before")
    before = listening_on(gone)
    upgrade(chain, "upgrade 1", aport)
    H.check_eq(sorted(listening_on(gone)), sorted(before), "LISTEN sockets on `gone`'s "
               "port after the upgrade (the handed ones)")
    line = reload_to(chain, {"keep": listeners["keep"]}, "without `gone`")
    H.check(re.search(r"\(0 added, 1 removed\)", line), "the reload without `gone`",
            "(0 added, 1 removed)", line)
    ok = H.wait_until(lambda: refuses(gone), 10, 0.1)
    H.check(ok, "connects to `gone`'s port %d after the reload removed it" % gone,
            "refused within 10 s", "accepted into a backlog; LISTEN sockets there: %s"
            % listening_on(gone))
    H.check_eq(listening_on(gone), [], "LISTEN sockets on `gone`'s port")
    served(keep, 52, what="a client of `keep` after the reload")
    est.exchange(64 * H.KiB, "the connection through `gone`, after its listener went")
    H.log("removed after the upgrade: `gone`'s port %d refuses, its open connection "
          "flows" % gone)
    line = reload_to(chain, listeners, "with `gone` again")
    H.check(re.search(r"\(1 added, 0 removed\)", line), "the reload with `gone` again",
            "(1 added, 0 removed)", line)
    for k in range(20):
        served(gone, 60 + k, 1000, what="client %d of `gone` once it is back" % k)
    mine = H.socket_inodes(chain.pid)
    ls = listening_on(gone)
    H.check(ls and set(ls) <= mine, "LISTEN sockets on `gone`'s port once it is back",
            "pid %d's" % chain.pid, ls)
    upgrade(chain, "upgrade 2", aport)
    for k in range(20):
        served(gone, 80 + k, 1000, what="client %d of `gone` after upgrade 2" % k)
        served(keep, 100 + k, 1000, what="client %d of `keep` after upgrade 2" % k)
    est.exchange(64 * H.KiB, "the connection through `gone`, after upgrade 2")
    est.finish(be, "the connection through `gone`")
    end_chain(chain)



def test_sigterm_frozen(ctx):
    """SIGTERM while the new process is stopped (after it took the
    listening sockets): the old one gives the upgrade up at once, kills and
    reaps the new one, drains its connections and exits 0."""
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    p, chain, aport = start_chain(ctx, bins, {"upgrade_timeout": "30s",
                                              "shutdown_timeout": "30s"},
                                  {"web": {"backend": "echo"}},
                                  {"echo": {"server": "e " + be.addr}},
                                  allow=(r"^upgrade failed: ",))
    port = p.port("web")
    est = EchoConn(port, 71)
    est.exchange(256 * H.KiB, "an open connection, before")
    old = chain.pid
    bins.fault("stop:listeners")
    try:
        new, mark = sigusr2(chain, "SIGUSR2 (the new process stops)")
        H.check(H.wait_until(lambda: proc_state(new) == "T", 30, 0.01),
                "the new process with SPLICED_UPGRADE_FAULT=stop:listeners",
                "stopped (state T) within 30 s", proc_state(new))
    finally:
        bins.restore()
    t0 = time.monotonic()
    os.kill(old, signal.SIGTERM)
    H.check(p.wait_line(r"info: .*draining connections", 10, since=mark),
            "SIGTERM to pid %d" % old, "'... draining connections ...' within 10 s", "none")
    est.exchange(256 * H.KiB, "the open connection, after SIGTERM")
    line = p.wait_line(r"upgrade failed: ", max(0.0, GIVE_UP - (time.monotonic() - t0)),
                       since=mark)
    t_fail = time.monotonic() - t0
    H.check(line, "SIGTERM while pid %d is stopped after taking the listening sockets"
            % new, "'upgrade failed: ...' within %.0f s (upgrade_timeout is %s)" % (
                GIVE_UP, p.glob["upgrade_timeout"]),
            "none after %.1f s; new pid %d: %s" % (t_fail, new, proc_state(new)))
    H.log("SIGTERM -> %.2f s -> %s" % (t_fail, line))
    H.check(H.wait_until(lambda: proc_state(new) is None, 10), "the stopped process "
            "%d" % new, "killed and reaped by pid %d (gone from /proc) within 10 s" % old,
            "state %s" % proc_state(new))
    chain.statuses[new] = "reaped by pid %d" % old
    H.check(chain.alive(old), "pid %d after the upgrade was given up" % old,
            "draining its open connection", proc_state(old))
    ok = H.wait_until(lambda: refuses(port), 5, 0.05)
    H.check(ok, "connects to the listener while pid %d drains" % old,
            "refused within 5 s", "accepted into a backlog (LISTEN sockets: %s)"
            % listening_on(port))
    est.exchange(1 * H.MiB, "the open connection, while draining")
    est.finish(be, "the open connection")
    st = chain.reap(old, 30)
    H.check_eq(status_text(st), "exit 0", "pid %d once its connection ended" % old)
    p.stopped = True
    p.check_log()
    H.check_eq(chain.leftovers(), [], "processes left behind")



def test_workers_change(ctx):
    """[global] workers edited between upgrades (2, then 1, then 3): the
    new process accepts on every handed listening socket (one per old
    worker, SO_REUSEPORT), so no client waits in a backlog nobody reads."""
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    p, chain, aport = start_chain(ctx, bins, {"workers": 2, "upgrade_timeout": "30s"},
                                  {"web": {"backend": "echo"}},
                                  {"echo": {"server": "e " + be.addr}})
    port = p.port("web")
    held = [EchoConn(port, 90 + k) for k in range(4)]
    for k, c in enumerate(held):
        c.exchange(64 * H.KiB, "held connection %d, before" % k)
    H.check_eq(admin_json(aport, "/status")["workers"], 2, "/status workers at start")
    for step, n in enumerate((1, 3), 1):
        what = "upgrade %d (workers = %d)" % (step, n)
        p.glob["workers"] = n
        with open(p.config_path, "w") as f:
            f.write(H.render_config(p.glob, p.listeners, p.backends, p.ports))
        loop = ctx.register(H.EchoClients(port, n=2, sizes=(1000, 32 * H.KiB),
                                          seed=7000 + 100 * step))
        H.check(H.wait_until(lambda: loop.done >= 3, 10), "%s: a client loop" % what,
                "3 round trips before the upgrade", loop.done)
        mark = p.mark()
        new, handed = upgrade(chain, what, aport)
        ready = p.wait_line(r"info: ready: .*\b\d+ workers?\b", 5, since=mark)
        H.check(ready and re.search(r"\b%d workers?\b" % n, ready),
                "%s: the new process's ready line" % what, "%d worker(s)" % n, ready)
        H.check_eq(admin_json(aport, "/status")["workers"], n, "%s: /status workers" % what)
        H.check(handed >= len(held), "%s: connections handed" % what,
                ">= %d" % len(held), handed)
        done0 = loop.done
        H.check(H.wait_until(lambda: loop.done >= done0 + 3, 10), "%s: the client loop"
                % what, "3 more round trips after it", loop.done - done0)
        loop.stop()
        H.check_eq(loop.failures[:3], [], "%s: round trips of the client loop across it"
                   % what)
        t0 = time.monotonic()
        for k in range(200):
            served(port, 10000 * step + k, 200, what="%s: short client %d of 200 in a row"
                   % (what, k + 1), deadline=5)
        H.log("%s: pid %d; %d loop round trips unharmed; 200 short clients in a row "
              "served in %.1f s" % (what, new, loop.done, time.monotonic() - t0))
        for k, c in enumerate(held):
            c.exchange(64 * H.KiB, "held connection %d, after %s" % (k, what))
    for k, c in enumerate(held):
        c.finish(be, "held connection %d" % k)
    end_chain(chain, fds=False)


def test_waiting_client(ctx):
    """At max_connections, a client spliced accepted and holds waiting for
    a slot is handed over with the connections: after the upgrade, the
    connection holding the slot ends, and the waiting client is served by
    the new process, byte-exact (it is neither reset nor left behind)."""
    if ctx.mode != "auto":
        raise H.Skip("about the acceptor, not the relay: runs with splice=auto only")
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    p, chain, aport = start_chain(ctx, bins, {"max_connections": "1"},
                                  {"web": {"backend": "echo"}},
                                  {"echo": {"server": "e " + be.addr}})
    port = p.port("web")
    est = EchoConn(port, 81)
    est.exchange(64 * H.KiB, "the connection holding the one slot")
    before = H.proc_fd_count(chain.pid)
    waiting = EchoConn(port, 82)
    H.check(H.wait_until(lambda: H.proc_fd_count(chain.pid) == before + 1, 10, 0.01),
            "a second client at max_connections 1", "accepted by pid %d and held "
            "waiting (one fd more than %d)" % (chain.pid, before),
            H.proc_fd_count(chain.pid))
    data = waiting.rnd.randbytes(32 * H.KiB)
    waiting.send(data)
    _, handed = upgrade(chain, "the upgrade with a client waiting", aport)
    H.check(handed >= 2, "connections handed over", ">= 2 (one relaying, one "
            "waiting for a slot)", handed)
    est.exchange(64 * H.KiB, "the connection holding the slot, after")
    est.finish(be, "the connection holding the slot")
    back = waiting.recv_exact(len(data), "the waiting client, once the slot freed")
    H.check(back == data, "the waiting client's echo", "the bytes it sent", "other bytes")
    waiting.exchange(256 * H.KiB, "the waiting client, served")
    waiting.finish(be, "the waiting client")
    end_chain(chain)


def test_stop_at_commit(ctx):
    """The new process stops with COMMIT read and COMMITTED not sent: at
    upgrade_timeout the old one kills it, finds no COMMITTED, and resumes
    every connection as it was (byte-exact); a later upgrade succeeds."""
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    p, chain, aport = start_chain(ctx, bins, {"upgrade_timeout": "3s"},
                                  {"web": {"backend": "echo"}},
                                  {"echo": {"server": "e " + be.addr}},
                                  allow=(r"^upgrade failed: ",))
    port = p.port("web")
    est = EchoConn(port, 91)
    est.exchange(256 * H.KiB, "an open connection, before")
    bins.fault("stop:commit")
    try:
        new, mark = sigusr2(chain, "SIGUSR2 (the new process stops at the commit)")
        H.check(H.wait_until(lambda: proc_state(new) == "T", 30, 0.01),
                "the new process with SPLICED_UPGRADE_FAULT=stop:commit",
                "stopped (state T) within 30 s", proc_state(new))
    finally:
        bins.restore()
    await_failure(chain, new, mark, r"pid %d did not answer within upgrade_timeout "
                  r"at the commit" % new, "the upgrade stopped at the commit", 20)
    est.exchange(1 * H.MiB, "the open connection, resumed by the old process")
    served(port, 92, what="a new client after the failed commit")
    upgrade(chain, "a good upgrade after it", aport)
    est.exchange(256 * H.KiB, "the open connection, in the new process")
    est.finish(be, "the open connection")
    end_chain(chain)


def server_states(aport):
    """{server name: (health, admin, weight)} of backend app, from /status."""
    for b in admin_json(aport, "/status").get("backends", []):
        if b.get("name") == "app":
            return {v["name"]: (v["health"], v["admin"], v["weight"])
                    for v in b.get("servers", [])}
    return {}


def test_server_states(ctx):
    """The servers' states go along: a server the checks found down is down
    in the new process from its first answer (no traffic tried on it), and
    one drained with a new weight through the admin endpoint stays so."""
    if ctx.mode != "auto":
        raise H.Skip("no byte is relayed here: runs with splice=auto only")
    bins = Bins(ctx)
    be = ctx.backend(H.echo(), name="echo")
    dead = H.free_port()
    p, chain, aport = start_chain(
        ctx, bins, {}, {"web": {"backend": "app"}},
        {"app": {"server": ["a " + be.addr, "b %s:%d" % (H.LOCAL, dead),
                            "c " + be.addr],
                 "health_check": "tcp", "health_interval": "200ms",
                 "health_timeout": "200ms", "fall": "1", "rise": "50"}},
        allow=(r"server app/b .* is down", r"health check"))
    H.check(H.wait_until(lambda: server_states(aport).get("b", ("",))[0] == "down",
                         10, 0.05), "server app/b (nothing listens on its port)",
            "down by its health checks within 10 s", server_states(aport))
    r = H.subprocess.run([bins.real, "ctl", "--admin", "%s:%d" % (H.LOCAL, aport),
                          "server", "app/a", "drain", "--weight", "7"],
                         capture_output=True, text=True, timeout=20)
    H.check_eq(r.returncode, 0, "spliced ctl server app/a drain --weight 7: exit "
               "status (%s)" % r.stderr.strip())
    before = server_states(aport)
    H.check_eq((before["a"][1], before["a"][2]), ("drain", 7), "app/a before")
    new, _ = upgrade(chain, "an upgrade with a server down and one drained", aport)
    after = server_states(aport)
    H.check_eq(status_pid(aport), new, "GET /status pid")
    H.check_eq(after["b"][0], "down", "app/b in the new process's first /status "
               "(rise 50 x 200 ms would take 10 s to bring it up)")
    H.check_eq((after["a"][1], after["a"][2]), ("drain", 7), "app/a in the new process")
    H.check_eq(after["c"][:2], ("up", "ready"), "app/c in the new process")
    for i in range(10):
        served(p.port("web"), 100 + i, what="client %d (to app/c: a drained, b down)" % i)
    end_chain(chain)


if __name__ == "__main__":
    H.main([test_under_upgrades, test_handshake_waits, test_handshake_stuck,
            test_socket_activated, test_admin_unix,
            test_reload_after, test_sigterm_frozen,
            test_workers_change, test_waiting_client, test_stop_at_commit,
            test_server_states],
           deadline=280, doc=__doc__)
