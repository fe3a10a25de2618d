#!/usr/bin/env python3
"""Socket activation: listening sockets passed with LISTEN_FDS, LISTEN_PID
and LISTEN_FDNAMES are used for the bind lines they match. (Per mode.)

wrapper: the test itself opens two listening sockets on 127.0.0.1, 'web'
  (the port of listener web's bind line) and 'stray' (a port no bind line
  names), and starts spliced as systemd would: through
  sh -c 'LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=web:stray exec "$@"'
  with the sockets at fds 3 and 4. Listener 'other' has no passed socket.
  - 8 MiB each way through web, echoed, byte-exact (sha256 at the client
    and at the backend);
  - spliced bound no socket of its own on web's port: exactly one LISTEN
    socket on it in /proc/net/tcp{,6}, the test's (same inode), and that
    inode is among spliced's fds;
  - 'other' is bound by spliced (LISTEN sockets on its port that are
    spliced's, none the test's) and serves byte-exact;
  - one warning names the unmatched socket 'stray'; it stays open in
    spliced (its inode among spliced's fds);
  - SIGHUP with the config unchanged (RELOADING=1, READY=1 on a test-owned
    NOTIFY_SOCKET): web still served through the same inode, still one
    LISTEN socket on its port;
  - SIGHUP with a config without web: the passed socket stays open in
    spliced (nobody accepts on it: a client connects into its backlog and
    gets no answer), 'other' still serves;
  - SIGHUP with web again: the same passed socket serves again, and the
    client that waited in its backlog is served first (its bytes echoed);
  - SIGTERM: exit 0; nothing unexpected in the log; fds back at baseline.
wildcard: `bind = *:P` over a passed socket on 0.0.0.0:P, and one on
  [::]:P (dual-stack; when this machine has ::1): no socket of spliced's
  own on P, served over 127.0.0.1 (and ::1).
systemd_socket_activate (when /usr/bin/systemd-socket-activate exists):
  systemd-socket-activate -l 127.0.0.1:P --fdname=web spliced ...: it
  creates the socket and execs spliced on the first connection, which
  spliced then serves (8 MiB each way, byte-exact); one LISTEN socket on P,
  the one at spliced's fd 3; it survives a SIGHUP.
without_libsystemd (only for a build without it; the others skip there):
  LISTEN_FDS set: one warning that the sockets cannot be taken; spliced
  binds its own and serves."""

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import itproxy  # noqa: E402

for _v in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID",
           "LISTEN_FDS", "LISTEN_FDNAMES", "JOURNAL_STREAM"):
    os.environ.pop(_v, None)

BIG = 8 * H.MiB
SMALL = 1 * H.MiB
# What systemd-socket-activate itself prints on the same stderr.
SSA_LINE = re.compile(r"^(Listening on |Communication attempt on fd |Execing |"
                      r"Received signal|Failed to )")


def has_libsystemd(ctx):
    with open(ctx.spliced, "rb") as f:
        data = f.read()
    return b"libsystemd.so" in data or b"sd_listen_fds_with_names" in data


def require_libsystemd(ctx):
    """Skip unless this spliced was built with libsystemd (a build without
    it takes no passed sockets: test_without_libsystemd is for it)."""
    if not has_libsystemd(ctx):
        raise H.Skip("spliced was built without libsystemd (SPLICED_SYSTEMD=OFF "
                     "or not found): no socket activation to test")


