#!/usr/bin/env python3
"""Privileges and limits: [global] user and RLIMIT_NOFILE. (Runs once, as
root: without root it exits 77, skipped.)

drop: started as root with `user = nobody` and a listener on a port below
  1024 (and below ip_unprivileged_port_start, so only root could bind it):
  it logs "dropped privileges to user nobody (uid U, gid G)" before ready;
  every thread's /proc/PID/task/*/status shows nobody's uid and gid in all
  four fields, nobody's groups (os.getgrouplist) and no capability left;
  bytes go through the low port both ways intact (sha256).
no such user: `user = nosuchuser` -> spliced -c and spliced -t exit 1, and
  stderr names the file, the line and the key; spliced -c never says ready.
root: as root without `user`, the warning "running as root: set [global]
  user = ... to drop privileges after binding"; `user = root` keeps root on
  purpose, without the warning and without a drop.
nofile: started with RLIMIT_NOFILE 1024:4096 and max_connections 2000 (needs
  12000+ fds): /proc/PID/limits shows the soft limit raised to the hard
  limit 4096, and a warning says the hard limit is below the need. With
  max_connections 100 and a soft limit of 256, the soft limit becomes the
  need (600 and more, less than 1024), as the info line says; with 1024 it
  stays 1024 (never lowered).
nofile on reload: 20 reloads that add or remove a server (the need moves
  by an fd, the warning stays the same): no RLIMIT_NOFILE line; a reload
  that changes max_connections says the new state once."""

import os
import pwd
import random
import re
import resource
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import itproxy  # noqa: E402

ROOT_WARNING = ("running as root: set [global] user = ... to drop privileges "
                "after binding")
CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 21, 24


# Proxy(nofile=(soft, hard)): the harness sets soft = hard = nofile; here the
# two must differ.
_orig_child_setup = itproxy._child_setup


def _child_setup(nofile):
    if not isinstance(nofile, tuple):
        return _orig_child_setup(nofile)
    base = _orig_child_setup(None)

    def f():
        base()
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    return f


itproxy._child_setup = _child_setup


