"""Section upgrade: how long a binary upgrade (SIGUSR2) takes, and the
longest pause a connection's bytes see across it (issue 16).

spliced only (never, always, auto; without --proxies: spliced-auto, the
shipped default). The backend is build/spliced-demo as an echo server on a
free 127.0.0.1 port. Per measurement, through a fresh spliced with an admin
endpoint (127.0.0.1, a free port), one Python selector loop (this module:
no thread, so nothing but the loop itself delays a timestamp) does:

  1. probes: 8 ping-pong connections, each sending a 32-byte message
     (connection and sequence number) and waiting for its echo, a new one
     1 ms after the last was sent (or at once when the echo came later);
     2 bulk connections, each streaming a pseudo-random pattern, 128 KiB
     every 8 ms (about 16 MB/s; at most 1 MiB unanswered), and reading the
     echo;
  2. N held connections, at most 200 connecting at once: each sends
     `I<index>\\n` and waits for exactly that echo (so it is connected
     through to the backend), then stays silent;
  3. baseline: 0.3 s of warm-up, then 2 s of ping-pong and bulk (smoke:
     0.5 s);
  4. SIGUSR2 to spliced, while the probes go on; the loop GETs /status every
     5 ms (a new connection each, one at a time) until it answers with a
     "pid" other than the old one, reads spliced's log for the upgrade lines,
     and waits until the old process has exited; then 1 s more (smoke 0.3 s);
  5. check: every held connection sends `J<index>\\n` and half-closes, and
     must get exactly that back, then EOF; the probes stop, must get every
     byte they sent back, then EOF after their half-close.

Every byte is checked: a ping's echo is compared with the message, a bulk
connection's with the pattern at its offset, a held connection's with its
two lines. A connection that got a wrong byte, a reset or an early EOF, or
did not finish in time, fails the measurement, as does an upgrade that
failed (`upgrade failed: ...` in the log), a process that died, a handover
that did not end within 45 s, or an old process that exited with a status
other than 0.

Metrics (the table):
  handover ms, pause ms     from the old process's line `upgrade: handed N
                            connections to pid P in X ms (longest pause Y ms)`
  gap ms (upgrade)          the longest time between two echoes on one
                            ping-pong connection, among the echoes from
                            SIGUSR2 to the end of the window (the pause as
                            a client sees it, plus up to one ping interval)
  gap ms (before)           the same over the 2 s baseline before SIGUSR2
  bulk gap ms (upgrade/before)  the longest time between two reads that
                            returned bytes on a bulk connection
  /status ms                SIGUSR2 to the first /status answer with the
                            new pid
  exit ms                   SIGUSR2 to the old process's exit (waitpid)
  handed                    N of the log line (the held connections and the
                            10 probes)
notes() (after the table): where the longest ping gap of the upgrade lies
(ms after SIGUSR2, from .. to) next to the log's handover time and the old
process's exit, so a pause that outlasts the old process's line shows; the
longest ping round trip per window, the open time and M of the new
process's line (`took N listening sockets and M connections`). results.json
has those and the counts of pings and bulk bytes.

N: 1,000 and 10,000, and 20,000 when it fits (--upgrade-connections
overrides). A connection costs spliced two fds (client and backend socket)
in each process, the old and the new (pipes: those of the bulk connections
and the pool, in the spare), so what fits is (hard RLIMIT_NOFILE - 256) / 2
less the probes; ephemeral ports (net.ipv4.ip_local_port_range) bound it
too. A target that does not fit is replaced by the most that does (to the
hundred), once, and the report says what limited it.

The new process is not the bench's child: it is the old one's, and outlives
it. While the upgrade runs the bench is a child subreaper
(prctl(PR_SET_CHILD_SUBREAPER)), so the new process is re-parented to it
when the old exits; the proxy object is then pointed at the new pid
(Adopted), and the runner stops it (SIGTERM) and reads its exit status as
for any proxy.

Opt-in (runner.OPT_IN_SECTIONS): `tools/bench --sections upgrade`; about
5 s per measurement of 10,000 connections.
"""

import ctypes
import errno
import json
import os
import random
import re
import resource
import selectors
import signal
import socket
import subprocess
import time
import urllib.request

from .common import RunError, max_clients, nofile_hard, note
from .idle import EchoBackend
from .sizes import tool_path, tools_missing

TARGETS = [1000, 10000, 20000]
SMOKE_TARGETS = [100]
OPTIONAL_FROM = 20000       # targets from here on run only when they fit (no cap note)
PINGS = 8
BULKS = 2
PROBES = PINGS + BULKS
PING_SIZE = 32
PING_EVERY = 0.001
BULK_BURST = 128 << 10
BULK_EVERY = 0.008
BULK_WINDOW = 1 << 20
CONNECTING_MAX = 200
WARMUP_S = 0.3
BASELINE_S, SMOKE_BASELINE_S = 2.0, 0.5
AFTER_S, SMOKE_AFTER_S = 1.0, 0.3
STATUS_EVERY = 0.005
STATUS_WAIT = 1.0           # a /status request not answered by then is given up
UPGRADE_WAIT = 45.0         # upgrade_timeout is 30 s by default
SPARE_FDS = 256             # spliced's own: listeners, admin, epoll, log, pipes
PATTERN_LEN = (1 << 20) + 7
READ_SIZE = 256 << 10

