#!/usr/bin/env python3
"""The PROXY protocol both ways, per splice mode (issue 13).

haproxy_sends: HAProxy 2.6 (`send-proxy` and `send-proxy-v2`, mode tcp) in
  front of a spliced listener with accept_proxy = on (accept_proxy_from
  127.0.0.1/32, where HAProxy connects from): clients bound to 127.0.0.10
  .. 127.0.0.25 connect to HAProxy. spliced's access log names each
  client's own address and port; `balance = source` over three echo
  servers sends every connection of one address to one server, and more
  than one server takes some (the peer, 127.0.0.1, would give one server
  for all); 1 MiB and 4 KiB echoed, sha256 both ways. A third HAProxy
  front sends v2 with a CRC32C and a unique-id TLV (skipped, checked).
haproxy_receives: spliced `proxy_protocol = v1` and `v2` in front of
  HAProxy `bind ... accept-proxy`, which passes the client on with
  `send-proxy-v2` to a backend here that parses that header: its source is
  the client (127.0.0.x:port the test chose), its destination the
  address the client connected to (spliced's listener); payload echoed
  byte-exact.
sends_exact: spliced v1 and v2 straight to a parsing backend: the v1 line
  is exactly "PROXY TCP4 127.0.0.5 127.0.0.1 CPORT LPORT\\r\\n", the v2
  header TCP over IPv4 with those addresses; then the payload.
pass_on: accept_proxy = on and proxy_protocol = v2 (and v1): the header a
  client sent (192.0.2.7:1111 -> 198.51.100.1:80, a TCP6 one from
  2001:db8::7, one with a CRC32C and another TLV) is what the backend gets; a LOCAL header from the client
  makes spliced send the peer's own address on.
dribble: a v2 header one byte per 100 ms completes (timeout_handshake
  10s), and so does a v1 line; the access log names the header's source.
refusals (auto only): accept_proxy_from = 127.0.0.2/32, timeout_handshake
  = 1s. A header that stops short is reset at the timeout (not before
  0.9 s, within 4 s); a client without a header, a v2 header with a wrong
  CRC32C, a v1 line with no CRLF in 107 bytes, and a peer from 127.0.0.3
  are reset at once; none reaches the
  backend. LOCAL (v2) and UNKNOWN (v1) keep the peer's address (access
  log). /metrics: spliced_handshake_total{kind="proxy"} ok 3, timeout 1,
  invalid 2, too_large 1; the peer outside accept_proxy_from reads nothing
  (no handshake counted) and adds one to
  spliced_denied_connections_total{reason="proxy_header"}, which counts
  the five refused clients.
health_checks (auto only): health_check = tcp on a backend of a v2
  listener: every check connection starts with exactly the v2 LOCAL
  header; of a v1 listener, "PROXY UNKNOWN\\r\\n"; of a listener without
  proxy_protocol, no byte.

HAProxy is Debian's haproxy package (tools/setup installs it); without it
the HAProxy tests fail under CI=true and skip by hand."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_metrics import parse, scrape, total  # noqa: E402

BIG, SMALL = H.MiB, 4 * H.KiB


# --------------------------------------------------------------------------
# HAProxy

def haproxy_bin():
    for p in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if p and os.access(p, os.X_OK):
            return p
    if os.environ.get("CI") == "true":
        H.fail("haproxy", "tools/setup installed it", "not found")
    raise H.Skip("no haproxy: run tools/setup")


HAPROXY_HEAD = """global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
"""


class HAProxy:
    """haproxy -db -f CFG in the foreground; ready once each of its ports
    is in LISTEN (no probe connection: it would reach what is behind)."""

    def __init__(self, ctx, body, ports, name="haproxy"):
        self.name = name
        self.cfg = ctx.write_file(name + ".cfg", HAPROXY_HEAD + body)
        self.errpath = os.path.join(ctx.tmp, name + ".stderr")
        r = subprocess.run([haproxy_bin(), "-c", "-q", "-f", self.cfg],
                           capture_output=True, timeout=30)
        H.check_eq((r.returncode, (r.stdout + r.stderr).decode(errors="replace").strip()),
                   (0, ""), "haproxy -c of %s" % self.cfg)
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen([haproxy_bin(), "-db", "-f", self.cfg],
                                     stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err)
        ctx.register(self)

        def listening():
            states = {(r[0], r[2]) for r in H.tcp_table()}
            return all((p, "LISTEN") in states for p in ports)
        if not H.wait_until(listening, 20):
            self.close()
            H.fail("%s listening on %s" % (name, ports), "within 20 s", self.stderr())

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode(errors="replace")[-2000:]
        except OSError as e:
            return repr(e)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.err.close()


# --------------------------------------------------------------------------
# helpers

def trip_from(src_ip, port, seed, size, hello=b""):
    """An echo round trip of size bytes from a client bound to src_ip,
    after `hello` (a PROXY header, not echoed); returns the client port."""
    c = H.dial_from(src_ip, port)
    cport = H.local_port(c)
    if hello:
        c.sendall(hello)
    what = H.echo_trip(port, seed, size, sock=c)
    H.check(what is None, "%d B echoed from %s:%d through port %d" % (size, src_ip, cport, port),
            "intact", what)
    return cport


def proxy_with(ctx, listeners, backends, admin=False, glob=None):
    return ctx.started_proxy(listeners, backends, glob, admin,
                             allow=(r"refused", r"^admin: "))


def by_port(results, port):
    return [r for r in results if r.get("pp", {}).get("src", (None, None))[1] == port]


# --------------------------------------------------------------------------

def test_haproxy_sends(ctx):
    servers = [ctx.backend(H.echo(), name="s%d" % i) for i in range(3)]
    p, _ = proxy_with(ctx,
                      {"pp": {"backend": "app", "accept_proxy": "on",
                              "accept_proxy_from": "127.0.0.1/32"}},
                      {"app": {"balance": "source",
                               "server": ["s%d %s" % (i, s.addr)
                                          for i, s in enumerate(servers)]}})
    f1, f2, f3 = H.free_port(), H.free_port(), H.free_port()
    HAProxy(ctx, """
