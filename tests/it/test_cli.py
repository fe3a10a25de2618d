#!/usr/bin/env python3
"""The command line and the config check. (Runs once.)

--version: exit 0, "spliced X.Y.Z (zero-copy: sendfile+splice|sendfile|none)".
-t -c: exit 0 on a good file that uses every key available now; exit 1 on a
  bad one, with the file name, the line (file:LINE) and the key on stderr
  (a user that does not exist is such a problem).
-t -c, the kernel facts on stdout, one "key: value" line each, checked
  against /proc and getrlimit: zero-copy, pipe-max-size, pipe_size,
  pipe-user-pages-soft, pipe budget (exempt or not, as the user spliced will
  run as), RLIMIT_NOFILE (soft, hard, need, what start-up sets) with a
  warning when the hard limit is below the need, and user (uid, gid, groups)
  or the warning that spliced stays root.
-c with a bad file: exit 1 without starting.
Bad flags and values: exit 2, a usage message, and the bad flag or value
  named on stderr: an unknown short option by its letter, also inside a
  cluster (-xt), an unknown long one as written (without =VALUE).
--listen twice: both addresses serve (echo round trips); the same address
  twice exits 2 naming it.
One-off mode (--listen/--backend, two backends, --workers 1): round robin
  over both backends, every download intact, and --splice never/always
  reflected in the access log."""

import os
import pwd
import re
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def run(ctx, args, timeout=30, nofile=None):
    """nofile: (soft, hard) RLIMIT_NOFILE for spliced."""
    pre = None
    if nofile is not None:
        def pre():
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    r = subprocess.run([ctx.spliced] + args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, preexec_fn=pre)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_version(ctx):
    rc, out, err = run(ctx, ["--version"])
    H.check_eq(rc, 0, "spliced --version exit status")
    text = (out + err).strip()
    H.check(re.match(r"^spliced \d+\.\d+\.\d+ \(zero-copy: (sendfile\+splice|sendfile|none)\)$",
                     text), "spliced --version output",
            "spliced X.Y.Z (zero-copy: sendfile+splice|sendfile|none)", repr(text))


GOOD = """\
; every key available now
[global]
workers = 2
max_connections = 1000
log_level = info
access_log = on
splice = auto
splice_threshold = 64k
pipe_size = 256k
buffer_size = 16k
max_pipes = 0
shutdown_timeout = 5s
user = nobody

[listener web]
bind = 127.0.0.1:{p1}
bind = 127.0.0.1:{p2}
backend = app
timeout_connect = 500ms
timeout_idle = 2m
max_connections = 100
splice = always
splice_threshold = 1m

[listener other]
bind = 127.0.0.1:{p3}
backend = app
splice = never

[backend app]
server = a 127.0.0.1:{b1} weight=2
server = b 127.0.0.1:{b2}
retries = 1
balance = roundrobin
"""