HANDED = re.compile(r"upgrade: handed (\d+) connections to pid (\d+) in ([\d.]+) ms "
                    r"\(longest pause ([\d.]+) ms\)")
STARTED = re.compile(r"upgrade: started (\S+) as pid (\d+)")
TOOK = re.compile(r"upgrade: took (\d+) listening sockets and (\d+) connections from pid (\d+)")
FAILED = re.compile(r"upgrade failed: (.*)$")
IGNORED = re.compile(r"upgrade: .*ignored")

PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on):
    """Make this process a child subreaper (or stop being one): orphans of
    its descendants are re-parented to it. False where prctl is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Adopted:
    """The part of subprocess.Popen that proxies.Proxy uses, for a process
    that is not our child by birth: the new spliced, re-parented to us
    (subreaper) when the old one exited. Without the re-parenting (reaped
    False), its exit is seen in /proc and its status is unknown (0)."""

    def __init__(self, pid, reaped):
        self.pid, self.reaped, self.returncode = pid, reaped, None
        self.args = [f"pid {pid}"]

    def poll(self):
        if self.returncode is not None:
            return self.returncode
        if self.reaped:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.reaped = False
                return self.poll()
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2] not in "ZX":
                return None
        except OSError:
            pass
        self.returncode = 0
        return 0

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode


def port_range():
    """How many ephemeral ports connect() may use to one destination."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return 28232


def fit():
    """(the most held connections one measurement can have here, why)."""
    hard = nofile_hard()
    by_fds = (hard - SPARE_FDS) // 2 - PROBES
    if by_fds + PROBES + 100 > 10000:
        # Past spliced's default max_connections the proxy is started with
        # maxconn, which proxies.start_proxy() bounds by max_clients().
        by_fds = min(by_fds, max_clients() - PROBES - 100)
    by_ports = port_range() - 1000 - PROBES
    if by_ports < by_fds:
        return by_ports, (f"the ephemeral port range (net.ipv4.ip_local_port_range: "
                          f"{port_range():,} ports to one destination)")
    why = (f"the hard RLIMIT_NOFILE, {hard:,}, which this process cannot raise "
           "(no CAP_SYS_RESOURCE)" if hard < (1 << 20) else
           f"RLIMIT_NOFILE ({hard:,} fds)")
    return by_fds, why + ": spliced holds 2 fds per connection"


def choose_targets(wanted, smoke):
    """[(n, note or None)]: the targets that fit; the first that does not is
    replaced by the most that fits (to the hundred), then the rest dropped.
    Targets from OPTIONAL_FROM on that do not fit are dropped quietly."""
    if smoke:
        return [(n, None) for n in SMOKE_TARGETS]
    most, why = fit()
    out = []
    for n in wanted:
        if n <= most:
            out.append((n, None))
            continue
        if n >= OPTIONAL_FROM and wanted is TARGETS:
            break
        cap = most // 100 * 100
        if cap > (out[-1][0] if out else 0):
            out.append((cap, f"{n:,} held connections do not fit here: {why}; measured "
                             f"with {cap:,} (and the {PROBES} probes)"))
        else:
            out.append((None, f"{n:,} held connections do not fit here: {why}"))
        break
    return [(n, w) for n, w in out if n] or [(None, out[-1][1] if out else None)]


def _parse_counts(text):
    out = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        mult = 1000 if part[-1:] in ("k", "K") else 1
        out.append(int(float(part.rstrip("kK")) * mult))
    if not out or min(out) < 1:
        raise ValueError(text)
    return out


# --------------------------------------------------------------------------
# The client: one selector loop over every connection

def _bulk_start(idx):
    return (idx * 104729) % PATTERN_LEN


def _pattern():
    """The bulk connections' bytes: pseudo-random, a period of PATTERN_LEN
    (not a multiple of any read or write size, so a byte moved by a whole
    burst shows), with the wrap-around appended so any read compares with
    one slice. spliced-demo answers HTTP to a connection starting `GET ` or
    `HEAD`: a start is made to read `B` instead."""
    pat = bytearray(random.Random(16).randbytes(PATTERN_LEN))
    for i in range(BULKS):
        pat[_bulk_start(i)] = ord("B")
    return bytes(pat + pat[:READ_SIZE + BULK_BURST])


class ConnError(Exception):
    def __init__(self, kind, msg):
        super().__init__(msg)
        self.kind = kind