listen v1
    bind 127.0.0.1:%d
    server sp 127.0.0.1:%d send-proxy
listen v2
    bind 127.0.0.1:%d
    server sp 127.0.0.1:%d send-proxy-v2
listen v2tlv
    bind 127.0.0.1:%d
    unique-id-format %%{+X}o%%ci:%%cp_%%rt
    server sp 127.0.0.1:%d send-proxy-v2 proxy-v2-options crc32c,unique-id
""" % (f1, p.port(), f2, p.port(), f3, p.port()), [f1, f2, f3])
    addrs = ["127.0.0.%d" % (10 + i) for i in range(16)]
    landed = {}
    seed = 100
    for front in (f1, f2, f3):
        for ip in addrs:
            for size in (SMALL, BIG if ip == addrs[0] or ip == addrs[-1] else SMALL):
                seed += 1
                mark = p.mark()
                cport = trip_from(ip, front, seed, size)
                a = p.access_for(cport, since=mark, timeout=20)
                H.check_eq(a.get("client"), "%s:%d" % (ip, cport),
                           "access line's client behind HAProxy port %d" % front)
                H.check_access(a, up=size, down=size, what="access line of %s:%d" % (ip, cport))
                landed.setdefault(ip, set()).add(a["server"].split("/")[0])
    for ip, names in sorted(landed.items()):
        H.check_eq(len(names), 1, "balance=source: servers taking %s (v1, v2, v2 with "
                   "TLVs)" % ip)
    used = set().union(*landed.values())
    H.log("balance=source over 16 client addresses used %s" % sorted(used))
    H.check(len(used) >= 2, "balance=source over 16 client addresses",
            "more than one server (the header's address hashed, not the peer's)",
            sorted(used))
    p.finish()


def test_haproxy_receives(ctx):
    be = ctx.backend(H.pp_echo(), name="parse")
    hport = H.free_port()
    HAProxy(ctx, """
listen ap
    bind 127.0.0.1:%d accept-proxy
    server py %s send-proxy-v2
