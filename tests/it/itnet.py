"""Shared pieces of the spliced integration tests: client sockets, free
ports, backends (threads) and many clients at once. Part of harness.py (see
there). Everything here uses 127.0.0.1 only."""

import collections
import errno
import hashlib
import os
import random
import selectors
import socket
import struct
import threading
import time

from itcore import (IO_TIMEOUT, KiB, LOCAL, MiB, STREAM_DEADLINE, fail,
                    stream_chunks)


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


TCP_CLOSE_WAIT = 8               # tcpi_state: the peer's FIN came, ours not sent


def tcp_state(sock):
    """The kernel's TCP state of sock (struct tcp_info's first byte)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


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


def have_ipv6():
    """Whether ::1 can be bound here (containers may lack IPv6)."""
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def echo_trip(port, seed, size, deadline=60.0, sock=None, ports=None):
    """size bytes of stream `seed` up through port to an echo server and
    back, sent from a thread so that neither direction waits on the other.
    sock: an already connected socket to use instead of dialling (closed
    here either way). ports: a list the client's local port is appended to
    (to find its access line). None when every byte came back intact, else
    what went wrong."""
    try:
        c = sock if sock is not None else dial(port)
    except OSError as e:
        return "connect to port %d: %r" % (port, e)
    if ports is not None:
        ports.append(local_port(c))
    sent = {}

    def send():
        try:
            sent["sha"] = send_stream(c, seed, size)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            sent["error"] = repr(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = read_stream(c, deadline=time.monotonic() + deadline)
    t.join(deadline)
    c.close()
    if "error" in sent:
        return "sending %d bytes through port %d: %s" % (size, port, sent["error"])
    if (got.end, got.n, got.sha) != ("eof", size, sent.get("sha")):
        return "%d bytes through port %d came back as %r" % (size, port, got)
    return None


class EchoClients:
    """n threads doing echo_trip() through port back to back, with the
    sizes in turn and `pause` seconds between two; counts the round trips
    and keeps every failure."""

    def __init__(self, port, n=2, sizes=(KiB,), pause=0.0, seed=1000):
        self.port = port
        self.sizes = list(sizes)
        self.pause = pause
        self.seed = seed
        self.stop_flag = False
        self.done = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        seed = self.seed * (i + 1)
        k = 0
        while not self.stop_flag:
            seed += 1
            k += 1
            what = echo_trip(self.port, seed, self.sizes[(i + k) % len(self.sizes)])
            with self.lock:
                self.done += 1
                if what is not None:
                    self.failures.append(what)
            if self.pause:
                time.sleep(self.pause)

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(60)

    def close(self):
        self.stop_flag = True


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
    deadline: time.monotonic() value after which it gives up ('timeout');
    by default STREAM_DEADLINE seconds from now."""
    h = hashlib.sha256()
    n = 0
    if rate:
        chunk = min(chunk, 64 * KiB)
    buf = bytearray(chunk)
    mv = memoryview(buf)
    t0 = time.monotonic()
    if deadline is None:
        deadline = t0 + STREAM_DEADLINE
    end = None
    while end is None:
        if time.monotonic() > deadline:
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
    s.settimeout(IO_TIMEOUT)
    s.bind((LOCAL, 0))
    return s, s.getsockname()[1]


def blackhole():
    """A listener whose accept queue is full (backlog 0, one connection
    parked): further SYNs are dropped, so a connect to it hangs until the
    connector's own timeout. Returns (port, closer) or None if this kernel
    answers anyway."""
    lst = socket.socket()
    lst.settimeout(IO_TIMEOUT)
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
    """A server on 127.0.0.1 (kernel-chosen port), or on ip and port when
    given ("::1", "127.0.0.2"; a chosen port is bound with SO_REUSEADDR, and
    a port in use raises OSError): one thread accepts, and each connection
    runs in its own thread through a handler.

    The handler for a connection is the next one pushed with expect(), or
    the default. A handler gets (conn, backend, index) and returns a dict
    that is stored in .results (with 'index'); an exception is stored as
    {'error': ...}. Sockets get IO_TIMEOUT."""

    def __init__(self, default=None, name="be", backlog=1024, ip=LOCAL, port=0):
        self.name = name
        self.default = default
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        try:
            if port:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((ip, port))
        except OSError:
            self.sock.close()
            raise
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
        return ("[%s]:%d" if ":" in self.ip else "%s:%d") % (self.ip, self.port)

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
        deadline = time.monotonic() + STREAM_DEADLINE
        while end is None:
            if time.monotonic() > deadline:
                end = "deadline"
                break
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
                sel.unregister(j.sock)
    # phase 2: all connected; send and read
    t0 = time.monotonic()
    buf = bytearray(256 * KiB)
    mv = memoryview(buf)
    unfinished = set(jobs)
    delayed = {j for j in jobs if j.read_delay > 0}
    registered = set()

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

    for j in jobs:
        j._chunks = stream_chunks(j.seed, j.send_size, chunk=256 * KiB)
        if j.send_size == 0:
            j.sent_sha = j._hash.hexdigest()
            j.write_done = True
            if j.half_close:
                j.sock.shutdown(socket.SHUT_WR)
        update(j)

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
# clients from other loopback addresses, and PROXY protocol headers
# (HAProxy's doc/proxy-protocol.txt), shared by it_proxyproto and
# it_admission. The addresses inside a header are only bytes: nothing is
# ever sent to them.