class ActivatedProxy(H.Proxy):
    """A Proxy started with listening sockets passed the systemd way.

    ports: {listener: [port, ...]}, chosen by the test (the passed sockets
    hold some of them). prefix: argv before spliced's own. fds: {target fd:
    socket} placed at those fds in the child (close_fds off: Python's own
    fds are not inheritable, so only these and 0-2 pass). trigger: called
    once the prefix is running and before waiting for "ready" (for
    systemd-socket-activate, which execs spliced on a first connection)."""

    def __init__(self, ctx, ports, prefix, fds=None, trigger=None, **kw):
        super().__init__(ctx, **kw)
        self.fixed_ports = ports
        self.prefix = prefix
        self.fds = fds or {}
        self.trigger = trigger
        self.prefix_lines = []

    def _start_once(self):
        if itproxy._libc is None:
            import ctypes
            import ctypes.util
            itproxy._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                                        use_errno=True)
        self.lines = []
        self.exit_code = None
        self.stopped = False
        self.ports = self.fixed_ports
        text = H.render_config(self.glob, self.listeners, self.backends, self.ports)
        self.config_path = self.ctx.write_file(self.name + ".ini", text)
        argv = self.prefix + [self.ctx.spliced, "-c", self.config_path]
        env = dict(os.environ)
        env.update(self.env or {})
        # Out of the way first (fds >= 10, close-on-exec), so that placing
        # one at 3 cannot overwrite another that happens to be at 3.
        high = {t: fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
                for t, s in self.fds.items()}
        base_setup = itproxy._child_setup(self.nofile)

        def setup():
            base_setup()
            for t, h in high.items():
                os.dup2(h, t, inheritable=True)
        self.argv = argv
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, env=env,
                                         close_fds=False, preexec_fn=setup)
        finally:
            for h in high.values():
                os.close(h)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read_stderr, args=(self.proc,),
                                       name="stderr-" + self.name, daemon=True)
        self.reader.start()
        if self.trigger is not None:
            self.trigger(self)
        ok = self.wait_line(r" info: ready", H.READY_TIMEOUT, stop_on_exit=True)
        if not ok:
            rc = self.proc.poll()
            self.kill()
            H.fail("%s starts with passed sockets" % self.name, "'info: ready'",
                   "exit %s; argv %s; stderr:\n      %s" % (
                       rc, " ".join(argv), "\n      ".join(self.lines[-20:])))
        self.baseline_fds = self.settled_fd_count()
        self.baseline_map = self.fd_targets()
        H.log("%s: pid %d ready, ports %s, %d fds" % (
            self.name, self.pid, self.ports, self.baseline_fds))

    def _read_stderr(self, proc):
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if H.VERBOSE:
                sys.stdout.write("  %s| %s\n" % (self.name, line))
            with self.cond:
                if SSA_LINE.match(line):
                    self.prefix_lines.append(line)
                else:
                    self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def rewrite(self, listeners):
        """The config file with these listeners (same ports by name)."""
        ports = {n: self.fixed_ports[n] for n in listeners}
        with open(self.config_path, "w") as f:
            f.write(H.render_config(self.glob, listeners, self.backends, ports))