# (name, text, the 1-based line that is wrong or None, words stderr must name)
BAD = [
    ("unknown key", "[global]\nworkers = 2\nbogus_key = 1\n", 3, ["bogus_key"]),
    ("bad duration", "[global]\nworkers = 1\n\n[listener web]\nbind = 127.0.0.1:{p1}\n"
     "backend = app\ntimeout_idle = 5x\n[backend app]\nserver = a 127.0.0.1:{b1}\n",
     7, ["timeout_idle"]),
    ("duration without a unit", "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "timeout_connect = 5\n[backend app]\nserver = a 127.0.0.1:{b1}\n", 4, ["timeout_connect"]),
    ("bad size", "[global]\nbuffer_size = 12q\n", 2, ["buffer_size"]),
    ("size out of range", "[global]\npipe_size = 1k\n", 2, ["pipe_size"]),
    ("bad splice mode", "[global]\nsplice = sometimes\n", 2, ["splice"]),
    ("bad boolean", "[global]\naccess_log = maybe\n", 2, ["access_log"]),
    ("unknown section", "[global]\nworkers = 1\n[frontend x]\nbind = 127.0.0.1:{p1}\n", 3,
     ["frontend"]),
    ("accept_proxy_from without accept_proxy", "[global]\nworkers = 1\n"
     "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "accept_proxy_from = 10.0.0.0/8\n[backend app]\nserver = a 127.0.0.1:{b1}\n",
     6, ["accept_proxy_from", "accept_proxy = on"]),
    ("bad address block", "[global]\nworkers = 1\n[listener web]\n"
     "bind = 127.0.0.1:{p1}\nbackend = app\nallow = 10.1.2.3/8\n", 6,
     ["[listener web] allow", "host bits"]),
    ("admin on every address without a token", "[global]\nworkers = 1\n"
     "admin = *:{p2}\n[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nserver = a 127.0.0.1:{b1}\n", 3,
     ["[global] admin", "admin_token_file"]),
    ("missing backend", "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = nope\n", None,
     ["nope"]),
    ("backend without server", "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nretries = 1\n", None, ["app"]),
    ("same address bound twice", "[listener one]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[listener two]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nserver = a 127.0.0.1:{b1}\n", None, ["127.0.0.1:{p1}"]),
    ("over-long line", "[global]\nworkers = 1\n; " + "x" * 300 + "\n", 3, []),
    ("no such user", "[global]\nworkers = 1\nuser = nosuchuser-spliced\n"
     "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nserver = a 127.0.0.1:{b1}\n", 3,
     ["[global] user", "no such user 'nosuchuser-spliced'"]),
    ("empty user", "[global]\nworkers = 1\nuser =\n", 3, ["user", "empty value"]),
    ("no listener", "[global]\nworkers = 1\n\n[backend app]\nserver = a 127.0.0.1:{b1}\n",
     5, ["end of the file", "no [listener NAME] section"]),
    ("a NUL byte", "[global]\nworkers = 1\n\nmax_\0connections = 9\n", 4, ["NUL byte"]),
]


def test_config_check(ctx):
    ports = {"p1": H.free_port(), "p2": H.free_port(), "p3": H.free_port(),
             "b1": H.free_port(), "b2": H.free_port()}
    good = ctx.write_file("good.ini", GOOD.format(**ports))
    rc, out, err = run(ctx, ["-t", "-c", good])
    H.check_eq(rc, 0, "spliced -t -c good.ini exit status (stderr: %r)" % err.strip())
    for i, (name, text, line, words) in enumerate(BAD):
        fname = "bad%02d.ini" % i
        path = ctx.write_file(fname, text.format(**ports))
        rc, out, err = run(ctx, ["-t", "-c", path])
        what = "spliced -t -c on a file with: %s" % name
        H.check_eq(rc, 1, what + ": exit status (stderr: %r)" % err.strip())
        H.check(fname in err, what + ": stderr names the file", fname, repr(err.strip()))
        if line is not None:
            H.check(re.search(r"%s:%d\b" % (re.escape(fname), line), err),
                    what + ": stderr names the line", "%s:%d" % (fname, line),
                    repr(err.strip()))
        else:
            H.check(re.search(r"%s:\d+" % re.escape(fname), err),
                    what + ": stderr names a line", "%s:<line>" % fname, repr(err.strip()))
        for w in words:
            w = w.format(**ports)
            H.check(w.lower() in err.lower(), what + ": stderr names %r" % w, w,
                    repr(err.strip()))
        H.log("%s -> %s" % (name, err.strip().splitlines()[0] if err.strip() else ""))
    rc, out, err = run(ctx, ["-t", "-c", os.path.join(ctx.tmp, "missing.ini")])
    H.check_eq(rc, 1, "spliced -t -c on a missing file: exit status")
    H.check("missing.ini" in err, "stderr names the missing file", "missing.ini", repr(err))
    # Not -t: a bad file means no start, exit 1.
    bad = os.path.join(ctx.tmp, "bad00.ini")
    rc, out, err = run(ctx, ["-c", bad])
    H.check_eq(rc, 1, "spliced -c on a bad file: exit status")
    H.check(" info: ready" not in err, "spliced -c on a bad file does not start",
            "no ready line", repr(err))


def facts(out):
    """The "key: value" lines of spliced -t (the first ": " splits), and the
    warning lines apart."""
    d, warnings = {}, []
    for line in out.splitlines():
        k, sep, v = line.partition(": ")
        if not sep:
            continue
        if k == "warning":
            warnings.append(v)
        else:
            H.check(k not in d, "spliced -t: key %r once" % k, "once", out)
            d[k] = v
    return d, warnings


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def exempt_here():
    """(exempt, cap) for a process with the test's capabilities, as fs/pipe.c
    decides: CAP_SYS_RESOURCE or CAP_SYS_ADMIN, in the initial user ns."""
    caps = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
    with open("/proc/self/uid_map") as f:
        init_ns = f.read().split() == ["0", "0", "4294967295"]
    for bit, name in ((24, "CAP_SYS_RESOURCE"), (21, "CAP_SYS_ADMIN")):
        if caps & (1 << bit):
            return init_ns, name
    return False, None


def test_check_facts(ctx):
    ports = {"p1": H.free_port(), "p2": H.free_port(), "p3": H.free_port(),
             "b1": H.free_port(), "b2": H.free_port()}
    text = GOOD.format(**ports)
    with_user = ctx.write_file("facts-user.ini", text)
    no_user = ctx.write_file("facts.ini", text.replace("user = nobody\n", ""))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = (1024, 4096) if hard == resource.RLIM_INFINITY or hard >= 4096 else None

    rc, out, err = run(ctx, ["-t", "-c", no_user], nofile=limits)
    H.check_eq(rc, 0, "spliced -t exit status (stderr %r)" % err.strip())
    H.log("spliced -t:\n    " + "\n    ".join(out.splitlines()))
    d, warnings = facts(out)
    H.check_eq(d.get("zero-copy"), ctx.zc_backend, "spliced -t: zero-copy")

    v = read_int("/proc/sys/fs/pipe-max-size")
    want = "%d bytes" % v if v is not None else None
    got = d.get("pipe-max-size", "")
    H.check(got == want or (v is None and got.startswith("unknown (")),
            "spliced -t: pipe-max-size (/proc/sys/fs/pipe-max-size)", want, got)
    if ctx.can_splice:
        m = re.match(r"^asked 262144, granted (\d+)$", d.get("pipe_size", ""))
        H.check(m and int(m.group(1)) >= 4096, "spliced -t: pipe_size (256k asked)",
                "asked 262144, granted N", d.get("pipe_size"))

    v = read_int("/proc/sys/fs/pipe-user-pages-soft")
    page = os.sysconf("SC_PAGESIZE")
    got = d.get("pipe-user-pages-soft", "")
    if v is None:
        H.check(got.startswith("unknown ("), "spliced -t: pipe-user-pages-soft",
                "unknown (why)", got)
    elif v == 0:
        H.check_eq(got, "0 (no limit)", "spliced -t: pipe-user-pages-soft")
    else:
        m = re.match(r"^(\d+) pages \(([\d.]+) MiB\)$", got)
        H.check(m and int(m.group(1)) == v and
                abs(float(m.group(2)) - v * page / H.MiB) < 0.1,
                "spliced -t: pipe-user-pages-soft (/proc/sys/fs/)",
                "%d pages (%g MiB)" % (v, v * page / H.MiB), got)

    exempt, cap = exempt_here()
    who = "root" if os.geteuid() == 0 else None
    got = d.get("pipe budget", "")
    if who is not None:
        want = "as root: exempt (%s)" % cap if exempt else "as root: not exempt ("
        H.check(got.startswith(want), "spliced -t: pipe budget without user", want, got)
    else:
        H.check(re.match(r"^as (user \S+|uid \d+): (not )?exempt \(", got),
                "spliced -t: pipe budget without user", "as user X: ...", got)

    rx = (r"^soft (\d+|unlimited), hard (\d+|unlimited), need (\d+) for "
          r"max_connections 1000, at start (\d+|unlimited)$")
    m = re.match(rx, d.get("RLIMIT_NOFILE", ""))
    H.check(m, "spliced -t: RLIMIT_NOFILE", rx, d.get("RLIMIT_NOFILE"))
    s_, h_, need, at = m.groups()
    need = int(need)
    H.check(6000 <= need <= 6300, "spliced -t: fds max_connections 1000 may need",
            "6 per connection and a little: 6000..6300", need)
    if limits is not None:
        H.check_eq((s_, h_, at), ("1024", "4096", "4096"),
                   "spliced -t under RLIMIT_NOFILE 1024:4096: soft, hard, at start")
        want = ("RLIMIT_NOFILE: hard limit 4096 is below the %d fds that "
                "max_connections 1000 may need" % need)
        H.check(any(w.startswith(want) for w in warnings),
                "spliced -t: the warning when the hard limit is below the need", want,
                warnings)
    if os.geteuid() == 0:
        H.check_eq(d.get("user"), "not set (runs as root)", "spliced -t: user, not set")
        want = "running as root: set [global] user = ... to drop privileges after binding"
        H.check(want in warnings, "spliced -t: the root warning", want, warnings)

    # Room enough: no RLIMIT_NOFILE warning, and "at start" is the need.
    rc, out, err = run(ctx, ["-t", "-c", no_user],
                       nofile=(256, 8192) if limits is not None else None)
    d, warnings = facts(out)
    m = re.match(rx, d.get("RLIMIT_NOFILE", ""))
    H.check(rc == 0 and m, "spliced -t: RLIMIT_NOFILE", rx, d.get("RLIMIT_NOFILE"))
    if limits is not None:
        H.check_eq(m.groups(), ("256", "8192", str(need), str(need)),
                   "spliced -t under RLIMIT_NOFILE 256:8192: soft, hard, need, at start")
        H.check(not any(w.startswith("RLIMIT_NOFILE") for w in warnings),
                "spliced -t: no RLIMIT_NOFILE warning when the need fits", "none", warnings)

    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        H.log("no user nobody: the user line is not checked")
        return
    rc, out, err = run(ctx, ["-t", "-c", with_user])
    H.check_eq(rc, 0, "spliced -t with user = nobody: exit status (stderr %r)" % err.strip())
    d, warnings = facts(out)
    n = len(os.getgrouplist("nobody", pw.pw_gid))
    want = "nobody (uid %d, gid %d, %d supplementary group%s)" % (
        pw.pw_uid, pw.pw_gid, n, "" if n == 1 else "s")
    H.check_eq(d.get("user"), want, "spliced -t: user")
    if os.geteuid() != pw.pw_uid and pw.pw_uid != 0:
        H.check(d.get("pipe budget", "").startswith("as user nobody: not exempt"),
                "spliced -t: pipe budget as nobody", "as user nobody: not exempt ...",
                d.get("pipe budget"))
    H.check(not any(w.startswith("running as root") for w in warnings),
            "spliced -t with a user: no root warning", "none", warnings)


def test_bad_flags(ctx):
    lp, b1 = H.free_port(), H.free_port()
    ok = ["--listen", "127.0.0.1:%d" % lp, "--backend", "127.0.0.1:%d" % b1]
    cases = [
        (["--bogus"], ["--bogus"]),
        (["-x"], ["-x"]),
        (ok + ["--splice", "sometimes"], ["sometimes"]),
        (ok + ["--workers", "abc"], ["abc"]),
        (ok + ["--splice-threshold", "12q"], ["12q"]),
        (["--listen", "127.0.0.1:notaport", "--backend", "127.0.0.1:%d" % b1], ["notaport"]),
        (["--listen", "127.0.0.1:%d" % lp], ["--backend"]),
        (["-c"], ["-c"]),
        (ok + ["--workers"], ["--workers"]),
    ]
    for args, words in cases:
        what = "spliced %s" % " ".join(args)
        rc, out, err = run(ctx, args)
        H.check_eq(rc, 2, what + ": exit status (stderr: %r)" % err.strip()[:300])
        H.check("usage" in (err + out).lower(), what + ": prints a usage message", "usage: ...",
                repr(err.strip()[:300]))
        for w in words:
            H.check(w in err, what + ": stderr names %r" % w, w, repr(err.strip()[:300]))


def test_option_names(ctx):
    """The first line of stderr names the option as the user wrote it: a
    short one inside a cluster (-xt) by its letter, never the argument
    before it (the program, or the file of -c)."""
    good = ctx.write_file("names.ini", "[global]\nworkers = 1\n")
    cases = [
        (["-xt"], "unknown option '-x'"),
        (["-tx"], "unknown option '-x'"),
        (["-c", good, "-xt"], "unknown option '-x'"),
        (["-t", "-c", good, "-tq"], "unknown option '-q'"),
        (["--test", "-xt"], "unknown option '-x'"),
        (["--foo"], "unknown option '--foo'"),
        (["--foo=1"], "unknown option '--foo'"),
        (["-c", good, "--foo"], "unknown option '--foo'"),
        (["--sp"], "ambiguous option '--sp'"),
        (["--version=1"], "option '--version' takes no value"),
        (["-tc"], "-c needs a value"),
        (["--workers"], "--workers needs a value"),
    ]
    for args, want in cases:
        what = "spliced %s" % " ".join(args)
        rc, out, err = run(ctx, args)
        first = err.splitlines()[0] if err.strip() else ""
        H.check_eq(rc, 2, what + ": exit status (stderr: %r)" % err.strip()[:300])
        H.check_eq(first, "spliced: " + want, what + ": the first line of stderr")


def test_listen_twice(ctx):
    """--listen repeated: every address is bound (one listener, one bind
    each); the same address twice is a usage error naming it."""
    b1 = ctx.backend(H.echo(), name="echo")
    p = ctx.proxy(args=["--listen", H.LOCAL + ":{a}", "--listen", H.LOCAL + ":{b}",
                        "--backend", b1.addr, "--workers", "1"],
                  name="oneoff-2listen").start()
    for name in ("a", "b"):
        H.check_eq(H.echo_trip(p.port(name), 40 + len(name), 64 * H.KiB), None,
                   "one-off with two --listen: a round trip through the %s one "
                   "(port %d)" % (name, p.port(name)))
    p.finish()

    lp = H.free_port()
    dup = "%s:%d" % (H.LOCAL, lp)
    for args in (["-t"], []):
        argv = args + ["--listen", dup, "--listen", dup, "--backend", b1.addr]
        what = "spliced %s" % " ".join(argv)
        rc, out, err = run(ctx, argv)
        H.check_eq(rc, 2, what + ": exit status (stderr: %r)" % err.strip()[:300])
        want = "spliced: --listen %s: given twice" % dup
        H.check_eq(err.splitlines()[0] if err.strip() else "", want,
                   what + ": the first line of stderr")


def test_one_off_mode(ctx):
    b1 = ctx.backend(H.source(H.MiB, seed=11), name="b1")
    b2 = ctx.backend(H.source(H.MiB, seed=12), name="b2")
    want = {b1.port: H.stream_sha(11, H.MiB), b2.port: H.stream_sha(12, H.MiB)}
    for mode in ("never", "always"):
        p = ctx.proxy(args=["--listen", H.LOCAL + ":{port}", "--backend", b1.addr,
                            "--backend", b2.addr, "--workers", "1", "--splice", mode],
                      name="oneoff-" + mode).start()
        before = (b1.accepted, b2.accepted)
        for i in range(4):
            what = "one-off --splice %s, download %d" % (mode, i + 1)
            mark = p.mark()
            c = H.dial(p.port())
            cport = H.local_port(c)
            got = H.read_stream(c)
            c.close()
            a = p.access_for(cport, since=mark)
            H.check_access(a, up=0, down=H.MiB, reason="server_eof", what=what)
            bport = int(a.get("server", ":0").rsplit(":", 1)[1])
            H.check_eq((got.end, got.n, got.sha), ("eof", H.MiB, want.get(bport)),
                       what + ": (end, bytes, sha256 of the server's stream)")
            if mode == "never" or not ctx.can_splice:
                H.check_eq(a["down_splice"], 0, what + ": down_splice")
            else:
                H.check_eq(a["down_copy"], 0, what + ": down_copy")
        H.check_eq((b1.accepted - before[0], b2.accepted - before[1]), (2, 2),
                   "one-off --splice %s: connections per backend (round robin)" % mode)
        p.finish()


if __name__ == "__main__":
    H.main([test_version, test_config_check, test_check_facts, test_bad_flags,
            test_option_names, test_listen_twice, test_one_off_mode],
           deadline=180, doc=__doc__)
