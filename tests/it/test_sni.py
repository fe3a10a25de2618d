#!/usr/bin/env python3
"""Routing by TLS server name (issue 15), per splice mode, with real TLS on
both ends: Python ssl backends with self-signed certificates the test makes
with `openssl req` at start, Python ssl and `openssl s_client` clients that
verify them. Plain TCP backends stand in where the test must see the exact
bytes the proxy held: each greets with its own name, reads to EOF, and
answers with the count and sha256 of what it got. Those pieces, the
hand-built ClientHellos and the clients live in ittls.py.

routes: a listener `tls` (route a.example ta, route *.b.example tb,
  backend td): a.example reaches ta and y.x.b.example / x.b.example reach
  tb (Python ssl and `openssl s_client -servername`, A.EXAMPLE too: names
  are case-insensitive), each handshake verified end to end (the
  certificate of the backend the name chose, and the backend saw that same
  server_name); unknown.example, b.example (not *.b.example) and a hello
  without SNI reach td. A listener `raw` (backend rd, plain TCP): plain
  HTTP reaches rd byte-exact. A listener `strict` without a backend: plain
  HTTP, a hello without SNI and an unknown name are reset at once, none
  reaching a backend; a.example still reaches its backend. The access lines
  say sni=NAME (lower-cased) or sni=-; /metrics counts every outcome per
  listener (spliced_handshake_total{kind="sni"} and
  spliced_denied_connections_total{reason="no_route"}).
big_hellos: a 2,300-byte ClientHello built here (GREASE, a 1,216-byte
  X25519MLKEM768 key share, 22 ALPN entries, padding, server_name last;
  OpenSSL itself parses it and sees the name) sent in five TCP segments 80
  ms apart, re-framed over five TLS records, and one byte per millisecond:
  each reaches its route byte-exact. OpenSSL's own hello grown past 2 KB
  with 30 long ALPN entries, split in segments through the name, re-framed
  in records cutting the name, and dribbled a byte per millisecond: each
  routed and the TLS handshake completes through the proxy.
incomplete: timeout_handshake = 1s, sni_max_bytes = 4k (its least). Without a
  default backend: a hello that stops after 60 bytes is reset at the
  timeout (not before 0.9 s, within 4 s); a 5,000-byte hello is reset at once
  (too large), and so is a handshake message that is not a ClientHello
  (invalid). With a default backend: the 60 bytes reach it at the timeout,
  byte-exact; the 5,000-byte hello for a.example and the invalid one reach it
  byte-exact (not the a.example route); a client closing half way through
  its hello reaches no backend. With accept_proxy, a PROXY header 0.8 s
  late leaves the hello the rest of the same 1 s: reset 0.9..1.5 s after
  the connect. Each outcome counted.
download: 64 MiB over TLS from ta through a routed connection (raw TLS
  bytes counted on the client): sha256 of the plaintext both sides; the
  access line says sni=a.example, its byte counts are the client's raw
  byte counts both ways, and down_splice > 0 where the mode splices (never:
  down_splice = 0).
compose: accept_proxy = on with proxy_protocol = v2: a PROXY v2 header
  then the hello (in one write, and 100 ms apart) is routed by the hello,
  the access line names the header's client, the backend gets a v2 header
  with that client and then the hello byte-exact; proxy_protocol = v2
  alone sends the peer's own address before the hello. SIGHUP moving
  a.example from ra to rb: new connections go to rb, one held open across
  the reload finishes on ra byte-exact.
connections: GET /connections shows "sni": "a.example" for a held TLS
  connection routed by name and null for a held one without SNI, each on
  the server it was routed to."""

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_metrics import parse, scrape, total  # noqa: E402
from ittls import (BioTLS, bio_trip, certs, client_ctx, dial, expect_reset,  # noqa: E402
                   expected_report, hello, hello_msg, openssl_bin, openssl_sees, read_all,
                   records, recv_line, reporter, raw_trip, routed_raw, send_pieces, split_at,
                   tls_backend, tls_trip)

