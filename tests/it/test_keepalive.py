#!/usr/bin/env python3
"""tcp_keepalive = 1s,1s,2: a peer that goes silent without an RST is found
by keepalive probes, long before timeout_idle (5m here).

The test makes a network namespace of its own (spliced-ka-PID: lo up), and
the script's main thread enters it, so the proxy, the backends and the
clients all run in it on 127.0.0.1; nftables there drops every packet a
peer sends (`tcp sport PORT drop` on lo's output hook): a host gone, or
state dropped by a NAT. The namespace goes at the end, also on failure.
Skipped (77) only without root, network namespaces or nft.

[global] tcp_keepalive = 1s,1s,2 reaches listener ka; listener nka sets
tcp_keepalive = off. Each listener has its own echo backend.

client silent: through each listener 256 KiB go up and come back (sha256
  both ways), the proxy's socket to the client has nothing unacknowledged,
  then both clients' packets are dropped. ka: the proxy's probes go
  unanswered: within IDLE + INTERVAL x COUNT + 1 s = 4 s it logs
  reason=client_timeout and the backend gets an RST (ECONNRESET). nka,
  silent as long: nothing happens (no access line, the backend's socket
  open); once the drop goes, 64 KiB more go through it and it ends with
  reason=client_eof.
backend silent: the same with both backends' packets dropped: ka ends with
  reason=server_timeout and the client gets the RST within 4 s; nka stays
  up and still carries bytes afterwards.

Bytes move, so it runs per mode."""

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

IDLE, INTERVAL, COUNT = 1, 1, 2
KEEPALIVE = "%ds,%ds,%d" % (IDLE, INTERVAL, COUNT)
DETECT = IDLE + INTERVAL * COUNT            # the kernel's give-up time, s
DETECT_MAX = DETECT + 1.0                   # what the test allows
SIZE = 256 * H.KiB
CLONE_NEWNET = 0x40000000
NS_PREFIX = "spliced-ka-"


# --------------------------------------------------------------------------
# the namespace and its firewall

def run(argv, timeout=30):
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()


