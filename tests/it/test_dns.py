#!/usr/bin/env python3
"""Servers given by host name, against a DNS server the test runs.

A small DNS server (UDP, 127.0.0.1, a thread) answers A and AAAA for the
test's names from a table the test changes, or stays silent; the proxy is
pointed at it with `resolver = 127.0.0.1:PORT` and `resolve_interval = 1s`.
Echo servers listen on one port number on 127.0.0.2, 127.0.0.3 and ::1
(Linux routes all of 127/8 to lo).

follows dns: the name resolves to 127.0.0.2: 1 MiB round trips arrive
  byte-exact there. A long-lived connection is opened, then the answer
  becomes 127.0.0.3: within resolve_interval (+3 s) new connections go to
  127.0.0.3 only, and the long-lived one, still on 127.0.0.2, finishes
  byte-exact (sha256 of 2 MiB each way).
aaaa and checks: A 127.0.0.2 and 127.0.0.4 (nothing listens there), AAAA
  ::1, health_check = tcp: 127.0.0.4 is logged down, every client is
  served, by 127.0.0.2 and [::1] both.
silent dns: the DNS server stops answering: one warning that names the
  name and keeps its address, however many rounds fail; traffic still
  flows; answering again is logged once.
starts unresolved: a name with no answer (NXDOMAIN) at start: a warning,
  the proxy starts and serves through the other server; once the name
  resolves, its address takes clients too.
check: `spliced -t` fails on a name that does not resolve, naming the
  file, the line, the key and the host; passes once it resolves.
"""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

NAME = "app.spliced.test"
INTERVAL = 1.0
SLACK = 3.0
# A "resolves to" line says the workers were handed the new addresses;
# each takes them at its next loop turn, which a client connecting at
# once may beat.
SWITCH = 0.1


# --------------------------------------------------------------------------
# a DNS server

