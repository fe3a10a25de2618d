#!/usr/bin/env python3
"""The command line and the config check. (Runs once.)

--version: exit 0, "spliced X.Y.Z (zero-copy: sendfile+splice|sendfile|none)".
-t -c: exit 0 on a good file that uses every key available now; exit 1 on a
  bad one, with the file name, the line (file:LINE) and the key on stderr.
-c with a bad file: exit 1 without starting.
Bad flags and values: exit 2, a usage message, and the bad flag or value
  named on stderr.
One-off mode (--listen/--backend, two backends, --workers 1): round robin
  over both backends, every download intact, and --splice never/always
  reflected in the access log."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def run(ctx, args, timeout=30):
    r = subprocess.run([ctx.spliced] + args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
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
    ("not supported yet", "[global]\nworkers = 1\nadmin = 127.0.0.1:{p2}\n", 3,
     ["admin", "not supported"]),
    ("missing backend", "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = nope\n", None,
     ["nope"]),
    ("backend without server", "[listener web]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nretries = 1\n", None, ["app"]),
    ("same address bound twice", "[listener one]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[listener two]\nbind = 127.0.0.1:{p1}\nbackend = app\n"
     "[backend app]\nserver = a 127.0.0.1:{b1}\n", None, ["127.0.0.1:{p1}"]),
    ("over-long line", "[global]\nworkers = 1\n; " + "x" * 300 + "\n", 3, []),
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
    H.main([test_version, test_config_check, test_bad_flags, test_one_off_mode],
           deadline=180, doc=__doc__)
