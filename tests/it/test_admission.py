#!/usr/bin/env python3
"""Admission (issue 13): allow/deny, per-source limits, the source table.
Nothing here depends on the splice mode: it runs once (splice=auto).

per_source: max_connections_per_source = 5: five connections from
  127.0.0.2 held open (each echoes), a 6th from 127.0.0.2 is reset at once
  and reaches no backend, one from 127.0.0.3 is served meanwhile; when one
  of the five closes, 127.0.0.2 is served again.
rate: connection_rate_per_source = 4: of 5 connections from 127.0.0.2
  opened back to back, exactly 4 served, one reset (127.0.0.3 still served); 127.0.0.2 is served again once a
  token came back: not before 0.15 s after the burst began, within 3 s.
ipv6_prefix: accept_proxy = on, max_connections_per_source = 1, PROXY
  headers from 127.0.0.1: 2001:db8::1 held; 2001:db8::2 (same /64, v2 and
  v1 headers) reset; 2001:db8:0:1::1 served. A listener with
  source_prefix_v6 = 128 serves ::1 and ::2 of one /64 side by side.
table_bounded: source_table_size = 1000, 20,000 sources (PROXY headers
  from distinct IPv6 /64s, connection_rate_per_source = 100 so each takes
  an entry), 32 at a time: /status "sources" says entries <= 1000,
  capacity 1000, evictions >= 19,000, and /metrics agrees; spliced's RSS
  grows by less than 1 MiB from 2,000 sources to 20,000 (18,000 more
  entries would take over 1 MiB at even 64 bytes each; the connections
  themselves are as many at a time in both phases). No RSS bound under
  ASan (its quarantine keeps freed memory).
acl: deny 127.0.0.3/32, allow 127.0.0.0/8, deny all: .2 served, .3 reset;
  the same lines with the deny after the allow: .3 served; allow
  127.0.0.2/32 alone: .4 reset (an allow line denies the rest). Refused
  ones reach no backend; spliced_denied_connections_total{reason="acl"}
  counts them per listener.
reload: max_connections_per_source = 2 with two connections from .2 held
  open; SIGHUP to a config with 3 and deny 127.0.0.4/32: the two held
  connections still echo, .4 (served before) is reset, .2 gets exactly one
  more (the held two still count after the reload).
refusal_log (workers = 1): 40 refused connections in well under a second
  give at most two "refused" lines naming acl (one, or one and a summary);
  refusals paced every 100 ms for 2.5 s give between 2 and 4 more."""

import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_metrics import parse, scrape, total  # noqa: E402


# --------------------------------------------------------------------------
# helpers

def try_served(ip, port, hello=b"", within=10.0):
    """A connection from ip (with `hello` first, e.g. a PROXY header) that
    echoed 4 bytes: the open socket, or None when spliced refused it."""
    try:
        c = H.dial_from(ip, port, timeout=within)
    except OSError:
        return None
    try:
        c.sendall(hello + b"ping")
        got = b""
        while len(got) < 4:
            b = c.recv(4 - len(got))
            if not b:
                break
            got += b
    except OSError:
        got = b""
    if got != b"ping":
        c.close()
        return None
    c.settimeout(H.IO_TIMEOUT)
    return c


def served(ip, port, what, hello=b""):
    c = try_served(ip, port, hello)
    H.check(c is not None, what, "served (4 bytes echoed)", "refused or closed")
    return c


def refused(ip, port, what, be=None, hello=b"", within=2.0):
    """A connection from ip is reset within `within` seconds; with be, the
    backend's accept count is the same afterwards (nothing reached it)."""
    before = be.accepted if be is not None else None
    t0 = time.monotonic()
    try:
        c = H.dial_from(ip, port)
    except ConnectionResetError:
        # The RST came before connect() returned (loopback is that quick).
        end = "reset"
    else:
        if hello:
            try:
                c.sendall(hello)
            except OSError:
                pass
        end, _ = H.expect_closed(c, within + 5)
        c.close()
    t = time.monotonic() - t0
    H.check(end == "reset" and t <= within, what, "an RST within %.1f s" % within,
            "%s after %.2f s" % (end, t))
    if be is not None:
        H.check_eq(be.accepted, before, what + ": connections the backend accepted")


