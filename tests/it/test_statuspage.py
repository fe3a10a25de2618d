#!/usr/bin/env python3
"""The status page (GET / of the admin endpoint) in headless Chromium. (Runs once.)

spliced runs with `admin = 127.0.0.1:PORT`, listener web over backend app
(servers a and b, each a source of 16 MiB streams), and two clients
download through web again and again, paced at 4 MiB/s each (sha256 of
every download checked).

live: Chromium loads http://127.0.0.1:PORT/ and dumps the DOM
  (--dump-dom, a few seconds of virtual time), in a bounded loop until the
  condition holds: the page is live, shows version and workers as /status
  says, both servers up, listener web; the bytes out figure moves between
  two dumps (and shows spliced bytes where the mode splices). Then app/b is
  drained with a POST as the page makes it (servers/app/b, state=drain)
  and the page shows drain, its Drain button disabled.
click: the page stays open (Chromium over --remote-debugging-pipe, real
  time): the rate out is above zero; the Drain button of app/a is clicked
  and the page shows drain, and so does GET /servers/app/a; Ready brings it
  back to up. SPLICED_IT_SHOT=FILE saves a screenshot (1200x900) there
  after a minute of chart, with app/a drained (the README's picture).
token: with admin_token_file, /status without the token is 401, and the
  page says "token required"; opened as ...#token=TOKEN it is live.

Chromium: `chromium` (Debian's package; SPLICED_CHROMIUM=PATH for another).
Without it the script skips, except under CI=true, where that is a failure."""

import base64
import fcntl
import html.parser
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 16 * H.MiB          # one download
RATE = 4 * H.MiB           # bytes/s per client
SEED = 4242
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--disable-sync",
               "--disable-background-networking", "--disable-component-update",
               "--mute-audio", "--hide-scrollbars", "--window-size=1200,900"]
DUMP_BUDGET_MS = 3000      # virtual time per dump: about three polls
WAIT = 60.0                # for any one condition on the page


def find_chromium():
    path = os.environ.get("SPLICED_CHROMIUM") or shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI") == "true":
        H.fail("chromium for the status page test", "installed (CI=true: no skipping)",
               "not found; tools/setup installs it (apt-get install chromium)")
    raise H.Skip("chromium is not installed (apt-get install chromium, or tools/setup); "
                 "with CI=true this is a failure")


# --------------------------------------------------------------------------
# the rendered page