class Conn:
    """One client connection. kind: "held", "ping", "bulk". state:
    connecting, opening (held: waiting for its first echo), held_idle (held:
    echoed, silent, out of the selector), open, closing (half-closed:
    reading to EOF), done, failed."""

    def __init__(self, load, kind, idx):
        self.load, self.kind, self.idx = load, kind, idx
        self.state = "connecting"
        self.out = b""              # bytes to send not yet taken by the kernel
        self.expect = b""           # held/ping: the echo still due
        self.events = 0
        # ping
        self.seq = 0
        self.sent_at = self.last_reply = None
        self.due = 0.0
        # bulk
        self.start = _bulk_start(idx)
        self.sent = self.recvd = 0
        self.t_start = None
        self.last_read = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = self.sock.connect_ex(("127.0.0.1", load.port))
        if err not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise ConnError("connect", f"connect: {os.strerror(err)}")
        self._interest(selectors.EVENT_WRITE)

    # -- selector bookkeeping
    def _interest(self, events):
        if events == self.events:
            return
        sel = self.load.sel
        if not events:
            sel.unregister(self.sock)
        elif not self.events:
            sel.register(self.sock, events, self)
        else:
            sel.modify(self.sock, events, self)
        self.events = events

    def _update(self):
        ev = selectors.EVENT_READ if self.state in ("opening", "open", "closing") else 0
        if self.out or self.state == "connecting":
            ev |= selectors.EVENT_WRITE
        self._interest(ev)

    def close(self):
        if self.events:
            self._interest(0)
        self.sock.close()

    def fail(self, kind, msg):
        was, self.state = self.state, "failed"
        self.load.error(self, was, kind, msg)
        self.close()

    # -- I/O
    def _flush(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                break
            except OSError as e:
                raise ConnError("reset" if e.errno in (errno.ECONNRESET, errno.EPIPE)
                                else "send", f"send: {e.strerror}")
            self.out = self.out[n:]
        self._update()

    def on_event(self, mask, now):
        try:
            if self.state == "connecting":
                if mask & selectors.EVENT_WRITE:
                    err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise ConnError("refused" if err == errno.ECONNREFUSED else "connect",
                                        f"connect: {os.strerror(err)}")
                    self.load.connected(self, now)
                return
            if mask & selectors.EVENT_WRITE and self.out:
                self._flush()
            if mask & selectors.EVENT_READ:
                self._read(now)
        except ConnError as e:
            self.fail(e.kind, str(e))

    def _read(self, now):
        for _ in range(8):
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except ConnectionResetError:
                raise ConnError("reset", "reset by the proxy")
            except OSError as e:
                raise ConnError("recv", f"recv: {e.strerror}")
            if not data:
                self._eof()
                return
            if self.kind == "bulk":
                self._bulk_bytes(data, now)
            else:
                self._echo_bytes(data, now)
            if self.state not in ("open", "opening", "closing"):
                return
            if len(data) < READ_SIZE:
                return

    def _eof(self):
        if self.state != "closing":
            raise ConnError("eof", f"EOF from the proxy while {self.state}")
        if self.kind == "bulk":
            if self.recvd != self.sent:
                raise ConnError("eof", f"EOF after {self.recvd} of {self.sent} bytes")
        elif self.expect:
            raise ConnError("eof", f"EOF with {len(self.expect)} echo bytes due")
        self.state = "done"
        self.close()
        self.load.finished(self)

    def _echo_bytes(self, data, now):
        if not self.expect:
            raise ConnError("bytes", f"{len(data)} bytes nobody sent")
        n = len(data)
        if data != self.expect[:n]:
            raise ConnError("bytes", f"wrong bytes: {bytes(data[:16])!r} for "
                                     f"{bytes(self.expect[:16])!r}")
        self.expect = self.expect[n:]
        if self.expect:
            return
        if self.kind == "ping":
            self.load.ping_reply(self, now)
        elif self.state == "opening":
            self.state = "held_idle"
            self._update()
            self.load.opened(self)

    def _bulk_bytes(self, data, now):
        n = len(data)
        if self.recvd + n > self.sent:
            raise ConnError("bytes", f"{self.recvd + n - self.sent} bytes more than sent")
        pat = self.load.pattern
        at = (self.start + self.recvd) % PATTERN_LEN
        if data != pat[at:at + n]:
            raise ConnError("bytes", f"wrong bytes at offset {self.recvd}")
        self.recvd += n
        self.load.bulk_read(self, now)

    # -- what each kind sends
    def ping(self, now):
        self.seq += 1
        msg = f"P{self.idx:02d} {self.seq:010d}".ljust(PING_SIZE - 1).encode() + b"\n"
        self.expect = msg
        self.sent_at = now
        self.due = now + PING_EVERY
        self.out += msg
        self._flush()

    def bulk_top_up(self, now):
        """Send what the pacing allows (BULK_BURST per BULK_EVERY since the
        start) and the window leaves room for."""
        allowed = int((now - self.t_start) / BULK_EVERY + 1) * BULK_BURST - self.sent
        room = BULK_WINDOW - (self.sent - self.recvd) - len(self.out)
        k = min(allowed, room, BULK_BURST)
        if k <= 0 or self.out:
            return
        at = (self.start + self.sent) % PATTERN_LEN
        self.out = self.load.pattern[at:at + k]
        self.sent += k
        self._flush()

    def half_close(self, last=b""):
        self.state = "closing"
        if last:
            self.expect += last
            self.out += last
            self._flush()
        if self.out:
            self.load.shut_later.append(self)
        else:
            self._shutdown()
        self._update()

    def _shutdown(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise ConnError("send", f"shutdown: {e.strerror}")


class Load:
    """The connections and the loop. Results: errors, ping and bulk gaps
    with the time each ended (for windows), open time."""

    def __init__(self, port, n, deadline_s):
        self.port, self.n = port, n
        self.sel = selectors.DefaultSelector()
        self.pattern = _pattern()
        self.conns = []
        self.pings, self.bulks, self.held = [], [], []
        self.errors = {}            # kind -> count
        self.examples = []
        self.shut_later = []
        self.connecting = 0
        self.next_held = 0
        self.nopened = 0
        self.nfinished = 0
        self.probing = False        # pings and bulk running
        self.rec_from = None        # gaps count from here
        self.ping_gaps = []         # (t_end, gap, rtt)
        self.bulk_gaps = []         # (t_end, gap)
        self.npings = 0
        self.tickers = []           # callables(now) -> next due time or None
        self.deadline_s = deadline_s

    # -- events from the connections
    def error(self, conn, was, kind, msg):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if conn.kind == "held" and was in ("connecting", "opening"):
            self.connecting -= 1
        if len(self.examples) < 5:
            self.examples.append(f"{conn.kind} connection {conn.idx} ({was}): {msg}")

    def connected(self, conn, now):
        if conn.kind == "held":
            conn.state = "opening"
            conn.expect = b"I%07d\n" % conn.idx
            conn.out = conn.expect
            conn._flush()
        else:
            conn.state = "open"
            conn._update()
            self.opened(conn)

    def opened(self, conn):
        self.nopened += 1
        if conn.kind == "held":
            self.connecting -= 1

    def finished(self, conn):
        self.nfinished += 1

    def ping_reply(self, conn, now):
        self.npings += 1
        if conn.last_reply is not None and self.rec_from is not None and \
                conn.last_reply >= self.rec_from:
            self.ping_gaps.append((now, now - conn.last_reply, now - conn.sent_at))
        conn.last_reply = now
        if self.probing:
            if now >= conn.due:
                conn.ping(now)
        # else: the check phase; nothing more to send

    def bulk_read(self, conn, now):
        if conn.last_read is not None and self.rec_from is not None and \
                conn.last_read >= self.rec_from:
            self.bulk_gaps.append((now, now - conn.last_read))
        conn.last_read = now
        if self.probing:
            conn.bulk_top_up(now)

    # -- the loop
    def _new(self, kind, idx):
        try:
            c = Conn(self, kind, idx)
        except ConnError as e:
            self.errors[e.kind] = self.errors.get(e.kind, 0) + 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind} connection {idx}: {e}")
            return None
        except OSError as e:
            self.errors["socket"] = self.errors.get("socket", 0) + 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind} connection {idx}: socket: {e.strerror}")
            return None
        self.conns.append(c)
        return c

    def failed(self):
        return sum(self.errors.values())

    def step(self, timeout):
        now = time.monotonic()
        for conn in list(self.shut_later):
            if not conn.out and conn.state == "closing":
                self.shut_later.remove(conn)
                try:
                    conn._shutdown()
                except ConnError as e:
                    conn.fail(e.kind, str(e))
            elif conn.state in ("failed", "done"):
                self.shut_later.remove(conn)
        due = now + timeout
        if self.probing:
            for c in self.pings + self.bulks:
                if c.state != "open":
                    continue
                try:
                    if c.kind == "bulk":
                        c.bulk_top_up(now)
                        due = min(due, now + BULK_EVERY / 2)
                    elif not c.expect:
                        if now >= c.due:
                            c.ping(now)
                        else:
                            due = min(due, c.due)
                except ConnError as e:
                    c.fail(e.kind, str(e))
        for t in self.tickers:
            d = t(now)
            if d is not None:
                due = min(due, d)
        for key, mask in self.sel.select(max(0.0, due - time.monotonic())):
            key.data.on_event(mask, time.monotonic())

    def run_until(self, done, seconds, what):
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline:
                raise RunError(f"{what}: not done within {seconds:.0f} s")
            self.step(min(0.05, max(0.0, deadline - time.monotonic())))

    def open_all(self):
        """The probes, then the N held connections, CONNECTING_MAX at once."""
        t0 = time.monotonic()
        for i in range(PINGS):
            c = self._new("ping", i)
            if c:
                self.pings.append(c)
        for i in range(BULKS):
            c = self._new("bulk", i)
            if c:
                self.bulks.append(c)
        self.run_until(lambda: all(c.state != "connecting" for c in self.pings + self.bulks),
                       10, "opening the probe connections")
        self._check("opening the probe connections")

        def more(now):
            while self.next_held < self.n and self.connecting < CONNECTING_MAX and \
                    not self.failed():
                c = self._new("held", self.next_held)
                self.next_held += 1
                if c:
                    self.held.append(c)
                    self.connecting += 1
            return None
        self.tickers.append(more)
        try:
            self.run_until(lambda: self.failed() or
                           (self.next_held >= self.n and self.connecting == 0),
                           30 + self.n / 200, f"opening {self.n} connections")
        finally:
            self.tickers.remove(more)
        self._check(f"opening {self.n} connections")
        return time.monotonic() - t0

    def start_probes(self):
        now = time.monotonic()
        self.probing = True
        for c in self.bulks:
            c.t_start = now
        self.rec_from = now + WARMUP_S

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(end - time.monotonic())
            self._check("the probes")

    def check_all(self):
        """Stop the probes; every held connection sends its second line and
        half-closes; everything must come back, then EOF."""
        self.probing = False
        for c in self.held:
            if c.state == "held_idle":
                c.state = "open"
                try:
                    c.half_close(b"J%07d\n" % c.idx)
                except ConnError as e:
                    c.fail(e.kind, str(e))
        # The probes: once nothing is due, half-close.
        pending = [c for c in self.pings + self.bulks if c.state == "open"]

        def drained(c):
            return (c.kind == "ping" and not c.expect) or \
                (c.kind == "bulk" and c.recvd == c.sent and not c.out)
        deadline = time.monotonic() + self.deadline_s
        while pending:
            for c in list(pending):
                if c.state != "open":
                    pending.remove(c)
                elif drained(c):
                    pending.remove(c)
                    try:
                        c.half_close()
                    except ConnError as e:
                        c.fail(e.kind, str(e))
            if time.monotonic() >= deadline:
                break
            self.step(0.02)
        want = [c for c in self.conns if c.state not in ("failed",)]
        self.run_until(lambda: all(c.state in ("done", "failed") for c in want),
                       max(1.0, deadline - time.monotonic()), "the final check of every "
                       "connection")
        self._check("the final check")

    def _check(self, what):
        if self.failed():
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
            raise RunError(f"{what}: {self.failed()} connection(s) failed ({kinds}); "
                           + "; ".join(self.examples))

    def close(self):
        for c in self.conns:
            if c.state not in ("done", "failed"):
                try:
                    c.close()
                except OSError:
                    pass
        self.sel.close()

    # -- figures
    def gap_max(self, which, lo, hi):
        src = self.ping_gaps if which == "ping" else self.bulk_gaps
        vals = [g[1] for g in src if lo < g[0] <= hi]
        return max(vals) if vals else None

    def gap_span(self, which, lo, hi):
        """(start, end) of the longest gap of gap_max(), or None."""
        src = self.ping_gaps if which == "ping" else self.bulk_gaps
        best = max((g for g in src if lo < g[0] <= hi), key=lambda g: g[1], default=None)
        return None if best is None else (best[0] - best[1], best[0])

    def rtt_max(self, lo, hi):
        vals = [g[2] for g in self.ping_gaps if lo < g[0] <= hi]
        return max(vals) if vals else None


