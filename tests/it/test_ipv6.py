#!/usr/bin/env python3
"""IPv6 end to end, the dual-stack wildcard, and several listeners and
backends in one config.

ipv6 end to end: listener [::1], backend server on [::1]: a 16 MiB download
  and a 16 MiB upload arrive byte-exact (sha256 both ways); the access log
  names the client as [::1]:PORT.
wildcard: `--listen *:PORT` is reached over 127.0.0.1 and over ::1; an IPv4
  client is logged as 127.0.0.1:PORT (not ::ffff:127.0.0.1).
many listeners: three listeners over two backends (one IPv4, one IPv6,
  balance source and random): each listener reaches its own backend.
Skipped where ::1 cannot be bound.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

LOCAL6 = "::1"
SIZE = 16 * H.MiB


def dial6(port):
    s = socket.socket(socket.AF_INET6)
    s.settimeout(H.IO_TIMEOUT)
    s.connect((LOCAL6, port))
    return s


def need_ipv6():
    if not H.have_ipv6():
        raise H.Skip("::1 cannot be bound here")


def echo_via(sock, seed, size=H.KiB):
    sha = H.send_stream(sock, seed, size)
    sock.shutdown(socket.SHUT_WR)
    got = H.read_stream(sock)
    sock.close()
    return sha, got


def test_ipv6_end_to_end(ctx):
    need_ipv6()
    be = ctx.register(H.Backend(name="v6", ip=LOCAL6))
    p = ctx.proxy(args=["--listen", "[::1]:{port}", "--backend", be.addr,
                        "--splice", ctx.mode, "--workers", "2"])
    p.start()

    # Download: the server sends, the client hashes.
    be.expect(H.source(SIZE, 61))
    mark = p.mark()
    c = dial6(p.port())
    cport = c.getsockname()[1]
    c.shutdown(socket.SHUT_WR)
    got = H.read_stream(c)
    c.close()
    sent = be.result(0)
    H.check_eq((got.end, got.n, got.sha), ("eof", SIZE, sent["sha"]),
               "download over IPv6 (end, bytes, sha256)")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=0, down=SIZE, server="s1/" + be.addr, what="download")
    H.check_eq(a.get("client"), "[::1]:%d" % cport, "download: client in the access log")

    # Upload: the client sends, the server hashes.
    be.expect(H.sink())
    mark = p.mark()
    c = dial6(p.port())
    cport = c.getsockname()[1]
    sha = H.send_stream(c, 62, SIZE)
    c.shutdown(socket.SHUT_WR)
    end = H.read_stream(c)
    c.close()
    r = be.result(1)
    H.check_eq((r["end"], r["n"], r["sha"]), ("eof", SIZE, sha),
               "upload over IPv6 at the server (end, bytes, sha256)")
    H.check_eq(end.n, 0, "upload: bytes back to the client")
    a = p.access_for(cport, since=mark)
    H.check_access(a, up=SIZE, down=0, what="upload")
    p.finish()


def test_wildcard_both_families(ctx):
    need_ipv6()
    be = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(args=["--listen", "*:{port}", "--backend", be.addr,
                        "--splice", ctx.mode, "--workers", "2"])
    p.start()
    for i, (family, host) in enumerate(((socket.AF_INET, H.LOCAL),
                                        (socket.AF_INET6, LOCAL6))):
        mark = p.mark()
        c = socket.socket(family)
        c.settimeout(H.IO_TIMEOUT)
        c.connect((host, p.port()))
        cport = c.getsockname()[1]
        sha, got = echo_via(c, 70 + i, 256 * H.KiB)
        what = "*:PORT over %s" % host
        H.check_eq((got.end, got.n, got.sha), ("eof", 256 * H.KiB, sha),
                   what + ": echoed (end, bytes, sha256)")
        a = p.access_for(cport, since=mark)
        want = "%s:%d" % (host, cport) if family == socket.AF_INET else \
            "[%s]:%d" % (host, cport)
        H.check_eq(a.get("client"), want, what + ": client in the access log")
    p.finish()


def test_many_listeners(ctx):
    need_ipv6()
    v4 = [ctx.backend(H.echo(), name="v4-%d" % i) for i in range(2)]
    v6 = [ctx.register(H.Backend(H.echo(), name="v6-%d" % i, ip=LOCAL6))
          for i in range(2)]
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"one": {"backend": "four"},
                             "two": {"backend": "six"},
                             "three": {"backend": "four", "binds": 2}},
                  backends={"four": {"server": ["p%d %s" % (i, b.addr) for i, b in enumerate(v4)],
                                     "balance": "random"},
                            "six": {"server": ["q%d %s" % (i, b.addr) for i, b in enumerate(v6)],
                                    "balance": "source"}})
    p.start()
    cases = [("one", 0, "four", "p"), ("two", 0, "six", "q"),
             ("three", 0, "four", "p"), ("three", 1, "four", "p")]
    for n, (lname, bind, bname, prefix) in enumerate(cases * 3):
        mark = p.mark()
        c = H.dial(p.port(lname, bind))
        cport = H.local_port(c)
        sha, got = echo_via(c, 80 + n)
        what = "listener %s bind %d (round %d)" % (lname, bind, n // len(cases))
        H.check_eq((got.end, got.n, got.sha), ("eof", H.KiB, sha), what + ": echoed")
        a = p.access_for(cport, since=mark)
        H.check(a.get("server", "").startswith(prefix), what + ": served by backend " + bname,
                prefix + "N/...", a.get("server"))
    # Source: one client address, so one IPv6 server took every connection.
    H.check_eq(sorted(b.accepted for b in v6), [0, 3],
               "backend six (source): connections per server")
    p.finish()


if __name__ == "__main__":
    H.main([test_ipv6_end_to_end, test_wildcard_both_families, test_many_listeners],
           deadline=300, doc=__doc__)