def still_echoes(c, what):
    c.sendall(b"again")
    got = b""
    while len(got) < 5:
        b = c.recv(5 - len(got))
        if not b:
            break
        got += b
    H.check_eq(got, b"again", what)


def start(ctx, listeners, backends, glob=None, admin=False):
    return ctx.started_proxy(listeners, backends, glob, admin,
                             allow=(r"refused", r"^admin: "))


def one_backend(ctx, handler=None):
    be = ctx.backend(handler or H.echo(), name="echo")
    return be, {"app": {"server": "a " + be.addr}}


def write_config(p, listeners, backends):
    p.listeners, p.backends = listeners, backends
    with open(p.config_path, "w") as f:
        f.write(H.render_config(p.glob, listeners, backends, p.ports))


def json_get(aport, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (aport, path),
                                timeout=H.IO_TIMEOUT) as r:
        return json.loads(r.read().decode())


# --------------------------------------------------------------------------

def test_per_source(ctx):
    be, backends = one_backend(ctx)
    p, _ = start(ctx, {"web": {"backend": "app", "max_connections_per_source": 5}}, backends)
    port = p.port()
    held = [served("127.0.0.2", port, "connection %d of 5 from 127.0.0.2" % (i + 1))
            for i in range(5)]
    refused("127.0.0.2", port, "a 6th connection from 127.0.0.2", be)
    other = served("127.0.0.3", port, "a connection from 127.0.0.3 while .2 holds 5")
    refused("127.0.0.2", port, "127.0.0.2 again, still holding 5", be)
    for i, c in enumerate(held):
        still_echoes(c, "held connection %d after the refusals" % (i + 1))

    mark = p.mark()
    gone = held.pop(0)
    gport = H.local_port(gone)
    gone.close()
    p.access_for(gport, since=mark, timeout=20)
    # The slot goes back when the connection ends; the access line is
    # written at that end, so a bounded retry covers any order of the two.
    again = H.wait_until(lambda: try_served("127.0.0.2", port), 3, step=0.1)
    H.check(again, "127.0.0.2 after one of its five closed", "served", "refused for 3 s")
    refused("127.0.0.2", port, "127.0.0.2 holding 5 again", be)
    for c in held + [again, other]:
        c.close()
    p.finish()


def burst(ip, port, n):
    """n connections from ip opened back to back (each sends 4 bytes),
    then looked at: [socket that echoed, or None when reset]."""
    socks = []
    for _ in range(n):
        try:
            c = H.dial_from(ip, port)
            c.sendall(b"ping")
        except (ConnectionResetError, BrokenPipeError):
            c = None
        socks.append(c)
    out = []
    for c in socks:
        got = b""
        if c is not None:
            try:
                while len(got) < 4:
                    b = c.recv(4 - len(got))
                    if not b:
                        break
                    got += b
            except OSError:
                pass
            if got != b"ping":
                c.close()
        out.append(c if got == b"ping" else None)
    return out


def test_rate(ctx):
    be, backends = one_backend(ctx)
    p, _ = start(ctx, {"web": {"backend": "app", "connection_rate_per_source": 4}}, backends)
    port = p.port()
    t0 = time.monotonic()
    # Opened within a millisecond or so, long before a token comes back
    # (0.25 s): exactly 4 served, whichever of the 5 a worker took first.
    got = burst("127.0.0.2", port, 5)
    H.check_eq([c is not None for c in got].count(True), 4,
               "a burst of 5 from 127.0.0.2 at 4 a second: served")
    H.check_eq(be.wait_accepted(4, timeout=5), 4, "connections the backend accepted")
    for c in got:
        if c is not None:
            c.close()
    served("127.0.0.3", port, "127.0.0.3 after .2's burst").close()
    again = H.wait_until(lambda: try_served("127.0.0.2", port), 3, step=0.02)
    t = time.monotonic() - t0
    H.check(again, "127.0.0.2 once its bucket refilled (4 a second)", "served within 3 s",
            "refused")
    again.close()
    H.log("127.0.0.2 served again %.2f s after the burst began" % t)
    H.check(t >= 0.15, "the refill", "one token per 0.25 s: not before 0.15 s",
            "served again after %.2f s" % t)
    p.finish()