class StatusPoller:
    """GET /status on the admin port, one request at a time, one every
    STATUS_EVERY (one unanswered for STATUS_WAIT is given up); .answers:
    [(t, pid)] (pid -1: an answer without one), .refused: the requests that
    failed. A ticker of Load."""

    def __init__(self, load, port):
        self.load, self.port = load, port
        self.sock = None
        self.buf = b""
        self.next = 0.0
        self.answers = []
        self.refused = 0
        self.began = 0.0
        self.on = True

    def __call__(self, now):
        if not self.on:
            return None
        if self.sock is not None and now - self.began > STATUS_WAIT:
            self._done(None)        # nobody answers it: ask again
        if self.sock is None and now >= self.next:
            self._start()
        return self.began + STATUS_WAIT if self.sock is not None else self.next

    def _start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._done(None)
            return
        self.sock, self.buf, self.stage = s, b"", "connecting"
        self.began = time.monotonic()
        self.load.sel.register(s, selectors.EVENT_WRITE, self)

    def _done(self, pid):
        now = time.monotonic()
        if self.sock is not None:
            self.load.sel.unregister(self.sock)
            self.sock.close()
            self.sock = None
        if pid is None:
            self.refused += 1
        else:
            self.answers.append((now, pid))
        self.next = now + STATUS_EVERY

    def on_event(self, mask, now):
        try:
            if self.stage == "connecting":
                if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._done(None)
                    return
                self.sock.send(b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                self.stage = "reading"
                self.load.sel.modify(self.sock, selectors.EVENT_READ, self)
                return
            data = self.sock.recv(65536)
            if data:
                self.buf += data
                return
        except BlockingIOError:
            return
        except OSError:
            self._done(None)
            return
        head, _, body = self.buf.partition(b"\r\n\r\n")
        pid = None
        if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] + b" ":
            try:
                doc = json.loads(body)
                pid = doc.get("pid")
                pid = int(pid) if pid is not None else -1   # answered, without a pid
            except (ValueError, TypeError, AttributeError):
                pid = None
        self._done(pid)

    def stop(self):
        self.on = False
        if self.sock is not None:
            self.load.sel.unregister(self.sock)
            self.sock.close()
            self.sock = None


