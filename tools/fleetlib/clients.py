"""The client side: connections from the client namespace, each from a
client address and a source port not used before in the run: probes (the
backend's line, a clean end), short byte-checked echoes, long streams, and
loops of short ones."""

import random
import socket
import threading
import time
import zlib

from .base import IO_TIMEOUT, PORT, PORT_FIRST, VIP

_BLOCK = random.Random(0xF1EE7).randbytes(96 * 1024)


def payload(tag, n):
    """n bytes that differ from connection to connection (a tag, then a
    window of a random block chosen by the tag)."""
    head = tag.encode()
    off = zlib.crc32(head) % (len(_BLOCK) - n)
    return (head + _BLOCK[off:off + n])[:n]


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(n - len(buf), 65536))
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return bytes(buf)


def expect_eof(s):
    d = s.recv(4096)
    if d:
        raise ValueError("%d bytes where the end of the stream was due" % len(d))


class Conn:
    """One client connection: where it came from, what answered, how it
    ended."""
    __slots__ = ("kind", "addr", "port", "t0", "t1", "backend", "via", "ok", "error", "n")

    def __init__(self, kind, addr, port):
        self.kind, self.addr, self.port = kind, addr, port
        self.t0 = time.monotonic()
        self.t1 = None
        self.backend = self.via = self.error = None
        self.ok = False
        self.n = 0

    def fail(self, e):
        self.error = "%s: %s" % (type(e).__name__, e)

    def __repr__(self):
        return "%s %s:%d via %s to %s: %s" % (self.kind, self.addr, self.port, self.via,
                                               self.backend, "ok" if self.ok else self.error)


class Clients:
    """The client side: each connection from one of the client addresses
    and a source port that address has not used before."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.ns = fleet.net.ns["c"]
        self.addrs = fleet.net.clients
        self.lock = threading.Lock()
        self.next_port = {a: PORT_FIRST for a in self.addrs}

    def dial(self, kind, addr):
        """(socket connected to the VIP, Conn); the socket is None when the
        connect failed (the Conn says why)."""
        with self.lock:
            port = self.next_port[addr]
            self.next_port[addr] += 1
        c = Conn(kind, addr, port)
        s = self.ns.socket()
        try:
            s.settimeout(IO_TIMEOUT)
            s.bind((addr, port))
            s.connect((VIP, PORT))
            line = b""
            while not line.endswith(b"\n") and len(line) < 64:
                d = s.recv(64 - len(line))
                if not d:
                    raise EOFError("EOF before the backend's line (%r)" % line)
                line += d
            name, _, via = line.decode("ascii", "replace").strip().partition(" ")
            c.backend = name
            c.via = self.fleet.by_addr.get(via, via)
            return s, c
        except (OSError, EOFError, ValueError) as e:
            c.fail(e)
            c.t1 = time.monotonic()
            s.close()
            return None, c

    def probe(self, addr):
        """Which backend, through which instance: the line, then a clean end."""
        s, c = self.dial("probe", addr)
        if s is None:
            return c
        try:
            s.shutdown(socket.SHUT_WR)
            expect_eof(s)
            c.ok = True
        except (OSError, ValueError) as e:
            c.fail(e)
        finally:
            s.close()
            c.t1 = time.monotonic()
        return c

    def short(self, addr, size):
        """size bytes up and back (compared), then a clean end."""
        s, c = self.dial("short", addr)
        if s is None:
            return c
        try:
            data = payload("%s:%d:" % (addr, c.port), size)
            s.sendall(data)
            got = recv_exact(s, size)
            if got != data:
                raise ValueError("the echo of %d bytes differs" % size)
            c.n = size
            s.shutdown(socket.SHUT_WR)
            expect_eof(s)
            c.ok = True
        except (OSError, EOFError, ValueError) as e:
            c.fail(e)
        finally:
            s.close()
            c.t1 = time.monotonic()
        return c


class LongStream(threading.Thread):
    """A connection that stays: rounds of 1 B..16 KiB up and back, each
    compared, about 25 a second, until stopped; then a clean end."""

    def __init__(self, clients, addr, sid):
        super().__init__(daemon=True, name="long-%d" % sid)
        self.clients, self.addr, self.sid = clients, addr, sid
        self.conn = None
        self.ready = threading.Event()
        self.halt = threading.Event()
        self.rounds = []            # end time of each round
        self.max_rtt = 0.0

    def run(self):
        rnd = random.Random(self.sid)
        self.clients.ns.enter()
        s, c = self.clients.dial("long", self.addr)
        self.conn = c
        self.ready.set()
        if s is None:
            return
        try:
            while not self.halt.is_set():
                n = rnd.randint(1, 16 * 1024)
                data = payload("%s:%d:%d:" % (c.addr, c.port, len(self.rounds)), n)
                t = time.monotonic()
                s.sendall(data)
                got = recv_exact(s, n)
                if got != data:
                    raise ValueError("round %d: the echo of %d bytes differs"
                                     % (len(self.rounds), n))
                now = time.monotonic()
                self.max_rtt = max(self.max_rtt, now - t)
                self.rounds.append(now)
                c.n += n
                self.halt.wait(rnd.uniform(0.02, 0.06))
            s.shutdown(socket.SHUT_WR)
            expect_eof(s)
            c.ok = True
        except (OSError, EOFError, ValueError) as e:
            c.fail(e)
        finally:
            s.close()
            c.t1 = time.monotonic()

    def rounds_after(self, t):
        return sum(1 for x in self.rounds if x > t)


class ShortLoad:
    """Loops of short connections, each from the next client address, with
    sizes of 1 B..32 KiB, until stopped."""

    def __init__(self, clients, loops=4, pace=0.01):
        self.clients, self.loops, self.pace = clients, loops, pace
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.threads = []

    def start(self):
        for i in range(self.loops):
            t = threading.Thread(target=self._loop, args=(i,), daemon=True,
                                 name="short-%d" % i)
            t.start()
            self.threads.append(t)

    def _loop(self, i):
        self.clients.ns.enter()
        rnd = random.Random(1000 + i)
        addrs = self.clients.addrs
        j = i * len(addrs) // self.loops
        while not self.halt.is_set():
            c = self.clients.short(addrs[j % len(addrs)], rnd.randint(1, 32 * 1024))
            j += 1
            with self.lock:
                self.conns.append(c)
            self.halt.wait(self.pace)

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(IO_TIMEOUT * 3)

    def served(self, via, since):
        with self.lock:
            return sum(1 for c in self.conns if c.ok and c.via == via and c.t0 >= since)

    def failed(self):
        with self.lock:
            return [c for c in self.conns if not c.ok]

    def started_after(self, t):
        with self.lock:
            return [c for c in self.conns if c.t0 > t]
