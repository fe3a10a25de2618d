#!/usr/bin/env python3
"""A fleet of three spliced instances behind an ECMP router (issue 17), in
network namespaces the test makes and deletes (also on failure): the three
cases of tools/fleet, whose library (tools/fleetlib) is the one
implementation; its docstring gives the layout and every check.

consistency: balance = source: each of 200 client addresses reaches one
  backend whichever of the 3 instances ECMP gives its connections (6 each,
  ports differing; every instance carries >= a tenth); be4 added by SIGHUP on
  every instance moves 0.15..0.35 of the addresses (1/(N+1) = 1/4), all to
  be4, the same ones through every instance.
rolling_upgrade: long echo streams and loops of short byte-checked
  connections throughout; instance by instance: `spliced ctl health down`
  (/healthz 503), route withdrawn, `spliced ctl wait-empty all --timeout 3s`
  (exit 1 naming exactly the long streams on it, which /connections lists),
  a new binary and SIGUSR2 (those streams handed to the new pid, the old
  exits 0, /status names the new one), no connection started after the
  withdrawal reached it, `spliced ctl health up` (/healthz 200), route
  back, short connections reach it again. Failures: 0; every long stream
  carried bytes after its instance's upgrade and ended cleanly. The new
  process's /healthz before `health up` must still be 503, as after a
  SIGHUP.
sigkill: instance 2 SIGKILLed, its route withdrawn after 2 failed /healthz
  checks 0.5 s apart: every failed connection had reached it (its long
  streams all fail), the others' long streams are intact, >= 100 connections
  started after the withdrawal all succeed through the other two.
Each case ends its instances with SIGTERM: fds back at the baseline, no
CLOSE_WAIT, exit 0, no unexpected warn or error line. Skipped (77) only where the fleet cannot be made (not root, no
network namespaces, veth, nftables or multipath routes)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import harness as H  # noqa: E402
from fleetlib.base import CaseFailure, Unavailable  # noqa: E402
from fleetlib.cases import run_case  # noqa: E402


def run(ctx, case):
    """One case in a fleet of its own; its figures are in the log."""
    try:
        run_case(case, ctx.spliced, ctx.mode, tmp=ctx.tmp, log=H.log)
    except Unavailable as e:
        raise H.Skip("cannot make the fleet here: %s" % e)
    except CaseFailure as e:
        H.fail(e.what, e.expected, e.actual)


def test_consistency(ctx):
    run(ctx, "a")


def test_rolling_upgrade(ctx):
    run(ctx, "b")


def test_sigkill(ctx):
    run(ctx, "c")


if __name__ == "__main__":
    H.main([test_consistency, test_rolling_upgrade, test_sigkill], deadline=240,
           doc=__doc__)