RESULTS = ("ok", "default", "no_sni", "not_tls", "timeout", "too_large", "invalid")
HTTP = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
BIG_HELLO = 2300        # the hand-built hello's handshake message, bytes
TOO_BIG = 5000          # one over sni_max_bytes = 4k
GAP = 0.08              # between TCP segments of a split hello
DRIBBLE_GAP = 0.001     # between single bytes of a dribbled hello
DOWNLOAD = 64 * H.MiB


def backends_cfg(bes):
    """One server per backend, named as the backend: the access line's and
    /connections' server is then WHO/ADDRESS."""
    return {who: {"server": "%s %s" % (who, be.addr)} for who, be in bes.items()}


# --------------------------------------------------------------------------
# the proxy and its metrics

def start(ctx, listeners, backends):
    return ctx.started_proxy(listeners, backends, admin=True,
                             allow=(r"refused", r"^admin: "))


def counts(aport, listener):
    s = parse(scrape(aport))
    d = {r: total(s, "spliced_handshake_total", listener=listener, kind="sni", result=r)
         for r in RESULTS}
    d["denied_no_route"] = total(s, "spliced_denied_connections_total", listener=listener,
                                 reason="no_route")
    return d


def check_counts(aport, want):
    """want: {listener: {result: n}} (results not named: 0; the key
    denied_no_route for the denials). Waits up to 5 s for them."""
    full = {}
    for lst, w in want.items():
        d = {r: 0 for r in RESULTS}
        d["denied_no_route"] = 0
        d.update(w)
        full[lst] = d
    H.wait_until(lambda: {lst: counts(aport, lst) for lst in full} == full, 5, 0.1)
    got = {lst: counts(aport, lst) for lst in full}
    for lst in full:
        H.check_eq(got[lst], full[lst], "listener %s: spliced_handshake_total{kind=sni} by "
                   "result, and spliced_denied_connections_total{reason=no_route}" % lst)


def check_sni(p, cport, mark, name, what, be=None):
    """The access line of client port cport says sni=name (and, with be,
    server=WHO/ADDRESS of that backend)."""
    a = p.access_for(cport, since=mark, timeout=20)
    H.check_eq(a.get("sni"), name, what + ": the access line's sni (%r)" % (a,))
    if be is not None:
        H.check_eq(a.get("server"), "%s/%s" % (be.name, be.addr),
                   what + ": the access line's server")
    return a


ROUTES = {"a.example": "a", "*.b.example": "b"}


def routes(prefix, extra=None):
    r = ["%s %s%s" % (n, prefix, w) for n, w in ROUTES.items()]
    return r + (extra or [])


# --------------------------------------------------------------------------

