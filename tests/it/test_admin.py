#!/usr/bin/env python3
"""The admin endpoint and spliced ctl (DESIGN.md sections 3 and 6).

client cap: 40 idle connections: accepting pauses at 32 (warned), a 41st
  client is answered only once the idle ones time out (10 s).
errors: 400 (a bad form, bad JSON, a bad state, weight or limit), 404 (a
  path, a backend, a server), 405 with Allow, 413 for a body over 64 KiB,
  each with a one-line reason; HEAD answers as GET without a body.
head: HEAD /healthz then GET /healthz on one kept-alive connection: the
  HEAD answer has GET's Content-Length and no body, the GET answer follows.
browser: a cross-site POST (Origin https://evil.example, text/plain,
  state=maint) is refused 403 and changes nothing; a POST of text/plain or
  without Content-Type: 415; Host evil.example (DNS rebinding): 403; an
  Origin of the endpoint itself, Host 127.0.0.1, localhost or [::1]: 200.
figures: /status and /servers/B/S say "workers_answered" next to
  "workers"; process_start_time_seconds is the process's start (/proc).
token: with admin_token_file every request needs "Authorization: Bearer
  TOKEN" (401 otherwise, a wrong token too); spliced ctl --token-file.
check: `spliced -t` fails on a non-loopback admin address without
  admin_token_file (file:line:key) and on an unreadable token file.
unix: admin = unix:PATH (mode 0660), spliced ctl over it; removed at exit;
  any Host is taken there; ctl over it prints the reason of an answer
  that closes the connection (404 and 401 do).
healthz: 503 "draining" during a SIGTERM drain (a connection held open),
  while /status says draining; `spliced ctl health down`: 503 "down" while
  traffic still flows (sha256), `health up`: 200 again.
drain: two servers; a connection open on a; `spliced ctl server app/a
  drain`: 20 new connections all reach b, the one on a keeps flowing
  (sha256 of 4 MiB each way); `wait-empty app/a --timeout 1s` exits 1
  while it is open, 0 once it ended. [needs h-state: drain obeyed]
maint: checks of a server in maint stop (its backend sees no connect for
  1 s), ready starts them again. [needs h-state]
sighup: drain and weight 5 on app/a survive SIGHUP. [needs h-state]"""

import http.client
import os
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def hreq(admin, method, path, body=None, headers=None):
    """(status, headers, body text) of one request on a connection of its
    own. admin: a port on 127.0.0.1, or a unix socket's path."""
    if isinstance(admin, int):
        c = http.client.HTTPConnection(H.LOCAL, admin, timeout=10)
    else:
        c = UnixHTTPConnection(admin)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text
    finally:
        c.close()


