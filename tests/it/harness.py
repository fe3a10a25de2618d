"""Shared pieces of the spliced integration tests (Python 3, stdlib only).

Every test script drives the real binary over 127.0.0.1 and nothing else:

    python3 tests/it/<script>.py --spliced build/spliced --mode auto

What lives here:
  - a deterministic, fast byte generator (stream_chunks) so a 4 GiB stream
    costs little to produce, and both ends can hash what they moved;
  - free ports, config rendering, and the Proxy class that starts the binary,
    waits for "info: ready", collects its stderr, parses access-log lines,
    counts /proc/PID/fd, reads VmRSS and utime+stime, and at the end checks
    that the fd count is back at its baseline, that no socket of the proxy
    sits in CLOSE_WAIT, that nothing at warn/error was logged that the test
    did not expect, and that SIGTERM makes it exit 0;
  - backends as threads (Backend + handlers: sink, source, echo, rst_after);
  - client helpers (dial, send_stream, read_stream, drive_clients);
  - the runner (main): parses --spliced/--mode, arms an overall deadline
    (signal.alarm), runs the test functions, kills what they started and
    prints for each failure what was expected and what happened.

Environment:
  SPLICED_IT_QUICK=1  shrinks the single 4 GiB stream of it_bigstream to
                      512 MiB (meant for the ASan+UBSan run, where every
                      byte costs more); every other test keeps its size.
  SPLICED_IT_VERBOSE=1  echo the proxy's stderr lines as they arrive.

Exit codes: 0 all passed, 1 a test failed, 77 everything was skipped
(registered with SKIP_RETURN_CODE 77 in CMakeLists.txt).
"""

import argparse
import collections
import ctypes
import ctypes.util
import errno
import hashlib
import os
import random
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

LOCAL = "127.0.0.1"
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# Any single blocking socket operation. Generous: an ASan build on a loaded
# 2-core machine must still pass. Nothing asserts speed.
IO_TIMEOUT = 60.0
# How long the proxy may take to print "info: ready".
READY_TIMEOUT = 60.0
# How long to wait for the fd count to come back to its baseline (pipes
# pooled after a burst are closed about a second after they were last used).
FD_SETTLE = 20.0

VERBOSE = os.environ.get("SPLICED_IT_VERBOSE") == "1"
QUICK = os.environ.get("SPLICED_IT_QUICK") == "1"


# --------------------------------------------------------------------------
# failures

class TestFailure(AssertionError):
    pass


class Skip(Exception):
    pass


class DeadlineExceeded(BaseException):
    """Raised by SIGALRM in the main thread: the script's overall deadline.
    A BaseException so that no `except Exception` on the way swallows it."""


def fail(what, expected, actual):
    raise TestFailure("%s\n    expected: %s\n    actual:   %s" % (what, expected, actual))


def check(cond, what, expected, actual):
    if not cond:
        fail(what, expected, actual)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(what, repr(expected), repr(actual))


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def wait_until(cond, timeout, step=0.05):
    """Poll cond() until true or timeout; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# --------------------------------------------------------------------------
# deterministic data

_BLOCK = random.Random(0x5911CED).randbytes(MiB + 4096)
_BLOCK_MV = memoryview(_BLOCK)
_STAMP = struct.Struct("<QQ")
_STAMP_EVERY = 4096


def stream_chunks(seed, size, chunk=MiB):
    """The bytes of stream `seed`, `size` long, as bytearrays of <= 1 MiB.

    Chunk i is a window of one fixed 1 MiB random block, started at an offset
    that depends on (seed, i), with (seed, position) stamped every 4 KiB: a
    lost, repeated or reordered piece, or bytes of another stream, change the
    sha256. Cheap: a memcpy and 256 small stamps per MiB."""
    chunk = min(chunk, MiB)
    left = size
    pos = 0
    i = 0
    while left > 0:
        n = min(chunk, left)
        start = (seed * 131 + i * 17) % 4096
        buf = bytearray(_BLOCK_MV[start:start + n])
        for off in range(0, n - _STAMP.size + 1, _STAMP_EVERY):
            _STAMP.pack_into(buf, off, seed, pos + off)
        yield buf
        left -= n
        pos += n
        i += 1


def stream_sha(seed, size):
    h = hashlib.sha256()
    for c in stream_chunks(seed, size):
        h.update(c)
    return h.hexdigest()


def human(n):
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


# --------------------------------------------------------------------------
# sockets

def dial(port, timeout=IO_TIMEOUT, rcvbuf=None, sndbuf=None):
    """A blocking client socket connected to 127.0.0.1:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        s.connect((LOCAL, port))
    except BaseException:
        s.close()
        raise
    return s