class Page(html.parser.HTMLParser):
    """A dumped DOM, read through the page's data- attributes.

    value(scope, field) is the data-value of the element data-field=field,
    text(...) its text; scope is "" for the page-wide figures, or
    "server:app/a", "listener:web", "backend:app" inside such a row.
    button(scope, action) is True when enabled, False when disabled."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
            "meta", "source", "track", "wbr"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.raw = text
        self.body = {}
        self.fields = {}
        self.buttons = {}
        self.stack = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        scope = self.stack[-1][1] if self.stack else ""
        for k in ("data-server", "data-listener", "data-backend"):
            if k in a:
                scope = "%s:%s" % (k[5:], a[k])
        key = None
        if "data-field" in a:
            key = (scope, a["data-field"])
            self.fields[key] = {"value": a.get("data-value"), "text": ""}
        if tag == "button" and "data-action" in a:
            self.buttons[(scope, a["data-action"])] = "disabled" not in a
        if tag not in self.VOID:
            self.stack.append((tag, scope, key))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        for _, _, key in self.stack:
            if key:
                self.fields[key]["text"] += data

    def value(self, scope, field):
        return self.fields.get((scope, field), {}).get("value")

    def number(self, scope, field):
        try:
            return float(self.value(scope, field))
        except (TypeError, ValueError):
            return None

    def text(self, scope, field):
        return self.fields.get((scope, field), {}).get("text", "").strip()

    def button(self, scope, action):
        return self.buttons.get((scope, action))

    def summary(self):
        keep = [k for k in self.fields if k[1] in ("conn", "state", "bytes_down", "version")]
        return "body %s; %s" % (
            {k: v for k, v in self.body.items() if k.startswith("data-")},
            ", ".join("%s%s=%r" % (s + " " if s else "", f, self.fields[(s, f)]["value"])
                      for s, f in sorted(keep)))


class Chromium:
    """Headless Chromium runs, each in a process group of its own (killed
    at the end, so no renderer outlives the test) with a profile under the
    test's temp dir."""

    def __init__(self, ctx, path):
        self.ctx = ctx
        self.path = path
        self.runs = 0
        self.procs = []
        ctx.register(self.close)

    def profile(self):
        self.runs += 1
        return "--user-data-dir=" + os.path.join(self.ctx.tmp, "chromium-%d" % self.runs)

    def _reap(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def dump(self, url, budget_ms=DUMP_BUDGET_MS):
        proc = subprocess.Popen([self.path] + CHROME_ARGS + [
            self.profile(), "--virtual-time-budget=%d" % budget_ms, "--dump-dom", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._reap(proc)
            H.fail("chromium --dump-dom %s" % url, "done within 60 s", "still running; killed")
        self._reap(proc)
        if proc.returncode != 0 or not out:
            H.fail("chromium --dump-dom %s" % url, "exit 0 and a DOM",
                   "exit %s, %d bytes; stderr: %s" % (proc.returncode, len(out),
                                                    err.decode(errors="replace")[-800:]))
        return Page(out.decode("utf-8", "replace"))

    def dump_until(self, url, cond, what, timeout=WAIT):
        """Dump the page again and again until cond(page); the page."""
        end = time.monotonic() + timeout
        n = 0
        while True:
            page = self.dump(url)
            n += 1
            if cond(page):
                H.log("%s: after %d dump(s)" % (what, n))
                return page
            if time.monotonic() > end:
                H.fail("the page: %s" % what, "within %.0f s" % timeout,
                       "not after %d dumps; the last: %s" % (n, page.summary()))

    def open(self, url):
        return Cdp(self, url)

    def close(self):
        for c in self.procs:
            c.close()
        self.procs = []


class Cdp:
    """One page in a Chromium driven over --remote-debugging-pipe: the
    DevTools protocol as NUL-terminated JSON on fds 3 (to Chromium) and 4
    (from it), so no WebSocket client is needed."""

    def __init__(self, chromium, url):
        self.chromium = chromium
        self.buf = b""
        self.next_id = 0
        to_r, to_w = self._high_pipe()
        from_r, from_w = self._high_pipe()

        def child():
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)
        # close_fds=False: every fd of this process is close-on-exec
        # (PEP 446) but the two that child() makes 3 and 4.
        self.err = open(os.path.join(chromium.ctx.tmp, "chromium-cdp.err"), "ab")
        self.proc = subprocess.Popen(
            [chromium.path] + CHROME_ARGS + [chromium.profile(), "--remote-debugging-pipe",
                                             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err,
            close_fds=False, preexec_fn=child, start_new_session=True)
        self.closed = False
        chromium.procs.append(self)
        os.close(to_r)
        os.close(from_w)
        self.w, self.r = to_w, from_r
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]

    @staticmethod
    def _high_pipe():
        """A pipe whose ends are above 9, so dup2 to 3 and 4 clobbers neither."""
        r, w = os.pipe()
        hr = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10)
        hw = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(r)
        os.close(w)
        return hr, hw

    def call(self, method, params=None, session=None, timeout=30.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.w, data):]
        end = time.monotonic() + timeout
        while True:
            while b"\0" not in self.buf:
                left = end - time.monotonic()
                if left <= 0 or not select.select([self.r], [], [], left)[0]:
                    H.fail("chromium: %s" % method, "an answer within %.0f s" % timeout, "none")
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    H.fail("chromium: %s" % method, "an answer", "the pipe closed (exit %s)"
                           % self.proc.poll())
                self.buf += chunk
            raw, _, self.buf = self.buf.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    H.fail("chromium: %s" % method, "a result", reply["error"])
                return reply.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                      session=self.session)
        if "exceptionDetails" in r:
            H.fail("page script %r" % expr, "no exception", r["exceptionDetails"])
        return r.get("result", {}).get("value")

    def wait(self, expr, what, timeout=WAIT):
        """Evaluate expr in the page until it is truthy; its value. Until
        the page has drawn what expr reads, expr may throw (an element not
        there yet): that counts as not yet."""
        guarded = "(() => { try { return (%s); } catch (e) { return null; } })()" % expr
        v = H.wait_until(lambda: self.eval(guarded), timeout, 0.2)
        H.check(v, "the page: %s" % what, "within %.0f s (%s)" % (timeout, expr),
                "not; the page says: %r" % self.eval(
                    "document.body.getAttribute('data-conn') + ' ' + "
                    "document.getElementById('msg').textContent"))
        return v

    def screenshot(self, path, width=1200, height=900):
        # --window-size counts the window, not the page: set the page's.
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False}, session=self.session)
        data = self.call("Page.captureScreenshot", {"format": "png"},
                         session=self.session)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (H.TestFailure, OSError):
                pass
        self.chromium._reap(self.proc)
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.err.close()