def test_ipv6_prefix(ctx):
    be, backends = one_backend(ctx)
    p, _ = start(ctx, {"p64": {"backend": "app", "accept_proxy": "on",
                               "max_connections_per_source": 1},
                       "p128": {"backend": "app", "accept_proxy": "on",
                                "max_connections_per_source": 1,
                                "source_prefix_v6": 128}}, backends)

    def hdr(ip, port, v=2):
        return (H.pp_v2 if v == 2 else H.pp_v1)((ip, 40000), ("2001:db8:ffff::1", port))
    port = p.port("p64")
    mark = p.mark()
    h1 = served("127.0.0.1", port, "2001:db8::1", hello=hdr("2001:db8::1", port))
    refused("127.0.0.1", port, "2001:db8::2 (the /64 of ::1, which holds its one)", be,
            hello=hdr("2001:db8::2", port))
    refused("127.0.0.1", port, "2001:db8::3 in a v1 header (same /64)", be,
            hello=hdr("2001:db8::3", port, v=1))
    h2 = served("127.0.0.1", port, "2001:db8:0:1::1 (another /64)",
                hello=hdr("2001:db8:0:1::1", port))
    port = p.port("p128")
    h3 = served("127.0.0.1", port, "source_prefix_v6 = 128: 2001:db8::1",
                hello=hdr("2001:db8::1", port))
    h4 = served("127.0.0.1", port, "source_prefix_v6 = 128: 2001:db8::2 beside ::1",
                hello=hdr("2001:db8::2", port))
    for c in (h1, h2, h3, h4):
        c.close()
    H.check(p.wait_access_count(4, since=mark) >= 4, "access lines", "4", "fewer")
    clients = sorted(a.get("client") for a in p.access(since=mark))
    H.check_eq(clients, sorted(["[2001:db8::1]:40000", "[2001:db8:0:1::1]:40000",
                                "[2001:db8::1]:40000", "[2001:db8::2]:40000"]),
               "the access lines' clients (the headers' sources)")
    p.finish()


def acceptor():
    """A server that takes every connection and closes it at once, in one
    thread (20,000 connections would be 20,000 threads with Backend)."""
    s = H.socket.socket()
    s.bind((H.LOCAL, 0))
    s.listen(4096)
    s.settimeout(0.2)
    state = {"n": 0, "stop": False}

    def loop():
        while not state["stop"]:
            try:
                c, _ = s.accept()
            except H.socket.timeout:
                continue
            except OSError:
                return
            state["n"] += 1
            c.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def close():
        state["stop"] = True
        t.join(2)
        s.close()
    return s.getsockname()[1], state, close


def flood(port, first, count, width=32, deadline=120.0):
    """count connections, width at a time, each from its own /64
    (2001:db8:HI:LO::1, numbered from first) in a v2 header, sent from
    127.0.1.x (spread so client ports are not the limit); each waits for
    spliced to close it. Returns how many were served to the end."""
    nxt = [first]
    lock = threading.Lock()
    errors = []
    end = time.monotonic() + deadline

    def worker(w):
        src = "127.0.1.%d" % (1 + w)
        while time.monotonic() < end:
            with lock:
                i = nxt[0]
                if i >= first + count:
                    return
                nxt[0] += 1
            ip6 = "2001:db8:%x:%x::1" % (i >> 16, i & 0xffff)
            try:
                c = H.dial_from(src, port, timeout=20)
                c.sendall(H.pp_v2((ip6, 1000 + i % 60000), ("2001:db8:ffff::1", 80)))
                try:
                    while c.recv(4096):
                        pass
                except ConnectionResetError:
                    pass    # the acceptor's close may come back as an RST
                c.close()
            except OSError as e:
                with lock:
                    errors.append("%s: %r" % (ip6, e))
    ts = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(width)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(1.0, end - time.monotonic() + 5))
    H.check_eq((nxt[0] - first, errors[:3]), (count, []),
               "%d flood connections from distinct /64s (made, first errors)" % count)