class Notify:
    """A NOTIFY_SOCKET to know when a reload is done: RELOADING=1, then
    READY=1."""

    def __init__(self, ctx, name):
        self.path = os.path.join(ctx.tmp, name + ".sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        ctx.register(self)

    def close(self):
        self.sock.close()

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65536)
        except BlockingIOError:
            pass

    def wait_for(self, key, timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                return None
            if (key + "=1") in msg.split("\n"):
                return msg


def reload(p, rx, what):
    """SIGHUP, then RELOADING=1 and READY=1 within 30 s each."""
    rx.drain()
    p.signal(signal.SIGHUP)
    H.check(rx.wait_for("RELOADING", 30) is not None, "%s: RELOADING=1" % what,
            "within 30 s of SIGHUP", "none")
    msg = rx.wait_for("READY", 30)
    H.check(msg is not None, "%s: READY=1" % what, "within 30 s of RELOADING=1", "none")
    st = re.search(r"STATUS=(.*)", msg)
    H.check(not (st and re.search(r"(?i)fail", st.group(1))), "%s: the reload" % what,
            "succeeded", msg)
    H.log("%s: reloaded (%r)" % (what, st.group(1) if st else None))


def listen_socket():
    s = socket.socket()
    s.bind((H.LOCAL, 0))
    s.listen(128)
    return s


def inode(sock):
    return os.fstat(sock.fileno()).st_ino


def listening_on(port):
    """Inodes of the LISTEN sockets on this port (IPv4 and IPv6, any address)."""
    return [r[3] for r in itproxy.tcp_table() if r[0] == port and r[2] == "LISTEN"]


def echo_both_ways(be, port, seed, size, sock=None):
    """size bytes up through the proxy to the echo backend and back;
    byte-exact at the backend (up) and at the client (down)."""
    n0 = len(be.results)
    want = H.stream_sha(seed, size)
    H.check_eq(H.echo_trip(port, seed, size, deadline=120, sock=sock), None,
               "an echo round trip of %s through port %d" % (H.human(size), port))
    # Another connection (a client queued earlier) may finish meanwhile:
    # wait for this one's result, not for any.

    def arrived():
        return [x for x in list(be.results)[n0:]
                if x.get("n") == size and x.get("sha") == want]
    H.check(H.wait_until(arrived, H.IO_TIMEOUT),
            "the backend got the %s sent through port %d" % (H.human(size), port),
            "a connection with n=%d and the sent sha256" % size, list(be.results)[n0:])


def check_only_passed(p, port, sock_inode, what):
    ls = listening_on(port)
    H.check(ls == [sock_inode], "%s: LISTEN sockets on port %d" % (what, port),
            "exactly one, the passed socket (inode %d)" % sock_inode,
            "%s; spliced's fds: %s" % (ls, itproxy.describe_fds(p.pid)))
    H.check(sock_inode in itproxy.socket_inodes(p.pid),
            "%s: the passed socket among spliced's fds" % what,
            "socket:[%d]" % sock_inode, itproxy.describe_fds(p.pid))


def test_wrapper(ctx):
    require_libsystemd(ctx)
    be = ctx.backend(H.echo(), name="echo")
    web = ctx.register(listen_socket())
    stray = ctx.register(listen_socket())
    web_port, stray_port = web.getsockname()[1], stray.getsockname()[1]
    web_ino, stray_ino = inode(web), inode(stray)
    rx = Notify(ctx, "notify")
    listeners = {"web": {"backend": "echo"}, "other": {"backend": "echo"}}
    ports = {"web": [web_port], "other": [H.free_port()]}
    wrap = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=web:stray exec "$@"',
            "sh"]
    p = ActivatedProxy(ctx, ports, wrap, fds={3: web, 4: stray},
                       glob={"splice": ctx.mode}, listeners=listeners,
                       backends={"echo": {"server": "e " + be.addr}},
                       env={"NOTIFY_SOCKET": rx.path})
    p.allow(r"socket activation: .*'stray'", r"socket activation: .*'web'")
    p.start(attempts=1)
    fd3 = os.readlink("/proc/%d/fd/3" % p.pid)
    H.log("spliced's fd 3: %s (the test's web socket is socket:[%d])" % (fd3, web_ino))

    # The unmatched socket: one warning naming it, kept open.
    H.check(p.wait_line(r"warn: .*stray", 5) is not None,
            "a warning about the passed socket no bind line matches",
            "one naming 'stray'", "none; log:\n      %s" % "\n      ".join(p.lines[-20:]))
    stray_warn = [m for lvl, m in p.parsed() if lvl == "warn" and "stray" in m]
    H.check_eq(len(stray_warn), 1, "warnings naming 'stray'")
    H.check(stray_ino in itproxy.socket_inodes(p.pid), "the unmatched passed socket",
            "kept open by spliced (socket:[%d])" % stray_ino, itproxy.describe_fds(p.pid))
    H.log("unmatched: %s" % stray_warn[0])

    # web: the passed socket and no other.
    check_only_passed(p, web_port, web_ino, "at start")
    echo_both_ways(be, web_port, seed=1, size=BIG)
    # other: spliced's own.
    other_port = ports["other"][0]
    own = listening_on(other_port)
    H.check(own and set(own) <= itproxy.socket_inodes(p.pid),
            "LISTEN sockets on the other listener's port %d" % other_port,
            "bound by spliced (among its fds)", "%s" % own)
    echo_both_ways(be, other_port, seed=2, size=SMALL)
    H.log("web served through the passed socket:[%d] (8 MiB each way); other "
          "through spliced's own %s" % (web_ino, own))

    # Reload, unchanged.
    reload(p, rx, "SIGHUP, config unchanged")
    check_only_passed(p, web_port, web_ino, "after a reload")
    echo_both_ways(be, web_port, seed=3, size=SMALL)

    # Reload without web: the passed socket stays open, unused.
    p.rewrite({"other": listeners["other"]})
    reload(p, rx, "SIGHUP, web removed")
    H.check(web_ino in itproxy.socket_inodes(p.pid), "the passed socket after its "
            "listener was removed", "still open in spliced (socket:[%d])" % web_ino,
            itproxy.describe_fds(p.pid))
    H.check_eq(listening_on(web_port), [web_ino],
               "LISTEN sockets on web's port with web removed")
    waiting = H.dial(web_port, timeout=5)      # into the backlog: nobody accepts
    waiting.sendall(b"queued\n")
    waiting.settimeout(1.0)
    try:
        early = waiting.recv(64)
    except socket.timeout:
        early = None
    H.check(early is None, "a client of the removed listener", "no answer (queued)",
            repr(early))
    echo_both_ways(be, other_port, seed=4, size=SMALL)
    H.log("web removed: its socket stays open in spliced; a client waits in its backlog")

    # Reload with web again: the same socket.
    p.rewrite(listeners)
    reload(p, rx, "SIGHUP, web added again")
    check_only_passed(p, web_port, web_ino, "after web was added again")
    waiting.settimeout(10)
    got = b""
    try:
        while len(got) < 7:
            b = waiting.recv(64)
            if not b:
                break
            got += b
    except socket.timeout:
        pass
    waiting.close()
    H.check_eq(got, b"queued\n", "the client that waited in the backlog, echoed once "
               "web is back")
    echo_both_ways(be, web_port, seed=5, size=BIG)
    H.log("web added again: the same socket:[%d] serves, the waiting client first" % web_ino)
    p.finish()


