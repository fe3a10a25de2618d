"""A fleet: the namespaces, the backends, three instances and the client
side, made on entering and all ended (processes killed, namespaces
deleted) on leaving, also on failure and at exit."""

import atexit
import collections
import ctypes
import os
import shutil
import sys
import tempfile
import time

from .base import (INSTANCES, IO_TIMEOUT, PORT, PREFIX, SERVERS, VIP, CaseFailure,
                   Unavailable, check, check_eq, default_log)
from .clients import Clients, LongStream, ShortLoad
from .net import Net, libc, sweep_stale
from .procs import Backends, Instance

PR_SET_CHILD_SUBREAPER = 36


class Fleet:
    """Namespaces, backends, three instances and the client side; close()
    (also at exit) ends every process and deletes every namespace."""

    serial = 0

    def __init__(self, spliced, mode="auto", nclients=200, tmp=None, log=None, keep=False,
                 pin=True):
        self.src = os.path.abspath(spliced)
        self.mode = mode
        self.nclients = nclients
        self.log = log or default_log
        self.keep = keep
        self.tmp_parent = tmp
        self.tmp = self.exe = None
        Fleet.serial += 1
        self.net = Net("%s%d-%d" % (PREFIX, os.getpid(), Fleet.serial), nclients, pin)
        self.backends = None
        self.instances = []
        self.by_addr = {}
        self.clients = None
        self.loads = []
        self.longs = []
        self.closed = False
        self.failed = False

    def __enter__(self):
        if os.geteuid() != 0:
            raise Unavailable("needs root (network namespaces, veth, nftables)")
        for tool in ("ip", "nft", "sysctl"):
            if shutil.which(tool) is None:
                raise Unavailable("%s not found" % tool)
        if not 1 <= self.nclients <= 240:
            raise ValueError("clients: 1..240")
        atexit.register(self.close)
        try:
            sweep_stale(self.log)
            self.tmp = tempfile.mkdtemp(prefix="spliced-fleet-", dir=self.tmp_parent)
            self.exe = os.path.join(self.tmp, "bin", "spliced")
            os.makedirs(os.path.dirname(self.exe))
            self.install_binary()
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise Unavailable("prctl(PR_SET_CHILD_SUBREAPER): %s"
                                  % os.strerror(ctypes.get_errno()))
            t0 = time.monotonic()
            self.net.build()
            self.backends = Backends(self.net.ns["b"])
            self.instances = [Instance(self, k) for k in INSTANCES]
            self.by_addr = {i.addr: i.name for i in self.instances}
            self.clients = Clients(self)
            self.log("fleet: namespaces %s-{c,r,i1,i2,i3,b} up in %.1f s: %d client "
                     "addresses %s..%s, VIP %s:%d over 3 instances, backends %s"
                     % (self.net.tag, time.monotonic() - t0, self.nclients,
                        self.net.clients[0], self.net.clients[-1], VIP, PORT,
                        " ".join(SERVERS)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, Unavailable):
            self.failed = True
            self.print_tails()
        self.close()
        return False

    def install_binary(self):
        """A fresh copy of the binary at the path the instances run (a new
        inode, as a package upgrade leaves)."""
        tmp = self.exe + ".new"
        shutil.copy2(self.src, tmp)
        os.replace(tmp, self.exe)

    def start_instances(self, servers):
        for i in self.instances:
            i.write_config(servers)
            i.start()
        self.log("fleet: spliced running in %s (pids %s), servers %s"
                 % (", ".join(i.name for i in self.instances),
                    " ".join(str(i.pid) for i in self.instances), " ".join(servers)))

    def set_servers(self, servers):
        for i in self.instances:
            i.write_config(servers)
            i.reload()
        self.log("fleet: every instance reloaded with servers %s" % " ".join(servers))

    def stop_instances(self):
        for i in self.instances:
            i.stop()

    def long_streams(self, n, per_instance):
        """n long streams from spread client addresses; more (up to 3n in
        all) while an instance carries fewer than per_instance."""
        addrs = self.clients.addrs
        for _ in range(3 * n):
            count = collections.Counter(s.conn.via for s in self.longs
                                        if s.conn and s.conn.backend)
            if len(self.longs) >= n and all(count[i.name] >= per_instance
                                            for i in self.instances):
                return list(self.longs)
            sid = len(self.longs)
            s = LongStream(self.clients, addrs[(sid * 7 + 3) % len(addrs)], sid)
            self.longs.append(s)
            s.start()
            s.ready.wait(IO_TIMEOUT + 5)
            check(s.conn is not None and s.conn.backend is not None,
                  "long stream %d connects" % sid, "the backend's line",
                  s.conn)
        count = collections.Counter(s.conn.via for s in self.longs)
        raise CaseFailure("ECMP spreads long streams", "%d on every instance"
                          % per_instance, dict(count))

    def stop_longs(self):
        for s in self.longs:
            s.halt.set()
        for s in self.longs:
            s.join(IO_TIMEOUT * 3)
            check(not s.is_alive(), "long stream %d ends" % s.sid,
                  "within %.0f s" % (IO_TIMEOUT * 3), "still running")

    def load(self, **kw):
        ld = ShortLoad(self.clients, **kw)
        self.loads.append(ld)
        ld.start()
        return ld

    def owners(self):
        """{(address, port): {names of the instances that got its SYN}}."""
        res = {}
        for i in self.instances:
            for key in self.net.syn(i.k):
                res.setdefault(key, set()).add(i.name)
        return res

    def check_owners(self, conns):
        """Every connection reached exactly one instance (its SYNs), and the
        one the backend saw it come from is that one."""
        owners = self.owners()
        for c in conns:
            got = owners.get((c.addr, c.port), set())
            check(len(got) == 1, "the instances that got %r's SYN" % c, "exactly one",
                  sorted(got))
            if c.via is not None:
                check_eq(c.via, next(iter(got)), "the instance that carried %r "
                         "(the backend's view) against the one that got its SYN" % c)
        return owners

    def print_tails(self):
        for i in self.instances:
            lines, naccess = i.tail()
            sys.stdout.write("  --- %s (pids %s) stderr, last lines (%d access lines "
                             "left out):\n" % (i.name, " ".join(map(str, i.pids)), naccess))
            for l in lines:
                sys.stdout.write("    %s\n" % l)
        sys.stdout.flush()

    def close(self):
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        for ld in self.loads:
            ld.halt.set()
        for s in self.longs:
            s.halt.set()
        for i in self.instances:
            i.kill_all()
        if self.backends is not None:
            self.backends.close()
        self.net.close(self.log)
        if self.tmp is None:
            return
        if self.keep or self.failed:
            self.log("fleet: configs and binary kept in %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
