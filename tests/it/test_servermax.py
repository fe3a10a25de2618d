#!/usr/bin/env python3
"""Per-server max_connections under 200 concurrent clients, two workers.

Servers a (max_connections=10) and b (max_connections=5) hold every
connection open. 200 clients connect at once: a never holds more than 10
connections at a time, b never more than 5 (the limit is one count shared
by the workers); exactly 15 clients are served and the other 185 are closed
with reason=servers_full in the access log (spliced does not queue them).
Three served clients leave: three new clients are served, and the limits
still hold.
"""

import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

LIMITS = {"a": 10, "b": 5}
CLIENTS = 200


class Holder:
    """A server on 127.0.0.1 that keeps every connection until the client
    closes it, counting how many it holds and the most it ever held."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket()
        self.sock.bind((H.LOCAL, 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.now = self.peak = self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "%s:%d" % (H.LOCAL, self.port)

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.now += 1
                self.accepted += 1
                self.peak = max(self.peak, self.now)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        conn.settimeout(H.IO_TIMEOUT)
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                conn.sendall(b)
        except OSError:
            pass
        with self.lock:
            self.now -= 1
        conn.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(2)


def closed_now(c):
    """Whether the proxy closed this client (EOF or reset waiting)."""
    r, _, _ = select.select([c], [], [], 0)
    if not r:
        return False
    try:
        return c.recv(1) == b""
    except OSError:
        return True


def test_limits(ctx):
    servers = {n: ctx.register(Holder(n)) for n in LIMITS}
    p = ctx.proxy(glob={"splice": ctx.mode, "workers": 2},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": ["%s %s max_connections=%d" % (n, s.addr, LIMITS[n])
                                               for n, s in servers.items()],
                                    "balance": "leastconn"}})
    p.start()
    mark = p.mark()
    clients = []
    for i in range(CLIENTS):
        c = socket.socket()
        c.settimeout(H.IO_TIMEOUT)
        c.connect((H.LOCAL, p.port()))
        clients.append(c)
    p.wait_access_count(CLIENTS - 15, since=mark, timeout=30)
    a = p.access(since=mark)
    full = [x for x in a if x.get("reason") == "servers_full"]
    H.check_eq(len(full), CLIENTS - 15, "clients closed with reason=servers_full")
    H.check(all(x.get("server") == "-" for x in full), "servers_full lines name no server",
            "server=-", [x.get("server") for x in full][:5])
    H.check(H.wait_until(lambda: sum(s.accepted for s in servers.values()) >= 15, 10),
            "the servers took their 15 connections", "15", "%d" % sum(
                s.accepted for s in servers.values()))
    time.sleep(0.5)
    for n, s in servers.items():
        H.log("server %s: holds %d, peak %d, accepted %d" % (n, s.now, s.peak, s.accepted))
        H.check_eq((s.now, s.peak), (LIMITS[n], LIMITS[n]),
                   "server %s: connections held now and at most" % n)
    served = [c for c in clients if not closed_now(c)]
    H.check_eq(len(served), 15, "clients still open (served)")
    for c in clients:
        if c not in served:
            c.close()

    # Three leave; three new ones are served, end to end.
    for c in served[:3]:
        c.close()
    H.check(H.wait_until(lambda: sum(s.now for s in servers.values()) == 12, 10),
            "the servers saw three connections end", "12 held",
            "%d" % sum(s.now for s in servers.values()))
    fresh = []
    for i in range(3):
        c = H.dial(p.port())
        c.sendall(b"ping %d\n" % i)
        H.check_eq(c.recv(64), b"ping %d\n" % i, "new client %d echoed" % i)
        fresh.append(c)
    for n, s in servers.items():
        H.check(s.peak <= LIMITS[n], "server %s: never above its limit" % n,
                "<= %d" % LIMITS[n], s.peak)
    for c in served[3:] + fresh:
        c.close()
    H.check(H.wait_until(lambda: sum(s.now for s in servers.values()) == 0, 10),
            "every server connection ended", "0", "%d" % sum(s.now for s in servers.values()))
    p.finish()


if __name__ == "__main__":
    H.main([test_limits], deadline=180, doc=__doc__)
