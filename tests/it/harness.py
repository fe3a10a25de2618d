"""Shared pieces of the spliced integration tests (Python 3, stdlib only).

Every test script drives the real binary over 127.0.0.1 and nothing else:

    python3 tests/it/<script>.py --spliced build/spliced --mode auto

What lives here (harness.py re-exports the modules beside it, so a script
only does `import harness as H`):
  itcore.py   constants; failures (fail/check/check_eq print what was
              expected and what happened); a deterministic, fast byte
              generator (stream_chunks), so a 4 GiB stream costs little to
              produce and both ends can hash what they moved.
  itnet.py    free ports; backends as threads (Backend and the handlers
              sink, source, echo, rst_after); client helpers (dial,
              send_stream, read_stream, and drive_clients for many clients
              on one selector).
  itproxy.py  config rendering and the Proxy class: starts the binary, waits
              for "info: ready", collects its stderr, parses access-log
              lines, counts /proc/PID/fd, reads VmRSS and utime+stime, and at
              the end of a test checks that the fd count is back at its
              baseline, that no socket of the proxy sits in CLOSE_WAIT, that
              nothing at warn/error was logged that the test did not expect,
              and that SIGTERM makes it exit 0.
  harness.py  the runner (main): parses --spliced/--mode, arms an overall
              deadline (signal.alarm), runs the test functions, kills what
              they started, and prints for each failure what was expected,
              what happened and the tail of the proxy's stderr.

Environment:
  SPLICED_IT_QUICK=1  shrinks the single 4 GiB stream of it_bigstream to
                      512 MiB (meant for the ASan+UBSan run, where every
                      byte costs more); every other test keeps its size.
  SPLICED_IT_VERBOSE=1  echo the proxy's stderr lines as they arrive.

Exit codes: 0 all passed, 1 a test failed, 77 everything was skipped
(registered with SKIP_RETURN_CODE 77 in CMakeLists.txt).
"""


import argparse
import collections  # noqa: F401  (for the scripts: H.collections)
import hashlib  # noqa: F401
import os
import re  # noqa: F401
import shutil
import signal
import socket  # noqa: F401
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itcore import *  # noqa: E402,F401,F403
from itcore import QUICK, Skip, TestFailure, DeadlineExceeded, log  # noqa: E402
from itnet import *  # noqa: E402,F401,F403
from itnet import Backend  # noqa: E402
from itproxy import *  # noqa: E402,F401,F403
from itproxy import Proxy  # noqa: E402

# --------------------------------------------------------------------------
# the runner

