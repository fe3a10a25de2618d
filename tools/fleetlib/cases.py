"""The three cases (see tools/fleet): each runs in a fleet of its own,
asserts what it shows (CaseFailure otherwise) and returns its figures."""

import collections
import random
import re
import threading
import time

from .base import (IO_TIMEOUT, SERVERS, CaseFailure, check, check_eq, default_log,
                   wait_until)
from .fleet import Fleet


def fmt_counts(counter, names):
    return " ".join("%s %d" % (n, counter.get(n, 0)) for n in names)


def probe_round(f, per_addr, tag, threads=8):
    """per_addr probes from every client address, shuffled, over threads."""
    jobs = [a for a in f.clients.addrs for _ in range(per_addr)]
    random.Random(tag).shuffle(jobs)
    out, lock, pos = [], threading.Lock(), [0]

    def work():
        f.clients.ns.enter()
        while True:
            with lock:
                if pos[0] >= len(jobs):
                    return
                a = jobs[pos[0]]
                pos[0] += 1
            c = f.clients.probe(a)
            with lock:
                out.append(c)
    ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(len(jobs) * IO_TIMEOUT)
        check(not t.is_alive(), "probe round %s" % tag, "done", "a thread still runs")
    return out


def consistent(f, conns, tag):
    """{address: backend}, checking that each address reached one backend
    whichever instance carried it; and figures."""
    names = [i.name for i in f.instances]
    per_inst = collections.Counter(c.via for c in conns)
    for n in names:
        check(per_inst[n] >= len(conns) // 10, "%s: connections %s carried" % (tag, n),
              ">= a tenth of %d" % len(conns), fmt_counts(per_inst, names))
    backends, vias = {}, {}
    for c in conns:
        backends.setdefault(c.addr, set()).add(c.backend)
        vias.setdefault(c.addr, set()).add(c.via)
    split = {a: sorted(b) for a, b in backends.items() if len(b) != 1}
    check(not split, "%s: one backend per client address, whichever instance" % tag,
          "none reaching two", split)
    multi = sum(1 for v in vias.values() if len(v) >= 2)
    check(multi >= 0.9 * len(vias), "%s: addresses carried by 2 or 3 instances" % tag,
          ">= 90%% of %d" % len(vias), multi)
    f.log("case a: %s: %d connections, per instance %s; %d of %d addresses through "
          "2 or 3 instances, each to one backend" % (tag, len(conns),
                                                    fmt_counts(per_inst, names),
                                                    multi, len(vias)))
    return {a: next(iter(b)) for a, b in backends.items()}, per_inst


def case_a(f, per_addr=6):
    """Consistency: balance = source; be4 added by SIGHUP."""
    f.start_instances(SERVERS[:3])
    before = probe_round(f, per_addr, "before")
    f.set_servers(SERVERS[:4])
    after = probe_round(f, per_addr, "after")
    conns = before + after
    bad = [c for c in conns if not c.ok]
    check(not bad, "case a: connections", "all served", "%d failed, e.g. %r"
          % (len(bad), bad[:5]))
    f.check_owners(conns)
    b0, inst0 = consistent(f, before, "before")
    b1, inst1 = consistent(f, after, "after")
    check_eq(sorted(set(b0.values())), list(SERVERS[:3]), "before: backends reached")
    check_eq(sorted(set(b1.values())), list(SERVERS[:4]), "after: backends reached")
    addrs = f.clients.addrs
    moved = [a for a in addrs if b0[a] != b1[a]]
    wrong = {a: "%s -> %s" % (b0[a], b1[a]) for a in moved if b1[a] != "be4"}
    check(not wrong, "addresses that moved", "only to the new server be4", wrong)
    frac = len(moved) / len(addrs)
    check(0.15 <= frac <= 0.35, "the share of addresses that moved",
          "about 1/(N+1) = 1/4 (0.15..0.35)", "%d of %d = %.3f" % (len(moved), len(addrs),
                                                                   frac))
    # The same through every instance: what each one alone saw move.
    seen = []
    for i in f.instances:
        was = {c.addr: c.backend for c in before if c.via == i.name}
        now = {c.addr: c.backend for c in after if c.via == i.name}
        both = set(was) & set(now)
        mk = sorted(a for a in both if was[a] != now[a])
        check_eq(mk, sorted(a for a in moved if a in both),
                 "addresses that moved as %s alone saw them" % i.name)
        seen.append("%s saw %d move" % (i.name, len(mk)))
    f.stop_instances()
    fig = {"clients": len(addrs), "connections": len(conns), "failures": 0,
           "per_instance_before": dict(inst0), "per_instance_after": dict(inst1),
           "moved": moved, "moved_fraction": frac}
    f.log("case a: clients %d, connections %d (%d before, %d after be4), failures 0"
          % (len(addrs), len(conns), len(before), len(after)))
    f.log("case a: addresses per backend: before %s; after %s"
          % (fmt_counts(collections.Counter(b0.values()), SERVERS[:3]),
             fmt_counts(collections.Counter(b1.values()), SERVERS)))
    f.log("case a: moved %d of %d addresses = %.1f%% (1/(N+1) = 25%%), all to be4, the "
          "same through every instance: %s, and no other (of the addresses each carried "
          "in both rounds)" % (len(moved), len(addrs), 100 * frac, ", ".join(seen)))
    f.log("case a: moved: %s" % " ".join(moved))
    return fig