class LogTail:
    """spliced's log, read as it grows: the upgrade lines. A ticker too."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            self.off = f.tell()
        self.rest = b""
        self.lines = []
        self.next = 0.0

    def __call__(self, now):
        if now >= self.next:
            self.poll()
            self.next = now + 0.02
        return self.next

    def poll(self):
        with open(self.path, "rb") as f:
            f.seek(self.off)
            data = f.read()
        self.off += len(data)
        text = self.rest + data
        *whole, self.rest = text.split(b"\n")
        self.lines += [ln.decode(errors="replace") for ln in whole if b"upgrade" in ln]

    def find(self, rx):
        for ln in self.lines:
            m = rx.search(ln)
            if m:
                return m
        return None


# --------------------------------------------------------------------------

def _raise_own_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if need > want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return
        except (ValueError, OSError):
            pass
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Section:
    name = "upgrade"
    title = "Binary upgrade (SIGUSR2): handover time and the longest pause a connection sees"
    only_variants = ["spliced-never", "spliced-always", "spliced-auto"]
    default_variants = ["spliced-auto"]
    columns = [
        ("handover_ms", "handover ms (log)", 1, "lower"),
        ("log_pause_ms", "longest pause ms (log)", 1, "lower"),
        ("gap_up_ms", "gap ms, upgrade", 1, "lower"),
        ("gap_base_ms", "gap ms, before", 1, "lower"),
        ("bulk_gap_up_ms", "bulk gap ms, upgrade", 1, "lower"),
        ("bulk_gap_base_ms", "bulk gap ms, before", 1, "lower"),
        ("status_ms", "/status new pid ms", 1, "lower"),
        ("exit_ms", "old exit ms", 1, "lower"),
        ("handed", "handed", 0, None),
    ]
    ratio_keys = []

    @staticmethod
    def available():
        return True, ""

    @staticmethod
    def add_arguments(p):
        p.add_argument("--upgrade-connections", type=_parse_counts, metavar="N[,N...]",
                       help="upgrade section: the held connections per case (default "
                       + ",".join(str(t) for t in TARGETS) + ", as far as the fd limit "
                       "allows; 20000 only when it fits)")

    def __init__(self, ctx):
        self.ctx = ctx
        a = ctx.args
        self.smoke = bool(getattr(a, "smoke", False))
        wanted = getattr(a, "upgrade_connections", None) or TARGETS
        self.targets = choose_targets(wanted, self.smoke)
        self.fit_notes = [w for _, w in self.targets if w]
        self.sizes = [n for n, _ in self.targets if n]
        self.baseline_s = SMOKE_BASELINE_S if self.smoke else BASELINE_S
        self.after_s = SMOKE_AFTER_S if self.smoke else AFTER_S
        self.backend = None
        self.admin_port = None
        self.seen = []

    @staticmethod
    def case_name(n):
        return f"{n:,} held"

    def n_of(self, case):
        return int(case.split()[0].replace(",", ""))

    def describe(self):
        text = [
            "spliced alone (`spliced-auto` unless `--proxies` names others), an echo backend "
            "(`spliced-demo`). Per case, through a fresh spliced: N held connections (each "
            "sent one line and got it back, then silent), 8 ping-pong connections (a "
            f"{PING_SIZE}-byte message, its echo, the next {PING_EVERY * 1000:g} ms after the "
            f"last was sent) and 2 bulk connections (a pattern, {BULK_BURST >> 10} KiB every "
            f"{BULK_EVERY * 1000:g} ms each way, at most "
            f"{BULK_WINDOW >> 20} MiB unanswered). After {self.baseline_s:g} s of baseline, "
            "`kill -USR2`; the client (one Python selector loop) keeps pinging and streaming, "
            "GETs /status every 5 ms until it names a new pid, waits for the old process to "
            f"exit, goes on {self.after_s:g} s more, then checks every connection: each held "
            "one sends a second line and half-closes and must get exactly its two lines and "
            "EOF; the probes must get back every byte they sent (pattern compared), then EOF.",
            "handover ms and longest pause ms: the old process's own line (`upgrade: handed N "
            "connections to pid P in X ms (longest pause Y ms)`). gap ms: the longest time "
            "between two echoes on one ping-pong connection, from SIGUSR2 to the end "
            "(upgrade) and over the baseline (before): a client's view of the pause, plus up "
            f"to one ping interval ({PING_EVERY * 1000:g} ms). bulk gap ms: the same between "
            "two reads that returned bytes on a bulk connection. /status new pid ms: SIGUSR2 "
            "to the first /status answer with the new pid. old exit ms: SIGUSR2 to the old "
            "process's exit. handed: N of the log line (held connections plus the 10 probes). "
            "`--seconds` does not apply.",
        ]
        text += self.fit_notes
        return text

    def cases(self):
        return [self.case_name(n) for n in self.sizes]

    def start_backends(self):
        ok, why = tools_missing(self.ctx, ["spliced-demo"])
        if not ok:
            raise RunError(why)
        if not self.sizes:
            raise RunError(self.fit_notes[-1] if self.fit_notes else "no case fits")
        for w in self.fit_notes:
            note("upgrade: " + w)
        most = max(self.sizes) + PROBES
        _raise_own_nofile(most + 256)
        self.backend = EchoBackend(tool_path(self.ctx, "spliced-demo"), self.ctx.workdir, most)
        self.backend.start()
        return [("127.0.0.1", self.backend.port)]

    def proxy_opts(self, case):
        from .common import free_port
        self.admin_port = free_port()
        opts = {"admin_port": self.admin_port}
        total = self.n_of(case) + PROBES + 100
        if total > 10000:
            opts["maxconn"] = total
        return opts

    def measure(self, proxy, case):
        n = self.n_of(case)
        if not self.backend.alive():
            raise RunError("the echo backend (spliced-demo) has exited", self.backend.log)
        pid = self._status_pid(proxy)
        if pid != proxy.pid:
            raise RunError(f"/status names pid {pid}, not spliced's {proxy.pid}", proxy.log)
        load = Load(proxy.port, n, 30 + n / 1000)
        try:
            open_s = load.open_all()
            load.start_probes()
            load.run_for(WARMUP_S + self.baseline_s)
            out = self._upgrade(proxy, load)
            load.check_all()
        except RunError as e:
            if e.logpath is None:
                e.logpath = proxy.log
            raise
        finally:
            load.close()
        out["open_s"] = open_s
        out["connections"] = n
        out["pings"] = load.npings
        out["bulk_bytes"] = sum(c.recvd for c in load.bulks)
        self.seen.append((case, proxy.variant, out))
        return out

    def _upgrade(self, proxy, load):
        old, old_proc = proxy.pid, proxy.proc
        tail = LogTail(proxy.log)
        status = StatusPoller(load, self.admin_port)
        load.tickers += [tail, status]
        reaper = _subreaper(True)
        warnings = []
        t_exit = t_status = new_pid = None
        try:
            t0 = time.monotonic()
            os.kill(old, signal.SIGUSR2)
            deadline = t0 + UPGRADE_WAIT
            while True:
                load.step(0.01)
                now = time.monotonic()
                if t_exit is None and old_proc.poll() is not None:
                    t_exit = now
                    tail.poll()
                if t_status is None:
                    for t, pid in status.answers:
                        if pid not in (old, -1):
                            t_status, new_pid = t, pid
                            status.stop()
                            break
                if t_exit is not None and proxy.pid == old:
                    # The new process is ours now (subreaper): from here on
                    # the runner stops it, whatever happens next.
                    pid = new_pid or self._new_pid(tail)
                    if pid:
                        self._adopt(proxy, pid, reaper)
                if load.failed() and t_exit is None:
                    # A process that died resets its connections a moment
                    # before waitpid sees it: the death is the news.
                    try:
                        old_proc.wait(1.0)
                        t_exit = time.monotonic()
                    except subprocess.TimeoutExpired:
                        pass
                if t_exit is not None and old_proc.returncode != 0:
                    rc = old_proc.returncode
                    if rc < 0:
                        why = f"was killed by signal {-rc} ({signal.Signals(-rc).name})"
                        if -rc == signal.SIGUSR2:
                            why += ": this spliced has no binary upgrade (issue 16)"
                    else:
                        why = f"exited with status {rc}"
                    lost = f" ({load.failed()} connection(s) failed)" if load.failed() else ""
                    raise RunError(f"the old process {why}{lost}")
                load._check("during the upgrade")
                m = tail.find(FAILED)
                if m:
                    raise RunError(f"spliced logged: upgrade failed: {m.group(1)}")
                m = tail.find(IGNORED)
                if m:
                    raise RunError(f"spliced ignored the SIGUSR2: {m.group(0)}")
                if t_exit is not None and t_status is not None:
                    break
                if now >= deadline:
                    raise RunError(
                        f"no handover within {UPGRADE_WAIT:.0f} s of SIGUSR2 (the old "
                        f"process {'exited' if t_exit else 'still runs'}; /status "
                        + (f"answered by pid {new_pid})" if t_status else
                           "never named another pid)"))
            if proxy.pid == old:
                self._adopt(proxy, new_pid, reaper)
            t_end = time.monotonic() + self.after_s
            load.run_for(self.after_s)
            tail.poll()
        finally:
            status.stop()
            for t in (tail, status):
                if t in load.tickers:
                    load.tickers.remove(t)
            _subreaper(False)
        handed = tail.find(HANDED)
        took = tail.find(TOOK)
        if handed is None:
            raise RunError("the old process exited without its line `upgrade: handed N "
                           "connections ...`")
        if int(handed.group(2)) != new_pid:
            warnings.append(f"the log says pid {handed.group(2)}, /status pid {new_pid}")
        count = int(handed.group(1))
        want = load.n + PROBES
        if count != want:
            warnings.append(f"handed {count} connections, the client held {want}")
        if took is None:
            warnings.append("no line `upgrade: took N listening sockets and M connections` "
                            "from the new process")
        elif int(took.group(2)) != count:
            warnings.append(f"the new process took {took.group(2)} connections, the old "
                            f"handed {count}")
        if not reaper:
            warnings.append("prctl(PR_SET_CHILD_SUBREAPER) failed: the new process's exit "
                            "status is not known")
        ms = 1000.0

        def g(v):
            return None if v is None else v * ms
        base_lo, base_hi = load.rec_from, t0
        span = load.gap_span("ping", t0, t_end)
        return {
            "gap_from_ms": None if span is None else (span[0] - t0) * ms,
            "gap_to_ms": None if span is None else (span[1] - t0) * ms,
            "handover_ms": float(handed.group(3)),
            "log_pause_ms": float(handed.group(4)),
            "gap_up_ms": g(load.gap_max("ping", t0, t_end)),
            "gap_base_ms": g(load.gap_max("ping", base_lo, base_hi)),
            "bulk_gap_up_ms": g(load.gap_max("bulk", t0, t_end)),
            "bulk_gap_base_ms": g(load.gap_max("bulk", base_lo, base_hi)),
            "rtt_up_ms": g(load.rtt_max(t0, t_end)),
            "rtt_base_ms": g(load.rtt_max(base_lo, base_hi)),
            "status_ms": (t_status - t0) * ms,
            "exit_ms": (t_exit - t0) * ms,
            "handed": count,
            "new_took": int(took.group(2)) if took else None,
            "old_pid": old,
            "new_pid": new_pid,
            "status_polls": len(status.answers) + status.refused,
            "log_lines": [ln.split(" ", 1)[-1] for ln in tail.lines],
            "warnings": warnings,
        }

    def _status_pid(self, proxy):
        """The "pid" of GET /status; RunError when there is none (a spliced
        from before the binary upgrade: it would die of the SIGUSR2)."""
        url = f"http://127.0.0.1:{self.admin_port}/status"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                doc = json.loads(r.read())
        except (OSError, ValueError) as e:
            raise RunError(f"GET {url}: {e}", proxy.log)
        if not isinstance(doc, dict) or "pid" not in doc:
            raise RunError("GET /status has no \"pid\": this spliced has no binary upgrade "
                           "(issue 16); no SIGUSR2 sent", proxy.log)
        return doc["pid"]

    @staticmethod
    def _new_pid(tail):
        for rx, grp in ((HANDED, 2), (STARTED, 2)):
            m = tail.find(rx)
            if m:
                return int(m.group(grp))
        return None

    @staticmethod
    def _adopt(proxy, pid, reaped):
        """From now on the proxy is the new process (see Adopted)."""
        proxy.proc = Adopted(pid, reaped)
        proxy.pid = pid

    def stop_backends(self):
        if self.backend:
            self.backend.stop()

    def charts(self):
        return [
            {"file": "upgrade-handover.png",
             "title": "Binary upgrade: handover time (spliced's log line)",
             "kind": "bars", "metric": "handover_ms", "ylabel": "ms (lower is better)"},
            {"file": "upgrade-gap.png",
             "title": "Binary upgrade: longest gap between echoes on a ping-pong connection",
             "kind": "bars", "metric": "gap_up_ms", "ylabel": "ms (lower is better)"},
        ]

    def notes(self):
        if not self.seen:
            return []
        import statistics
        rows = []
        for case in self.cases():
            for v in self.only_variants:
                runs = [o for c, vv, o in self.seen if c == case and vv == v]
                if not runs:
                    continue
                def med(k):
                    vals = [r[k] for r in runs if r.get(k) is not None]
                    return f"{statistics.median(vals):.1f}" if vals else "-"
                # The span of one repetition (the one with the median gap):
                # medians of starts and ends apart need not make a gap.
                mid = sorted((r for r in runs if r.get("gap_up_ms") is not None),
                             key=lambda r: r["gap_up_ms"])
                mid = mid[(len(mid) - 1) // 2] if mid else {}
                span = (f"{mid['gap_from_ms']:.1f} .. {mid['gap_to_ms']:.1f}"
                        if mid.get("gap_from_ms") is not None else "-")
                rows.append(f"| {case} | {v} | {span} | "
                            f"{med('handover_ms')} | {med('exit_ms')} | "
                            f"{med('rtt_base_ms')} | {med('rtt_up_ms')} | "
                            f"{med('open_s')} | {runs[-1].get('new_took', '-')} |")
        return ["Where the longest ping gap of the upgrade lies (ms after SIGUSR2: from the "
                "echo before it to the echo that ended it; of the repetition with the median "
                "gap), next to the log's handover time "
                "and the old process's exit; the longest ping round trip before and during the "
                "upgrade (a ping sent just before the connections froze waits for the thaw), "
                "the time the client took to open the held connections, and M of the new "
                "process's line `upgrade: took N listening sockets and M connections` (medians; "
                "new took: the last repetition):",
                "| case | proxy | longest gap, ms after SIGUSR2 | handover ms (log) | "
                "old exit ms | RTT ms, before | RTT ms, upgrade | open s | new took |\n"
                "|---|---|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows)]