def test_table_bounded(ctx):
    bport, state, close = acceptor()
    ctx.register(close)
    # No access log: 20,000 lines on stderr outrun a loaded test's reader,
    # and spliced then drops lines (and says so) rather than stall. The
    # count to wait for comes from the metrics instead.
    p, aport = start(ctx, {"pp": {"backend": "app", "accept_proxy": "on",
                                  "connection_rate_per_source": 100}},
                     {"app": {"server": "a 127.0.0.1:%d" % bport}},
                     glob={"source_table_size": 1000, "workers": 2,
                           "access_log": "off"}, admin=True)
    port = p.port()

    def wait_closed(n, timeout=60.0):
        end, got = time.monotonic() + timeout, -1
        while time.monotonic() < end:
            got = total(parse(scrape(aport)), "spliced_connections_closed_total")
            if got >= n:
                return
            time.sleep(0.2)
        H.check(False, "connections closed", ">= %d within %.0f s" % (n, timeout), got)

    t0 = time.monotonic()
    flood(port, 0, 2000)
    wait_closed(2000)
    rss1 = p.rss_kib()
    t1 = time.monotonic()
    flood(port, 2000, 18000)
    wait_closed(20000)
    rss2 = p.rss_kib()
    H.log("2,000 sources in %.1f s: RSS %d KiB; 18,000 more in %.1f s: RSS %d KiB"
          % (t1 - t0, rss1, time.monotonic() - t1, rss2))
    src = json_get(aport, "/status").get("sources")
    H.check(isinstance(src, dict), "/status sources", "an object", src)
    H.check_eq(src.get("capacity"), 1000, "/status sources.capacity")
    H.check(src.get("entries", 10 ** 9) <= 1000, "/status sources.entries", "<= 1000",
            src.get("entries"))
    H.check(src.get("evictions", 0) >= 19000, "/status sources.evictions", ">= 19000",
            src.get("evictions"))
    s = parse(scrape(aport))
    H.check(total(s, "spliced_source_table_entries") <= 1000,
            "spliced_source_table_entries", "<= 1000", total(s, "spliced_source_table_entries"))
    H.check_eq(total(s, "spliced_source_table_capacity"), 1000, "spliced_source_table_capacity")
    H.check(total(s, "spliced_source_table_evictions_total") >= 19000,
            "spliced_source_table_evictions_total", ">= 19000",
            total(s, "spliced_source_table_evictions_total"))
    if not ctx.asan:
        H.check(rss2 - rss1 < 1024, "RSS growth from 2,000 to 20,000 sources",
                "< 1024 KiB (the table holds 1000 entries whatever comes)",
                "%d KiB (%d -> %d)" % (rss2 - rss1, rss1, rss2))
    p.finish()


def test_acl(ctx):
    be, backends = one_backend(ctx)
    # "deny " (a trailing space, which inih strips): a second deny line
    # after the allow line, as dict keys cannot repeat.
    p, aport = start(ctx, {
        "a": {"backend": "app", "deny": "127.0.0.3/32", "allow": "127.0.0.0/8",
              "deny ": "all"},
        "b": {"backend": "app", "allow": "127.0.0.0/8", "deny": ["127.0.0.3/32", "all"]},
        "c": {"backend": "app", "allow": "127.0.0.2/32"}}, backends, admin=True)
    served("127.0.0.2", p.port("a"), "a: 127.0.0.2 (allow 127.0.0.0/8)").close()
    refused("127.0.0.3", p.port("a"), "a: 127.0.0.3 (deny 127.0.0.3/32 first)", be)
    served("127.0.0.3", p.port("b"), "b: 127.0.0.3 (allow 127.0.0.0/8 first)").close()
    served("127.0.0.2", p.port("c"), "c: 127.0.0.2 (allow 127.0.0.2/32)").close()
    refused("127.0.0.4", p.port("c"), "c: 127.0.0.4 (no match, an allow line exists)", be)
    refused("127.0.0.4", p.port("c"), "c: 127.0.0.4 again", be)
    s = parse(scrape(aport))
    H.check_eq({x: total(s, "spliced_denied_connections_total", listener=x, reason="acl")
                for x in "abc"}, {"a": 1, "b": 0, "c": 2},
               "spliced_denied_connections_total{reason=acl} per listener")
    p.finish()