# --------------------------------------------------------------------------
# spliced, its admin endpoint, traffic

def http(port, path, body=None, token=None):
    """(status, text) of a request to the admin endpoint."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=body.encode() if body is not None else None)
    if body is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def start(ctx, extra=None):
    """spliced with the admin endpoint over backend app (servers a, b)."""
    servers = [ctx.backend(H.source(SIZE, SEED), name=n) for n in "ab"]
    admin = H.free_port()
    glob = {"splice": ctx.mode, "admin": "127.0.0.1:%d" % admin}
    glob.update(extra or {})
    p = ctx.proxy(glob=glob, listeners={"web": {"backend": "app"}},
                  backends={"app": {"server": ["a " + servers[0].addr,
                                               "b " + servers[1].addr]}})
    p.start()

    def answers():
        try:
            return http(admin, "/healthz")[0] in (200, 401, 503)
        except OSError:
            return False
    H.check(H.wait_until(answers, 10, 0.1), "the admin endpoint on 127.0.0.1:%d" % admin,
            "answering GET /healthz within 10 s of ready", "no answer")
    return p, admin


class Downloads:
    """Clients downloading through port, again and again, paced."""

    def __init__(self, port, n=2):
        self.port = port
        self.sha = H.stream_sha(SEED, SIZE)
        self.stopping = threading.Event()
        self.done = 0
        self.bad = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                c = H.dial(self.port, rcvbuf=256 * H.KiB)
            except OSError as e:
                self.bad.append("connect: %r" % (e,))
                return
            r = H.read_stream(c, rate=RATE, deadline=time.monotonic() + 120)
            c.close()
            if (r.end, r.n, r.sha) == ("eof", SIZE, self.sha):
                self.done += 1
            else:
                self.bad.append(r)

    def close(self):
        self.stopping.set()
        for t in self.threads:
            t.join(SIZE / RATE + 60)

    def check(self):
        self.close()
        H.log("%d downloads of %s intact, %d not" % (self.done, H.human(SIZE), len(self.bad)))
        H.check_eq(self.bad[:3], [], "downloads that failed or differ (sha256)")


def live(page):
    return page.body.get("data-conn") == "ok"


# --------------------------------------------------------------------------
# the tests

def test_live(ctx):
    chrome = Chromium(ctx, find_chromium())
    p, admin = start(ctx)
    dl = ctx.register(Downloads(p.port("web")))
    url = "http://127.0.0.1:%d/" % admin
    status = json.loads(http(admin, "/status")[1])

    def ready(pg):
        return (live(pg) and all(pg.value("server:app/" + s, "state") == "up" for s in "ab")
                and (pg.number("", "bytes_down") or 0) > 0)
    page = chrome.dump_until(url, ready, "live, servers app/a and app/b up, bytes moved")
    H.check_eq(page.text("", "conn"), "live", "the connection badge")
    H.check_eq(page.value("", "version"), status["version"], "version as /status says")
    H.check_eq(page.value("", "workers"), str(status["workers"]), "workers as /status says")
    H.check_eq(page.text("listener:web", "name"), "web", "listener web's row")
    H.check_eq(page.value("listener:web", "backend"), "app", "listener web's backend")
    H.check((page.number("listener:web", "total") or 0) >= 1, "listener web: total",
            ">= 1", page.value("listener:web", "total"))
    for s in "ab":
        H.check_eq(page.text("server:app/" + s, "state"), "up", "app/%s state text" % s)
        H.check_eq((page.button("server:app/" + s, "drain"),
                    page.button("server:app/" + s, "ready")), (True, False),
                   "app/%s buttons (Drain enabled, Ready disabled)" % s)
    first = page.number("", "bytes_down")
    page = chrome.dump_until(url, lambda pg: (pg.number("", "bytes_down") or 0) > first,
                             "bytes out moves on (from %d)" % first)
    H.log("bytes out: %d, then %s (%s)" % (first, page.value("", "bytes_down"),
                                          page.text("", "bytes_down")))
    if ctx.splices:
        H.check((page.number("", "splice_down") or 0) > 0, "spliced bytes out shown",
                "> 0 (mode %s)" % ctx.mode, page.value("", "splice_down"))

    # The request the page's Drain button makes.
    code, body = http(admin, "/servers/app/b", body="state=drain")
    H.check(code in (200, 204), "POST /servers/app/b state=drain", "200 or 204",
            "%d %s" % (code, body.strip()))
    page = chrome.dump_until(url, lambda pg: pg.value("server:app/b", "state") == "drain",
                             "app/b shows drain")
    H.check_eq(page.value("server:app/a", "state"), "up", "app/a still up")
    H.check_eq((page.button("server:app/b", "drain"), page.button("server:app/b", "ready")),
               (False, True), "app/b buttons (Drain disabled, Ready enabled)")
    dl.check()
    p.finish()


def test_click(ctx):
    chrome = Chromium(ctx, find_chromium())
    p, admin = start(ctx)
    dl = ctx.register(Downloads(p.port("web")))
    page = chrome.open("http://127.0.0.1:%d/" % admin)
    server = "document.querySelector('[data-server=\"app/a\"] %s')"
    state = server % "[data-field=state]" + ".getAttribute('data-value')"
    page.wait("document.body.getAttribute('data-conn') == 'ok' && " + state + " == 'up'",
              "live with app/a up")
    rate = page.wait("Number(document.querySelector('[data-field=rate_down]')"
                     ".getAttribute('data-value')) > 0 && "
                     "document.querySelector('[data-field=rate_down]').textContent",
                     "a rate out above zero")
    H.log("rate out on the page: %s" % rate)

    page.eval(server % "button[data-action=drain]" + ".click(); true")
    page.wait(state + " == 'drain'", "app/a shows drain after its Drain button")
    code, body = http(admin, "/servers/app/a")
    H.check_eq((code, json.loads(body).get("admin") if code == 200 else body),
               (200, "drain"), "GET /servers/app/a after the click")
    shot = os.environ.get("SPLICED_IT_SHOT")
    if shot:
        page.wait("Number(document.getElementById('chart').getAttribute('data-samples')) >= 60",
                  "a minute of chart", timeout=120)
        page.screenshot(shot)
        H.log("screenshot: %s" % shot)
    page.eval(server % "button[data-action=ready]" + ".click(); true")
    page.wait(state + " == 'up'", "app/a back up after its Ready button")
    page.close()
    dl.check()
    p.finish()


def test_token(ctx):
    chrome = Chromium(ctx, find_chromium())
    token = "page-test-token-5d1c"
    path = ctx.write_file("admin.token", token + "\n", 0o600)
    p, admin = start(ctx, {"admin_token_file": path})
    H.check_eq(http(admin, "/status")[0], 401, "GET /status without the token")
    H.check_eq(http(admin, "/status", token=token)[0], 200, "GET /status with the token")
    url = "http://127.0.0.1:%d/" % admin
    code, _ = http(admin, "/")
    H.check_eq(code, 200, "GET / without a token (the page holds no data; it must load to "
               "ask for the token)")
    page = chrome.dump_until(url, lambda pg: pg.body.get("data-conn") == "token",
                             "token required")
    H.check_eq(page.text("", "conn"), "token required", "the badge without a token")
    page = chrome.dump_until(url + "#token=" + token,
                             lambda pg: live(pg) and pg.value("server:app/a", "state") == "up",
                             "live with #token=")
    p.finish()


if __name__ == "__main__":
    H.main([test_live, test_click, test_token], deadline=280, doc=__doc__)
