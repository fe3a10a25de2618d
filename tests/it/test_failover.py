#!/usr/bin/env python3
"""Servers that die and come back, while clients keep connecting.

checks on: servers a, b, c (echo), health_check = tcp every 200 ms, rise 2,
  fall 3, retries 2; two client threads keep doing 1 KiB echo round trips.
  a stops accepting (its listening socket closes): no client connection
  fails; a is logged down, and after fall x interval (+1 s) the proxy no
  longer tries it. a listens again on the same port: logged up, and it
  serves clients again within rise x interval (+1.5 s).
checks off: servers a, b, fall = 2: a dies; no client fails; a is logged
  down with its back-off; a back, its trial connect brings it up and it
  serves again within the back-off it had reached (+1.5 s).
"""

import ctypes
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

INTERVAL = 0.2
RISE, FALL = 2, 3
SO_ATTACH_FILTER = 26
# A classic BPF program of one instruction, BPF_RET|BPF_K 0: drop every packet.
_DROP_ALL = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))


def refuse_new_handshakes(sock):
    """Attach a drop-everything filter to a listening socket: the kernel
    then drops new SYNs for it (tcp_filter() runs on the listener), so no
    handshake completes into its backlog from now on, while connections
    already queued stay acceptable. A client whose SYN was dropped gets an
    RST for its retransmitted SYN once the socket is closed."""
    prog = struct.pack("HL", 1, ctypes.addressof(_DROP_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


class Killable:
    """An echo server on 127.0.0.1 that can stop accepting and listen again
    on the same port. Connections it took finish; only ones that carried
    bytes count as traffic (health checks send none)."""

    def __init__(self, name):
        self.name = name
        self.port = 0
        self.sock = None
        self.thread = None
        self.lock = threading.Lock()
        self.traffic = []           # monotonic times of connections with bytes
        self.stopping = False

    @property
    def addr(self):
        return "%s:%d" % (H.LOCAL, self.port)

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((H.LOCAL, self.port))
        s.listen(512)
        s.settimeout(0.05)
        self.port = s.getsockname()[1]
        self.sock = s
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, args=(s,), daemon=True)
        self.thread.start()
        return self

    def _loop(self, s):
        while True:
            if self.stopping:
                # Take what the kernel already queued, then close: a
                # connection it accepted must not be reset.
                s.setblocking(False)
            try:
                conn, _ = s.accept()
            except (socket.timeout, BlockingIOError):
                if self.stopping:
                    break
                continue
            except OSError:
                break
            conn.setblocking(True)
            conn.settimeout(H.IO_TIMEOUT)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        s.close()

    def _serve(self, conn):
        res = H.echo()(conn, None, 0)
        conn.close()
        if res.get("n", 0) > 0:
            with self.lock:
                self.traffic.append(time.monotonic())

    def stop(self):
        """Stop accepting without resetting a connection the kernel had
        accepted: new SYNs are dropped first, handshakes in flight are let
        finish (no SYN_RECV left on the port), then what is queued is taken
        (the accept loop runs until it finds nothing), then the socket
        closes. Closing with a handshake completing into the backlog reset
        that connection, which no proxy can retry."""
        if self.sock is not None and not self.stopping:
            refuse_new_handshakes(self.sock)
            H.wait_until(lambda: not any(r[0] == self.port and r[2] == "SYN_RECV"
                                         for r in H.tcp_table()), 2.0, 0.01)
        self.stopping = True
        if self.thread:
            self.thread.join(5)
        self.thread = None

    def traffic_since(self, t):
        with self.lock:
            return len([x for x in self.traffic if x >= t])

    def close(self):
        self.stop()


def wait_traffic(server, since, timeout):
    return H.wait_until(lambda: server.traffic_since(since) > 0, timeout)


def test_checks_on(ctx):
    servers = {n: ctx.register(Killable(n)).start() for n in "abc"}
    a = servers["a"]
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "2s"}},
                  backends={"app": {"server": ["%s %s" % (n, s.addr) for n, s in servers.items()],
                                    "retries": 2, "health_check": "tcp",
                                    "health_interval": "%dms" % (INTERVAL * 1000),
                                    "health_timeout": "200ms",
                                    "rise": RISE, "fall": FALL}})
    p.allow(r"\ba/", r":%d\b" % a.port)
    p.start()
    cl = ctx.register(H.EchoClients(p.port(), n=2, pause=0.01))
    t0 = time.monotonic()
    for s in servers.values():
        H.check(wait_traffic(s, t0, 10), "server %s serves clients" % s.name,
                "traffic within 10 s", "none")

    mark = p.mark()
    t_kill = time.monotonic()
    a.stop()
    H.check(p.wait_line(r"warn: server app/a \S+ is down: ", FALL * INTERVAL + 2, since=mark),
            "a logged down after it died", "within fall x interval + 2 s", "no line")
    H.log("a down after %.2fs" % (time.monotonic() - t_kill))
    quiet = t_kill + FALL * INTERVAL + 1.0
    time.sleep(max(0, quiet - time.monotonic()))
    quiet_mark = p.mark()
    time.sleep(2.0)
    tried = [m for _, m in p.parsed(since=quiet_mark) if "server app/a " in m
             and "connect failed" in m]
    H.check_eq(len(tried), 0, "connects to a from fall x interval + 1 s after it died "
               "(%s)" % tried[:3])

    mark = p.mark()
    t_back = time.monotonic()
    a.start()
    H.check(p.wait_line(r"info: server app/a \S+ is up: %d checks passed" % RISE,
                        RISE * INTERVAL + 1.5, since=mark),
            "a logged up after it came back", "within rise x interval + 1.5 s", "no line")
    H.check(wait_traffic(a, t_back, RISE * INTERVAL + 1.5),
            "a serves clients again", "within rise x interval + 1.5 s", "no traffic")
    H.log("a serving again after %.2fs" % (time.monotonic() - t_back))
    cl.stop()
    H.log("%d client round trips, %d failed" % (cl.done, len(cl.failures)))
    H.check_eq(cl.failures[:5], [], "client round trips that failed")
    downs = [m for _, m in p.parsed() if " is down: " in m]
    H.check_eq(len(downs), 1, "'is down' lines (%s)" % downs)
    p.finish()