def dial_from(src_ip, port, timeout=IO_TIMEOUT, dst=LOCAL, nodelay=False):
    """A blocking client socket bound to src_ip (127.0.0.2, ...; port 0)
    and connected to dst:port: the proxy sees src_ip as the peer."""
    s = socket.socket(socket.AF_INET6 if ":" in src_ip else socket.AF_INET,
                      socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((src_ip, 0))
        s.connect((dst, port))
    except BaseException:
        s.close()
        raise
    return s


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _fam(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def pp_v1(src=None, dst=None):
    """A v1 line: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n" for src and
    dst as (ip, port); "PROXY UNKNOWN\\r\\n" without them."""
    if src is None:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP6" if _fam(src[0]) == socket.AF_INET6 else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src[0], dst[0], src[1],
                                          dst[1])).encode()


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC32C (Castagnoli), as the PP2_TYPE_CRC32C TLV carries it."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def pp_v2(src=None, dst=None, local=False, tlvs=b"", crc=None):
    """A v2 header: the PROXY command over TCP (family by the addresses),
    or LOCAL (no address: family UNSPEC, length 0 plus the TLVs).
    crc: True appends a PP2_TYPE_CRC32C TLV (0x03) of the whole header,
    'bad' one whose value is off by one."""
    if crc:
        tlvs = tlvs + b"\x03\x00\x04\x00\x00\x00\x00"
    if local or src is None:
        out = PP2_SIG + bytes([0x21 if not local else 0x20, 0x00]) + \
            struct.pack(">H", len(tlvs)) + tlvs
    else:
        f = _fam(src[0])
        addr = socket.inet_pton(f, src[0]) + socket.inet_pton(f, dst[0]) + \
            struct.pack(">HH", src[1], dst[1])
        famb = 0x21 if f == socket.AF_INET6 else 0x11
        out = PP2_SIG + bytes([0x21, famb]) + \
            struct.pack(">H", len(addr) + len(tlvs)) + addr + tlvs
    if crc:
        v = (crc32c(out) + (1 if crc == "bad" else 0)) & 0xFFFFFFFF
        out = out[:-4] + struct.pack(">I", v)
    return out


def _recv_exact(conn, n):
    out = b""
    while len(out) < n:
        b = conn.recv(n - len(out))
        if not b:
            raise EOFError("EOF after %d of %d header bytes (%r)" % (len(out), n, out))
        out += b
    return out


def _norm(ip):
    return socket.inet_ntop(_fam(ip), socket.inet_pton(_fam(ip), ip))


def pp_read(conn):
    """Read one PROXY header off conn, not a byte of what follows it. A
    dict: version (1|2), command ('PROXY'|'LOCAL'|'UNKNOWN' for v1), raw
    (the header's bytes), src and dst ((ip, port), ip in inet_ntop form)
    when it carries TCP addresses, family (v2: the byte). Raises
    ValueError for anything that is not a header."""
    head = _recv_exact(conn, 6)
    if head == b"PROXY ":
        line = head
        while not line.endswith(b"\r\n"):
            if len(line) >= 107:
                raise ValueError("v1 line longer than 107 bytes: %r" % line)
            line += _recv_exact(conn, 1)
        parts = line[:-2].decode("ascii").split(" ")
        if parts[1] == "UNKNOWN":
            return {"version": 1, "command": "UNKNOWN", "raw": line}
        if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
            raise ValueError("v1 line: %r" % line)
        return {"version": 1, "command": "PROXY", "raw": line, "proto": parts[1],
                "src": (_norm(parts[2]), int(parts[4])),
                "dst": (_norm(parts[3]), int(parts[5]))}
    raw = head + _recv_exact(conn, 10)
    if raw[:12] != PP2_SIG:
        raise ValueError("neither a v1 nor a v2 header: %r" % raw)
    vc, fam, ln = raw[12], raw[13], struct.unpack(">H", raw[14:16])[0]
    if vc >> 4 != 2 or vc & 0xF not in (0, 1):
        raise ValueError("v2 version/command byte 0x%02x" % vc)
    body = _recv_exact(conn, ln)
    raw += body
    res = {"version": 2, "command": "LOCAL" if vc & 0xF == 0 else "PROXY",
           "family": fam, "raw": raw, "len": ln}
    if vc & 0xF == 1 and fam in (0x11, 0x21):
        f, n = (socket.AF_INET, 4) if fam == 0x11 else (socket.AF_INET6, 16)
        if ln < 2 * n + 4:
            raise ValueError("v2 address block of %d bytes for family 0x%02x" % (ln, fam))
        sp, dp = struct.unpack(">HH", body[2 * n:2 * n + 4])
        res["src"] = (socket.inet_ntop(f, body[:n]), sp)
        res["dst"] = (socket.inet_ntop(f, body[n:2 * n]), dp)
        res["tlvs"] = body[2 * n + 4:]
    return res


def pp_echo(results_key="pp"):
    """A backend handler: read the PROXY header (stored in the result under
    results_key, or 'pp_error'), then echo the rest as echo() does."""
    inner = echo()

    def h(conn, be, idx):
        try:
            hdr = pp_read(conn)
        except (ValueError, EOFError, OSError) as e:
            return {"pp_error": repr(e)}
        res = inner(conn, be, idx)
        res[results_key] = hdr
        return res
    return h