def test_systemd_socket_activate(ctx):
    require_libsystemd(ctx)
    ssa = shutil.which("systemd-socket-activate")
    if ssa is None:
        raise H.Skip("systemd-socket-activate is not installed (Debian package systemd)")
    be = ctx.backend(H.echo(), name="echo")
    rx = Notify(ctx, "notify-ssa")
    web_port = H.free_port()
    listeners = {"web": {"backend": "echo"}, "other": {"backend": "echo"}}
    ports = {"web": [web_port], "other": [H.free_port()]}
    state = {}

    def trigger(p):
        # It execs spliced on the first connection; that client waits in
        # the backlog and is spliced's first.
        end = time.monotonic() + 30
        with p.cond:
            while not any(l.startswith("Listening on") for l in p.prefix_lines):
                left = end - time.monotonic()
                if left <= 0 or p.proc.poll() is not None:
                    H.fail("systemd-socket-activate listens", "'Listening on ...' within 30 s",
                           "%s; exit %s" % (p.prefix_lines, p.proc.poll()))
                p.cond.wait(min(left, 0.2))
        state["first"] = H.dial(web_port)
    # It passes no environment but what -E names.
    prefix = [ssa, "-l", "%s:%d" % (H.LOCAL, web_port), "--fdname=web",
              "-E", "NOTIFY_SOCKET"]
    p = ActivatedProxy(ctx, ports, prefix, trigger=trigger, glob={"splice": ctx.mode},
                       listeners=listeners, backends={"echo": {"server": "e " + be.addr}},
                       env={"NOTIFY_SOCKET": rx.path}, name="proxy-ssa")
    p.start(attempts=1)
    fd3 = os.readlink("/proc/%d/fd/3" % p.pid)
    m = re.match(r"socket:\[(\d+)\]", fd3)
    H.check(m, "spliced's fd 3", "the socket systemd-socket-activate passed", fd3)
    ino = int(m.group(1))
    check_only_passed(p, web_port, ino, "systemd-socket-activate")
    echo_both_ways(be, web_port, seed=21, size=BIG, sock=state["first"])
    echo_both_ways(be, ports["other"][0], seed=22, size=SMALL)
    H.log("systemd-socket-activate: socket:[%d] at fd 3 served the first client" % ino)
    reload(p, rx, "SIGHUP under systemd-socket-activate")
    check_only_passed(p, web_port, ino, "systemd-socket-activate, after a reload")
    echo_both_ways(be, web_port, seed=23, size=SMALL)
    p.finish()