def test_routes(ctx):
    tls = {w: tls_backend(ctx, w) for w in ("ta", "tb", "td")}
    raw = {w: ctx.backend(reporter(w), name=w) for w in ("ra", "rb", "rd")}
    p, aport = start(ctx, {
        "tls": {"route": routes("t"), "backend": "td", "timeout_handshake": "10s"},
        "raw": {"route": routes("r"), "backend": "rd", "timeout_handshake": "10s"},
        "strict": {"route": routes("r"), "timeout_handshake": "1s", "sni_max_bytes": "4k"},
    }, backends_cfg(dict(tls, **raw)))
    port = p.port("tls")
    mark = p.mark()
    lines = {}
    for name, who in (("a.example", "ta"), ("x.b.example", "tb"), ("y.x.b.example", "tb"),
                      ("unknown.example", "td"), ("b.example", "td"), (None, "td")):
        cport = tls_trip(ctx, port, name, who, "Python ssl, server_hostname=%s" % name)
        lines[cport] = (name or "-", tls[who])
    # (every access line so far written: the s_client ones come next)
    for cport, (name, be) in lines.items():
        check_sni(p, cport, mark, name, "tls listener, server_hostname=%s" % name, be)
    # openssl s_client, its hostname check on; the name's case is not the route's
    for name, who, low in (("x.b.example", "tb", "x.b.example"), ("A.EXAMPLE", "ta", "a.example")):
        before = tls[who].accepted
        smark = p.mark()
        r = subprocess.run([openssl_bin(), "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", name, "-CAfile", certs(ctx)[1],
                            "-verify_return_error", "-verify_hostname", name, "-ign_eof"],
                           input=b"bye\n", capture_output=True, timeout=60)
        out = r.stdout.decode(errors="replace")
        H.check(r.returncode == 0 and "Verify return code: 0 (ok)" in out and
                ("%s sni=%s\n" % (who, name)) in out,
                "openssl s_client -servername %s through the tls listener" % name,
                "exit 0, 'Verify return code: 0 (ok)', the greeting '%s sni=%s'" % (who, name),
                "exit %d; stdout tail: %s; stderr tail: %s" % (
                    r.returncode, out[-600:], r.stderr.decode(errors="replace")[-300:]))
        H.check_eq(tls[who].accepted, before + 1, "s_client %s: connections %s accepted"
                   % (name, who))
        p.wait_access_count(1, since=smark, timeout=20)
        H.check_eq([a.get("sni") for a in p.access(smark)], [low],
                   "s_client -servername %s: the access line's sni (lower-cased)" % name)
    for who, be in tls.items():
        errs = [r for r in be.results if "error" in r]
        H.check_eq(errs, [], "TLS backend %s: connections without an error" % who)

    # plain HTTP: the default (a plain backend) takes it byte-exact
    cport = routed_raw(p.port("raw"), "rd", [HTTP], "plain HTTP on the raw listener",
                       be=raw["rd"])
    check_sni(p, cport, mark, "-", "plain HTTP on the raw listener", raw["rd"])
    routed_raw(p.port("raw"), "ra", [hello("a.example", pq=False)],
               "a hello for a.example on the raw listener", be=raw["ra"])

    # no default backend: reset at once, no backend reached
    sp = p.port("strict")
    for data, what in ((HTTP, "plain HTTP"),
                       (hello(None, pq=False), "a hello without SNI"),
                       (hello("unknown.example", pq=False), "a hello for unknown.example")):
        expect_reset(sp, data, what + " on the listener without a default backend",
                     within=0.8, bes=raw.values())
    routed_raw(sp, "ra", [hello("a.example", pq=False)],
               "a hello for a.example on the listener without a default", be=raw["ra"])
    check_counts(aport, {
        "tls": {"ok": 5, "default": 2, "no_sni": 1},
        "raw": {"ok": 1, "not_tls": 1},
        "strict": {"ok": 1, "not_tls": 1, "no_sni": 1, "default": 1, "denied_no_route": 3},
    })
    p.finish()