""" % (hport, be.addr), [hport])
    p, _ = proxy_with(ctx,
                      {"s1": {"backend": "hap", "proxy_protocol": "v1"},
                       "s2": {"backend": "hap", "proxy_protocol": "v2"}},
                      {"hap": {"server": "h 127.0.0.1:%d" % hport}})
    seed = 200
    n = 0
    for lst in ("s1", "s2"):
        for i, size in enumerate((SMALL, BIG, SMALL)):
            ip = "127.0.0.%d" % (30 + i)
            seed += 1
            cport = trip_from(ip, p.port(lst), seed, size)
            n += 1
            be.wait_results(n, timeout=20)
            got = by_port(be.results, cport)
            H.check(len(got) == 1, "backend behind HAProxy: a header with source port %d" % cport,
                    "one", [r.get("pp", r) for r in be.results[-3:]])
            r = got[0]
            H.check_eq((r["pp"]["src"], r["pp"]["dst"]),
                       ((ip, cport), ("127.0.0.1", p.port(lst))),
                       "%s (proxy_protocol %s) -> HAProxy accept-proxy -> send-proxy-v2: "
                       "(source, destination)" % (lst, p.listeners[lst]["proxy_protocol"]))
            H.check_eq((r["n"], r["end"]), (size, "eof"), "bytes the backend echoed")
    p.finish()


def test_sends_exact(ctx):
    be = ctx.backend(H.pp_echo(), name="parse")
    p, _ = proxy_with(ctx,
                      {"v1": {"backend": "app", "proxy_protocol": "v1"},
                       "v2": {"backend": "app", "proxy_protocol": "v2"}},
                      {"app": {"server": "a " + be.addr}})
    n = 0
    for lst, size in (("v1", SMALL), ("v1", BIG), ("v2", SMALL), ("v2", BIG)):
        cport = trip_from("127.0.0.5", p.port(lst), 300 + n, size)
        n += 1
        be.wait_results(n, timeout=20)
        r = be.results[-1]
        H.check("pp" in r, "the backend read a PROXY header first", "one", r)
        hdr = r["pp"]
        src, dst = ("127.0.0.5", cport), ("127.0.0.1", p.port(lst))
        if lst == "v1":
            H.check_eq(hdr["raw"], H.pp_v1(src, dst), "the v1 line spliced sent")
        else:
            H.check_eq((hdr["version"], hdr["command"], hdr["family"], hdr["src"], hdr["dst"]),
                       (2, "PROXY", 0x11, src, dst),
                       "the v2 header spliced sent (version, command, family, src, dst)")
        H.check_eq((r["n"], r["end"]), (size, "eof"), "payload after the header (bytes, end)")
    p.finish()


def test_pass_on(ctx):
    be = ctx.backend(H.pp_echo(), name="parse")
    p, _ = proxy_with(ctx,
                      {"in2": {"backend": "app", "accept_proxy": "on", "proxy_protocol": "v2"},
                       "in1": {"backend": "app", "accept_proxy": "on", "proxy_protocol": "v1"}},
                      {"app": {"server": "a " + be.addr}})
    cases = [
        ("in2", H.pp_v2(("192.0.2.7", 1111), ("198.51.100.1", 80)),
         ("192.0.2.7", 1111), ("198.51.100.1", 80), 0x11),
        ("in2", H.pp_v1(("2001:db8::7", 2222), ("2001:db8:ffff::1", 443)),
         ("2001:db8::7", 2222), ("2001:db8:ffff::1", 443), 0x21),
        ("in1", H.pp_v2(("192.0.2.8", 3333), ("198.51.100.2", 81)),
         ("192.0.2.8", 3333), ("198.51.100.2", 81), None),
        ("in2", H.pp_v2(("192.0.2.11", 4444), ("198.51.100.3", 82), crc=True,
                        tlvs=b"\x05\x00\x03abc"),
         ("192.0.2.11", 4444), ("198.51.100.3", 82), 0x11),
        ("in2", H.pp_v2(local=True), None, None, 0x11),
        ("in1", H.pp_v1(), None, None, None),
    ]
    for n, (lst, hello, src, dst, fam) in enumerate(cases):
        size = BIG if n % 2 else SMALL
        cport = trip_from("127.0.0.6", p.port(lst), 400 + n, size, hello=hello)
        if src is None:     # LOCAL / UNKNOWN: the peer itself goes on
            src, dst = ("127.0.0.6", cport), ("127.0.0.1", p.port(lst))
        be.wait_results(n + 1, timeout=20)
        r = be.results[-1]
        H.check("pp" in r, "the backend read a PROXY header first", "one", r)
        what = "listener %s, client sent %r: header sent on" % (lst, hello)
        if lst == "in1":
            H.check_eq(r["pp"]["raw"], H.pp_v1(src, dst), what)
        else:
            H.check_eq((r["pp"]["command"], r["pp"]["family"], r["pp"]["src"], r["pp"]["dst"]),
                       ("PROXY", fam, src, dst), what + " (command, family, src, dst)")
        H.check_eq((r["n"], r["end"]), (size, "eof"), what + ": payload (bytes, end)")
    p.finish()


def dribble(sock, data, gap):
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        time.sleep(gap)     # the pace under test, not a wait for an event


def test_dribble(ctx):
    be = ctx.backend(H.echo(), name="echo")
    p, _ = proxy_with(ctx, {"pp": {"backend": "app", "accept_proxy": "on",
                                   "timeout_handshake": "10s"}},
                      {"app": {"server": "a " + be.addr}})
    for k, hello in enumerate((H.pp_v2(("192.0.2.9", 4001), ("127.0.0.1", p.port())),
                               H.pp_v1(("192.0.2.9", 4002), ("127.0.0.1", p.port())))):
        mark = p.mark()
        c = H.dial_from("127.0.0.7", p.port(), nodelay=True)
        t0 = time.monotonic()
        dribble(c, hello, 0.1)
        H.log("%d header bytes sent one per 100 ms in %.1fs" % (len(hello), time.monotonic() - t0))
        what = H.echo_trip(p.port(), 500 + k, BIG, sock=c)
        H.check(what is None, "echo after a dribbled %s header" % ("v2", "v1")[k], "intact", what)
        a = p.access_for(4001 + k, since=mark, timeout=20)
        H.check_eq(a.get("client"), "192.0.2.9:%d" % (4001 + k), "access line's client")
        H.check_access(a, up=BIG, down=BIG, what="access line after a dribbled header")
    p.finish()


def expect_reset(c, within, what, t0=None):
    """c gets an RST within `within` seconds (of t0, by default now)."""
    t0 = time.monotonic() if t0 is None else t0
    end, _ = H.expect_closed(c, within + 5)
    t = time.monotonic() - t0
    c.close()
    H.check(end == "reset" and t <= within, what, "an RST within %.1f s" % within,
            "%s after %.2f s" % (end, t))
    return t


def test_refusals(ctx):
    if ctx.mode != "auto":
        raise H.Skip("no byte is relayed here: runs with splice=auto only")
    be = ctx.backend(H.echo(), name="echo")
    p, aport = proxy_with(ctx, {"pp": {"backend": "app", "accept_proxy": "on",
                                       "accept_proxy_from": "127.0.0.2/32",
                                       "timeout_handshake": "1s"}},
                          {"app": {"server": "a " + be.addr}}, admin=True)
    port = p.port()

    def counts():
        s = parse(scrape(aport))
        hs = {r: total(s, "spliced_handshake_total", listener="pp", kind="proxy", result=r)
              for r in ("ok", "timeout", "invalid", "too_large")}
        return hs, total(s, "spliced_denied_connections_total", listener="pp",
                         reason="proxy_header")

    # served: a valid header
    trip_from("127.0.0.2", port, 600, SMALL,
              hello=H.pp_v2(("192.0.2.10", 5000), ("127.0.0.1", port)))
    # a header that stops short: reset at timeout_handshake
    c = H.dial_from("127.0.0.2", port)
    c.sendall(H.pp_v2(("192.0.2.10", 5001), ("127.0.0.1", port))[:10])
    t = expect_reset(c, 4.0, "a v2 header that stops after 10 bytes")
    H.check(t >= 0.9, "a v2 header that stops short: the reset", "at timeout_handshake "
            "(1 s), not before 0.9 s", "after %.2f s" % t)
    # no header at all
    c = H.dial_from("127.0.0.2", port)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    expect_reset(c, 0.8, "a client without a header (plain payload)")
    # a v2 header whose CRC32C TLV is wrong
    c = H.dial_from("127.0.0.2", port)
    c.sendall(H.pp_v2(("192.0.2.10", 5002), ("127.0.0.1", port), crc="bad"))
    expect_reset(c, 0.8, "a v2 header with a wrong CRC32C")
    # a v1 line that never ends within 107 bytes (UNKNOWN takes anything up to CRLF)
    c = H.dial_from("127.0.0.2", port)
    c.sendall(b"PROXY UNKNOWN " + b"x" * 110)
    expect_reset(c, 0.8, "a v1 line with no CRLF within 107 bytes")
    before = counts()
    # a peer outside accept_proxy_from: reset, nothing read
    what = "a peer (127.0.0.3) outside accept_proxy_from 127.0.0.2/32"
    t0 = time.monotonic()
    try:
        c = H.dial_from("127.0.0.3", port)
    except ConnectionResetError:
        # The RST came before connect() returned (loopback is that quick).
        t = time.monotonic() - t0
        H.check(t <= 0.8, what, "an RST within 0.8 s", "after %.2f s" % t)
    else:
        expect_reset(c, 0.8, what, t0)
    after = H.wait_until(lambda: (lambda x: x if x[1] > before[1] else None)(counts()), 5) \
        or counts()
    H.check_eq((after[0], after[1] - before[1]), (before[0], 1),
               "metrics across the refused peer outside accept_proxy_from "
               "(handshakes unchanged, denied{reason=proxy_header} + 1)")
    # LOCAL and UNKNOWN keep the peer's address
    for k, hello in enumerate((H.pp_v2(local=True), H.pp_v1())):
        mark = p.mark()
        cport = trip_from("127.0.0.2", port, 610 + k, SMALL, hello=hello)
        a = p.access_for(cport, since=mark, timeout=20)
        H.check_eq(a.get("client"), "127.0.0.2:%d" % cport,
                   "access line's client after %r" % hello)
    H.check_eq(be.accepted, 3, "connections that reached the backend (the served ones only)")
    hs, denied = counts()
    H.check_eq(hs, {"ok": 3, "timeout": 1, "invalid": 2, "too_large": 1},
               "spliced_handshake_total{listener=pp,kind=proxy} by result")
    H.check_eq(denied, 5, "spliced_denied_connections_total{listener=pp,reason=proxy_header} "
               "(short, no header, bad CRC32C, too long, outside accept_proxy_from)")
    p.finish()


def check_handler():
    """A backend handler for health-check connections: what they send
    first (a PROXY header, or nothing before EOF)."""
    def h(conn, be, idx):
        conn.settimeout(10)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError as e:
            return {"first": "error %r" % (e,)}
        if first == b"":
            return {"first": "nothing"}
        try:
            return {"first": H.pp_read(conn)["raw"]}
        except (ValueError, EOFError, OSError) as e:
            return {"first": "not a header: %r" % (e,)}
    return h


def test_health_checks(ctx):
    if ctx.mode != "auto":
        raise H.Skip("no byte is relayed here: runs with splice=auto only")
    bes = {v: ctx.backend(check_handler(), name="chk" + v) for v in ("v1", "v2", "off")}
    check = {"health_check": "tcp", "health_interval": "200ms", "health_timeout": "1s"}
    p, _ = proxy_with(ctx,
                      {"l" + v: {"backend": "b" + v, "proxy_protocol": v} for v in bes},
                      {"b" + v: dict(check, server="s " + be.addr) for v, be in bes.items()})
    want = {"v1": b"PROXY UNKNOWN\r\n", "v2": H.pp_v2(local=True), "off": "nothing"}
    for v, be in bes.items():
        got = [r.get("first", r) for r in be.wait_results(3, timeout=20)]
        H.check_eq(got[:3], [want[v]] * 3,
                   "what health checks of the backend of a listener with proxy_protocol = %s "
                   "send first" % v)
    p.finish()


if __name__ == "__main__":
    H.main([test_haproxy_sends, test_haproxy_receives, test_sends_exact, test_pass_on,
            test_dribble, test_refusals, test_health_checks], deadline=170, doc=__doc__)