def setns(fd):
    if hasattr(os, "setns"):                # Python 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                       use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def remove_stale():
    """Namespaces of runs that were killed before their cleanup."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for n in names:
        pid = n[len(NS_PREFIX):]
        if n.startswith(NS_PREFIX) and pid.isdigit() and \
                not os.path.exists("/proc/" + pid):
            run(["ip", "netns", "del", n])


class Netns:
    """A fresh network namespace that the calling (main) thread enters:
    sockets, threads and processes it makes from then on live there. The
    thread goes back and the namespace is deleted on leaving, also on
    failure (processes still in it keep it alive until they end)."""

    def __init__(self):
        self.name = "%s%d" % (NS_PREFIX, os.getpid())
        self.home = None

    def __enter__(self):
        if os.geteuid() != 0:
            raise H.Skip("needs root for a network namespace and nftables")
        if shutil.which("nft") is None:
            raise H.Skip("nft not found (tools/setup installs nftables)")
        remove_stale()
        rc, out = run(["ip", "netns", "add", self.name])
        if rc != 0:
            raise H.Skip("ip netns add: %s" % out)
        try:
            rc, out = run(["ip", "netns", "exec", self.name, "ip", "link", "set",
                           "lo", "up"])
            H.check(rc == 0, "lo up in %s" % self.name, "exit 0", out)
            self.nft("add table inet spliced_ka")
            self.nft("add chain inet spliced_ka out "
                     "{ type filter hook output priority 0; }")
            self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            fd = os.open("/run/netns/" + self.name, os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)
        except BaseException:
            self._leave()
            raise
        H.log("in network namespace %s" % self.name)
        return self

    def nft(self, cmd):
        rc, out = run(["ip", "netns", "exec", self.name, "nft"] + cmd.split())
        H.check(rc == 0, "nft %s" % cmd, "exit 0", out)

    def silence(self, *ports):
        """Drop every packet sent from these local ports."""
        for p in ports:
            self.nft("add rule inet spliced_ka out tcp sport %d drop" % p)

    def speak(self):
        self.nft("flush chain inet spliced_ka out")

    def _leave(self):
        if self.home is not None:
            setns(self.home)
            os.close(self.home)
            self.home = None
        rc, out = run(["ip", "netns", "del", self.name])
        if rc != 0:
            H.log("ip netns del %s: %s" % (self.name, out))

    def __exit__(self, *exc):
        self._leave()
        return False


# --------------------------------------------------------------------------
# helpers

def timed_echo():
    """H.echo(), with the time its connection ended (t_end)."""
    inner = H.echo()

    def h(conn, be, idx):
        res = inner(conn, be, idx)
        res["t_end"] = time.monotonic()
        return res
    return h


def exchange(c, seed, size, what):
    """size bytes of stream seed up through c and back (sent from a thread
    so neither direction waits on the other); the connection stays open."""
    sent = {}

    def send():
        try:
            sent["sha"] = H.send_stream(c, seed, size)
        except OSError as e:
            sent["error"] = repr(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = H.read_stream(c, limit=size, deadline=time.monotonic() + 60)
    t.join(60)
    H.check("error" not in sent, what + ": sending %s" % H.human(size), "no error",
            sent.get("error"))
    H.check_eq((got.end, got.n, got.sha), ("limit", size, sent.get("sha")),
               what + ": %s came back intact (end, bytes, sha256)" % H.human(size))
    return sent["sha"]


def tcp_rows():
    """[(local port, remote port, state, bytes not acknowledged yet)] of
    this namespace (/proc/net is the main thread's, which is in it)."""
    rows = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            rows.append((int(p[1].rsplit(":", 1)[1], 16),
                         int(p[2].rsplit(":", 1)[1], 16),
                         H.TCP_STATES.get(p[3], p[3]),
                         int(p[4].split(":")[0], 16)))
    return rows


def socket_state(lport, rport):
    for lp, rp, st, unacked in tcp_rows():
        if (lp, rp) == (lport, rport):
            return st, unacked
    return None, None


def wait_acked(lport, rport, what):
    """Keepalive probes start only on a socket with nothing in flight (else
    retransmissions run, for minutes): wait until its peer acknowledged
    every byte before making that peer silent."""
    ok = H.wait_until(lambda: socket_state(lport, rport) == ("ESTABLISHED", 0),
                      10.0, 0.01)
    H.check(ok, what + ": the proxy's socket %d->%d has every byte acknowledged"
            % (lport, rport), "ESTABLISHED with 0 bytes in flight",
            socket_state(lport, rport))


def proxy_port_to(port):
    """The proxy's local port of its (one) connection to a backend port."""
    ports = [lp for lp, rp, st, _ in tcp_rows() if rp == port and st == "ESTABLISHED"]
    H.check(len(ports) == 1, "the proxy's connection to backend port %d" % port,
            "exactly one", ports)
    return ports[0]


def start(ctx):
    a = ctx.backend(timed_echo(), name="a")
    b = ctx.backend(timed_echo(), name="b")
    p = ctx.proxy(glob={"splice": ctx.mode, "tcp_keepalive": KEEPALIVE},
                  listeners={"ka": {"backend": "a", "timeout_idle": "5m"},
                             "nka": {"backend": "b", "timeout_idle": "5m",
                                     "tcp_keepalive": "off"}},
                  backends={"a": {"server": "a " + a.addr},
                            "b": {"server": "b " + b.addr}})
    p.start()
    return p, a, b


def open_pair(p, a, b, seed):
    """One client per listener, each with SIZE echoed; returns (ka client,
    nka client) once both backends have their connection."""
    cs = []
    for i, (name, be) in enumerate((("ka", a), ("nka", b))):
        c = H.dial(p.port(name))
        exchange(c, seed + i, SIZE, "%s before the silence" % name)
        cs.append(c)
    H.check_eq((a.wait_accepted(1), b.wait_accepted(1)), (1, 1),
               "connections each backend accepted")
    return cs


def found(p, kport, mark, what, other, end, took, reason):
    """ka's silent peer was found: `other` peer (client or backend) saw how
    its stream ended (`end`) `took` s after the silence began."""
    H.log("%s: the %s got %s %.2fs after the silence began (allowed %.1fs)"
          % (what, other, end, took, DETECT_MAX))
    H.check_eq(end, "reset", what + ": how the %s's stream ended" % other)
    H.check(DETECT - 1.0 <= took <= DETECT_MAX,
            what + ": found by keepalive (IDLE + INTERVAL x COUNT = %ds)" % DETECT,
            "%.1f..%.1f s after the silence began" % (DETECT - 1.0, DETECT_MAX),
            "%.2f s" % took)
    H.check_access(p.access_for(kport, since=mark), up=SIZE, down=SIZE,
                   reason=reason, what=what)


def silent_as_long(p, b, cport, mark, t0):
    """Wait, for as long as ka was allowed and then some, for nka to end
    (its access line or its backend seeing the end): it must not."""
    def ended():
        return b.results or any(x.get("client_port") == cport
                                for x in p.access(mark))
    H.wait_until(ended, max(0.0, t0 + DETECT_MAX + 1.0 - time.monotonic()))


def nka_still_up(p, b, nc, mark, proxy_side, what):
    """nka had the same silence: nothing happened to it; with the drop gone
    it still carries bytes, and ends cleanly."""
    cport = H.local_port(nc)
    st, _ = socket_state(*proxy_side)
    H.check_eq(st, "ESTABLISHED", what + ": the proxy's socket %d->%d" % proxy_side)
    H.check_eq([x for x in p.access(mark) if x.get("client_port") == cport], [],
               what + ": access lines (the connection is still open)")
    H.check_eq(b.results, [], what + ": connections the backend saw end")
    exchange(nc, 90, 64 * H.KiB, what + " after the drop went")
    nc.shutdown(H.socket.SHUT_WR)
    tail = H.read_stream(nc, deadline=time.monotonic() + 30)
    nc.close()
    H.check_eq((tail.end, tail.n), ("eof", 0), what + ": a clean EOF at the end")
    r = b.result(0)
    H.check_eq((r.get("end"), r.get("n")), ("eof", SIZE + 64 * H.KiB),
               what + ": the backend's stream (end, bytes)")
    H.check_access(p.access_for(cport, since=mark), up=SIZE + 64 * H.KiB,
                   down=SIZE + 64 * H.KiB, reason="client_eof", what=what)


# --------------------------------------------------------------------------
# tests

def test_client_silent(ctx):
    with Netns() as ns:
        p, a, b = start(ctx)
        mark = p.mark()
        kc, nc = open_pair(p, a, b, 10)
        kport, nport = H.local_port(kc), H.local_port(nc)
        lka, lnka = p.port("ka"), p.port("nka")
        wait_acked(lka, kport, "ka")
        wait_acked(lnka, nport, "nka")
        ns.silence(kport, nport)
        t0 = time.monotonic()

        what = "ka: client silent"
        r = a.result(0, timeout=DETECT_MAX + 5)
        H.check_eq((r.get("n"), r.get("sha")), (SIZE, H.stream_sha(10, SIZE)),
                   what + ": what the backend got before (bytes, sha256)")
        found(p, kport, mark, what, "backend", r.get("end"), r["t_end"] - t0,
              "client_timeout")
        kc.close()

        silent_as_long(p, b, nport, mark, t0)
        ns.speak()
        nka_still_up(p, b, nc, mark, (lnka, nport), "nka: client silent as long")
        p.finish()


def test_backend_silent(ctx):
    with Netns() as ns:
        p, a, b = start(ctx)
        mark = p.mark()
        kc, nc = open_pair(p, a, b, 20)
        kport = H.local_port(kc)
        to_a, to_b = proxy_port_to(a.port), proxy_port_to(b.port)
        wait_acked(to_a, a.port, "ka")
        wait_acked(to_b, b.port, "nka")
        ns.silence(a.port, b.port)
        t0 = time.monotonic()

        what = "ka: backend silent"
        end, _ = H.expect_closed(kc, DETECT_MAX + 5)
        took = time.monotonic() - t0
        kc.close()
        found(p, kport, mark, what, "client", end, took, "server_timeout")
        r = a.result(0, timeout=10)
        H.check_eq((r.get("n"), r.get("sha")), (SIZE, H.stream_sha(20, SIZE)),
                   what + ": what the backend got before (bytes, sha256)")

        silent_as_long(p, b, H.local_port(nc), mark, t0)
        ns.speak()
        nka_still_up(p, b, nc, mark, (to_b, b.port), "nka: backend silent as long")
        p.finish()


if __name__ == "__main__":
    H.main([test_client_silent, test_backend_silent], deadline=240, doc=__doc__)