def test_big_hellos(ctx):
    tls = {w: tls_backend(ctx, w) for w in ("ta", "tb", "td")}
    raw = {w: ctx.backend(reporter(w), name=w) for w in ("ra", "rb", "rd")}
    p, aport = start(ctx, {
        "tls": {"route": routes("t"), "backend": "td", "timeout_handshake": "20s"},
        "raw": {"route": routes("r"), "backend": "rd", "timeout_handshake": "20s"},
    }, backends_cfg(dict(tls, **raw)))
    # the hand-built hellos, checked by OpenSSL first
    names = ("x.b.example", "a.example", "y.b.example")
    msgs = {n: hello_msg(n, size=BIG_HELLO, seed=k) for k, n in enumerate(names)}
    msg_cuts = (1, 600, 1500, BIG_HELLO - 8)       # the last one inside the name
    for n, m in msgs.items():
        for cuts in ((), msg_cuts):
            got = openssl_sees(ctx, records(m, cuts))
            H.check_eq(got, (n, True), "OpenSSL reading the hello built for %s in %d "
                       "record(s): (server_name, answers with a ServerHello)" % (n, len(cuts) + 1))
    rp = p.port("raw")
    one = records(msgs["x.b.example"])
    H.check(len(one) > 2048, "the hand-built hello", "over 2 KB", len(one))
    t0 = time.monotonic()
    routed_raw(rp, "rb", split_at(one, (3, 700, 1400, len(one) - 8)),
               "a %d-byte hello in 5 segments %d ms apart" % (len(one), GAP * 1000),
               gap=GAP, be=raw["rb"])
    routed_raw(rp, "ra", [records(msgs["a.example"], msg_cuts)],
               "a %d-byte hello over 5 records" % BIG_HELLO, be=raw["ra"])
    dr = records(msgs["y.b.example"])
    t1 = time.monotonic()
    routed_raw(rp, "rb", [dr[i:i + 1] for i in range(len(dr))],
               "a %d-byte hello one byte per %g ms" % (len(dr), DRIBBLE_GAP * 1000),
               gap=DRIBBLE_GAP, be=raw["rb"])
    H.log("hand-built hellos routed (dribble %.1f s, all %.1f s)" % (
        time.monotonic() - t1, time.monotonic() - t0))

    # OpenSSL's own hello, grown past 2 KB: the handshake completes
    tp = p.port("tls")

    def name_at(ch, name):
        k = ch.find(name.encode())
        H.check(k > 0 and ch[0] == 0x16 and struct.unpack(">H", ch[3:5])[0] == len(ch) - 5,
                "OpenSSL's ClientHello", "one record holding the name", (len(ch), k))
        H.check(len(ch) > 2048, "OpenSSL's ClientHello with 30 long ALPN entries",
                "over 2 KB", len(ch))
        return k

    def segments(c, ch):
        k = name_at(ch, "a.example")
        send_pieces(c, split_at(ch, (3, k - 2, k + 4, 1000, 1800)), GAP)
        return len(ch)

    def reframed(c, ch):
        k = name_at(ch, "x.b.example") - 5
        data = records(ch[5:], (1, k + 3, 900))
        c.sendall(data)
        return len(data)

    def dribbled(c, ch):
        name_at(ch, "a.example")
        send_pieces(c, [ch[i:i + 1] for i in range(len(ch))], DRIBBLE_GAP)
        return len(ch)

    bio_trip(ctx, tp, "a.example", "ta", "OpenSSL's hello in 6 segments %d ms apart" %
             (GAP * 1000), segments)
    bio_trip(ctx, tp, "x.b.example", "tb", "OpenSSL's hello re-framed over 4 records",
             reframed)
    t1 = time.monotonic()
    bio_trip(ctx, tp, "a.example", "ta", "OpenSSL's hello one byte per %g ms" %
             (DRIBBLE_GAP * 1000), dribbled)
    H.log("OpenSSL hellos routed (dribble %.1f s)" % (time.monotonic() - t1))
    check_counts(aport, {"tls": {"ok": 3}, "raw": {"ok": 3}})
    p.finish()


