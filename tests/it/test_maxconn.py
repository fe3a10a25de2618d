#!/usr/bin/env python3
"""max_connections: at the limit accepting pauses, and resumes when a
connection ends. (Not about the data path mode: runs once.)

What this asserts, for a listener limit (listener max_connections = 3) and
for the global limit ([global] max_connections = 3), both with 2 workers (so
the limit must hold across workers, each with its own listening socket):

1. Three clients connect and are served (each gets its request echoed).
2. Three more clients connect. At TCP level their connect succeeds (the
   kernel's listen backlog takes them), but they get no service: after 2 s
   the backend has still seen exactly 3 connections, and none of the extra
   clients got its request echoed.
3. One served client closes: within 15 s exactly one more connection
   reaches the backend and one extra client gets its echo. The limit holds:
   the backend never has more than 3 connections at once.
4. The served clients close one by one, and each time another extra client
   is served, until all six were served; nothing was dropped."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

LIMIT = 3
EXTRA = 3


def request(c, i):
    msg = b"request %d\n" % i
    c.sendall(msg)
    return msg


def got_echo(c, msg, timeout):
    """True once msg came back on c; False if nothing within timeout."""
    c.settimeout(timeout)
    r = bytearray()
    try:
        while len(r) < len(msg):
            b = c.recv(len(msg) - len(r))
            if not b:
                fail_closed = "closed by the proxy after %r" % bytes(r)
                H.fail("a waiting client is served, not dropped", "its echo", fail_closed)
            r += b
    except socket.timeout:
        if r:
            H.fail("echo arrives whole", repr(msg), repr(bytes(r)))
        return False
    H.check_eq(bytes(r), msg, "echo of the request")
    return True


def run_limit(ctx, glob, listener):
    be = ctx.backend(H.echo(), name="echo")
    g = {"splice": ctx.mode, "workers": 2}
    g.update(glob)
    lst = {"backend": "echo"}
    lst.update(listener)
    p = ctx.proxy(glob=g, listeners={"web": lst},
                  backends={"echo": {"server": "e " + be.addr}})
    p.allow(r"(?i)max_connections|limit|paus")
    p.start()
    port = p.port()

    served = []
    for i in range(LIMIT):
        c = H.dial(port)
        msg = request(c, i)
        H.check(got_echo(c, msg, 30), "client %d (under the limit) is served" % i,
                "its echo within 30 s", "nothing")
        served.append(c)
    H.check_eq(be.accepted, LIMIT, "backend connections with %d clients" % LIMIT)

    waiting = []
    for i in range(EXTRA):
        c = H.dial(port)      # the kernel completes the handshake
        waiting.append((c, request(c, 100 + i)))
    time.sleep(2.0)
    H.check_eq(be.accepted, LIMIT,
               "backend connections 2 s after %d more clients connected at the limit" % EXTRA)
    for c, msg in waiting:
        H.check(not got_echo(c, msg, 0.2), "a client over the limit gets no service",
                "no echo", "echoed")

    # free one slot at a time; each time exactly one waiting client is served
    rounds = 0
    while waiting:
        rounds += 1
        H.check(rounds <= EXTRA, "rounds of freeing a slot", "<= %d" % EXTRA, rounds)
        gone = served.pop(0)
        gone.shutdown(socket.SHUT_WR)
        H.read_stream(gone, deadline=time.monotonic() + 30)
        gone.close()
        want = LIMIT + rounds
        H.wait_until(lambda: be.accepted >= want, 15)
        H.check_eq(be.accepted, want,
                   "backend connections after %d served client(s) closed" % rounds)
        newly = None
        end = time.monotonic() + 15
        while newly is None and time.monotonic() < end:
            for c, msg in waiting:
                if got_echo(c, msg, 0.1):
                    newly = (c, msg)
                    break
        H.check(newly is not None, "a waiting client is served once a slot frees",
                "one echo within 15 s", "none")
        waiting.remove(newly)
        served.append(newly[0])
        # (the backend thread of the closed connection may still be on its
        # way out: give it a moment before counting)
        H.wait_until(lambda: be.active <= LIMIT, 10)
        H.check(be.active <= LIMIT, "backend connections open at once", "<= %d" % LIMIT,
                be.active)
        time.sleep(0.5)
        H.check_eq(be.accepted, want, "backend connections: only one more per freed slot")
    for c in served:
        c.shutdown(socket.SHUT_WR)
        H.read_stream(c, deadline=time.monotonic() + 30)
        c.close()
    H.check_eq(be.accepted, LIMIT + EXTRA, "backend connections in all")
    got = p.wait_access_count(LIMIT + EXTRA, timeout=30)
    H.check_eq(got, LIMIT + EXTRA, "access lines")
    p.finish()


def test_listener_limit(ctx):
    run_limit(ctx, {}, {"max_connections": LIMIT})


def test_global_limit(ctx):
    run_limit(ctx, {"max_connections": LIMIT}, {})


if __name__ == "__main__":
    H.main([test_listener_limit, test_global_limit], deadline=240, doc=__doc__)