def traffic(f, what):
    """Long streams and short loops; returns (longs, load) once every
    instance served short connections."""
    longs = f.long_streams(24, 2)
    load = f.load()
    t = time.monotonic()
    ok = wait_until(lambda: all(load.served(i.name, t) >= 10 for i in f.instances), 30, 0.1)
    check(ok, "%s: short connections through every instance" % what, ">= 10 each within 30 s",
          {i.name: load.served(i.name, t) for i in f.instances})
    per = collections.Counter(s.conn.via for s in longs)
    f.log("%s: %d long streams (per instance %s), %d loops of short connections"
          % (what, len(longs), fmt_counts(per, [i.name for i in f.instances]), load.loops))
    return longs, load


def none_failed(what, longs, load):
    failed = [s.conn for s in longs if s.conn.error] + load.failed()
    check(not failed, what + ": connections failed so far", "none",
          "%d: %r" % (len(failed), failed[:10]))


def upgrade_step(f, inst, longs, load):
    """One instance of the rolling upgrade. Returns its figures."""
    what = "case b: %s" % inst.name
    mine = sorted("%s:%d" % (s.conn.addr, s.conn.port) for s in longs
                  if s.conn.via == inst.name)
    t0 = time.monotonic()
    rc, out = inst.ctl("health", "down")
    check(rc == 0, what + ": spliced ctl health down", "exit 0", "%d %s" % (rc, out))
    code, body = inst.http("GET", "/healthz")
    check_eq(code, 503, what + ": GET /healthz after health down (%s)" % body)
    f.net.withdraw(inst.k)
    t_w = time.monotonic()
    rc, out = inst.ctl("wait-empty", "all", "--timeout", "3s")
    wait_rc = rc
    none_failed(what + ", after wait-empty", longs, load)
    if mine:
        check(rc == 1 and re.search(r"\b%d connections? still open" % len(mine), out),
              what + ": spliced ctl wait-empty all --timeout 3s with %d long streams on it"
              % len(mine), "exit 1, '%d connections still open'" % len(mine),
              "%d %s" % (rc, out))
    else:
        check(rc == 0, what + ": spliced ctl wait-empty all", "exit 0", "%d %s" % (rc, out))
    left = sorted(c["client"] for c in inst.connections())
    check_eq(left, mine, what + ": /connections after wait-empty: the long streams ECMP "
             "gave it, and nothing else")
    n, new, took = inst.upgrade()
    check_eq(n, len(mine), what + ": connections the upgrade handed over")
    # What the operator set goes along, as it does over a SIGHUP (and as a
    # server's drain, maint and weight go along): a readiness check must not
    # see the instance ready before `health up`. Judged at the end of the
    # case, so that the rest still runs.
    healthz_new, _ = inst.http("GET", "/healthz")
    syn = f.net.syn(inst.k)
    late = [c for c in load.started_after(t_w) if (c.addr, c.port) in syn]
    check(not late, what + ": connections started after its route was withdrawn that "
          "reached it", "none", late[:10])
    rc, out = inst.ctl("health", "up")
    check(rc == 0, what + ": spliced ctl health up", "exit 0", "%d %s" % (rc, out))
    code, body = inst.http("GET", "/healthz")
    check_eq(code, 200, what + ": GET /healthz after health up (%s)" % body)
    t_up = time.monotonic()
    f.net.restore(inst.k)
    ok = wait_until(lambda: load.served(inst.name, t_up) >= 5, 30, 0.05)
    check(ok, what + ": short connections through it after its route came back",
          ">= 5 within 30 s", load.served(inst.name, t_up))
    none_failed(what + ", its route back", longs, load)
    step = {"instance": inst.name, "long": len(mine), "handed": n, "new_pid": new,
            "handover": took, "withdrawn_s": round(time.monotonic() - t_w, 2),
            "healthz_after_upgrade": healthz_new, "t_upgraded": t_up}
    f.log("%s: health down, route withdrawn, wait-empty: exit %d (%d long streams left), "
          "SIGUSR2: handed %d to pid %d %s, its /healthz %s; health up, route back "
          "%.1f s after its withdrawal; %.1f s in all"
          % (what, wait_rc, len(mine), n, new, took, healthz_new, t_up - t_w,
             time.monotonic() - t0))
    return step