def test_incomplete(ctx):
    raw = {w: ctx.backend(reporter(w), name=w) for w in ("ra", "rb", "rd")}
    short = {"timeout_handshake": "1s", "sni_max_bytes": "4k"}
    p, aport = start(ctx, {
        "strict": dict(short, route=routes("r")),
        "dflt": dict(short, route=routes("r"), backend="rd"),
        "pp": dict(short, route=routes("r"), accept_proxy="on"),
    }, backends_cfg(raw))
    big = hello("a.example", size=TOO_BIG)
    # Of a hello that fits sni_max_bytes: a longer one's declared length
    # is too large at once, from its first 9 bytes.
    part = hello("a.example", pq=False)[:60]
    bad = hello("a.example", pq=False, msgtype=2)
    # without a default backend
    sp = p.port("strict")
    t = expect_reset(sp, part, "a hello that stops after 60 bytes, no default backend",
                     within=4.0, at_least=0.9, bes=raw.values())
    H.log("the incomplete hello was reset after %.2f s (timeout_handshake 1s)" % t)
    expect_reset(sp, big, "a %d-byte hello with sni_max_bytes = 4k, no default backend"
                 % len(big), within=0.8, bes=raw.values())
    expect_reset(sp, bad, "a handshake message of type 2, no default backend",
                 within=0.8, bes=raw.values())
    # timeout_handshake bounds the PROXY header and the hello together: a
    # header 0.8 s late leaves the hello 0.2 s (apart, the reset would
    # come at 1.8 s)
    c = dial(p.port("pp"))
    t0 = time.monotonic()
    time.sleep(0.8)         # the pace under test
    c.sendall(H.pp_v2(("192.0.2.20", 2000), ("127.0.0.1", p.port("pp"))) + part)
    end, _ = H.expect_closed(c, 6)
    t = time.monotonic() - t0
    c.close()
    H.check(end == "reset" and 0.9 <= t <= 1.5, "a PROXY header after 0.8 s, then 60 bytes of "
            "a hello (timeout_handshake 1s for both)", "an RST 0.9..1.5 s after the connect",
            "%s after %.2f s" % (end, t))

    # with one: the bytes held go there
    dp = p.port("dflt")
    c = dial(dp)
    c.settimeout(10)
    t0 = time.monotonic()
    c.sendall(part)
    greet = recv_line(c.recv)
    t = time.monotonic() - t0
    H.check(greet == b"rd\n" and 0.9 <= t <= 4.0,
            "a hello that stops after 60 bytes, default backend rd",
            "rd greets after 0.9..4 s (timeout_handshake 1s)", "%r after %.2f s" % (greet, t))
    c.shutdown(socket.SHUT_WR)
    got, end = read_all(c)
    c.close()
    H.check_eq((got, end), (expected_report("rd", part)[len(b"rd\n"):], "eof"),
               "the 60 bytes held at the timeout reach rd byte-exact")
    routed_raw(dp, "rd", [big], "a %d-byte hello for a.example, sni_max_bytes = 4k" % len(big),
               be=raw["rd"])
    routed_raw(dp, "rd", [bad], "a handshake message of type 2", be=raw["rd"])
    # the client leaves half way through its hello: no backend
    before = [be.accepted for be in raw.values()]
    c = dial(dp)
    c.sendall(part)
    c.shutdown(socket.SHUT_WR)
    end, t = H.expect_closed(c, 5)
    c.close()
    H.check(end in ("eof", "reset"), "a client that shut down after 60 bytes of its hello",
            "closed by the proxy (EOF or RST) within 5 s", "%s after %.2f s" % (end, t))
    H.check_eq([be.accepted for be in raw.values()], before,
               "connections the backends accepted for it")
    check_counts(aport, {
        "strict": {"timeout": 1, "too_large": 1, "invalid": 1, "denied_no_route": 3},
        "dflt": {"timeout": 1, "too_large": 1, "invalid": 2},
        "pp": {"timeout": 1, "denied_no_route": 1},
    })
    p.finish()