class Ctx:
    """What a test function gets: the binary, the mode, the build's
    zero-copy backend, a temp dir, and the cleanup list."""

    def __init__(self, spliced, mode):
        self.spliced = os.path.abspath(spliced)
        self.mode = mode
        self.tmp = tempfile.mkdtemp(prefix="spliced-it-")
        os.chmod(self.tmp, 0o755)
        self.owned = []
        self.version = ""
        try:
            out = subprocess.run([self.spliced, "--version"], capture_output=True,
                                 timeout=30)
            self.version = (out.stdout + out.stderr).decode("utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            self.version = "error: %r" % (e,)
        m = re.search(r"zero-copy: ([^)]*)\)", self.version)
        self.zc_backend = m.group(1) if m else "?"
        # splice=always/auto only splice when the build has splice; the
        # portable build (zero-copy: none) copies every byte.
        self.can_splice = "splice" in self.zc_backend
        self.asan = self._is_asan()

    def _is_asan(self):
        try:
            with open(self.spliced, "rb") as f:
                data = f.read()
            return b"__asan_init" in data
        except OSError:
            return False

    @property
    def splices(self):
        """Whether the mode under test moves bytes with splice in this build."""
        return self.can_splice and self.mode in ("always", "auto")

    def register(self, obj):
        self.owned.append(obj)
        return obj

    def backend(self, default=None, name="be", **kw):
        return self.register(Backend(default, name=name, **kw))

    def proxy(self, **kw):
        return Proxy(self, **kw)

    def started_proxy(self, listeners, backends, glob=None, admin=False, allow=()):
        """A proxy in this run's splice mode, started; with admin, its admin
        endpoint on a free loopback port. allow: regexes of stderr lines the
        end-of-test check accepts. Returns (proxy, admin port or None)."""
        g = {"splice": self.mode}
        aport = None
        if admin:
            aport = free_port()
            g["admin"] = "127.0.0.1:%d" % aport
        g.update(glob or {})
        p = self.proxy(glob=g, listeners=listeners, backends=backends)
        p.allow(*allow)
        p.start()
        return p, aport

    def write_file(self, name, text, mode=0o644):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def cleanup(self):
        for obj in reversed(self.owned):
            try:
                if isinstance(obj, Proxy):
                    obj.kill()
                elif isinstance(obj, Backend):
                    obj.close()
                elif callable(obj):
                    obj()
                else:
                    obj.close()
            except Exception as e:
                log("cleanup: %r" % (e,))
        self.owned = []


def _print_proxy_tails(ctx):
    for obj in ctx.owned:
        if isinstance(obj, Proxy) and obj.proc is not None:
            non_access, access, n = obj.tail()
            rc = obj.proc.poll()
            state = "running" if rc is None else "exited with %s" % rc
            if rc is not None and rc < 0:
                state = "killed by signal %d" % -rc
            if obj.stopped and rc is not None and rc < 0 and -rc == signal.SIGKILL:
                state = "killed by the test"
            sys.stdout.write("  --- %s (pid %s, %s, argv %s) stderr, last lines:\n" % (
                obj.name, obj.pid, state, " ".join(getattr(obj, "argv", []))))
            for l in non_access:
                sys.stdout.write("    " + l + "\n")
            sys.stdout.write("  --- %d access lines, the last:\n" % n)
            for l in access:
                sys.stdout.write("    " + l + "\n")


def main(tests, deadline, doc=""):
    """Run the test functions (each takes a Ctx) in order; exit 0/1/77."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--spliced", required=True, help="path to the spliced binary")
    ap.add_argument("--mode", default="auto", choices=("never", "always", "auto"))
    ap.add_argument("--only", help="run only the test functions whose name contains this")
    opts = ap.parse_args()
    if not os.access(opts.spliced, os.X_OK):
        print("spliced binary not executable: %s" % opts.spliced)
        sys.exit(1)

    def on_alarm(signum, frame):
        raise DeadlineExceeded("overall deadline of %ds exceeded" % deadline)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(deadline)

    # Backstop: if the main thread cannot even take the alarm, kill what we
    # started and leave.
    ctx = Ctx(opts.spliced, opts.mode)

    def watchdog():
        time.sleep(deadline + 30)
        sys.stdout.write("watchdog: hard deadline, killing everything\n")
        sys.stdout.flush()
        for obj in list(ctx.owned):
            if isinstance(obj, Proxy) and obj.proc is not None and obj.proc.poll() is None:
                try:
                    obj.proc.kill()
                except OSError:
                    pass
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()

    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    log("%s mode=%s binary=%s version=%r asan=%s quick=%s" % (
        script, opts.mode, ctx.spliced, ctx.version, ctx.asan, QUICK))
    passed, failed, skipped = [], [], []
    t_all = time.monotonic()
    try:
        for t in tests:
            if opts.only and opts.only not in t.__name__:
                continue
            name = t.__name__
            log("=== %s [%s]" % (name, opts.mode))
            t0 = time.monotonic()
            try:
                t(ctx)
                passed.append(name)
                log("--- PASS %s (%.1fs)" % (name, time.monotonic() - t0))
            except Skip as e:
                skipped.append(name)
                log("--- SKIP %s: %s" % (name, e))
            except TestFailure as e:
                failed.append(name)
                log("--- FAIL %s (%.1fs)\n  %s" % (name, time.monotonic() - t0, e))
                _print_proxy_tails(ctx)
            except DeadlineExceeded:
                failed.append(name)
                log("--- FAIL %s: the script's overall deadline (%ds) ran out here"
                    % (name, deadline))
                traceback.print_exc(file=sys.stdout)
                _print_proxy_tails(ctx)
                raise
            except Exception:
                failed.append(name)
                log("--- FAIL %s (%.1fs): exception" % (name, time.monotonic() - t0))
                traceback.print_exc(file=sys.stdout)
                _print_proxy_tails(ctx)
            finally:
                ctx.cleanup()
    except DeadlineExceeded:
        pass
    finally:
        signal.alarm(0)
        ctx.cleanup()
        if failed:
            log("configs kept in %s" % ctx.tmp)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    log("%s [%s]: %d of %d test functions passed, %d failed, %d skipped (%.1fs)%s" % (
        script, opts.mode, len(passed), len(passed) + len(failed) + len(skipped),
        len(failed), len(skipped), time.monotonic() - t_all,
        (": " + ", ".join(failed)) if failed else ""))
    sys.stdout.flush()
    if failed:
        os._exit(1)
    if skipped and not passed:
        os._exit(77)
    os._exit(0)
