"""Shared pieces of the spliced integration tests: constants, failures and
the deterministic byte generator. Part of harness.py (see there)."""

import hashlib
import os
import random
import struct
import sys
import time

LOCAL = "127.0.0.1"
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# Any single blocking socket operation. Generous: an ASan build on a loaded
# 2-core machine must still pass. Nothing asserts speed.
IO_TIMEOUT = 60.0
# How long the proxy may take to print "info: ready".
READY_TIMEOUT = 60.0
# How long to wait for the fd count to come back to its baseline (pipes
# pooled after a burst are closed about a second after they were last used).
FD_SETTLE = 20.0
# No single stream in these tests may take longer than this (a 4 GiB one
# takes well under a minute here; the bound only stops a runaway loop).
STREAM_DEADLINE = 600.0

VERBOSE = os.environ.get("SPLICED_IT_VERBOSE") == "1"
QUICK = os.environ.get("SPLICED_IT_QUICK") == "1"



# --------------------------------------------------------------------------
# failures

class TestFailure(AssertionError):
    pass


class Skip(Exception):
    pass


class DeadlineExceeded(BaseException):
    """Raised by SIGALRM in the main thread: the script's overall deadline.
    A BaseException so that no `except Exception` on the way swallows it."""


def fail(what, expected, actual):
    raise TestFailure("%s\n    expected: %s\n    actual:   %s" % (what, expected, actual))


def check(cond, what, expected, actual):
    if not cond:
        fail(what, expected, actual)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(what, repr(expected), repr(actual))


def log(msg):
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


# --------------------------------------------------------------------------
# deterministic data

_BLOCK = random.Random(0x5911CED).randbytes(MiB + 4096)
_BLOCK_MV = memoryview(_BLOCK)
_STAMP = struct.Struct("<QQ")
_STAMP_EVERY = 4096


def stream_chunks(seed, size, chunk=MiB):
    """The bytes of stream `seed`, `size` long, as bytearrays of <= 1 MiB.

    Chunk i is a window of one fixed 1 MiB random block, started at an offset
    that depends on (seed, i), with (seed, position) stamped every 4 KiB: a
    lost, repeated or reordered piece, or bytes of another stream, change the
    sha256. Cheap: a memcpy and 256 small stamps per MiB."""
    chunk = min(chunk, MiB)
    left = size
    pos = 0
    i = 0
    while left > 0:
        n = min(chunk, left)
        start = (seed * 131 + i * 17) % 4096
        buf = bytearray(_BLOCK_MV[start:start + n])
        for off in range(0, n - _STAMP.size + 1, _STAMP_EVERY):
            _STAMP.pack_into(buf, off, seed, pos + off)
        yield buf
        left -= n
        pos += n
        i += 1


def stream_sha(seed, size):
    h = hashlib.sha256()
    for c in stream_chunks(seed, size):
        h.update(c)
    return h.hexdigest()


def human(n):
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