def local_port(sock):
    return sock.getsockname()[1]


def rst_close(sock):
    """Close with SO_LINGER 0: the kernel sends an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def send_stream(sock, seed, size, on_progress=None, pause=None):
    """sendall() stream `seed` of `size` bytes; returns its sha256.
    pause: optional (every_bytes, seconds) to send in bursts."""
    h = hashlib.sha256()
    sent = 0
    next_pause = pause[0] if pause else None
    for c in stream_chunks(seed, size, chunk=min(MiB, pause[0]) if pause else MiB):
        h.update(c)
        sock.sendall(c)
        sent += len(c)
        if on_progress:
            on_progress(sent)
        if pause and sent >= next_pause and sent < size:
            time.sleep(pause[1])
            next_pause += pause[0]
    return h.hexdigest()


class Received:
    """What read_stream() got: sha256, byte count, and how it ended:
    'eof' (recv returned b""), 'reset' (ConnectionResetError), 'timeout',
    'limit' (stopped after `limit` bytes), or 'error: ...'."""

    def __init__(self, sha, n, end, elapsed):
        self.sha, self.n, self.end, self.elapsed = sha, n, end, elapsed

    def __repr__(self):
        return "Received(n=%d, end=%s, sha=%s..., %.1fs)" % (
            self.n, self.end, self.sha[:12], self.elapsed)


def read_stream(sock, limit=None, rate=None, chunk=MiB, on_progress=None,
                deadline=None):
    """Read until EOF (or `limit` bytes), hashing what arrives.

    rate: bytes/second to read at most (a slow reader), in reads of <= 64 KiB.
    deadline: time.monotonic() value after which it gives up ('timeout')."""
    h = hashlib.sha256()
    n = 0
    if rate:
        chunk = min(chunk, 64 * KiB)
    buf = bytearray(chunk)
    mv = memoryview(buf)
    t0 = time.monotonic()
    end = None
    while end is None:
        if deadline is not None and time.monotonic() > deadline:
            end = "timeout"
            break
        want = chunk if limit is None else min(chunk, limit - n)
        if want <= 0:
            end = "limit"
            break
        try:
            got = sock.recv_into(mv[:want])
        except ConnectionResetError:
            end = "reset"
            break
        except socket.timeout:
            end = "timeout"
            break
        except OSError as e:
            end = "error: %r" % (e,)
            break
        if got == 0:
            end = "eof"
            break
        h.update(mv[:got])
        n += got
        if on_progress:
            on_progress(n)
        if rate:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(min(ahead, 1.0))
    return Received(h.hexdigest(), n, end, time.monotonic() - t0)


def expect_closed(sock, timeout):
    """Wait up to timeout for the peer to close: returns ('eof'|'reset'|
    'timeout'|'data', seconds). Any byte that arrives counts as 'data'."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        b = sock.recv(65536)
        what = "eof" if b == b"" else "data"
    except ConnectionResetError:
        what = "reset"
    except socket.timeout:
        what = "timeout"
    except OSError as e:
        what = "error: %r" % (e,)
    return what, time.monotonic() - t0


def reserve_refusing_port():
    """A socket bound to 127.0.0.1 that never listens: connects to its port
    are refused (RST), and the port stays ours while the socket lives."""
    s = socket.socket()
    s.bind((LOCAL, 0))
    return s, s.getsockname()[1]