def test_reload(ctx):
    be, backends = one_backend(ctx)
    p, _ = start(ctx, {"web": {"backend": "app", "max_connections_per_source": 2}}, backends)
    port = p.port()
    held = [served("127.0.0.2", port, "held connection %d from .2" % (i + 1)) for i in range(2)]
    refused("127.0.0.2", port, "a 3rd from .2 before the reload (limit 2)", be)
    served("127.0.0.4", port, "127.0.0.4 before the reload").close()
    write_config(p, {"web": {"backend": "app", "max_connections_per_source": 3,
                             "deny": "127.0.0.4/32"}}, backends)
    mark = p.mark()
    p.signal(H.signal.SIGHUP)
    H.check(p.wait_line(r"info: reloaded", 20, since=mark), "reload logged",
            "info: reloaded", "\n      ".join(p.lines[-8:]))
    # New connections see the new rules once the workers took the new
    # config (their next loop turn): wait for that on the deny rule.
    def refused_now():
        c = try_served("127.0.0.4", port, within=2)
        if c is None:
            return True
        c.close()
        return False
    H.check(H.wait_until(refused_now, 5, 0.1),
            "127.0.0.4 after the reload (deny 127.0.0.4/32)", "refused", "still served")
    refused("127.0.0.4", port, "127.0.0.4 after the reload", be)
    for i, c in enumerate(held):
        still_echoes(c, "held connection %d across the reload" % (i + 1))
    third = served("127.0.0.2", port, "a 3rd from .2 after the reload (limit 3)")
    refused("127.0.0.2", port, "a 4th from .2 after the reload: the two held across it "
            "still count", be)
    for c in held + [third]:
        c.close()
    p.finish()


def refusal_lines(p, since):
    return [m for lvl, m in p.parsed(since) if lvl and "refused" in m and "acl" in m]


def test_refusal_log(ctx):
    be, backends = one_backend(ctx)
    p, _ = start(ctx, {"web": {"backend": "app", "deny": "all"}}, backends,
                 glob={"workers": 1})
    port = p.port()
    mark = p.mark()
    t0 = time.monotonic()
    for i in range(40):
        refused("127.0.0.2", port, "refusal %d of a burst" % (i + 1), within=2)
    burst = time.monotonic() - t0
    H.check(p.wait_line(r"refused.*acl|acl.*refused", 5, since=mark),
            "a 'refused' line naming acl", "one within 5 s", "none")
    H.log("40 refusals in %.2f s" % burst)
    if burst < 0.9:
        got = refusal_lines(p, mark)
        H.check(1 <= len(got) <= 2, "'refused' lines for 40 refusals in %.2f s" % burst,
                "one, or one and a summary", "%d:\n      %s" % (len(got), "\n      ".join(got)))
    mark2 = p.mark()
    t0 = time.monotonic()
    for i in range(25):
        refused("127.0.0.2", port, "paced refusal %d" % (i + 1), within=2)
        time.sleep(0.1)     # the pace under test
    span = time.monotonic() - t0
    got = refusal_lines(p, mark2)
    H.log("25 refusals over %.1f s: %d lines" % (span, len(got)))
    H.check(2 <= len(got) <= int(span) + 2, "'refused' lines for refusals over %.1f s" % span,
            "between 2 and %d (about one a second)" % (int(span) + 2),
            "%d:\n      %s" % (len(got), "\n      ".join(got)))
    H.check_eq(be.accepted, 0, "connections that reached the backend")
    p.finish()


if __name__ == "__main__":
    H.main([test_per_source, test_rate, test_ipv6_prefix, test_acl, test_reload,
            test_refusal_log, test_table_bounded], deadline=170, doc=__doc__)
