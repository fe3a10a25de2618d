"""tools/bench sweep: relay a bulk iperf3 stream through spliced alone, in
each splice mode, sweeping pipe_size and buffer_size (the table the
top-level README quotes to justify the defaults).

For every configuration (mode, pipe_size, buffer_size) it starts a fresh spliced
in front of an iperf3 server, runs one iperf3 client through it, and measures:

  Gbit/s        what iperf3 received (its JSON, end.sum_received)
  proxy CPU s   utime+stime of the spliced process, all threads, read from
                /proc/PID/stat just before the client starts and just after it
                ends, in SC_CLK_TCK units (so +-0.01 s)
  CPU s per GB  proxy CPU s / (bytes received / 10^9)

Everything runs on 127.0.0.1, one proxy at a time. The table goes to stdout
(markdown), progress and problems to stderr; the exit status is 0 only when
every run worked. Machines here are shared and noisy: compare the rows of one
run with each other (the "vs never" column), not numbers across runs.

  tools/bench sweep                              never, always, auto, 10 s each
  tools/bench sweep --pipe-size 64k,256k,1m      sweep pipe sizes (always, auto)
  tools/bench sweep --buffer-size 16k,64k        sweep buffer sizes (never, auto)
  tools/bench sweep --repeat 3 --reverse -P 2    medians of 3; server sends; 2 streams
  tools/bench sweep --smoke                      each mode for 1 s: does it work?
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from .bulk import IperfServer as Iperf3Server
from .common import RunError, cpu_model, free_port, note, tail, wait_listening

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODES = ("never", "always", "auto")
DEFAULT = "default"
SIZE_RE = re.compile(r"^(default|[0-9]+[kmg]?)$")


def size_list(text):
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    for v in values:
        if not SIZE_RE.match(v):
            raise argparse.ArgumentTypeError(
                f"'{v}' is not a size (4096, 64k, 1m) or 'default'")
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def mode_list(text):
    values = [v.strip() for v in text.split(",") if v.strip()]
    for v in values:
        if v not in MODES:
            raise argparse.ArgumentTypeError(f"'{v}' is not one of {', '.join(MODES)}")
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="tools/bench sweep", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10, help="iperf3 -t per run (default 10)")
    p.add_argument("--parallel", "-P", type=int, default=1, help="iperf3 -P streams (default 1)")
    p.add_argument("--reverse", "-R", action="store_true",
                   help="iperf3 -R: the server (backend) sends, the client receives")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per configuration, interleaved; the table shows medians")
    p.add_argument("--modes", type=mode_list, default=list(MODES),
                   help="comma-separated subset of never,always,auto (default: all)")
    p.add_argument("--pipe-size", type=size_list, default=[DEFAULT],
                   help="comma-separated pipe_size values, e.g. 64k,256k,1m ('default': unset)")
    p.add_argument("--buffer-size", type=size_list, default=[DEFAULT],
                   help="comma-separated buffer_size values, e.g. 16k,64k ('default': unset)")
    p.add_argument("--all-combinations", action="store_true",
                   help="also sweep pipe_size for never and buffer_size for always")
    p.add_argument("--workers", type=int, help="spliced workers (default: spliced's own)")
    p.add_argument("--spliced", default=os.environ.get("SPLICED", os.path.join(ROOT, "build", "spliced")),
                   help="the spliced binary (default: $SPLICED, else build/spliced)")
    p.add_argument("--smoke", action="store_true",
                   help="each configuration once for 1 s (checks that the tool works); exits 77 when iperf3 is missing (installs nothing)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    a = p.parse_args(argv)
    if a.smoke:
        a.seconds, a.repeat = 1, 1
    for name in ("seconds", "parallel", "repeat"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    return a


def ensure_iperf3():
    if shutil.which("iperf3"):
        return
    note("iperf3 is not installed: installing the Debian package iperf3 with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + ["apt-get", "install", "-y", "--no-install-recommends", "iperf3"]
    if subprocess.call(cmd, env=env) != 0:
        subprocess.call(sudo + ["apt-get", "update"], env=env)
        subprocess.call(cmd, env=env)
    if not shutil.which("iperf3"):
        sys.exit("bench: iperf3 is still missing; install it (apt-get install iperf3) and retry")


def cpu_seconds(pid):
    """utime+stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spliced_command(args, cfg, port, backend_port, workdir, tag):
    mode, pipe, buf = cfg
    if pipe in (DEFAULT, None) and buf in (DEFAULT, None):
        cmd = [args.spliced, "--listen", f"127.0.0.1:{port}",
               "--backend", f"127.0.0.1:{backend_port}", "--splice", mode]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        return cmd
    path = os.path.join(workdir, f"spliced-{tag}.ini")
    lines = ["[global]", f"splice = {mode}"]
    if pipe not in (DEFAULT, None):
        lines.append(f"pipe_size = {pipe}")
    if buf not in (DEFAULT, None):
        lines.append(f"buffer_size = {buf}")
    if args.workers:
        lines.append(f"workers = {args.workers}")
    lines += ["", "[listener bench]", f"bind = 127.0.0.1:{port}", "backend = iperf3",
              "", "[backend iperf3]", f"server = iperf3 127.0.0.1:{backend_port}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return [args.spliced, "-c", path]


def run_one(args, cfg, server, workdir, tag):
    """One spliced, one iperf3 client: returns the measurements and any
    complaints (spliced's warnings, an unclean exit)."""
    port = free_port()
    cmd = spliced_command(args, cfg, port, server.port, workdir, tag)
    logpath = os.path.join(workdir, f"spliced-{tag}.log")
    complaints = []
    with open(logpath, "w") as log:
        proxy = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    try:
        wait_listening(proxy, port, "spliced", logpath)
        client = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(args.seconds),
                  "-P", str(args.parallel), "-J"] + (["-R"] if args.reverse else [])
        cpu0, t0 = cpu_seconds(proxy.pid), time.monotonic()
        try:
            res = subprocess.run(client, capture_output=True, text=True,
                                 timeout=args.seconds + 30, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RunError(f"iperf3 -c did not finish within {args.seconds + 30} s", logpath)
        cpu1, t1 = cpu_seconds(proxy.pid), time.monotonic()
        try:
            report = json.loads(res.stdout)
        except ValueError:
            raise RunError(f"iperf3 -c exited {res.returncode} without a JSON report: "
                           f"{(res.stderr or res.stdout).strip()[:300]}", logpath)
        if report.get("error"):
            raise RunError(f"iperf3 -c: {report['error']}", logpath)
        received = report["end"]["sum_received"]
        nbytes = received["bytes"]
        if nbytes <= 0:
            raise RunError("iperf3 received no bytes through spliced", logpath)
        if proxy.poll() is not None:
            raise RunError(f"spliced exited with status {proxy.returncode} during the run", logpath)
    finally:
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                complaints.append("spliced did not exit within 10 s of SIGTERM (killed)")
                proxy.kill()
                proxy.wait()
    if proxy.returncode != 0 and not complaints:
        complaints.append(f"spliced exited with status {proxy.returncode} after SIGTERM")
    # Lines spliced logged at warn or above (log.h: "<time> warn: ..."):
    # shown, not counted as failures.
    logged = [line.strip() for line in tail(logpath, 1000).splitlines()
              if re.search(r"\b(warn|error|fatal):", line)]
    cpu = cpu1 - cpu0
    spliced_share, granted = path_taken(logpath)
    return {
        "gbps": received["bits_per_second"] / 1e9,
        "bytes": nbytes,
        "cpu": cpu,
        "cpu_per_gb": cpu / (nbytes / 1e9),
        "wall": t1 - t0,
        "complaints": complaints,
        "logged": logged,
        "spliced_share": spliced_share,
        "granted": granted,
        "log": logpath,
    }


def human(n):
    for shift, unit in ((30, "g"), (20, "m"), (10, "k")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def path_taken(logpath):
    """From spliced's log: the share of relayed bytes that were spliced (its
    access lines: up_splice=, up_copy=, down_splice=, down_copy=) and the pipe
    size the kernel granted ("pipes: N bytes each (asked M)"). None where the
    log does not say."""
    try:
        with open(logpath, errors="replace") as f:
            text = f.read()
    except OSError:
        return None, None
    moved = {"splice": 0, "copy": 0}
    for m in re.finditer(r"\b(?:up|down)_(splice|copy)=(\d+)", text):
        moved[m.group(1)] += int(m.group(2))
    total = moved["splice"] + moved["copy"]
    m = re.search(r"pipes: (\d+) bytes each \(asked (\d+)\)", text)
    return (moved["splice"] / total if total else None), (int(m.group(1)) if m else None)


def plan(args):
    """The configurations, in table order. never copies and so ignores
    pipe_size; always splices from the first byte and so ignores buffer_size
    (unless --all-combinations)."""
    out = []
    for mode in args.modes:
        pipes = args.pipe_size if (mode != "never" or args.all_combinations) else [None]
        bufs = args.buffer_size if (mode != "always" or args.all_combinations) else [None]
        out += [(mode, p, b) for p in pipes for b in bufs]
    return out


def version_line(args):
    try:
        out = subprocess.run([args.spliced, "--version"], capture_output=True, text=True,
                             timeout=5)
        spliced = (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        spliced = "spliced (--version failed)"
    try:
        out = subprocess.run(["iperf3", "--version"], capture_output=True, text=True, timeout=5)
        iperf = out.stdout.split("(")[0].strip()
    except (OSError, subprocess.SubprocessError):
        iperf = "iperf3"
    return spliced, iperf


def fmt(x, digits):
    return f"{x:.{digits}f}"


def table(args, cfgs, results):
    spliced, iperf = version_line(args)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    direction = "backend to client (-R)" if args.reverse else "client to backend"
    lines = [
        "### spliced relay benchmark",
        "",
        f"- date: {now}; kernel: {platform.system()} {platform.release()} {platform.machine()}; "
        f"CPUs: {os.cpu_count()} ({cpu_model()})",
        f"- {spliced}; {iperf}; {args.seconds} s per run, {args.parallel} stream(s) "
        f"{direction}, {args.repeat} run(s) per row" + (" (medians)" if args.repeat > 1 else ""),
        "",
        "| mode | pipe_size | buffer_size | Gbit/s | proxy CPU s | CPU s per GB | CPU/GB vs never | spliced |",
        "|------|----------:|------------:|-------:|------------:|-------------:|----------------:|--------:|",
    ]
    med = {}
    for cfg in cfgs:
        runs = results.get(cfg, [])
        if runs:
            med[cfg] = {k: statistics.median(r[k] for r in runs) for k in ("gbps", "cpu", "cpu_per_gb")}
    base = next((med[c]["cpu_per_gb"] for c in cfgs
                 if c[0] == "never" and c in med and c[2] in (DEFAULT, None)), None)
    if base is None:
        base = next((med[c]["cpu_per_gb"] for c in cfgs if c[0] == "never" and c in med), None)
    for cfg in cfgs:
        mode, pipe, buf = cfg
        cells = [mode, pipe or "-", buf or "-"]
        if cfg not in med:
            cells += ["failed", "", "", "", ""]
        else:
            m, runs = med[cfg], results[cfg]
            # What the kernel granted, where it differs from what was asked.
            granted = runs[-1]["granted"]
            if pipe == DEFAULT and granted:
                cells[1] = f"default ({human(granted)})"
            elif pipe and granted and human(granted) != pipe:
                cells[1] = f"{pipe} (got {human(granted)})"
            g = fmt(m["gbps"], 2)
            if len(runs) > 1:
                lo, hi = min(r["gbps"] for r in runs), max(r["gbps"] for r in runs)
                g += f" ({fmt(lo, 1)}-{fmt(hi, 1)})"
            ratio = fmt(m["cpu_per_gb"] / base, 2) if base else "-"
            shares = [r["spliced_share"] for r in runs if r["spliced_share"] is not None]
            share = f"{100 * statistics.median(shares):.1f}%" if shares else "?"
            cells += [g, fmt(m["cpu"], 2), fmt(m["cpu_per_gb"], 3), ratio, share]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "GB = 10^9 bytes received by iperf3. proxy CPU s: utime+stime of spliced (all threads) "
        f"over the transfer, in 1/{os.sysconf('SC_CLK_TCK')} s ticks. "
        "'default': the key left unset (spliced's default; in brackets the pipe size the kernel "
        "granted); '-': the mode does not use it. spliced: the share of the relayed bytes that "
        "were spliced, from spliced's access log. "
        "On a shared, noisy machine compare rows of one run (the ratio column), "
        "not absolute numbers across runs.",
    ]
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    if not os.access(args.spliced, os.X_OK):
        sys.exit(f"bench: {args.spliced} is not an executable; build first:\n"
                 f"  cmake -S {ROOT} -B {ROOT}/build -G Ninja && ninja -C {ROOT}/build")
    if args.smoke and not shutil.which("iperf3"):
        note("iperf3 is not installed: skipping the smoke run (exit 77)")
        return 77
    ensure_iperf3()
    workdir = tempfile.mkdtemp(prefix="spliced-bench-")
    cfgs = plan(args)
    results, failures, logged = {}, [], []
    server = Iperf3Server(workdir)
    total, n = len(cfgs) * args.repeat, 0
    try:
        server.start()
        for rep in range(args.repeat):
            for cfg in cfgs:
                n += 1
                mode, pipe, buf = cfg
                label = f"{mode} pipe_size={pipe or '-'} buffer_size={buf or '-'}"
                tag = f"{n:03d}-{mode}"
                try:
                    r = run_one(args, cfg, server, workdir, tag)
                except RunError as e:
                    failures.append(f"{label}: {e}")
                    note(f"[{n}/{total}] {label}: FAILED: {e}")
                    if e.logpath:
                        note(f"  log {e.logpath}:\n" + tail(e.logpath))
                    server.start()      # a failed test can leave iperf3 -s stuck
                    continue
                results.setdefault(cfg, []).append(r)
                note(f"[{n}/{total}] {label}: {r['gbps']:.2f} Gbit/s, "
                     f"{r['cpu']:.2f} CPU s, {r['cpu_per_gb']:.3f} CPU s/GB")
                for c in r["complaints"]:
                    failures.append(f"{label}: {c}")
                    note(f"  {c}")
                for line in r["logged"]:
                    if line not in logged:
                        logged.append(line)
                        note(f"  spliced logged: {line}")
    except KeyboardInterrupt:
        failures.append("interrupted")
    except RunError as e:
        failures.append(str(e))
        note(f"FAILED: {e}")
    finally:
        server.stop()
    print(table(args, cfgs, results))
    if logged:
        print("\nspliced logged (warn and above):\n" +
              "\n".join(f"- `{line}`" for line in logged[:20]))
    if failures:
        print("\nProblems:\n" + "\n".join(f"- {f}" for f in failures))
        note(f"{len(failures)} problem(s); logs kept in {workdir}")
        return 1
    if args.keep:
        note(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
