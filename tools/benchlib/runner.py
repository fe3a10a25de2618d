"""tools/bench [compare]: spliced, HAProxy and nginx side by side.

For each section (bulk, small, sizes, idle, flows): start the section's
backends once, then for each repetition, each case, each proxy variant: start
the proxy fresh in front of the backends, measure, stop it. Repetitions are
interleaved (repetition 1 of everything, then 2, ...) and the report shows
medians. A failed measurement shows as "failed" in its row and in the
Problems list, and makes the exit status 1.

The sections are classes named Section in tools/benchlib/<name>.py (see
bulk.py for the interface); sizes, idle and flows are used when their files
exist. The opt-in variants (proxies.OPT_IN: the floor) run only in the
sections that list them in Section.extra_variants (small), unless --proxies
names them. A section may keep to some variants (Section.only_variants: sni
runs spliced's splicing variants only), to fewer when --proxies is not given
(Section.default_variants: upgrade runs spliced-auto alone unless --proxies
names others) and order its cases per repetition (Section.order(rep, cases):
sni alternates which of a pair runs first). The opt-in sections
(OPT_IN_SECTIONS: sni, upgrade) run when --sections names them, and in --smoke
runs.
"""

import argparse
import datetime
import importlib
import json
import os
import shlex
import shutil
import signal
import sys
import traceback
import time
import types

from . import proxies, report
from .common import (RunError, apt_install, command_output, cpu_model, loadavg, make_workdir,
                     note, tail, which)

SECTIONS = ["bulk", "small", "sizes", "idle", "flows", "sni", "upgrade"]
# Left out of a full run unless --sections names them: sni and upgrade each
# answer one question about spliced alone (what routing by SNI costs; how
# long a binary upgrade pauses connections) and would add minutes to every
# comparison. --smoke runs them too: it checks the tool.
OPT_IN_SECTIONS = ["sni", "upgrade"]
HERE = os.path.dirname(os.path.abspath(__file__))

# Debian packages for what the full comparison uses (smoke runs install
# nothing).
PACKAGES = {
    "iperf3": "iperf3",
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "stream": "libnginx-mod-stream",
    "wrk": "wrk",
    "gnuplot": "gnuplot-nox",
}


class Run:
    """What the report is made of (see report.py)."""

    def __init__(self, args, argv):
        self.args = args
        self.command = "tools/bench " + " ".join(shlex.quote(a) for a in argv)
        self.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.cpu_model = cpu_model()
        self.loadavg = [loadavg(), None]      # at the start, at the end
        self.versions = []
        self.sections = []          # Section objects that ran
        self.cases = {}             # section name -> [case]
        self.variants = []          # variants that ran, in VARIANTS order
        self.variants_in = {}       # section -> the variants it ran (see section_variants)
        self.named = False          # whether --proxies chose the variants
        self.results = {}           # section -> {(case, variant): [metrics]}
        self.failed = {}            # section -> {(case, variant): count}
        self.raw = []               # every measurement, for results.json
        self.problems, self.warnings, self.skipped = [], [], []
        self.timings = []           # (section name, seconds)


def load_sections(names):
    """{name: module or None}, and the import errors {name: text}."""
    mods, errors = {}, {}
    for name in names:
        path = os.path.join(HERE, f"{name}.py")
        if not os.path.exists(path):
            mods[name] = None
            continue
        try:
            mods[name] = importlib.import_module(f".{name}", __package__)
        except Exception:
            mods[name] = None
            errors[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
    return mods, errors


def _list(valid, what, aliases=None):
    def parse(text):
        out = []
        for v in (x.strip() for x in text.split(",")):
            if not v:
                continue
            if aliases and v in aliases:
                out += [a for a in aliases[v] if a not in out]
            elif v in valid:
                if v not in out:
                    out.append(v)
            else:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} '{v}' (one of: {', '.join(valid)}"
                    + (f"; or {', '.join(aliases)}" if aliases else "") + ")")
        if not out:
            raise argparse.ArgumentTypeError(f"no {what} given")
        return out
    return parse


def _keyval(text):
    k, sep, v = text.partition("=")
    if not sep or not k.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    return k.strip(), v.strip()