def case_b(f):
    """A rolling upgrade, instance by instance, under traffic."""
    f.start_instances(SERVERS)
    longs, load = traffic(f, "case b")
    steps = [upgrade_step(f, i, longs, load) for i in f.instances]
    t = time.monotonic()
    t_of = {s["instance"]: s["t_upgraded"] for s in steps}
    wait_until(lambda: all(load.served(i.name, t) >= 10 for i in f.instances) and
               all(s.rounds_after(t_of[s.conn.via]) >= 3 for s in longs), 30, 0.1)
    load.stop()
    f.stop_longs()
    shorts = load.conns
    conns = shorts + [s.conn for s in longs]
    f.check_owners(conns)
    bad = [c for c in conns if not c.ok]
    check(not bad, "case b: connections across the rolling upgrade", "none failed",
          "%d failed: %r" % (len(bad), bad[:10]))
    for s in longs:
        check(s.rounds_after(t_of[s.conn.via]) >= 3, "case b: long stream %r after "
              "its instance's upgrade" % s.conn, ">= 3 rounds", s.rounds_after(
                  t_of[s.conn.via]))
    names = [i.name for i in f.instances]
    f.stop_instances()
    per = collections.Counter(c.via for c in shorts)
    rtt = max(s.max_rtt for s in longs)
    ready = {s["instance"]: s["healthz_after_upgrade"] for s in steps}
    addrs = len({c.addr for c in conns})
    f.log("case b: clients %d, connections %d (%d short, %d long; %.1f MiB echoed), "
          "failures 0; short ones per instance %s; longest round trip of a long stream "
          "%.0f ms" % (addrs, len(conns), len(shorts), len(longs),
                       sum(c.n for c in conns) / 1048576.0, fmt_counts(per, names),
                       1000 * rtt))
    check(all(v == 503 for v in ready.values()), "case b: GET /healthz of the new "
          "process after SIGUSR2, before `spliced ctl health up` (the old one was set "
          "down; a SIGHUP keeps that)", "503 on every instance: still down", ready)
    return {"clients": addrs, "connections": len(conns), "short": len(shorts),
            "long": len(longs), "failures": 0, "per_instance": dict(per),
            "steps": [{k: v for k, v in s.items() if k != "t_upgraded"} for s in steps],
            "max_rtt_ms": round(1000 * rtt, 1)}


def speaker(f, inst, interval=0.5, fall=2, timeout=15):
    """What a BGP speaker or kube-proxy does: check /healthz every interval,
    withdraw the route after `fall` failed checks. The withdrawal time."""
    end = time.monotonic() + timeout
    failed = 0
    while time.monotonic() < end:
        code, _ = inst.http("GET", "/healthz", timeout=1.0)
        failed = failed + 1 if code != 200 else 0
        if failed >= fall:
            f.net.withdraw(inst.k)
            return time.monotonic()
        time.sleep(interval)
    raise CaseFailure("%s's /healthz" % inst.name, "%d failed checks within %d s"
                      % (fall, timeout), "it kept answering")