def ctl(ctx, admin, *args, token_file=None, timeout=30):
    argv = [ctx.spliced, "ctl", "--admin",
            admin if isinstance(admin, str) else "127.0.0.1:%d" % admin]
    if token_file:
        argv += ["--token-file", token_file]
    r = subprocess.run(argv + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def json_get(admin, path):
    import json
    st, _, text = hreq(admin, "GET", path)
    H.check_eq(st, 200, "GET %s status" % path)
    return json.loads(text)


def two_servers(ctx, glob=None, **backend_opts):
    a = ctx.backend(H.echo(), name="a")
    b = ctx.backend(H.echo(), name="b")
    port = H.free_port()
    g = {"splice": ctx.mode, "admin": "127.0.0.1:%d" % port}
    g.update(glob or {})
    opts = {"server": ["a " + a.addr, "b " + b.addr]}
    opts.update(backend_opts)
    p = ctx.proxy(glob=g, listeners={"web": {"backend": "app"}},
                  backends={"app": opts})
    p.allow(r"^admin: ")
    p.start()
    return p, port, a, b


def expect_answer(admin, method, path, want, body=None, headers=None, words=()):
    st, hd, text = hreq(admin, method, path, body, headers)
    H.check_eq(st, want, "%s %s status" % (method, path))
    if want >= 400:
        H.check(text.endswith("\n") and text.count("\n") == 1 and len(text) > 1,
                "%s %s: the reason" % (method, path), "one line", repr(text))
    for w in words:
        H.check(w in text, "%s %s answer" % (method, path), "holds %r" % w, repr(text))
    return hd, text


def test_errors(ctx):
    p, admin, a, b = two_servers(ctx)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    expect_answer(admin, "GET", "/status", 200, words=('"backends"',))
    expect_answer(admin, "GET", "/servers/app/a", 200, words=('"name": "a"',))
    expect_answer(admin, "GET", "/healthz", 200, words=("ok",))
    hd, text = expect_answer(admin, "HEAD", "/healthz", 200)
    H.check_eq(text, "", "HEAD /healthz body")
    expect_answer(admin, "GET", "/nope", 404)
    expect_answer(admin, "GET", "/servers/app", 404)
    expect_answer(admin, "GET", "/servers/app/zz", 404, words=("app/zz",))
    expect_answer(admin, "GET", "/servers/nope/a", 404)
    expect_answer(admin, "POST", "/servers/app/zz", 404, "state=drain", form)
    expect_answer(admin, "POST", "/servers/app/a", 400, "state=sleep", form,
                  words=("bad state",))
    expect_answer(admin, "POST", "/servers/app/a", 400, "weight=0", form,
                  words=("bad weight",))
    expect_answer(admin, "POST", "/servers/app/a", 400, "weight=257", form)
    expect_answer(admin, "POST", "/servers/app/a", 400, "drain", form)
    expect_answer(admin, "POST", "/servers/app/a", 400, "", form)
    expect_answer(admin, "POST", "/servers/app/a", 400, '{"state": ["drain"]}',
                  {"Content-Type": "application/json"}, words=("JSON",))
    expect_answer(admin, "POST", "/servers/app/a", 400, '{"state": "drain"',
                  {"Content-Type": "application/json"})
    expect_answer(admin, "POST", "/healthz", 400, "state=sideways", form)
    expect_answer(admin, "GET", "/connections?limit=0", 400, words=("limit",))
    expect_answer(admin, "GET", "/connections?limit=x", 400)
    expect_answer(admin, "GET", "/status?format=xml", 400)
    hd, _ = expect_answer(admin, "POST", "/status", 405, "x=1", form)
    H.check_eq(hd.get("allow"), "GET, HEAD", "Allow of /status")
    hd, _ = expect_answer(admin, "DELETE", "/servers/app/a", 405)
    H.check_eq(hd.get("allow"), "GET, HEAD, POST", "Allow of /servers/B/S")
    st, _, _ = hreq(admin, "POST", "/healthz", "state=" + "x" * (65 * 1024), form)
    H.check_eq(st, 413, "POST of 65 KiB status")
    # The answers above changed nothing.
    s = json_get(admin, "/servers/app/a")
    H.check_eq((s["admin"], s["weight"]), ("ready", 1), "app/a after refused requests")
    # A good one, JSON: the server's new state comes back.
    _, text = expect_answer(admin, "POST", "/servers/app/b", 200,
                            '{"state": "ready", "weight": 3}',
                            {"Content-Type": "application/json"})
    H.check('"weight": 3' in text, "POST answer", "weight 3", text)
    rc, _, err = ctl(ctx, admin, "server", "app/zz", "drain")
    H.check_eq(rc, 1, "spliced ctl server app/zz drain exit status")
    H.check("404" in err and "no server app/zz" in err, "ctl's message",
            "the server's 404 reason", err)
    rc, _, err = ctl(ctx, admin, "server", "app/a", "sleep")
    H.check_eq(rc, 2, "spliced ctl server app/a sleep exit status")
    H.check("'sleep'" in err, "ctl's usage error", "names 'sleep'", err)
    rc, out, _ = ctl(ctx, admin, "status")
    H.check_eq(rc, 0, "spliced ctl status exit status")
    H.check("app/a" in out and "app/b" in out and "web" in out, "ctl status table",
            "listener web, servers app/a and app/b", out)
    p.finish()


def read_answer(sock, buf, head):
    """(status line, headers, body, rest) of one answer read from sock
    after buf; head: a HEAD answer (no body whatever Content-Length)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        H.check(chunk, "an answer's headers", "complete", repr(buf))
        buf += chunk
    top, buf = buf.split(b"\r\n\r\n", 1)
    lines = top.decode().split("\r\n")
    hd = {k.strip().lower(): v.strip() for k, v in
          (l.split(":", 1) for l in lines[1:])}
    n = 0 if head else int(hd.get("content-length", "-1"))
    H.check(n >= 0, "%s: Content-Length" % lines[0], "present", hd)
    while len(buf) < n:
        chunk = sock.recv(4096)
        H.check(chunk, "an answer's body", "complete", repr(buf))
        buf += chunk
    return lines[0], hd, buf[:n], buf[n:]


def test_head(ctx):
    p, admin, a, b = two_servers(ctx)
    s = socket.create_connection((H.LOCAL, admin), timeout=10)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    line, hd, body, rest = read_answer(s, b"", True)
    H.check_eq((line, hd.get("content-length")), ("HTTP/1.1 200 OK", "3"),
               "HEAD /healthz: status, Content-Length (GET's)")
    line, hd, body, rest = read_answer(s, rest, False)
    H.check_eq((line, body, rest), ("HTTP/1.1 200 OK", b"ok\n", b""),
               "GET /healthz after HEAD on the same connection")
    s.close()
    p.finish()


def test_browser(ctx):
    p, admin, a, b = two_servers(ctx)
    here = "127.0.0.1:%d" % admin
    evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    hd, text = expect_answer(admin, "POST", "/servers/app/a", 403, "state=maint",
                             evil, words=("Origin 'https://evil.example'",))
    H.check_eq(server(admin, "a")["admin"], "ready", "app/a after a cross-site POST")
    expect_answer(admin, "GET", "/status", 403, headers={"Origin": "http://evil.example"})
    expect_answer(admin, "POST", "/servers/app/a", 415, "state=maint",
                  {"Content-Type": "text/plain"}, words=("Content-Type 'text/plain'",))
    expect_answer(admin, "POST", "/healthz", 415, "state=down", {},
                  words=("application/x-www-form-urlencoded",))
    H.check_eq(server(admin, "a")["admin"], "ready", "app/a after text/plain POSTs")
    # DNS rebinding: the browser names its own host, resolving to us.
    for host in ("evil.example", "evil.example:%d" % admin, "127.0.0.1.evil.example"):
        expect_answer(admin, "GET", "/status", 403, headers={"Host": host},
                      words=("Host '%s'" % host,))
    for host in (here, "127.0.0.1", "localhost:%d" % admin, "[::1]:%d" % admin):
        expect_answer(admin, "GET", "/healthz", 200, headers={"Host": host})
    # The page's own POST: its Origin, a form with a charset.
    expect_answer(admin, "POST", "/servers/app/a", 200, "state=maint",
                  {"Origin": "http://" + here,
                   "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    H.check_eq(server(admin, "a")["admin"], "maint", "app/a after the page's POST")
    rc, out, err = ctl(ctx, admin, "server", "app/a", "ready")
    H.check_eq(rc, 0, "spliced ctl server app/a ready (%s)" % err.strip())
    p.finish()


def proc_start(pid):
    """The start of process pid, seconds since the epoch (from /proc)."""
    with open("/proc/%d/stat" % pid) as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(l.split()[1]) for l in f if l.startswith("btime "))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def test_figures(ctx):
    p, admin, a, b = two_servers(ctx, glob={"workers": 2})
    s = json_get(admin, "/status")
    H.check_eq((s["workers"], s["workers_answered"]), (2, 2),
               "/status (workers, workers_answered)")
    s = server(admin, "a")
    H.check_eq((s["workers"], s["workers_answered"]), (2, 2),
               "/servers/app/a (workers, workers_answered)")
    _, text = expect_answer(admin, "GET", "/metrics", 200)
    start = next(float(l.split()[1]) for l in text.splitlines()
                 if l.startswith("process_start_time_seconds "))
    want = proc_start(p.pid)
    H.check(abs(start - want) < 0.015, "process_start_time_seconds",
            "%.3f (/proc)" % want, "%.3f" % start)
    p.finish()


def test_client_cap(ctx):
    p, admin, a, b = two_servers(ctx)
    p.allow(r"^admin: 32 clients at once")
    idle = [socket.create_connection((H.LOCAL, admin), timeout=10) for _ in range(40)]
    H.check(p.wait_line(r"warn: admin: 32 clients at once", 10),
            "40 idle admin connections", "accepting pauses at 32 (a warning)", "no warning")
    t0 = time.monotonic()
    late = socket.create_connection((H.LOCAL, admin), timeout=30)
    late.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    late.settimeout(1.5)
    try:
        first = late.recv(100)
    except socket.timeout:
        first = None
    H.check(first is None, "a request past the limit", "not answered while 32 are held",
            repr(first))
    # The idle ones are dropped by the admin's timeout (10 s); then it is served.
    late.settimeout(30)
    text = b""
    while True:
        chunk = late.recv(4096)
        if not chunk:
            break
        text += chunk
    late.close()
    H.check(text.startswith(b"HTTP/1.1 200") and text.endswith(b"ok\n"),
            "the request past the limit, once the idle ones timed out", "200 ok",
            repr(text[:80]))
    H.log("served %.1fs after the limit was reached" % (time.monotonic() - t0))
    for s in idle:
        s.close()
    p.finish()


def test_unreachable(ctx):
    rc, _, err = ctl(ctx, H.free_port(), "status")
    H.check_eq(rc, 1, "spliced ctl status against nothing: exit status")
    H.check("no answer" in err, "its message", "no answer ...", err)


def test_token(ctx):
    good = ctx.write_file("token", "  s3cret-T0ken\n", 0o600)
    wrong = ctx.write_file("wrong", "nope\n", 0o600)
    p, admin, a, b = two_servers(ctx, glob={"admin_token_file": good})
    for hdr in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret-T0ken"},
                {"Authorization": "Bearer s3cret-T0ke"}):
        for path in ("/status", "/healthz", "/nope"):
            st, hd, _ = hreq(admin, "GET", path, headers=hdr)
            H.check_eq(st, 401, "GET %s with %r" % (path, hdr))
            H.check_eq(hd.get("www-authenticate"), "Bearer", "WWW-Authenticate")
    st, _, _ = hreq(admin, "GET", "/healthz",
                    headers={"Authorization": "Bearer s3cret-T0ken"})
    H.check_eq(st, 200, "GET /healthz with the token")
    # The page holds no data: it loads without the token, to ask for it.
    st, hd, _ = hreq(admin, "GET", "/")
    H.check_eq((st, hd.get("content-type")), (200, "text/html; charset=utf-8"),
               "GET / without the token")
    rc, _, err = ctl(ctx, admin, "status")
    H.check_eq(rc, 1, "spliced ctl status without the token")
    H.check("401" in err, "its message", "401 ...", err)
    rc, _, _ = ctl(ctx, admin, "status", token_file=wrong)
    H.check_eq(rc, 1, "spliced ctl status with a wrong token")
    rc, out, _ = ctl(ctx, admin, "status", token_file=good)
    H.check_eq(rc, 0, "spliced ctl status with the token")
    # With a token, a host name is fine (the token is what a page lacks).
    st, _, _ = hreq(admin, "GET", "/healthz", headers={
        "Authorization": "Bearer s3cret-T0ken", "Host": "spliced.example:9"})
    H.check_eq(st, 200, "GET /healthz with the token and Host spliced.example")
    p.finish()


def test_check(ctx):
    token = ctx.write_file("token", "abc\n", 0o600)
    base = ("[global]\nworkers = 1\n{admin}\n[listener web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nserver = a 127.0.0.1:9\n" % H.free_port())
    cases = [
        ("admin = *:%d" % H.free_port(), 1, ["3:", "[global] admin", "admin_token_file"]),
        ("admin = 0.0.0.0:%d" % H.free_port(), 1, ["3:", "[global] admin", "loopback"]),
        ("admin = 127.0.0.1:%d" % H.free_port(), 0, []),
        ("admin = unix:%s/a.sock" % ctx.tmp, 0, []),
        ("admin = *:%d\nadmin_token_file = %s/none" % (H.free_port(), ctx.tmp), 1,
         ["4:", "[global] admin_token_file", "cannot read"]),
        ("admin = *:%d\nadmin_token_file = %s" % (H.free_port(), token), 0, []),
    ]
    for i, (admin, want, words) in enumerate(cases):
        path = ctx.write_file("check%d.ini" % i, base.replace("{admin}", admin))
        r = subprocess.run([ctx.spliced, "-t", "-c", path], capture_output=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        err = r.stderr.decode(errors="replace")
        H.check_eq(r.returncode, want, "spliced -t with %r" % admin)
        for w in words:
            H.check(w in err, "spliced -t with %r: stderr" % admin, "holds %r" % w, err)


def test_unix(ctx):
    be = ctx.backend(H.echo(), name="a")
    path = os.path.join(ctx.tmp, "admin.sock")
    # A stale file from a run that was killed is replaced.
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    p = ctx.proxy(glob={"splice": ctx.mode, "admin": "unix:" + path},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + be.addr}})
    p.allow(r"^admin: ")
    p.start()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    H.check_eq(oct(mode), oct(0o660), "mode of the admin socket")
    st, _, text = hreq(path, "GET", "/healthz")
    H.check_eq((st, text), (200, "ok\n"), "GET /healthz over the unix socket")
    for _ in range(3):
        rc, out, err = ctl(ctx, "unix:" + path, "status")
        H.check_eq(rc, 0, "spliced ctl status over the unix socket (%s)" % err.strip())
        H.check("app/a" in out, "ctl status over the unix socket", "app/a", out)
    rc, out, err = ctl(ctx, "unix:" + path, "server", "app/a", "ready", "--weight", "4")
    H.check_eq(rc, 0, "spliced ctl server over the unix socket (%s)" % err.strip())
    H.check_eq(json_get(path, "/servers/app/a")["weight"], 4, "weight set over unix")
    st, _, _ = hreq(path, "GET", "/healthz", headers={"Host": "evil.example"})
    H.check_eq(st, 200, "GET /healthz over the unix socket, Host evil.example")
    # An error closes the connection right after its answer: the relay
    # still hands the answer on.
    for i in range(10):
        rc, _, err = ctl(ctx, "unix:" + path, "server", "app/zz", "drain")
        H.check_eq(rc, 1, "ctl server app/zz drain over the unix socket (%d)" % i)
        H.check("404 no server app/zz" in err, "its message (%d)" % i,
                "the server's 404 reason", err)
    H.check(H.echo_trip(p.port(), 5, 256 * H.KiB) is None, "traffic", "intact", "not")
    p.finish()
    H.check(not os.path.exists(path), "the admin socket after exit", "removed", "still there")


def test_healthz_sigterm(ctx):
    p, admin, a, b = two_servers(ctx, glob={"shutdown_timeout": "60s"})
    p.allow(r"(?i)shut|drain|stop|signal|terminat")
    c = H.dial(p.port())
    c.sendall(b"ping")
    H.check_eq(c.recv(4), b"ping", "echo before SIGTERM")
    p.signal(signal.SIGTERM)

    def draining():
        st, _, text = hreq(admin, "GET", "/healthz")
        return (st, text) == (503, "draining\n")
    H.check(H.wait_until(draining, 10), "GET /healthz during the drain",
            "503 draining within 10 s", hreq(admin, "GET", "/healthz")[:3:2])
    s = json_get(admin, "/status")
    H.check_eq((s["draining"], s["health"]), (True, "draining"), "/status during the drain")
    # The connection held open still flows.
    c.sendall(b"pong")
    H.check_eq(c.recv(4), b"pong", "echo during the drain")
    c.close()
    rc = p.wait_exit(30)
    H.check_eq(rc, 0, "exit once the held connection ended")
    p.stop()


def test_health_down(ctx):
    p, admin, a, b = two_servers(ctx)
    rc, out, _ = ctl(ctx, admin, "health", "down")
    H.check_eq(rc, 0, "spliced ctl health down")
    st, _, text = hreq(admin, "GET", "/healthz")
    H.check_eq((st, text), (503, "down\n"), "GET /healthz after health down")
    H.check_eq(json_get(admin, "/status")["health"], "down", "/status health")
    err = H.echo_trip(p.port(), 77, 4 * H.MiB)
    H.check(err is None, "4 MiB through the proxy while health is down", "intact", err)
    rc, _, _ = ctl(ctx, admin, "health", "up")
    H.check_eq(rc, 0, "spliced ctl health up")
    st, _, text = hreq(admin, "GET", "/healthz")
    H.check_eq((st, text), (200, "ok\n"), "GET /healthz after health up")
    p.finish()


def server(admin, name):
    return json_get(admin, "/servers/app/" + name)


def test_drain(ctx):
    p, admin, a, b = two_servers(ctx)
    port = p.port()
    # The held connection must land on a: b drained while it connects.
    rc, _, err = ctl(ctx, admin, "server", "app/b", "drain")
    H.check_eq(rc, 0, "ctl server app/b drain (%s)" % err.strip())
    held = H.dial(port)
    held.sendall(b"hello")
    H.check_eq(held.recv(5), b"hello", "echo on the held connection")
    H.check_eq((a.accepted, b.accepted), (1, 0), "connections on (a, b) with b drained")
    rc, _, _ = ctl(ctx, admin, "server", "app/b", "ready")
    H.check_eq(rc, 0, "ctl server app/b ready")
    rc, out, err = ctl(ctx, admin, "server", "app/a", "drain")
    H.check_eq(rc, 0, "ctl server app/a drain (%s)" % err.strip())
    s = server(admin, "a")
    H.check_eq((s["state"], s["admin"], s["active"]), ("drain", "drain", 1),
               "app/a (state, admin, active) while drained with one open")
    for i in range(20):
        err = H.echo_trip(port, 100 + i, 4 * H.KiB)
        H.check(err is None, "new connection %d" % i, "intact", err)
    H.check_eq((a.accepted, b.accepted), (1, 20), "connections on (a, b) after drain")
    rc, out, _ = ctl(ctx, admin, "wait-empty", "app/a", "--timeout", "1s")
    H.check_eq(rc, 1, "wait-empty app/a --timeout 1s while a connection is open")
    # The held connection keeps flowing, then ends.
    err = H.echo_trip(port, 9, 4 * H.MiB, sock=held)
    H.check(err is None, "4 MiB each way on the connection open on a", "intact", err)
    rc, out, _ = ctl(ctx, admin, "wait-empty", "app/a", "--timeout", "10s")
    H.check_eq(rc, 0, "wait-empty app/a once it ended")
    H.check_eq(server(admin, "a")["active"], 0, "app/a active at the end")
    p.finish()


def accept_queue(port):
    """Connections waiting in the accept queue of the 127.0.0.1 listener on
    port (a LISTEN line's rx_queue in /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return -1


def test_maint(ctx):
    a = ctx.backend(H.closer(), name="a")
    port = H.free_port()
    p = ctx.proxy(glob={"splice": ctx.mode, "admin": "127.0.0.1:%d" % port},
                  listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": "a " + a.addr, "health_check": "tcp",
                                    "health_interval": "50ms", "rise": 1, "fall": 1}})
    p.allow(r"^admin: ", r"(?i)health|down|up")
    p.start()
    H.check(a.wait_accepted(3, 5) >= 3, "checks reach a", ">= 3 within 5 s", a.accepted)
    rc, _, _ = ctl(ctx, port, "server", "app/a", "maint")
    H.check_eq(rc, 0, "ctl server app/a maint")
    # Checks run on the main thread, as the admin does: once maint is
    # answered none starts, and one under way has connected already. Wait
    # for the backend to take what is in its accept queue.
    H.check(H.wait_until(lambda: accept_queue(a.port) == 0 and a.active == 0, 5),
            "a's accept queue after maint", "empty within 5 s",
            accept_queue(a.port))
    before = a.accepted
    grew = H.wait_until(lambda: a.accepted > before, 1.0)
    H.check(not grew, "checks of app/a in maint", "none for 1 s",
            "%d more" % (a.accepted - before))
    H.check_eq(server(port, "a")["state"], "maint", "app/a state")
    rc, _, _ = ctl(ctx, port, "server", "app/a", "ready")
    H.check_eq(rc, 0, "ctl server app/a ready")
    now = a.accepted
    H.check(a.wait_accepted(now + 2, 5) >= now + 2, "checks after ready",
            "resume within 5 s", a.accepted - now)
    p.finish()