def blackhole():
    """A listener whose accept queue is full (backlog 0, one connection
    parked): further SYNs are dropped, so a connect to it hangs until the
    connector's own timeout. Returns (port, closer) or None if this kernel
    answers anyway."""
    lst = socket.socket()
    lst.bind((LOCAL, 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    parked = []
    for _ in range(2):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect((LOCAL, port))
            parked.append(s)
        except socket.timeout:
            s.close()
            break
    else:
        for s in parked:
            s.close()
        lst.close()
        return None
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect((LOCAL, port))
        ok = False
    except socket.timeout:
        ok = True
    except OSError:
        ok = False
    probe.close()

    def closer():
        for s in parked:
            s.close()
        lst.close()
    if not ok:
        closer()
        return None
    return port, closer


_port_lock = threading.Lock()
_ports_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port on 127.0.0.1 that nothing uses now. Picked below the ephemeral
    range when there is room, so neither bind(0) nor outgoing connects of
    other tests take it before the proxy binds it. The caller retries the
    proxy start if it lost the race anyway."""
    low = _ephemeral_low()
    rnd = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        if low > 12000:
            p = rnd.randrange(10000, low - 1)
        else:
            p = 0
        s = socket.socket()
        try:
            s.bind((LOCAL, p))
            p = s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
        with _port_lock:
            if p in _ports_given:
                continue
            _ports_given.add(p)
        return p
    raise RuntimeError("no free port found")


# --------------------------------------------------------------------------
# backends

class Backend:
    """A server on 127.0.0.1 (kernel-chosen port): one thread accepts, and
    each connection runs in its own thread through a handler.

    The handler for a connection is the next one pushed with expect(), or
    the default. A handler gets (conn, backend, index) and returns a dict
    that is stored in .results (with 'index'); an exception is stored as
    {'error': ...}. Sockets get IO_TIMEOUT."""

    def __init__(self, default=None, name="be", backlog=1024):
        self.name = name
        self.default = default
        self.sock = socket.socket()
        self.sock.bind((LOCAL, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.accepted = 0
        self.active = 0
        self.results = []
        self.conns = []          # live sockets, so close() can shut them
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop,
                                       name="accept-" + name, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "%s:%d" % (LOCAL, self.port)

    def expect(self, handler):
        with self.cond:
            self.queue.append(handler)

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.05)
                continue
            conn.settimeout(IO_TIMEOUT)
            with self.cond:
                idx = self.accepted
                self.accepted += 1
                self.active += 1
                handler = self.queue.popleft() if self.queue else self.default
                self.conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, handler, idx),
                                 name="%s-%d" % (self.name, idx), daemon=True)
            t.start()

    def _serve(self, conn, handler, idx):
        try:
            if handler is None:
                res = {}
            else:
                res = handler(conn, self, idx) or {}
        except Exception as e:      # recorded, the test decides
            res = {"error": repr(e)}
        finally:
            try:
                conn.close()
            except OSError:
                pass
        res["index"] = idx
        with self.cond:
            self.active -= 1
            self.results.append(res)
            try:
                self.conns.remove(conn)
            except ValueError:
                pass
            self.cond.notify_all()

    def wait_accepted(self, n, timeout=IO_TIMEOUT):
        with self.cond:
            self.cond.wait_for(lambda: self.accepted >= n, timeout)
            return self.accepted

    def wait_results(self, n, timeout=IO_TIMEOUT):
        """At least n results (total), or fail."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.results) >= n, timeout)
            if len(self.results) < n:
                fail("backend %s: connections finished" % self.name,
                     "%d within %.0fs" % (n, timeout),
                     "%d (accepted %d, active %d)" % (len(self.results),
                                                     self.accepted, self.active))
            return list(self.results)

    def result(self, idx, timeout=IO_TIMEOUT):
        """The result of connection number idx (0-based accept order)."""
        with self.cond:
            def find():
                for r in self.results:
                    if r["index"] == idx:
                        return r
                return None
            self.cond.wait_for(lambda: find() is not None, timeout)
            r = find()
        if r is None:
            fail("backend %s: connection #%d finished" % (self.name, idx),
                 "a result within %.0fs" % timeout,
                 "none (accepted %d)" % self.accepted)
        return r

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(2.0)


def _read_to_end(conn, res, prefix=""):
    r = read_stream(conn)
    res[prefix + "sha"], res[prefix + "n"], res[prefix + "end"] = r.sha, r.n, r.end
    return r


def sink():
    """Read until EOF, hashing; then close. Result: sha, n, end."""
    def h(conn, be, idx):
        res = {}
        _read_to_end(conn, res)
        return res
    return h


def source(size, seed, linger_close=False, pause=None):
    """Send stream (seed, size), then close at once (RST if linger_close).
    Result: sha (of what was sent), n, sent_ok."""
    def h(conn, be, idx):
        res = {"n": 0}
        try:
            res["sha"] = send_stream(conn, seed, size, pause=pause)
            res["n"] = size
            res["sent_ok"] = True
        except OSError as e:
            res["sent_ok"] = False
            res["send_error"] = repr(e)
        if linger_close:
            rst_close(conn)
        return res
    return h


def echo(bufsize=256 * KiB):
    """Send back everything received; on EOF shut down writing and close.
    Result: sha and n of what came in, end."""
    def h(conn, be, idx):
        hs = hashlib.sha256()
        n = 0
        end = None
        buf = bytearray(bufsize)
        mv = memoryview(buf)
        while end is None:
            try:
                got = conn.recv_into(buf)
            except ConnectionResetError:
                end = "reset"
                break
            except socket.timeout:
                end = "timeout"
                break
            if got == 0:
                end = "eof"
                break
            hs.update(mv[:got])
            n += got
            try:
                conn.sendall(mv[:got])
            except OSError as e:
                end = "send error: %r" % (e,)
        if end == "eof":
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return {"sha": hs.hexdigest(), "n": n, "end": end}
    return h


def rst_after(size, seed):
    """Send `size` bytes of stream seed, then close with an RST."""
    return source(size, seed, linger_close=True)


def closer():
    """Close at once without a byte (for stray connections)."""
    def h(conn, be, idx):
        return {}
    return h


# --------------------------------------------------------------------------
# many clients at once, one selector

class ClientJob:
    """One client of drive_clients(): sends stream (seed, send_size) then
    (if half_close) shuts down writing; reads until EOF, hashing. Starts
    reading read_delay seconds after all are connected."""

    def __init__(self, seed, send_size, half_close=True, read_delay=0.0):
        self.seed, self.send_size = seed, send_size
        self.half_close = half_close
        self.read_delay = read_delay
        self.sock = None
        self.port = None
        self.sent = 0
        self.sent_sha = None
        self.recv_hash = hashlib.sha256()
        self.recv_n = 0
        self.end = None          # eof | reset | error ...
        self._chunks = None
        self._cur = None
        self._off = 0
        self._hash = hashlib.sha256()
        self.write_done = False

    @property
    def recv_sha(self):
        return self.recv_hash.hexdigest()

    def __repr__(self):
        return "ClientJob(seed=%d, port=%s, sent=%d/%d, recv=%d, end=%s)" % (
            self.seed, self.port, self.sent, self.send_size, self.recv_n, self.end)


def drive_clients(port, jobs, timeout, connect_batch=64):
    """Connect every job to 127.0.0.1:port (all connections are made first),
    then run them all at once with one selector until each has finished
    writing and seen EOF/reset. Fails if the time runs out."""
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout
    # phase 1: connect all, in batches (non-blocking connect)
    pending = list(jobs)
    while pending:
        batch, pending = pending[:connect_batch], pending[connect_batch:]
        for j in batch:
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex((LOCAL, port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                fail("client connect", "connected", os.strerror(err))
            j.sock = s
            sel.register(s, selectors.EVENT_WRITE, j)
        left = set(batch)
        while left:
            if time.monotonic() > deadline:
                fail("drive_clients: connect", "%d connected" % len(jobs),
                     "%d still connecting" % len(left))
            for key, _ in sel.select(0.5):
                j = key.data
                if j not in left:
                    continue
                err = j.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail("client connect", "connected", os.strerror(err))
                j.port = local_port(j.sock)
                left.discard(j)
                sel.modify(j.sock, 0 or selectors.EVENT_READ, j)
    # phase 2: all connected; send and read
    t0 = time.monotonic()
    for j in jobs:
        j._chunks = stream_chunks(j.seed, j.send_size, chunk=256 * KiB)
        if j.send_size == 0:
            j.sent_sha = j._hash.hexdigest()
            j.write_done = True
            if j.half_close:
                j.sock.shutdown(socket.SHUT_WR)
        events = 0 if j.write_done else selectors.EVENT_WRITE
        if j.read_delay <= 0:
            events |= selectors.EVENT_READ
        if events:
            sel.modify(j.sock, events, j)
        else:
            sel.unregister(j.sock)
    buf = bytearray(256 * KiB)
    mv = memoryview(buf)
    unfinished = set(jobs)
    delayed = {j for j in jobs if j.read_delay > 0}
    registered = {j for j in jobs if j.read_delay <= 0 or not j.write_done}

    def update(j):
        ev = 0
        if not j.write_done:
            ev |= selectors.EVENT_WRITE
        if j.end is None and j not in delayed:
            ev |= selectors.EVENT_READ
        if ev == 0:
            if j in registered:
                sel.unregister(j.sock)
                registered.discard(j)
        elif j in registered:
            sel.modify(j.sock, ev, j)
        else:
            sel.register(j.sock, ev, j)
            registered.add(j)

    while unfinished:
        now = time.monotonic()
        if now > deadline:
            stuck = sorted(unfinished, key=lambda j: j.seed)[:5]
            fail("drive_clients: all finished within %.0fs" % timeout,
                 "%d finished" % len(jobs),
                 "%d unfinished, e.g. %r" % (len(unfinished), stuck))
        for j in [j for j in delayed if now - t0 >= j.read_delay]:
            delayed.discard(j)
            update(j)
        if not registered:
            time.sleep(0.05)
            continue
        for key, ev in sel.select(0.2):
            j = key.data
            if ev & selectors.EVENT_WRITE and not j.write_done:
                try:
                    while True:
                        if j._cur is None:
                            try:
                                j._cur = memoryview(next(j._chunks))
                                j._hash.update(j._cur)
                                j._off = 0
                            except StopIteration:
                                j.write_done = True
                                j.sent_sha = j._hash.hexdigest()
                                if j.half_close:
                                    j.sock.shutdown(socket.SHUT_WR)
                                break
                        k = j.sock.send(j._cur[j._off:])
                        j._off += k
                        j.sent += k
                        if j._off == len(j._cur):
                            j._cur = None
                except BlockingIOError:
                    pass
                except OSError as e:
                    j.write_done = True
                    j.end = j.end or "send error: %r" % (e,)
                update(j)
            if ev & selectors.EVENT_READ and j.end is None:
                try:
                    for _ in range(8):
                        got = j.sock.recv_into(buf)
                        if got == 0:
                            j.end = "eof"
                            break
                        j.recv_hash.update(mv[:got])
                        j.recv_n += got
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    j.end = "reset"
                except OSError as e:
                    j.end = "error: %r" % (e,)
                if j.end is not None and not j.write_done:
                    j.write_done = True
                update(j)
            if j.end is not None and j.write_done:
                unfinished.discard(j)
    sel.close()
    for j in jobs:
        j.sock.close()
    return jobs


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
        self.config_path = None
        self.exit_code = None
        self.stopped = False
        self.allowed = []       # regexes of warn/error messages the test expects
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
                    "--clear-groups", "--"] + argv
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

    def check_fds(self, timeout=FD_SETTLE):
        """The fd count back at the baseline (after a settle wait), and no
        socket of the proxy in CLOSE_WAIT."""
        n = wait_until(lambda: self.fd_count() <= self.baseline_fds, timeout, 0.2)
        count = self.fd_count()
        if count > self.baseline_fds:
            fail("%s fd count back at its baseline within %.0fs" % (self.name, timeout),
                 "<= %d" % self.baseline_fds,
                 "%d:\n      %s" % (count, "\n      ".join(describe_fds(self.pid))))
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


# --------------------------------------------------------------------------
# the runner

class Ctx:
    """What a test function gets: the binary, the mode, the build's
    zero-copy backend, a temp dir, and the cleanup list."""

    def __init__(self, spliced, mode):
        self.spliced = os.path.abspath(spliced)
        self.mode = mode
        self.tmp = tempfile.mkdtemp(prefix="spliced-it-")
        os.chmod(self.tmp, 0o755)
        self.owned = []
        self.version = ""
        try:
            out = subprocess.run([self.spliced, "--version"], capture_output=True,
                                 timeout=30)
            self.version = (out.stdout + out.stderr).decode("utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            self.version = "error: %r" % (e,)
        m = re.search(r"zero-copy: ([^)]*)\)", self.version)
        self.zc_backend = m.group(1) if m else "?"
        # splice=always/auto only splice when the build has splice; the
        # portable build (zero-copy: none) copies every byte.
        self.can_splice = "splice" in self.zc_backend
        self.asan = self._is_asan()

    def _is_asan(self):
        try:
            with open(self.spliced, "rb") as f:
                data = f.read()
            return b"__asan_init" in data
        except OSError:
            return False

    @property
    def splices(self):
        """Whether the mode under test moves bytes with splice in this build."""
        return self.can_splice and self.mode in ("always", "auto")

    def register(self, obj):
        self.owned.append(obj)
        return obj

    def backend(self, default=None, name="be", **kw):
        return self.register(Backend(default, name=name, **kw))

    def proxy(self, **kw):
        return Proxy(self, **kw)

    def write_file(self, name, text, mode=0o644):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def cleanup(self):
        for obj in reversed(self.owned):
            try:
                if isinstance(obj, Proxy):
                    obj.kill()
                elif isinstance(obj, Backend):
                    obj.close()
                elif callable(obj):
                    obj()
                else:
                    obj.close()
            except Exception as e:
                log("cleanup: %r" % (e,))
        self.owned = []


def _print_proxy_tails(ctx):
    for obj in ctx.owned:
        if isinstance(obj, Proxy) and obj.proc is not None:
            non_access, access, n = obj.tail()
            sys.stdout.write("  --- %s (pid %s, argv %s) stderr, last lines:\n" % (
                obj.name, obj.pid, " ".join(getattr(obj, "argv", []))))
            for l in non_access:
                sys.stdout.write("    " + l + "\n")
            sys.stdout.write("  --- %d access lines, the last:\n" % n)
            for l in access:
                sys.stdout.write("    " + l + "\n")


def main(tests, deadline, doc=""):
    """Run the test functions (each takes a Ctx) in order; exit 0/1/77."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--spliced", required=True, help="path to the spliced binary")
    ap.add_argument("--mode", default="auto", choices=("never", "always", "auto"))
    ap.add_argument("--only", help="run only the test functions whose name contains this")
    opts = ap.parse_args()
    if not os.access(opts.spliced, os.X_OK):
        print("spliced binary not executable: %s" % opts.spliced)
        sys.exit(1)

    def on_alarm(signum, frame):
        raise DeadlineExceeded("overall deadline of %ds exceeded" % deadline)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(deadline)

    # Backstop: if the main thread cannot even take the alarm, kill what we
    # started and leave.
    ctx = Ctx(opts.spliced, opts.mode)

    def watchdog():
        time.sleep(deadline + 30)
        sys.stdout.write("watchdog: hard deadline, killing everything\n")
        sys.stdout.flush()
        for obj in list(ctx.owned):
            if isinstance(obj, Proxy) and obj.proc is not None and obj.proc.poll() is None:
                try:
                    obj.proc.kill()
                except OSError:
                    pass
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()

    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    log("%s mode=%s binary=%s version=%r asan=%s quick=%s" % (
        script, opts.mode, ctx.spliced, ctx.version, ctx.asan, QUICK))
    passed, failed, skipped = [], [], []
    t_all = time.monotonic()
    try:
        for t in tests:
            if opts.only and opts.only not in t.__name__:
                continue
            name = t.__name__
            log("=== %s [%s]" % (name, opts.mode))
            t0 = time.monotonic()
            try:
                t(ctx)
                passed.append(name)
                log("--- PASS %s (%.1fs)" % (name, time.monotonic() - t0))
            except Skip as e:
                skipped.append(name)
                log("--- SKIP %s: %s" % (name, e))
            except TestFailure as e:
                failed.append(name)
                log("--- FAIL %s (%.1fs)\n  %s" % (name, time.monotonic() - t0, e))
                _print_proxy_tails(ctx)
            except DeadlineExceeded:
                failed.append(name)
                log("--- FAIL %s: the script's overall deadline (%ds) ran out here"
                    % (name, deadline))
                traceback.print_exc(file=sys.stdout)
                _print_proxy_tails(ctx)
                raise
            except Exception:
                failed.append(name)
                log("--- FAIL %s (%.1fs): exception" % (name, time.monotonic() - t0))
                traceback.print_exc(file=sys.stdout)
                _print_proxy_tails(ctx)
            finally:
                ctx.cleanup()
    except DeadlineExceeded:
        pass
    finally:
        signal.alarm(0)
        ctx.cleanup()
    log("%s [%s]: %d of %d test functions passed, %d failed, %d skipped (%.1fs)%s" % (
        script, opts.mode, len(passed), len(passed) + len(failed) + len(skipped),
        len(failed), len(skipped), time.monotonic() - t_all,
        (": " + ", ".join(failed)) if failed else ""))
    sys.stdout.flush()
    if failed:
        os._exit(1)
    if skipped and not passed:
        os._exit(77)
    os._exit(0)
