"""The namespaces (client, router, three instances, backends), their veth
links, addresses and routes; the router's ECMP route to the VIP and the
pinning of flows; the SYNs each instance received (nftables sets). See
tools/fleet for the layout."""

import ctypes
import ctypes.util
import json
import os
import re
import signal
import socket
import threading

from .base import (INSTANCES, PORT, PREFIX, SERVERS, VIP, CaseFailure,
                   Unavailable, backend_addr, check, inst_addr, run)

CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_tls = threading.local()


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


class Ns:
    """A network namespace. A socket lives in the namespace of the thread
    that made it, for good: socket() switches the calling thread there and
    back (setns acts on one thread), enter() moves the thread for good."""

    def __init__(self, name):
        self.name = name
        self.fd = None

    def create(self):
        rc, out = run(["ip", "netns", "add", self.name])
        if rc != 0:
            raise Unavailable("ip netns add %s: %s" % (self.name, out))
        self.fd = os.open("/run/netns/" + self.name, os.O_RDONLY)

    def ip(self, cmds):
        """Lines of `ip` commands, in one `ip -n NAME -batch -`."""
        return run(["ip", "-n", self.name, "-batch", "-"], stdin="\n".join(cmds) + "\n")

    def run(self, argv, stdin=None, timeout=30):
        return run(["ip", "netns", "exec", self.name] + argv, stdin, timeout)

    def enter(self):
        setns(self.fd)
        _tls.ns = self

    def socket(self):
        if getattr(_tls, "ns", None) is self:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            setns(self.fd)
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                setns(home)
        finally:
            os.close(home)

    def delete(self):
        """SIGKILL the processes left in it (they can only be this tool's,
        or a killed run's), then delete it."""
        rc, out = run(["ip", "netns", "pids", self.name])
        for p in out.split() if rc == 0 else ():
            if p.isdigit() and int(p) != os.getpid():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return run(["ip", "netns", "del", self.name])


def alive(pid):
    """A process that has not exited (a zombie has)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sweep_stale(log):
    """Namespaces of runs that were killed before their cleanup."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for n in names:
        m = re.match(PREFIX + r"(\d+)-", n)
        if m and not alive(m.group(1)):
            log("removing namespace %s of a run that is gone" % n)
            Ns(n).delete()