class DnsServer:
    """Answers queries for the names in .table ({name: {"A": [...],
    "AAAA": [...]}}, case-insensitive): NOERROR with the records of the
    type asked (none is fine), NXDOMAIN for a name not in the table.
    silent: drop every query. Counts the queries it saw."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((H.LOCAL, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.table = {}
        self.silent = False
        self.queries = 0
        self.asked = {}             # name -> queries for it
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="dns", daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "%s:%d" % (H.LOCAL, self.port)

    def set(self, name, a=(), aaaa=()):
        with self.lock:
            self.table[name.lower()] = {"A": list(a), "AAAA": list(aaaa)}

    def asked_for(self, name):
        with self.lock:
            return self.asked.get(name.lower(), 0)

    def remove(self, name):
        with self.lock:
            self.table.pop(name.lower(), None)

    def _loop(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.queries += 1
                reply = self._answer(data)
                if self.silent:
                    reply = None
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def _answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1 or flags & 0x8000:
            return None
        labels, off = [], 12
        while off < len(data) and data[off] != 0:
            n = data[off]
            labels.append(data[off + 1:off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
        off += 1
        if off + 4 > len(data):
            return None
        qtype, _ = struct.unpack("!HH", data[off:off + 4])
        question = data[12:off + 4]      # as asked: evdns checks its 0x20 case
        name = ".".join(labels).lower()
        self.asked[name] = self.asked.get(name, 0) + 1
        entry = self.table.get(name)
        rdatas = []
        if entry is not None and qtype == 1:
            rdatas = [socket.inet_pton(socket.AF_INET, a) for a in entry["A"]]
        elif entry is not None and qtype == 28:
            rdatas = [socket.inet_pton(socket.AF_INET6, a) for a in entry["AAAA"]]
        rcode = 3 if entry is None else 0
        # QR, the opcode and RD as asked, AA, RA.
        rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        out = struct.pack("!HHHHHH", qid, rflags, 1, len(rdatas), 0, 0) + question
        for rd in rdatas:
            # The name as a pointer to the question's (offset 12); TTL 1.
            out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 1, len(rd)) + rd
        return out

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(2)


# --------------------------------------------------------------------------
# echo servers on chosen addresses

def served(be):
    """Connections of echo backend be that carried bytes (health checks
    carry none)."""
    with be.cond:
        return sum(1 for r in be.results if r.get("n", 0) > 0)


def servers_on(ctx, ips):
    """Echo servers on one port number, on each of ips."""
    for _ in range(50):
        port = H.free_port()
        made = []
        try:
            for ip in ips:
                made.append(H.Backend(H.echo(), name=ip, ip=ip, port=port))
        except OSError:
            for s in made:
                s.close()
            continue
        for s in made:
            ctx.register(s)
        return port, made
    raise RuntimeError("no port free on %s" % (ips,))


def dns_proxy(ctx, dns, servers, **backend):
    b = {"server": servers, "resolve_interval": "%ds" % INTERVAL}
    b.update(backend)
    return ctx.proxy(glob={"splice": ctx.mode, "resolver": dns.addr},
                     listeners={"web": {"backend": "app", "timeout_connect": "2s"}},
                     backends={"app": b})


def round_trip(port, seed, size=H.MiB):
    """size bytes through the echo, byte-exact; returns the client port."""
    c = H.dial(port)
    cport = H.local_port(c)
    sha = H.send_stream(c, seed, size)
    c.shutdown(socket.SHUT_WR)
    got = H.read_stream(c)
    c.close()
    H.check_eq((got.end, got.n, got.sha), ("eof", size, sha),
               "echo of %d bytes (seed %d): end, bytes, sha256" % (size, seed))
    return cport


def served_by(p, cport, since=0):
    return p.access_for(cport, since=since).get("server")


# --------------------------------------------------------------------------
# the tests

def test_follows_dns(ctx):
    port, (s2, s3) = servers_on(ctx, ["127.0.0.2", "127.0.0.3"])
    dns = ctx.register(DnsServer())
    dns.set(NAME, a=["127.0.0.2"])
    p = dns_proxy(ctx, dns, ["b %s:%d" % (NAME, port)])
    p.start()
    H.check(p.wait_line(r"info: server app/b: '%s' resolves to 127\.0\.0\.2:%d \(was none\)"
                        % (NAME, port), 5),
            "the name resolved at start", "a 'resolves to' line", "none")
    for i in range(3):
        cport = round_trip(p.port(), 100 + i)
        H.check_eq(served_by(p, cport), "b/127.0.0.2:%d" % port, "server of a client")
    # A server counts a connection once it closed it: the client may see
    # the end first.
    H.wait_until(lambda: served(s2) >= 3, 5)
    H.check_eq((served(s2), served(s3)), (3, 0), "connections at .2 and .3")

    # A long-lived connection on 127.0.0.2: half its bytes now.
    long = H.dial(p.port())
    long_port = H.local_port(long)
    half = H.MiB
    block = os.urandom(half)
    got = hashlib.sha256()
    long.sendall(block)
    n = 0
    while n < half:
        chunk = long.recv(min(65536, half - n))
        H.check(chunk, "the long-lived connection echoes", "bytes", "EOF")
        got.update(chunk)
        n += len(chunk)
    H.check_eq(got.hexdigest(), hashlib.sha256(block).hexdigest(),
               "sha256 of the first half")

    mark = p.mark()
    t_change = time.monotonic()
    dns.set(NAME, a=["127.0.0.3"])
    line = p.wait_line(r"info: server app/b: '%s' resolves to 127\.0\.0\.3:%d \(was "
                       r"127\.0\.0\.2:%d\)" % (NAME, port, port), INTERVAL + SLACK, since=mark)
    H.check(line, "the new answer taken", "within resolve_interval + %ds" % SLACK, "none")
    time.sleep(SWITCH)
    H.log("new address in use after %.2fs" % (time.monotonic() - t_change))
    before2 = served(s2)
    for i in range(5):
        cport = round_trip(p.port(), 200 + i)
        H.check_eq(served_by(p, cport, since=mark), "b/127.0.0.3:%d" % port,
                   "server of a client after the change")
    H.wait_until(lambda: served(s3) >= 5, 5)
    H.check_eq((served(s2) - before2, served(s3)), (0, 5),
               "new connections at .2 and .3 after the change")

    # The long-lived one finishes, byte-exact, on the old address.
    block = os.urandom(half)
    long.sendall(block)
    long.shutdown(socket.SHUT_WR)
    rest = H.read_stream(long)
    long.close()
    H.check_eq(rest.end, "eof", "how the long-lived connection ended")
    H.check_eq(rest.n, half, "bytes echoed after the change")
    H.check_eq(hashlib.sha256(block).hexdigest(), rest.sha,
               "sha256 of the second half")
    a = p.access_for(long_port)
    H.check_access(a, up=2 * half, down=2 * half, server="b/127.0.0.2:%d" % port,
                   what="long-lived connection")
    H.wait_until(lambda: served(s2) > before2, 5)
    H.check(any(r.get("n") == 2 * half for r in s2.results),
            "127.0.0.2 saw the whole long-lived stream", "a 2 MiB echo",
            [r.get("n") for r in s2.results])
    p.finish()


def test_aaaa_and_checks(ctx):
    if not H.have_ipv6():
        raise H.Skip("::1 cannot be bound here")
    port, (s2, s6) = servers_on(ctx, ["127.0.0.2", "::1"])
    dns = ctx.register(DnsServer())
    dns.set(NAME, a=["127.0.0.2", "127.0.0.4"], aaaa=["::1"])
    p = dns_proxy(ctx, dns, ["b %s:%d" % (NAME, port)], health_check="tcp",
                  health_interval="200ms", health_timeout="200ms", rise=2, fall=2,
                  retries=2)
    p.allow(r"server app/b 127\.0\.0\.4:%d is down" % port)
    p.start()
    H.check(p.wait_line(r"resolves to 127\.0\.0\.2:%d 127\.0\.0\.4:%d \[::1\]:%d"
                        % (port, port, port), 5),
            "three addresses from A and AAAA", "a 'resolves to' line", "none")
    H.check(p.wait_line(r"warn: server app/b 127\.0\.0\.4:%d is down: 2 checks failed"
                        % port, 5),
            "127.0.0.4 checked and logged down", "within 5 s", "no line")
    servers = []
    for i in range(12):
        servers.append(served_by(p, round_trip(p.port(), 300 + i, 64 * H.KiB)))
    H.check_eq(sorted(set(servers)), sorted(["b/127.0.0.2:%d" % port, "b/[::1]:%d" % port]),
               "servers that took clients")
    H.wait_until(lambda: served(s2) + served(s6) >= 12, 5)
    H.check(served(s2) > 0 and served(s6) > 0, "both addresses serve",
            "> 0 each", (served(s2), served(s6)))
    p.finish()


def test_silent_dns(ctx):
    port, (s2,) = servers_on(ctx, ["127.0.0.2"])
    dns = ctx.register(DnsServer())
    dns.set(NAME, a=["127.0.0.2"])
    p = dns_proxy(ctx, dns, ["b %s:%d" % (NAME, port)])
    p.allow(r"server app/b: cannot resolve '%s'" % NAME)
    p.start()
    round_trip(p.port(), 400)
    mark = p.mark()
    dns.silent = True
    t0 = time.monotonic()
    warn = p.wait_line(r"warn: server app/b: cannot resolve '%s': no answer .*; keeping "
                       r"its address 127\.0\.0\.2:%d$" % (NAME, port), INTERVAL + 4 + SLACK,
                       since=mark)
    H.check(warn, "the silence logged", "a warning that keeps the address", "none")
    H.log("silence noticed after %.2fs" % (time.monotonic() - t0))
    q = dns.asked_for(NAME)
    t_warn = time.monotonic()
    for i in range(3):
        cport = round_trip(p.port(), 410 + i)
        H.check_eq(served_by(p, cport), "b/127.0.0.2:%d" % port,
                   "server while the DNS is silent")
    # The next round starts resolve_interval after the failure and fails
    # one query time (2 s x 2 attempts) later: let it, and then some.
    time.sleep(max(0, t_warn + INTERVAL + 4 + 2 - time.monotonic()))
    H.check(dns.asked_for(NAME) >= q + 2, "queries go on while it is silent",
            "another round at least", dns.asked_for(NAME) - q)
    warns = [m for lvl, m in p.parsed(since=mark) if lvl == "warn"]
    H.check_eq(len(warns), 1, "warnings over several failed rounds (%s)" % warns)
    mark = p.mark()
    dns.silent = False
    H.check(p.wait_line(r"info: server app/b: '%s' resolves again, to 127\.0\.0\.2:%d"
                        % (NAME, port), INTERVAL + 4 + SLACK, since=mark),
            "answering again logged", "a 'resolves again' line", "none")
    round_trip(p.port(), 420)
    p.finish()


def test_starts_unresolved(ctx):
    port, (s2, s3) = servers_on(ctx, ["127.0.0.2", "127.0.0.3"])
    dns = ctx.register(DnsServer())
    p = dns_proxy(ctx, dns, ["a 127.0.0.3:%d" % port, "b %s:%d" % (NAME, port)])
    p.allow(r"\[backend app\] server: cannot resolve '%s': no such name; it stays down "
            r"until it resolves" % NAME)
    p.start()
    H.check(p.wait_line(r"warn: .*:\d+: \[backend app\] server: cannot resolve '%s'" % NAME, 1),
            "the name that did not resolve at start", "a warning", "none")
    for i in range(3):
        H.check_eq(served_by(p, round_trip(p.port(), 500 + i, 64 * H.KiB)),
                   "a/127.0.0.3:%d" % port, "server while b has no address")
    mark = p.mark()
    dns.set(NAME, a=["127.0.0.2"])
    H.check(p.wait_line(r"resolves to 127\.0\.0\.2:%d \(was none\)" % port,
                        INTERVAL + SLACK, since=mark),
            "the name resolves later", "a 'resolves to' line", "none")
    time.sleep(SWITCH)
    got = set()
    for i in range(6):
        got.add(served_by(p, round_trip(p.port(), 510 + i, 64 * H.KiB), since=mark))
    H.check_eq(sorted(got), ["a/127.0.0.3:%d" % port, "b/127.0.0.2:%d" % port],
               "servers after the name resolved")
    p.finish()


def test_check(ctx):
    dns = ctx.register(DnsServer())
    text = ("[global]\nresolver = %s\n\n[listener web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n\n[backend app]\nserver = a 127.0.0.1:9\n"
            "server = b %s:9001\n" % (dns.addr, H.free_port(), NAME))
    path = ctx.write_file("check.ini", text)
    out = subprocess.run([ctx.spliced, "-t", "-c", path], capture_output=True,
                         timeout=60, text=True)
    H.check_eq(out.returncode, 1, "spliced -t exit status, name unresolved")
    want = "%s:10: [backend app] server: cannot resolve '%s': no such name" % (path, NAME)
    H.check(want in out.stderr, "spliced -t names file, line, key and host",
            want, out.stderr.strip())
    dns.set(NAME, a=["127.0.0.2"])
    out = subprocess.run([ctx.spliced, "-t", "-c", path], capture_output=True,
                         timeout=60, text=True)
    H.check_eq(out.returncode, 0, "spliced -t exit status, name resolves (%s)"
               % out.stderr.strip())
    H.check("is valid" in out.stdout, "spliced -t output", "'is valid'", out.stdout)


if __name__ == "__main__":
    H.main([test_follows_dns, test_aaaa_and_checks, test_silent_dns,
            test_starts_unresolved, test_check], deadline=240, doc=__doc__)