def low_port():
    """A free port on 127.0.0.1 that only root may bind."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            top = min(1000, int(f.read()) - 1)
    except (OSError, ValueError):
        top = 1000
    if top < 600:
        raise H.Skip("ip_unprivileged_port_start is %d: every port is open to "
                     "every user, so a bind proves nothing" % (top + 1))
    ports = list(range(600, top + 1))
    random.shuffle(ports)
    for p in ports:
        s = socket.socket()
        try:
            s.bind((H.LOCAL, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise H.Skip("no free port in 600..%d" % top)


def write_config(ctx, name, port, backend, glob):
    lines = ["[global]", "workers = 2", "log_level = info",
             "shutdown_timeout = 10s", "splice = " + ctx.mode]
    lines += ["%s = %s" % kv for kv in glob.items()]
    lines += ["", "[listener web]", "bind = %s:%d" % (H.LOCAL, port),
              "backend = app", "", "[backend app]", "server = a " + backend, ""]
    return ctx.write_file(name, "\n".join(lines))


def status_of(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                p = line.split()
                return int(p[3]), int(p[4])
    return None


def line_index(p, pattern):
    rx = re.compile(pattern)
    for i, line in enumerate(p.lines):
        if rx.search(line):
            return i
    return -1


def echo_both_ways(port, seed, size):
    """size bytes up through the proxy to an echo server and back: the sha256
    of what came back must be that of what was sent."""
    H.check_eq(H.echo_trip(port, seed, size), None,
               "an echo round trip of %d bytes through the proxy" % size)


def test_drop(ctx):
    pw = pwd.getpwnam("nobody")
    groups = sorted(set(os.getgrouplist("nobody", pw.pw_gid)))
    be = ctx.backend(H.echo(), name="echo")
    port = low_port()
    path = write_config(ctx, "drop.ini", port, be.addr,
                        {"user": "nobody", "max_connections": 100})
    p = ctx.proxy(args=["-c", path], name="as-nobody")
    p.start()
    want = "dropped privileges to user nobody (uid %d, gid %d)" % (pw.pw_uid, pw.pw_gid)
    i_drop = line_index(p, r" info: " + re.escape(want) + "$")
    i_ready = line_index(p, r" info: ready")
    H.check(0 <= i_drop < i_ready, "the drop is logged before ready",
            "info: " + want, "\n      ".join(p.lines[:20]))
    H.check(line_index(p, re.escape(ROOT_WARNING)) < 0, "no root warning with a user",
            "none", "\n      ".join(p.lines[:20]))

    tasks = sorted(os.listdir("/proc/%d/task" % p.pid), key=int)
    H.check(len(tasks) >= 3, "threads of the proxy (main and 2 workers)", ">= 3", len(tasks))
    for tid in tasks:
        st = status_of("/proc/%d/task/%s/status" % (p.pid, tid))
        what = "thread %s of %d" % (tid, p.pid)
        H.check_eq(st["Uid"].split(), [str(pw.pw_uid)] * 4,
                   what + ": Uid (real, effective, saved, fs)")
        H.check_eq(st["Gid"].split(), [str(pw.pw_gid)] * 4,
                   what + ": Gid (real, effective, saved, fs)")
        H.check_eq(sorted(int(g) for g in st["Groups"].split()), groups,
                   what + ": Groups (nobody's, as os.getgrouplist)")
        for cap in ("CapEff", "CapPrm"):
            H.check_eq(int(st[cap], 16), 0, what + ": " + cap + " (no capability left)")
    H.log("every thread of %d runs as nobody: %d threads, port %d" % (p.pid, len(tasks), port))

    for i in range(3):
        echo_both_ways(port, 700 + i, 8 * H.MiB)
    p.finish()


def run(ctx, args, limits=None):
    pre = None
    if limits is not None:
        def pre():
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    r = subprocess.run([ctx.spliced] + args, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, preexec_fn=pre)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_no_such_user(ctx):
    be = ctx.backend(None, name="unused")
    port = H.free_port()
    path = write_config(ctx, "nouser.ini", port, be.addr, {"user": "nosuchuser"})
    # [global], workers, log_level, shutdown_timeout, splice, then user.
    want = "%s:6: [global] user: no such user 'nosuchuser'" % path
    for args in (["-c", path], ["-t", "-c", path]):
        rc, out, err = run(ctx, args)
        what = "spliced %s with user = nosuchuser" % " ".join(args)
        H.check_eq(rc, 1, what + ": exit status (stderr %r)" % err.strip())
        H.check(want in err, what + ": stderr names the file, line and key", want,
                err.strip())
        H.check(" info: ready" not in err and "is valid" not in out,
                what + ": neither starts nor passes", "no ready, no 'is valid'",
                (out + err).strip())


def test_root_warning(ctx):
    be = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(glob={"splice": ctx.mode, "max_connections": 100},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + be.addr}}, name="as-root")
    p.allow(re.escape(ROOT_WARNING))
    p.start()
    i_warn = line_index(p, r" warn: " + re.escape(ROOT_WARNING) + "$")
    H.check(0 <= i_warn < line_index(p, r" info: ready"),
            "as root without user: the warning, before ready", "warn: " + ROOT_WARNING,
            "\n      ".join(p.lines[:20]))
    H.check_eq(p.status_field("Uid").split(), ["0"] * 4, "Uid without user")
    echo_both_ways(p.port(), 800, H.MiB)
    p.finish()

    # user = root: root on purpose, said once in the config; no warning,
    # nothing dropped.
    p = ctx.proxy(glob={"splice": ctx.mode, "max_connections": 100, "user": "root"},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + be.addr}}, name="user-root")
    p.start()
    H.check(line_index(p, re.escape(ROOT_WARNING)) < 0 and
            line_index(p, r"dropped privileges") < 0,
            "user = root: neither the root warning nor a drop", "neither",
            "\n      ".join(p.lines[:20]))
    H.check_eq(p.status_field("Uid").split(), ["0"] * 4, "Uid with user = root")
    p.finish()


NOFILE_RE = (r" warn: RLIMIT_NOFILE: hard limit 4096 is below the (\d+) fds that "
             r"max_connections 2000 may need")


def test_nofile(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        raise H.Skip("the test's own hard RLIMIT_NOFILE is %d, below 4096" % hard)
    be = ctx.backend(H.echo(), name="echo")

    def start(name, max_conn, limits):
        p = ctx.proxy(glob={"splice": ctx.mode, "max_connections": max_conn,
                            "user": "nobody"},
                      listeners={"web": {"backend": "app"}},
                      backends={"app": {"server": "a " + be.addr}},
                      nofile=limits, name=name)
        p.allow(r"^RLIMIT_NOFILE: hard limit")
        return p.start()

    # Short of the need: soft raised to the hard limit, and a warning.
    p = start("nofile-2000", 2000, (1024, 4096))
    H.check_eq(nofile_limits(p.pid), (4096, 4096),
               "/proc/PID/limits Max open files (soft, hard) with max_connections 2000")
    line = p.wait_line(NOFILE_RE, 1)
    H.check(line is not None, "the warning that the hard limit is below the need",
            "a line matching %r" % NOFILE_RE, "\n      ".join(p.lines[:20]))
    need = int(re.search(NOFILE_RE, line).group(1))
    H.check(12000 <= need <= 12300, "the fds max_connections 2000 may need",
            "6 per connection and a little more: 12000..12300", need)
    H.check(re.search(r"raised the soft limit from 1024 to 4096", line),
            "the warning says what was done", "raised ... from 1024 to 4096", line)
    echo_both_ways(p.port(), 900, H.MiB)
    p.finish()

    # Enough room: soft becomes the need, exactly.
    p = start("nofile-100", 100, (256, 4096))
    rx = (r" info: RLIMIT_NOFILE: raised the soft limit from 256 to (\d+) \(needed "
          r"(\d+) for max_connections 100; hard limit 4096\)")
    line = p.wait_line(rx, 1)
    H.check(line is not None, "the info line of the raise", rx, "\n      ".join(p.lines[:20]))
    now, need = (int(x) for x in re.search(rx, line).groups())
    H.check_eq(now, need, "soft limit raised to the need")
    H.check(600 <= need < 1024, "the fds max_connections 100 may need", "600..1023", need)
    H.check_eq(nofile_limits(p.pid), (need, 4096), "/proc/PID/limits with max_connections 100")
    p.finish()

    # Already above the need: never lowered.
    p = start("nofile-keep", 100, (1024, 4096))
    H.check_eq(nofile_limits(p.pid), (1024, 4096),
               "/proc/PID/limits: a soft limit above the need stays")
    H.check(p.wait_line(r" info: RLIMIT_NOFILE: soft limit 1024 \(needed \d+ for "
                        r"max_connections 100; hard limit 4096\)", 1) is not None,
            "the info line when nothing changes", "soft limit 1024 (needed ...)",
            "\n      ".join(p.lines[:20]))
    p.finish()


NOFILE_ANY = r" (warn|info): RLIMIT_NOFILE: "


def test_nofile_reload(ctx):
    """20 reloads that add and remove a server (the need moves by an fd,
    as with any server or bind more or fewer; the verdict stays): the
    RLIMIT_NOFILE line of the start is not repeated. A reload that changes
    max_connections logs it once. (Servers, not listeners: a listener
    removed and added again at once may find its old socket still open.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        raise H.Skip("the test's own hard RLIMIT_NOFILE is %d, below 4096" % hard)
    be = ctx.backend(H.echo(), name="echo")
    listeners = {"web": {"backend": "app"}}

    def backends(n):
        return {"app": {"server": ["s%d %s" % (i, be.addr) for i in range(n)],
                        "health_check": "off"}}
    p = ctx.proxy(glob={"splice": ctx.mode, "max_connections": 2000},
                  listeners=listeners, backends=backends(1), nofile=(1024, 4096),
                  name="nofile-reload")
    p.allow(r"^RLIMIT_NOFILE: hard limit")
    p.start()
    H.check(p.wait_line(NOFILE_RE, 1) is not None, "the warning at start",
            NOFILE_RE, "\n      ".join(p.lines[:20]))

    def reload(nservers, glob=None):
        g = dict(p.glob)
        g.update(glob or {})
        with open(p.config_path, "w") as f:
            f.write(H.render_config(g, listeners, backends(nservers), p.ports))
        mark = p.mark()
        p.signal(H.signal.SIGHUP)
        line = p.wait_line(r" (info: reloaded |error: reload failed)", 20, since=mark)
        H.check(line is not None and "reloaded" in line, "reload logged",
                "info: reloaded ...", line or "\n      ".join(p.lines[-8:]))
        return [ln for ln in p.lines[mark:] if re.search(NOFILE_ANY, ln)]

    said = []
    for i in range(20):
        said += reload(1 + i % 2)
    H.check_eq(said, [], "RLIMIT_NOFILE lines during 20 reloads that change "
               "only the servers")
    H.check_eq(nofile_limits(p.pid), (4096, 4096), "/proc/PID/limits after the reloads")

    # Something changed: said once, then not again.
    said = reload(1, {"max_connections": 100})
    rx = (r" info: RLIMIT_NOFILE: soft limit 4096 \(needed \d+ for max_connections "
          r"100; hard limit 4096\)$")
    H.check(len(said) == 1 and re.search(rx, said[0]),
            "a reload to max_connections 100: one info line", rx, said)
    H.check_eq(reload(2, {"max_connections": 100}), [],
               "the same again, a server more: no RLIMIT_NOFILE line")
    said = reload(1)
    H.check(len(said) == 1 and re.search(NOFILE_RE, said[0]),
            "back to max_connections 2000: the warning once more", NOFILE_RE, said)
    p.finish()


def main():
    if os.geteuid() != 0:
        print("test_privs: not root: skipped (switching users needs root)")
        sys.exit(77)
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        print("test_privs: no user nobody: skipped")
        sys.exit(77)
    H.main([test_drop, test_no_such_user, test_root_warning, test_nofile,
            test_nofile_reload],
           deadline=240, doc=__doc__)


if __name__ == "__main__":
    main()