class Net:
    """The namespaces, their links and routes, the router's ECMP route."""

    def __init__(self, tag, nclients, pin=True):
        self.tag = tag
        self.pin = pin
        self.clients = ["198.18.1.%d" % (10 + i) for i in range(nclients)]
        roles = ["c", "r", "b"] + ["i%d" % k for k in INSTANCES]
        self.ns = {r: Ns("%s-%s" % (tag, r)) for r in roles}
        self.announced = set()
        self.lock = threading.Lock()

    def build(self):
        for ns in self.ns.values():
            ns.create()
        r = self.ns["r"].name
        links = ["link add to-c netns %s type veth peer name eth0 netns %s"
                 % (r, self.ns["c"].name),
                 "link add to-b netns %s type veth peer name eth0 netns %s"
                 % (r, self.ns["b"].name)]
        links += ["link add to-i%d netns %s type veth peer name eth0 netns %s"
                  % (k, r, self.ns["i%d" % k].name) for k in INSTANCES]
        rc, out = run(["ip", "-batch", "-"], stdin="\n".join(links) + "\n")
        if rc != 0:
            raise Unavailable("veth pairs between namespaces: %s" % out)

        def up(*devs):
            return ["link set %s up" % d for d in ("lo",) + devs]
        self._ip("c", up("eth0") + ["addr add 198.18.1.2/24 dev eth0"]
                 + ["addr add %s/24 dev eth0" % a for a in self.clients]
                 + ["route add 198.18.0.0/15 via 198.18.1.1"])
        self._ip("b", up("eth0") + ["addr add 198.18.20.2/24 dev eth0"]
                 + ["addr add %s/24 dev eth0" % backend_addr(s) for s in SERVERS]
                 + ["route add 198.18.0.0/15 via 198.18.20.1"])
        for k in INSTANCES:
            self._ip("i%d" % k, up("eth0") + [
                "addr add %s/24 dev eth0" % inst_addr(k),
                "addr add %s/32 dev lo" % VIP,
                "route add 198.18.0.0/15 via 198.18.%d.1" % (10 + k)])
            self._nft("i%d" % k, """
table ip fleet {
    set syn { type ipv4_addr . inet_service; size 65535; flags dynamic; }
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr %s tcp dport %d tcp flags & (syn | ack) == syn add @syn { ip saddr . tcp sport }
    }
}""" % (VIP, PORT))
        rdevs = ["to-c", "to-b"] + ["to-i%d" % k for k in INSTANCES]
        self._ip("r", up(*rdevs) + [
            "addr add 198.18.1.1/24 dev to-c", "addr add 198.18.20.1/24 dev to-b"]
            + ["addr add 198.18.%d.1/24 dev to-i%d" % (10 + k, k) for k in INSTANCES])
        # rp_filter off: after a withdrawal, the pinned flows' answers still
        # come from the instance whose route is gone.
        sysctls = ["net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
        sysctls += ["net.ipv4.conf.%s.rp_filter=0" % d for d in rdevs]
        rc, out = self.ns["r"].run(["sysctl", "-qw"] + sysctls)
        if rc != 0:
            raise Unavailable("sysctl in the router: %s" % out)
        if self.pin:
            self._pin()
        self.announce(set(INSTANCES))

    def _pin(self):
        """Each flow to the VIP keeps the instance its first packet went to."""
        marks = ", ".join('"to-i%d" : %d' % (k, k) for k in INSTANCES)
        self._nft("r", """
table ip fleet {
    chain pre {
        type filter hook prerouting priority -150; policy accept;
        ip daddr %s meta mark set ct mark
    }
    chain pin {
        type filter hook forward priority 0; policy accept;
        ip daddr %s ct mark 0 ct mark set oifname map { %s }
    }
}""" % (VIP, VIP, marks))
        self._ip("r", ["rule add fwmark %d lookup %d pref %d" % (k, 100 + k, 100 + k)
                       for k in INSTANCES]
                 + ["route add %s/32 via %s dev to-i%d table %d"
                    % (VIP, inst_addr(k), k, 100 + k) for k in INSTANCES])

    def _ip(self, role, cmds):
        rc, out = self.ns[role].ip(cmds)
        if rc != 0:
            raise Unavailable("ip in %s: %s" % (self.ns[role].name, out))

    def _nft(self, role, ruleset):
        rc, out = self.ns[role].run(["nft", "-f", "-"], stdin=ruleset)
        if rc != 0:
            raise Unavailable("nft in %s: %s" % (self.ns[role].name, out))

    def announce(self, ks):
        """The router's multipath route to the VIP over instances ks."""
        ks = sorted(ks)
        if not ks:
            raise CaseFailure("the VIP's route", "at least one next hop", "none")
        with self.lock:
            hops = " ".join("nexthop via %s dev to-i%d" % (inst_addr(k), k) for k in ks)
            rc, out = self.ns["r"].ip(["route replace %s/32 %s" % (VIP, hops)])
            if rc != 0:
                raise Unavailable("a multipath route (%s): %s" % (hops, out))
            self.announced = set(ks)

    def withdraw(self, k):
        self.announce(self.announced - {k})

    def restore(self, k):
        self.announce(self.announced | {k})

    def syn(self, k):
        """{(address, port)} of every SYN instance k received."""
        rc, out = self.ns["i%d" % k].run(["nft", "-j", "list", "set", "ip", "fleet", "syn"])
        check(rc == 0, "nft list set in instance %d" % k, "exit 0", out)
        res = set()
        for obj in json.loads(out)["nftables"]:
            for e in obj.get("set", {}).get("elem", ()):
                a, p = e["concat"]
                res.add((a, int(p)))
        return res

    def close(self, log):
        for ns in self.ns.values():
            if ns.fd is not None:
                rc, out = ns.delete()
                if rc != 0:
                    log("ip netns del %s: %s" % (ns.name, out))