def test_download(ctx):
    tls = {w: tls_backend(ctx, w) for w in ("ta", "tb", "td")}
    p, aport = start(ctx, {"tls": {"route": routes("t"), "backend": "td"}},
                     backends_cfg(tls))
    mark = p.mark()
    c = dial(p.port())
    c.settimeout(H.IO_TIMEOUT)
    cport = H.local_port(c)
    t = BioTLS(c, client_ctx(ctx), "a.example")
    t0 = time.monotonic()
    ch = t.first_flight()
    c.sendall(ch)
    t.sent(len(ch))
    t.handshake()
    greet = recv_line(t.read)
    H.check_eq(greet, b"ta sni=a.example\n", "the greeting through the routed connection")
    seed = 77
    t.write(b"down %d %d\n" % (DOWNLOAD, seed))
    h = hashlib.sha256()
    n = 0
    end = time.monotonic() + H.STREAM_DEADLINE
    while n < DOWNLOAD and time.monotonic() < end:
        b = t.read(min(H.MiB, DOWNLOAD - n))
        if not b:
            break
        h.update(b)
        n += len(b)
    last = t.drain_raw()
    c.close()
    H.log("64 MiB over TLS in %.1f s" % (time.monotonic() - t0))
    res = tls["ta"].result(0)
    H.check_eq((n, h.hexdigest(), last), (DOWNLOAD, res.get("sha"), "eof"),
               "64 MiB from ta over TLS: (bytes, sha256 of the plaintext, end)")
    a = check_sni(p, cport, mark, "a.example", "the 64 MiB download", tls["ta"])
    H.check_access(a, what="the 64 MiB download's access line")
    H.check_eq((H.access_total(a, "up"), H.access_total(a, "down")), (t.up, t.down),
               "the download's access line (up, down) against the raw TLS bytes the client "
               "sent and got (%r)" % a)
    if ctx.splices:
        H.check(a["down_splice"] > 0, "down_splice of the routed download (splice=%s)"
                % ctx.mode, "> 0", a)
    else:
        H.check_eq(a["down_splice"], 0, "down_splice of the routed download (splice=%s, "
                   "zero-copy %s)" % (ctx.mode, ctx.zc_backend))
    check_counts(aport, {"tls": {"ok": 1}})
    p.finish()


def write_config(p, listeners, backends):
    p.listeners, p.backends = listeners, backends
    with open(p.config_path, "w") as f:
        f.write(H.render_config(p.glob, listeners, backends, p.ports))


def test_compose(ctx):
    pp = {w: ctx.backend(reporter(w, pp=True), name=w) for w in ("pa", "pb", "pd")}
    raw = {w: ctx.backend(reporter(w), name=w) for w in ("ra", "rb", "rd")}
    listeners = {
        "in": {"route": routes("p"), "backend": "pd", "accept_proxy": "on",
               "proxy_protocol": "v2"},
        "out": {"route": routes("p"), "backend": "pd", "proxy_protocol": "v2"},
        "raw": {"route": routes("r"), "backend": "rd"},
    }
    bcfg = backends_cfg(dict(pp, **raw))
    p, aport = start(ctx, listeners, bcfg)
    mark = p.mark()
    ip = p.port("in")
    for k, gap in enumerate((0.0, 0.1)):
        src = ("192.0.2.%d" % (7 + k), 1111 + k)
        hdr = H.pp_v2(src, ("198.51.100.1", 443))
        hl = hello("x.b.example", size=BIG_HELLO, seed=10 + k)
        pieces = [hdr + hl] if not gap else [hdr, hl]
        n = len(pp["pb"].results)
        routed_raw(ip, "pb", pieces, "a PROXY v2 header then a hello for x.b.example (%s)"
                   % ("one write" if not gap else "100 ms apart"), gap=gap, be=pp["pb"],
                   expect=hl)
        r = pp["pb"].wait_results(n + 1, timeout=20)[-1]
        H.check_eq((r.get("pp", {}).get("src"), r.get("data") == hl),
                   (src, True), "pb: the v2 header's source, and the hello after it exact")
        a = check_sni(p, src[1], mark, "x.b.example", "accept_proxy, header from %s:%d" % src,
                      pp["pb"])
        H.check_eq(a.get("client"), "%s:%d" % src, "the access line's client")
    # proxy_protocol alone
    hl = hello("a.example", pq=False, seed=12)
    cport = routed_raw(p.port("out"), "pa", [hl], "proxy_protocol = v2, a hello for a.example",
                       be=pp["pa"])
    r = pp["pa"].wait_results(1, timeout=20)[-1]
    H.check_eq((r.get("pp", {}).get("src"), r.get("pp", {}).get("dst")),
               (("127.0.0.1", cport), ("127.0.0.1", p.port("out"))),
               "pa: the v2 header spliced sent before the hello (source, destination)")

    # a reload moves a.example from ra to rb
    rp = p.port("raw")
    held = dial(rp)
    held_hello = hello("a.example", pq=False, seed=13)
    held.sendall(held_hello)
    H.check_eq(recv_line(held.recv), b"ra\n", "a.example before the reload: ra greets")
    routed_raw(rp, "ra", [hello("a.example", pq=False, seed=14)], "a.example before the reload")
    new = dict(listeners)
    new["raw"] = {"route": ["a.example rb", "*.b.example ra"], "backend": "rd"}
    write_config(p, new, bcfg)
    rmark = p.mark()
    p.signal(signal.SIGHUP)
    H.check(p.wait_line(r"info: reloaded", 20, since=rmark), "reload logged",
            "info: reloaded", "\n      ".join(p.lines[-8:]))
    # New connections see the new routes once the workers took the new
    # config (their next loop turn): a bounded retry for the first.
    probe = hello("a.example", pq=False, seed=15)

    def moved():
        got, end, _ = raw_trip(rp, [probe])
        return got == expected_report("rb", probe)
    H.check(H.wait_until(moved, 5, 0.1), "a.example after the reload", "rb", "still not rb")
    routed_raw(rp, "rb", [hello("a.example", pq=False, seed=16)], "a.example after the reload")
    routed_raw(rp, "ra", [hello("z.b.example", pq=False, seed=17)],
               "z.b.example after the reload (*.b.example now ra)")
    held.shutdown(socket.SHUT_WR)
    got, end = read_all(held)
    held.close()
    H.check_eq((got, end), (expected_report("ra", held_hello)[len(b"ra\n"):], "eof"),
               "the connection held across the reload: its hello reached ra byte-exact")
    p.finish()


