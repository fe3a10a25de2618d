"""What every part of tools/fleet shares: the addresses, the failures
(CaseFailure: what was expected, what happened; Unavailable: exit 77), the
log, bounded waits, running a command."""

import re
import subprocess
import sys
import time

VIP = "198.18.100.1"
PORT = 8000                 # spliced's listener on the VIP
ADMIN = "127.0.0.1:9090"    # each instance's admin endpoint, inside its namespace
BACKEND_PORT = 7000
INSTANCES = (1, 2, 3)
SERVERS = ("be1", "be2", "be3", "be4")
PORT_FIRST = 10000          # client source ports: counted up per address from here
IO_TIMEOUT = 10.0           # any one blocking socket operation of a client
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0         # SIGTERM to exit (shutdown_timeout is 5s)
UPGRADE_WAIT = 45.0         # SIGUSR2 to the old process's verdict (upgrade_timeout 30s + 15 s)
PREFIX = "spfl"
ALLOWED = (r"^running as root: set \[global\] user",
           r"^RLIMIT_NOFILE: hard limit \d+ is below")
LOG_RE = re.compile(r"^(\S+) (error|warn|info|debug): (.*)$")


def inst_addr(k):
    return "198.18.%d.2" % (10 + k)


def backend_addr(name):
    return "198.18.20.%d" % (10 + int(name[2:]))


class Unavailable(Exception):
    """The fleet cannot be made here (exit 77)."""


class CaseFailure(AssertionError):
    def __init__(self, what, expected, actual):
        super().__init__("%s\n    expected: %s\n    actual:   %s" % (what, expected, actual))
        self.what, self.expected, self.actual = what, expected, actual


def check(cond, what, expected, actual):
    if not cond:
        raise CaseFailure(what, expected, actual)


def check_eq(actual, expected, what):
    check(actual == expected, what, repr(expected), repr(actual))


def default_log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def wait_until(cond, timeout, step=0.05):
    """Poll cond() until true or timeout; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def run(argv, stdin=None, timeout=30):
    """(exit status, stdout+stderr) of a command."""
    try:
        r = subprocess.run(argv, input=stdin.encode() if stdin else None,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "%s: no exit within %ds" % (" ".join(argv), timeout)
    except OSError as e:
        return -1, "%s: %s" % (argv[0], e)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()
