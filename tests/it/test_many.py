#!/usr/bin/env python3
"""Many connections.

400 at once: 400 clients connect first, then all send their own stream
  (about 128 KiB each, every one different) to an echo backend while reading
  the echo back, with one selector. Every connection gets back exactly what
  it sent (its own sha256), ends in a clean EOF, and has an access line with
  the right byte counts.
10,000 short ones: 16 client threads make 10,000 connections in turn; each
  sends 64 bytes that name it and gets them back (half shut down writing and
  wait for EOF, half just close after the echo). Afterwards the proxy's fd
  count is back at the baseline taken after start-up (after a settle wait),
  there is one access line per connection, and no socket of the proxy is in
  CLOSE_WAIT (checked by inode through /proc/PID/fd and by port in
  /proc/net/tcp)."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

N_CONCURRENT = 400
N_SHORT = 10000
SHORT_THREADS = 16


def start(ctx):
    be = ctx.backend(H.echo(bufsize=64 * H.KiB), name="echo")
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "echo"}},
                  backends={"echo": {"server": "e " + be.addr}}).start()
    return p, be


def test_400_concurrent(ctx):
    p, be = start(ctx)
    mark = p.mark()
    jobs = [H.ClientJob(seed=1000 + i, send_size=128 * H.KiB + i * 37)
            for i in range(N_CONCURRENT)]
    t0 = time.monotonic()
    H.drive_clients(p.port(), jobs, timeout=240)
    H.log("%d concurrent echo connections done in %.1fs" % (N_CONCURRENT, time.monotonic() - t0))
    bad = [j for j in jobs if j.end != "eof" or j.recv_n != j.send_size
           or j.recv_sha != j.sent_sha]
    H.check(not bad, "each of %d concurrent connections got its own bytes back, then EOF"
            % N_CONCURRENT, "all intact",
            "%d broken, e.g. %r" % (len(bad), bad[:5]))
    H.check_eq(be.accepted, N_CONCURRENT, "connections the echo backend accepted")
    got = p.wait_access_count(N_CONCURRENT, since=mark, timeout=60)
    H.check_eq(got, N_CONCURRENT, "access lines for the concurrent connections")
    by_port = {a.get("client_port"): a for a in p.access(mark)}
    for j in jobs:
        a = by_port.get(j.port)
        H.check(a is not None, "access line for client port %d" % j.port, "present", None)
        H.check_access(a, up=j.send_size, down=j.send_size, reason="client_eof",
                       what="concurrent connection seed %d" % j.seed)
    p.finish()


def test_10000_short(ctx):
    p, be = start(ctx)
    port = p.port()
    mark = p.mark()
    counter = iter(range(N_SHORT))
    lock = threading.Lock()
    errors = []
    done = [0]

    def one(i):
        msg = (b"conn %08d " % i) * 4 + b"end\n" * 2     # 64 bytes
        s = H.dial(port, timeout=H.IO_TIMEOUT)
        try:
            s.sendall(msg)
            if i % 2 == 0:
                s.shutdown(socket.SHUT_WR)
                r = bytearray()
                while len(r) <= len(msg):
                    b = s.recv(4096)
                    if not b:
                        break
                    r += b
                if bytes(r) != msg:
                    return "conn %d (half-close): got %r" % (i, bytes(r)[:80])
            else:
                r = bytearray()
                while len(r) < len(msg):
                    b = s.recv(len(msg) - len(r))
                    if not b:
                        break
                    r += b
                if bytes(r) != msg:
                    return "conn %d: got %r" % (i, bytes(r)[:80])
        finally:
            s.close()
        return None

    def worker():
        while True:
            with lock:
                if len(errors) > 20:
                    return
                try:
                    i = next(counter)
                except StopIteration:
                    return
            try:
                e = one(i)
            except OSError as ex:
                e = "conn %d: %r" % (i, ex)
            with lock:
                done[0] += 1
                if e:
                    errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(SHORT_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, 400 - (time.monotonic() - t0)))
    H.log("%d short connections done in %.1fs" % (done[0], time.monotonic() - t0))
    H.check(not any(t.is_alive() for t in threads), "the short-connection threads finished",
            "within 400 s", "%d done" % done[0])
    H.check(not errors, "every short connection echoed its 64 bytes", "no error",
            "%d errors, e.g. %s" % (len(errors), errors[:5]))
    H.check_eq(done[0], N_SHORT, "short connections made")
    got = p.wait_access_count(N_SHORT, since=mark, timeout=60)
    H.check_eq(got, N_SHORT, "access lines for the short connections")
    bad = [a for a in p.access(mark)
           if H.access_total(a, "up") != 64 or H.access_total(a, "down") != 64
           or a.get("reason") not in ("client_eof", "server_eof")]
    H.check(not bad, "every short connection's access line: 64 bytes each way, "
            "client_eof or server_eof", "all", "%d differ, e.g. %r" % (len(bad), bad[:3]))
    # CLOSE_WAIT by port, as well as by inode in finish()
    H.wait_until(lambda: not close_wait_by_port(port, be.port), 10, 0.2)
    cw = close_wait_by_port(port, be.port)
    H.check(not cw, "no CLOSE_WAIT socket on the proxy's ports",
            "none", cw[:10])
    p.finish()


def close_wait_by_port(listen_port, backend_port):
    return [r for r in H.tcp_table() if r[2] == "CLOSE_WAIT" and
            (r[0] == listen_port or r[1] == backend_port)]


if __name__ == "__main__":
    H.main([test_400_concurrent, test_10000_short], deadline=540, doc=__doc__)