def json_get(aport, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (aport, path),
                                timeout=H.IO_TIMEOUT) as r:
        return json.loads(r.read().decode())


def test_connections(ctx):
    tls = {w: tls_backend(ctx, w) for w in ("ta", "tb", "td")}
    p, aport = start(ctx, {"tls": {"route": routes("t"), "backend": "td"}},
                     backends_cfg(tls))
    held = {}
    for name, who in (("a.example", "ta"), (None, "td")):
        c = dial(p.port())
        t = client_ctx(ctx, sni=name is not None).wrap_socket(c, server_hostname=name)
        H.check_eq(recv_line(t.recv), ("%s sni=%s\n" % (who, name or "-")).encode(),
                   "held connection for %s: the greeting" % name)
        t.sendall(b"hold\n")
        held["127.0.0.1:%d" % H.local_port(t)] = (t, name, who)

    def listing():
        conns = json_get(aport, "/connections").get("connections", [])
        by = {x.get("client"): x for x in conns}
        return by if all(k in by for k in held) else None
    by = H.wait_until(listing, 5, 0.1) or json_get(aport, "/connections")
    for client, (t, name, who) in held.items():
        e = by.get(client) if isinstance(by, dict) and client in by else None
        H.check(e is not None, "GET /connections: the held connection from %s" % client,
                "listed", by)
        H.check(e.get("sni", "absent") == name and
                e.get("server") == "%s/%s" % (who, tls[who].addr),
                "GET /connections: the connection from %s" % client,
                '"sni": %s, "server": "%s/%s"' % (json.dumps(name), who, tls[who].addr), e)
    for t, _, _ in held.values():
        t.close()
    for who in ("ta", "td"):
        tls[who].wait_results(1, timeout=20)
    p.finish()


if __name__ == "__main__":
    H.main([test_routes, test_big_hellos, test_incomplete, test_download, test_compose,
            test_connections], deadline=240, doc=__doc__)