def test_sighup(ctx):
    p, admin, a, b = two_servers(ctx)
    rc, _, _ = ctl(ctx, admin, "server", "app/a", "drain", "--weight", "5")
    H.check_eq(rc, 0, "ctl server app/a drain --weight 5")
    mark = p.mark()
    p.signal(signal.SIGHUP)
    H.check(p.wait_line(r"info: reloaded", 10, since=mark), "the reload", "logged", "not")
    s = server(admin, "a")
    H.check_eq((s["admin"], s["weight"]), ("drain", 5), "app/a (admin, weight) after SIGHUP")
    H.check_eq(server(admin, "b")["admin"], "ready", "app/b admin after SIGHUP")
    p.finish()


def test_moved(ctx):
    """A reload moves app/a to another address while a connection is open
    on the old one: /servers/app/a still counts it (active 1), and
    wait-empty waits for it, then returns 0 once it ends."""
    p, admin, a, b = two_servers(ctx)
    a2 = ctx.backend(H.echo(), name="a2")
    rc, _, _ = ctl(ctx, admin, "server", "app/b", "drain")
    H.check_eq(rc, 0, "ctl server app/b drain")
    held = H.dial(p.port())
    held.sendall(b"hello")
    H.check_eq(held.recv(5), b"hello", "echo on the held connection (on a)")
    H.check_eq(a.accepted, 1, "connections on a")
    text = H.render_config(p.glob, p.listeners,
                           {"app": {"server": ["a " + a2.addr, "b " + b.addr]}},
                           p.ports)
    with open(p.config_path, "w") as f:
        f.write(text)
    mark = p.mark()
    p.signal(signal.SIGHUP)
    H.check(p.wait_line(r"info: reloaded", 10, since=mark), "the reload", "logged", "not")
    s = server(admin, "a")
    H.check_eq(([x["address"] for x in s["addresses"]], s["active"]),
               (["127.0.0.1:%d" % a2.port], 1),
               "app/a (addresses, active) after the move, one open on the old one")
    rc, _, _ = ctl(ctx, admin, "wait-empty", "app/a", "--timeout", "1s")
    H.check_eq(rc, 1, "wait-empty app/a while the old address holds a connection")
    err = H.echo_trip(p.port(), 5, 64 * H.KiB, sock=held)
    H.check(err is None, "the held connection after the reload", "intact", err)
    rc, _, _ = ctl(ctx, admin, "wait-empty", "app/a", "--timeout", "10s")
    H.check_eq(rc, 0, "wait-empty app/a once it ended")
    p.finish()


if __name__ == "__main__":
    H.main([test_errors, test_head, test_browser, test_figures, test_client_cap, test_unreachable, test_token, test_check, test_unix,
            test_healthz_sigterm, test_health_down, test_drain, test_maint, test_sighup, test_moved],
           deadline=300, doc=__doc__)