def test_checks_off(ctx):
    servers = {n: ctx.register(Killable(n)).start() for n in "ab"}
    a = servers["a"]
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "app", "timeout_connect": "2s"}},
                  backends={"app": {"server": ["%s %s" % (n, s.addr) for n, s in servers.items()],
                                    "retries": 1, "fall": 2}})
    p.allow(r"\ba/", r":%d\b" % a.port)
    p.start()
    cl = ctx.register(H.EchoClients(p.port(), n=2, pause=0.01))
    t0 = time.monotonic()
    for s in servers.values():
        H.check(wait_traffic(s, t0, 10), "server %s serves clients" % s.name,
                "traffic within 10 s", "none")
    mark = p.mark()
    a.stop()
    H.check(p.wait_line(r"warn: server app/a \S+ is down: 2 connects failed in a row: "
                        r".*next try in 1000 ms", 5, since=mark),
            "a logged down by traffic, with its back-off", "within 5 s", "no line")
    time.sleep(2.5)         # trials at +1 s and +3 s: the first fails
    mark = p.mark()
    t_back = time.monotonic()
    a.start()
    H.check(p.wait_line(r"info: server app/a \S+ is up: a connect succeeded", 2 + 1.5,
                        since=mark),
            "a back up after its trial connect", "within the 2 s back-off + 1.5 s", "no line")
    H.check(wait_traffic(a, t_back, 2 + 1.5), "a serves clients again",
            "within the 2 s back-off + 1.5 s", "no traffic")
    cl.stop()
    H.log("%d client round trips, %d failed" % (cl.done, len(cl.failures)))
    H.check_eq(cl.failures[:5], [], "client round trips that failed")
    p.finish()


if __name__ == "__main__":
    H.main([test_checks_on, test_checks_off], deadline=240, doc=__doc__)