def case_c(f, victim=2):
    """One instance SIGKILLed."""
    f.start_instances(SERVERS)
    v = f.instances[victim - 1]
    longs, load = traffic(f, "case c")
    code, _ = v.http("GET", "/healthz")
    check_eq(code, 200, "case c: %s's /healthz before the kill" % v.name)
    t_kill = time.monotonic()
    v.kill()
    t_w = speaker(f, v)
    f.log("case c: %s SIGKILLed; its route withdrawn %.2f s later (2 failed checks 0.5 s "
          "apart)" % (v.name, t_w - t_kill))
    ok = wait_until(lambda: len(load.started_after(t_w)) >= 100 and
                    time.monotonic() - t_w >= 2, 40, 0.1)
    check(ok, "case c: short connections started after the withdrawal", ">= 100 within 40 s",
          len(load.started_after(t_w)))
    load.stop()
    f.stop_longs()
    shorts = load.conns
    conns = shorts + [s.conn for s in longs]
    owners = f.check_owners(conns)
    failed = [c for c in conns if not c.ok]
    theirs = [c for c in failed if owners[(c.addr, c.port)] != {v.name}]
    check(not theirs, "case c: failed connections", "only ones that reached %s" % v.name,
          "%d that reached another: %r" % (len(theirs), theirs[:10]))
    for s in longs:
        if s.conn.via == v.name:
            check(not s.conn.ok, "case c: long stream %r on the killed instance" % s.conn,
                  "failed", "intact")
    after = load.started_after(t_w)
    bad = [c for c in after if not c.ok or owners[(c.addr, c.port)] == {v.name}]
    check(not bad, "case c: connections started after the withdrawal", "all served by the "
          "others", "%d not: %r" % (len(bad), bad[:10]))
    names = [i.name for i in f.instances]
    per_after = collections.Counter(c.via for c in after)
    for i in f.instances:
        if i is not v:
            check(per_after[i.name] > 0, "case c: connections %s carried after the "
                  "withdrawal" % i.name, "some", fmt_counts(per_after, names))
    v.check_log()
    f.stop_instances()
    per = collections.Counter(next(iter(owners[(c.addr, c.port)])) for c in conns)
    lf = sum(1 for c in failed if c.kind == "long")
    addrs = len({c.addr for c in conns})
    f.log("case c: clients %d, connections %d (%d short, %d long), per instance %s; "
          "failures %d, all on %s (%d long streams, %d short connections before the "
          "withdrawal; the other %d long streams intact); after the withdrawal %d "
          "connections, 0 failures (%s)"
          % (addrs, len(conns), len(shorts), len(longs), fmt_counts(per, names),
             len(failed), v.name, lf, len(failed) - lf, len(longs) - lf, len(after),
             fmt_counts(per_after, names)))
    return {"clients": addrs, "connections": len(conns), "failures": len(failed),
            "failures_long": lf, "failures_short": len(failed) - lf,
            "per_instance": dict(per), "after_withdrawal": len(after),
            "failures_after_withdrawal": 0, "withdrawn_after_s": round(t_w - t_kill, 2)}


CASES = {"a": ("consistency with balance = source", case_a),
         "b": ("a rolling upgrade under traffic", case_b),
         "c": ("an instance killed with SIGKILL", case_c)}


def run_case(case, spliced, mode="auto", nclients=200, tmp=None, log=None, keep=False,
             pin=True):
    """One case in a fleet of its own; its figures. Raises CaseFailure,
    Unavailable."""
    log = log or default_log
    title, fn = CASES[case]
    log("=== case %s: %s" % (case, title))
    t0 = time.monotonic()
    with Fleet(spliced, mode, nclients, tmp, log, keep, pin) as f:
        fig = fn(f)
    fig["seconds"] = round(time.monotonic() - t0, 1)
    log("--- case %s passed in %.1f s" % (case, fig["seconds"]))
    return fig