def test_wildcard(ctx):
    """`bind = *:P` takes a passed socket on 0.0.0.0:P, or on [::]:P
    (dual-stack), and binds nothing of its own on P."""
    require_libsystemd(ctx)
    be = ctx.backend(H.echo(), name="echo")
    s4 = socket.socket(socket.AF_INET)
    ctx.register(s4)
    s4.bind(("0.0.0.0", 0))
    s4.listen(128)
    socks = {3: s4}
    names = ["any4"]
    listeners = {"any4": {"backend": "echo", "bind": "*:%d" % s4.getsockname()[1]}}
    v6 = H.have_ipv6()
    if v6:
        s6 = socket.socket(socket.AF_INET6)
        ctx.register(s6)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s6.bind(("::", 0))
        s6.listen(128)
        socks[4] = s6
        names.append("any6")
        listeners["any6"] = {"backend": "echo", "bind": "*:%d" % s6.getsockname()[1]}
    else:
        H.log("no IPv6 loopback here: [::]:P not tried")
    wrap = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=%d LISTEN_FDNAMES=%s exec "$@"'
            % (len(socks), ":".join(names)), "sh"]
    p = ActivatedProxy(ctx, {n: [] for n in listeners}, wrap, fds=socks,
                       glob={"splice": ctx.mode}, listeners=listeners,
                       backends={"echo": {"server": "e " + be.addr}})
    p.start(attempts=1)
    for fd, sk in socks.items():
        port = sk.getsockname()[1]
        check_only_passed(p, port, inode(sk), "*:%d over the passed %s" % (
            port, names[fd - 3]))
        echo_both_ways(be, port, seed=40 + fd, size=SMALL)
        if sk.family == socket.AF_INET6:
            c = socket.create_connection(("::1", port), timeout=H.IO_TIMEOUT)
            echo_both_ways(be, port, seed=50 + fd, size=SMALL, sock=c)
        H.log("*:%d served through the passed %s (%s)" % (
            port, names[fd - 3], "0.0.0.0" if sk.family == socket.AF_INET else
            "[::], over 127.0.0.1 and ::1"))
    p.finish()


def test_without_libsystemd(ctx):
    """A build without libsystemd cannot take passed sockets: it says so in
    one warning, binds its own and serves."""
    if has_libsystemd(ctx):
        raise H.Skip("built with libsystemd: test_wrapper covers passed sockets")
    be = ctx.backend(H.echo(), name="echo")
    stray = ctx.register(listen_socket())
    ports = {"web": [H.free_port()]}
    wrap = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=stray exec "$@"', "sh"]
    p = ActivatedProxy(ctx, ports, wrap, fds={3: stray}, glob={"splice": ctx.mode},
                       listeners={"web": {"backend": "echo"}},
                       backends={"echo": {"server": "e " + be.addr}})
    p.allow(r"LISTEN_FDS is set.*libsystemd")
    p.start(attempts=1)
    warns = [m for lvl, m in p.parsed() if lvl == "warn" and "LISTEN_FDS" in m]
    H.check_eq(len(warns), 1, "warnings that the passed sockets cannot be taken")
    echo_both_ways(be, ports["web"][0], seed=31, size=SMALL)
    H.log("without libsystemd: %s" % warns[0])
    p.finish()


if __name__ == "__main__":
    H.main([test_wrapper, test_wildcard, test_systemd_socket_activate,
            test_without_libsystemd],
           deadline=240, doc=__doc__)