def build_parser(mods):
    families = {f: [v for v in proxies.VARIANTS if proxies.family(v) == f]
                for f in ("spliced", "haproxy", "nginx")}
    p = argparse.ArgumentParser(
        prog="tools/bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="tools/bench sweep --help: spliced's own pipe_size/buffer_size sweep.")
    p.add_argument("--sections", type=_list(SECTIONS, "section"), default=None,
                   help="comma-separated subset of " + ",".join(SECTIONS) + " (default: all "
                   "but " + ", ".join(OPT_IN_SECTIONS) + "; --smoke: all)")
    p.add_argument("--proxies", type=_list(proxies.VARIANTS, "proxy", families),
                   help="comma-separated subset of " + ",".join(proxies.VARIANTS) +
                   "; 'spliced', 'haproxy', 'nginx' name a family (default: all; "
                   + ", ".join(proxies.OPT_IN) + " only in the sections that ask for it, "
                   "unless named here)")
    p.add_argument("--repeat", type=int, default=3,
                   help="repetitions, interleaved; the tables show medians (default 3)")
    p.add_argument("--seconds", type=int, default=10,
                   help="length of each timed load, iperf3 -t / wrk -d (default 10)")
    p.add_argument("--out", metavar="DIR",
                   help="also write DIR/README.md (the report), charts (PNG) and results.json")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (configs, logs) after a clean run too")
    p.add_argument("--spliced", default=proxies.DEFAULT_SPLICED,
                   help="the spliced binary (default: $SPLICED, else build/spliced)")
    p.add_argument("--spliced-config", type=_keyval, action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a [global] key for every spliced variant, e.g. access_log=off "
                   "(repeatable); the report says so")
    p.add_argument("--scrape-metrics", type=float, metavar="SECONDS",
                   help="give every spliced variant an admin endpoint and GET /metrics "
                   "at this interval while it runs (the cost of being watched); the "
                   "report says so")
    p.add_argument("--smoke", action="store_true",
                   help="every section with tiny sizes and 1 s loads, once: does the tool "
                   "work? Installs nothing; exits 77 when iperf3 is missing")
    for name, mod in mods.items():
        if mod is not None and hasattr(mod.Section, "add_arguments"):
            try:
                mod.Section.add_arguments(p)
            except argparse.ArgumentError as e:
                note(f"section {name}: its options clash: {e}")
    return p


def used_variants(args, mods, variants):
    """Of variants, those some requested section may run (a section with
    only_variants keeps to those)."""
    out = set()
    for name in args.sections:
        only = getattr(getattr(mods.get(name), "Section", None), "only_variants", None)
        out |= {v for v in variants if only is None or v in only}
    return [v for v in variants if v in out]


def ensure_packages(args, mods):
    """Full runs: apt-get install what the requested sections and proxies
    need and is missing."""
    need = []
    fams = {proxies.family(v) for v in used_variants(args, mods, args.proxies)}
    if "bulk" in args.sections or "sweep" in args.sections:
        need.append("iperf3")
    if "haproxy" in fams:
        need.append("haproxy")
    if "nginx" in fams or "small" in args.sections:
        need.append("nginx")
    if "nginx" in fams:
        need.append("stream")
    if "small" in args.sections:
        need.append("wrk")
    if args.out:
        need.append("gnuplot")
    missing = []
    for what in need:
        if what == "stream":
            if not os.path.exists(proxies.NGINX_STREAM_MODULE):
                missing.append(PACKAGES[what])
        elif not which(what):
            missing.append(PACKAGES[what])
    if missing:
        note("missing: " + ", ".join(missing))
        if not apt_install_no_start(missing):
            note("apt-get failed: the parts that need " + ", ".join(missing) + " are skipped")


def apt_install_no_start(packages):
    """apt-get install without letting the packages' scripts start services
    (nginx and haproxy would start daemons on ports 80/...): a policy-rc.d
    that says no, for the install only, if there is none already."""
    policy = "/usr/sbin/policy-rc.d"
    made = False
    if os.geteuid() == 0 and not os.path.exists(policy):
        try:
            with open(policy, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(policy, 0o755)
            made = True
        except OSError:
            pass
    try:
        return apt_install(packages)
    finally:
        if made:
            try:
                os.unlink(policy)
            except OSError:
                pass


def versions(args, variants):
    out = []
    text = command_output([args.spliced, "--version"]).strip().splitlines()
    out.append(text[0] if text else "spliced (--version failed)")
    fams = {proxies.family(v) for v in variants}
    if "haproxy" in fams:
        t = command_output(["haproxy", "-v"]).strip().splitlines()
        if t:
            out.append(t[0].split(" - ")[0])
    if "nginx" in fams or "small" in args.sections:
        t = command_output(["nginx", "-v"]).strip()
        if t:
            out.append(t.replace("nginx version: ", ""))
    for prog, cmd in (("iperf3", ["iperf3", "--version"]), ("wrk", ["wrk", "--version"]),
                      ("gnuplot", ["gnuplot", "--version"])):
        if which(prog):
            t = command_output(cmd).strip().splitlines()
            if t:
                out.append(t[0].split(" Copyright")[0].split(" (")[0].strip())
    return out


def _summary(section, m):
    parts = []
    for key, header, digits, *_ in section.columns[:3]:
        if key in m and isinstance(m[key], (int, float)):
            parts.append(f"{report.fmt(m[key], digits)} {header}")
    if "cs_per_s" in m:
        parts.append(f"{m['cs_per_s']:.0f} cs/s")
    return ", ".join(parts)


def _logged(proxy):
    """spliced's lines at warn and above (log.h: '<time> warn: ...')."""
    if proxies.family(proxy.variant) != "spliced":
        return []
    import re
    return [line.strip() for line in tail(proxy.log, 2000).splitlines()
            if re.search(r"\b(warn|error|fatal):", line)]


def section_variants(run, section):
    """The variants a section runs: all of the run's, but an opt-in one
    (the floor) only when the section asks for it or --proxies named it,
    and only those in the section's only_variants when it has that; without
    --proxies, only those in its default_variants when it has that (upgrade:
    spliced-auto)."""
    extra = set(getattr(section, "extra_variants", None) or ())
    only = getattr(section, "only_variants", None)
    default = None if run.named else getattr(section, "default_variants", None)
    return [v for v in run.variants
            if (v not in proxies.OPT_IN or v in extra or run.named) and
            (only is None or v in only) and (default is None or v in default)]


def run_section(run, ctx, name, section):
    args = run.args
    res = run.results.setdefault(name, {})
    failed = run.failed.setdefault(name, {})
    cases = section.cases()
    run.cases[name] = cases
    variants = run.variants_in[name] = section_variants(run, section)
    total = args.repeat * len(cases) * len(variants)
    n = 0

    def fail(case, v, msg, logpath=None):
        failed[(case, v)] = failed.get((case, v), 0) + 1
        run.problems.append(f"{name} / {case} / {v}: {msg}" +
                            (f" (log: {logpath})" if logpath else ""))
        note(f"  FAILED: {msg}")
        if logpath:
            t = tail(logpath)
            if t.strip():
                note(f"  {logpath}:\n" + t.rstrip())

    try:
        backends = section.start_backends()
    except Exception as e:
        msg = str(e) if isinstance(e, RunError) else traceback.format_exc(limit=4)
        run.problems.append(f"{name}: the backends did not start: {msg.strip()}")
        note(f"{name}: backends did not start: {msg.strip()}")
        for case in cases:
            for v in variants:
                failed[(case, v)] = args.repeat
        _stop_backends(run, name, section)
        return
    try:
        order = getattr(section, "order", None)
        for rep in range(args.repeat):
            for case in (order(rep, cases) if order else cases):
                for v in variants:
                    n += 1
                    label = f"[{name} {n}/{total}] {case} / {v}"
                    proxy = None
                    try:
                        opts = dict(ctx.opts)
                        opts.update(section.proxy_opts(case) or {})
                        if ctx.opts.get("extra_config") or opts.get("extra_config"):
                            ec = dict(ctx.opts.get("extra_config") or {})
                            ec.update(opts.get("extra_config") or {})
                            opts["extra_config"] = ec
                        proxy = proxies.start_proxy(v, backends, ctx.workdir, opts)
                        m = section.measure(proxy, case)
                        if not proxy.alive():
                            raise RunError(f"{v} exited (status {proxy.proc.returncode}) "
                                           "during the measurement", proxy.log)
                    except RunError as e:
                        note(label)
                        fail(case, v, str(e), e.logpath)
                        continue
                    except KeyboardInterrupt:
                        raise
                    except Exception:
                        note(label)
                        tb = traceback.format_exc()
                        note(tb.rstrip())
                        fail(case, v, "the section raised " + tb.strip().splitlines()[-1],
                             proxy.log if proxy else None)
                        continue
                    finally:
                        if proxy is not None:
                            rc = proxy.stop()
                            if proxy.killed:
                                run.problems.append(f"{name} / {case} / {v}: did not exit "
                                                    "within 10 s of SIGTERM (killed)")
                            elif proxies.family(v) == "spliced" and rc not in (0, None):
                                run.problems.append(f"{name} / {case} / {v}: spliced exited "
                                                    f"with status {rc} after SIGTERM")
                            for line in _logged(proxy):
                                w = f"{v} logged: `{line}`"
                                if not any(line.split(" ", 1)[-1] in x for x in run.warnings):
                                    run.warnings.append(w)
                    for w in m.pop("warnings", None) or []:
                        run.warnings.append(f"{name} / {case} / {v}: {w}")
                    res.setdefault((case, v), []).append(m)
                    run.raw.append({"section": name, "case": case, "variant": v,
                                    "rep": rep + 1, "metrics": m})
                    note(f"{label}: {_summary(section, m)}")
    finally:
        _stop_backends(run, name, section)


def _stop_backends(run, name, section):
    try:
        section.stop_backends()
    except Exception:
        run.problems.append(f"{name}: stop_backends raised "
                            + traceback.format_exc().strip().splitlines()[-1])


def main(argv):
    names = list(SECTIONS)
    mods, import_errors = load_sections(names)
    parser = build_parser(mods)
    args = parser.parse_args(argv)
    named = args.proxies is not None
    if not named:
        args.proxies = list(proxies.VARIANTS)
    if args.smoke:
        args.seconds, args.repeat = 1, 1
    if args.sections is None:
        args.sections = [s for s in SECTIONS if args.smoke or s not in OPT_IN_SECTIONS]
    for opt in ("seconds", "repeat"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt} must be at least 1")
    # The proxies run in a work directory: a relative path would not reach.
    args.spliced = os.path.abspath(args.spliced)
    if not os.access(args.spliced, os.X_OK):
        root = os.path.dirname(os.path.dirname(HERE))
        note(f"{args.spliced} is not an executable; build first:\n"
             f"  cmake -S {root} -B {root}/build -G Ninja && ninja -C {root}/build")
        return 1
    if args.smoke:
        if not which("iperf3"):
            note("iperf3 is not installed: skipping the smoke run (exit 77)")
            return 77
    else:
        ensure_packages(args, mods)

    # SIGTERM (ctest's timeout, a kill) cleans up like Ctrl-C.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    run = Run(args, argv)
    run.named = named
    for v in sorted(args.proxies, key=proxies.VARIANTS.index):
        ok, why = proxies.available(v, {"spliced": args.spliced})
        if ok:
            run.variants.append(v)
        else:
            run.skipped.append(f"proxy `{v}`: {why}")
            note(f"skipping {v}: {why}")
    if not run.variants:
        note("no proxy variant can run")
        print(report.render(run))
        return 1
    workdir = make_workdir()
    opts = {"spliced": args.spliced}
    if args.spliced_config:
        opts["extra_config"] = dict(args.spliced_config)
    if args.scrape_metrics:
        opts["scrape_metrics"] = args.scrape_metrics
    ctx = types.SimpleNamespace(args=args, workdir=workdir, opts=opts, variants=run.variants,
                                smoke=args.smoke)
    run.versions = versions(args, used_variants(args, mods, run.variants))
    if args.scrape_metrics:
        run.versions.append(f"spliced scraped: GET /metrics every {args.scrape_metrics:g} s "
                            "(--scrape-metrics)")
    if args.spliced_config:
        run.versions.append("spliced [global] set by --spliced-config: " +
                            ", ".join(f"{k} = {v}" for k, v in args.spliced_config))
    interrupted = False
    try:
        for name in args.sections:
            mod = mods.get(name)
            if mod is None:
                if name in import_errors:
                    run.problems.append(f"section {name}: import failed: {import_errors[name]}")
                    note(f"section {name}: import failed: {import_errors[name]}")
                else:
                    run.skipped.append(f"section {name}: tools/benchlib/{name}.py does not "
                                       "exist yet")
                    note(f"section {name}: not written yet (tools/benchlib/{name}.py): skipped")
                continue
            avail = getattr(mod.Section, "available", None)
            if avail is not None:
                ok, why = avail()
                if not ok:
                    run.skipped.append(f"section {name}: {why}")
                    note(f"section {name}: skipped: {why}")
                    continue
            try:
                section = mod.Section(ctx)
            except Exception:
                run.problems.append(f"section {name}: "
                                    + traceback.format_exc().strip().splitlines()[-1])
                continue
            if not section_variants(run, section):
                only = ", ".join(getattr(section, "only_variants", None) or ())
                run.skipped.append(f"section {name}: none of its proxies ({only}) is in "
                                   "this run")
                note(f"section {name}: skipped: none of its proxies ({only}) is in this run")
                continue
            run.sections.append(section)
            note(f"section {name}: {section.title}")
            t0 = time.monotonic()
            try:
                run_section(run, ctx, name, section)
            finally:
                run.timings.append((name, time.monotonic() - t0))
                note(f"section {name}: {run.timings[-1][1]:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        run.problems.append("interrupted")
        note("interrupted: stopping")

    run.loadavg[1] = loadavg()
    charts = {}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        charts = report.draw_charts(run, args.out)
    text = report.render(run, charts)
    print(text, end="")
    if args.out:
        with open(os.path.join(args.out, "README.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"command": run.command, "date": run.date, "versions": run.versions,
                       "variants": run.variants, "variants_in": run.variants_in,
                       "cases": run.cases, "measurements": run.raw,
                       "problems": run.problems, "skipped": run.skipped},
                      f, indent=1, default=str)
        if not args.keep:
            shutil.rmtree(os.path.join(args.out, ".data"), ignore_errors=True)
        note(f"report written to {os.path.join(args.out, 'README.md')}")
    if run.problems:
        note(f"{len(run.problems)} problem(s); work directory kept: {workdir}")
        return 130 if interrupted else 1
    if args.keep:
        note(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
