"""The comparison's report: markdown tables and gnuplot charts.

render(run) -> str                      the markdown report
draw_charts(run, outdir) -> {section: [(file, title)]}   PNGs via gnuplot

`run` is runner.Run: .sections (Section objects that ran), .results
{section name: {(case, variant): [metrics, ...]}} (one dict per successful
repetition), .failed {section name: {(case, variant): n failed}}, .variants,
.args, plus the header facts and the lists of problems, warnings and skips.

Tables: one per section, a row per (case, variant), cells are the median
over the repetitions. Columns: the section's `columns`, then the generic ones
the metrics carry (CPU s, user s, sys s, cs/s from common.ProcWindow). Cells
of the section's `ratio_keys` add, in brackets, the ratio to the
haproxy-default row and to the haproxy-tuned row of the same case (each
median over median), when those rows exist. A section with a `floor_key`
(small: CPU µs/req) gets an "x floor" column after that key's, when the
floor variant ran in it: each row's median over the floor row's, same case.
The rows are the variants that ran in the section (run.variants_in).

Chart specs: Section.charts() returns a list of dicts (optional; without it
each ratio key gets a bar chart):

  file     PNG name, written under --out (e.g. "bulk-gbps.png")
  title    chart title
  kind     "bars":  x = the section's cases, one bar per variant (colour per
                    variant, the same in every chart)
           "lines": x = a number per case (spec "x": {case: number}), one line
                    per variant
  metric   the metric key plotted (medians)
  ylabel   y axis label
  cases    optional: only these cases (in this order); default all
  x        lines only: {case: number}; cases without an x are left out
  xlabel   optional x axis label
  logx     optional bool (lines: log scale x); logy likewise
  xtics    optional {number: label} for the x axis (lines), e.g. {1024: "1k"}
  rotate   optional (bars): the case labels turned by this many degrees,
           for long ones
"""

import os
import platform
import statistics
import subprocess

from .common import command_output, note, which

REFS = [("haproxy-default", "hd"), ("haproxy-tuned", "ht")]
FLOOR = "floor"

# (key, header, digits): shown after a section's own columns when its
# metrics carry them.
GENERIC = [
    ("cpu_s", "CPU s", 2),
    ("user_s", "user s", 2),
    ("sys_s", "sys s", 2),
    ("cs_per_s", "cs/s", 0),
]

COLOURS = {
    "spliced-never": "#6baed6",
    "spliced-always": "#2171b5",
    "spliced-auto": "#08306b",
    "haproxy-default": "#fdae6b",
    "haproxy-splice-auto": "#f16913",
    "haproxy-splice": "#d94801",
    "haproxy-tuned": "#7f2704",
    "nginx-stream": "#41ab5d",
    "floor": "#969696",
}


def medians(runs):
    """{key: median} over the numeric metrics of the runs."""
    keys = {}
    for r in runs:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in keys.items()}


def fmt(x, digits):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}".replace(",", " ") if abs(x) >= 10000 else f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio_text(v, ref):
    if v is None or not ref:
        return "-"
    return f"{v / ref:.2f}"


def variants_of(run, section):
    """The rows of a section: the variants that ran in it (runner's
    variants_in), in table order."""
    return (getattr(run, "variants_in", None) or {}).get(section.name, run.variants)


def floor_ratios(section, meds):
    """Adds "x_floor" to the medians of every row of a case where the floor
    ran: the row's floor_key over the floor's."""
    key = getattr(section, "floor_key", None)
    for (case, v), m in meds.items():
        f = meds.get((case, FLOOR))
        if key and f and f.get(key) and m.get(key) is not None:
            m["x_floor"] = m[key] / f[key]


def section_columns(section, meds):
    cols = []
    for k, h, d, *_ in section.columns:
        cols.append((k, h, d))
        if k == getattr(section, "floor_key", None) and \
                any("x_floor" in m for m in meds.values()):
            cols.append(("x_floor", "x floor", 2))
    have = set(k for k, *_ in cols)
    for key, header, digits in GENERIC:
        if key not in have and any(key in m for m in meds.values()):
            cols.append((key, header, digits))
    return cols


def section_table(run, section):
    res = run.results.get(section.name, {})
    failed = run.failed.get(section.name, {})
    meds = {cv: medians(runs) for cv, runs in res.items() if runs}
    floor_ratios(section, meds)
    cols = section_columns(section, meds)
    ratio_keys = set(getattr(section, "ratio_keys", []) or [])
    cases = run.cases.get(section.name) or []
    variants = variants_of(run, section)
    refs = [(v, short) for v, short in REFS if v in variants]
    intro = []
    if ratio_keys and refs:
        intro.append("Cells of " + ", ".join(h for k, h, d in cols if k in ratio_keys) +
                     ": median (ratio to " +
                     " / ".join(f"`{v}`" for v, _ in refs) +
                     ", same case, same run; " + _better_text(section, ratio_keys) + ").")
    if any(k == "x_floor" for k, _, _ in cols):
        head = dict((k, h) for k, h, _ in cols)[section.floor_key]
        intro.append(f"x floor: the row's {head} over `{FLOOR}`'s (same case, same run): how "
                     "far above the least a userspace relay spends.")
    lines = [" ".join(intro), ""] if intro else []
    lines.append("| case | proxy | " + " | ".join(h for _, h, _ in cols) + " |")
    lines.append("|---|---|" + "|".join("---:" for _ in cols) + "|")
    nrep = run.args.repeat
    for case in cases:
        for v in variants:
            cells = [case, v]
            m = meds.get((case, v))
            nfail = failed.get((case, v), 0)
            if m is None:
                cells += ["failed" if nfail else "-"] + [""] * (len(cols) - 1)
            else:
                for key, header, digits in cols:
                    val = m.get(key)
                    text = fmt(val, digits)
                    if key in ratio_keys and refs and val is not None:
                        rs = []
                        for ref, _ in refs:
                            rm = meds.get((case, ref))
                            rs.append(ratio_text(val, rm.get(key) if rm else None))
                        text += " (" + " / ".join(rs) + ")"
                    cells.append(text)
                if nfail:
                    cells[1] += f" ({nfail}/{nrep} failed)"
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _better_text(section, ratio_keys):
    hi = [h for k, h, _, b in section.columns if k in ratio_keys and b == "higher"]
    lo = [h for k, h, _, b in section.columns if k in ratio_keys and b == "lower"]
    parts = []
    if hi:
        parts.append("above 1 is better for " + ", ".join(hi))
    if lo:
        parts.append("below 1 is better for " + ", ".join(lo))
    return "; ".join(parts) if parts else "ratios"


def header(run):
    a = run.args
    lines = [
        "# spliced, HAProxy and nginx on one machine",
        "",
        f"- date: {run.date}",
        f"- machine: {platform.system()} {platform.release()} {platform.machine()}; "
        f"{os.cpu_count()} CPUs ({run.cpu_model}); the load generator, the proxy and "
        "the backends share them, all on 127.0.0.1",
        "- versions: " + "; ".join(run.versions),
        f"- run: `{run.command}`; {a.seconds} s per measurement, "
        f"{a.repeat} repetition(s), interleaved (repetition 1 of every case and proxy, "
        "then repetition 2, ...)" + ("; cells are medians" if a.repeat > 1 else "") +
        ("; SMOKE RUN (tiny sizes: checks the tool, the figures mean nothing)" if a.smoke else ""),
        "- 1-minute load average at the start of the run: "
        f"{_la(run, 0)}, at the end: {_la(run, 1)} ({os.cpu_count()} CPUs; a start well above "
        "0 means other work shared the machine and skewed the figures)",
        "- each proxy is started fresh for each measurement, alone on the machine; its CPU "
        "(utime, stime) and context switches (voluntary + involuntary) are read from /proc "
        "for every process and thread it has (HAProxy: one process, threads; nginx: master "
        "and workers; spliced and floor: one process, threads)",
        "",
        "Proxies:",
        "",
    ]
    from .proxies import DESCRIPTIONS
    ran = [v for v in run.variants
           if not getattr(run, "variants_in", None) or
           any(v in vs for vs in run.variants_in.values())]
    for v in ran:
        lines.append(f"- `{v}`: {DESCRIPTIONS.get(v, v)}")
    spliced_cfg = dict(getattr(run.args, "spliced_config", None) or [])
    if any(v.startswith("spliced-") for v in run.variants) and \
            spliced_cfg.get("access_log", "on") in ("on", "yes", "true", "1"):
        lines.append("- spliced logs an access line per connection (its shipped default, "
                     "`access_log = on`); the HAProxy and nginx configurations here log none")
    return "\n".join(lines)


def _la(run, i):
    la = getattr(run, "loadavg", [None, None])[i]
    return "?" if la is None else f"{la:.2f}"


def render(run, charts=None):
    """The whole markdown report. charts: {section name: [(file, title)]}
    to link under each table."""
    charts = charts or {}
    out = [header(run), ""]
    for section in run.sections:
        out.append(f"## {section.title}")
        out.append("")
        for text in (section.describe() if hasattr(section, "describe") else []):
            out.append(text)
            out.append("")
        out.append(section_table(run, section))
        out.append("")
        for text in (section.notes() if hasattr(section, "notes") else []):
            out.append(text)
            out.append("")
        for fname, title in charts.get(section.name, []):
            out.append(f"![{title}]({fname})")
            out.append("")
    if getattr(run, "timings", None):
        out.append("Time per section: " + ", ".join(f"{n} {t:.0f} s" for n, t in run.timings) +
                   ".")
        out.append("")
    if run.skipped:
        out.append("## Skipped")
        out.append("")
        out += [f"- {s}" for s in run.skipped]
        out.append("")
    if run.warnings:
        out.append("## Warnings")
        out.append("")
        out += [f"- {w}" for w in run.warnings[:50]]
        if len(run.warnings) > 50:
            out.append(f"- ... and {len(run.warnings) - 50} more")
        out.append("")
    if run.problems:
        out.append("## Problems")
        out.append("")
        out += [f"- {p}" for p in run.problems]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------
# Charts

def gnuplot_terminal():
    """'pngcairo' when this gnuplot has it, else 'png' (libgd), else None."""
    if not which("gnuplot"):
        return None
    text = command_output(["gnuplot", "-e", "set terminal"])
    if "pngcairo" in text:
        return "pngcairo"
    if " png " in text or "\n png" in text or "png " in text:
        return "png"
    return None


def _q(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _default_specs(section):
    out = []
    heads = {k: h for k, h, *_ in section.columns}
    for key in getattr(section, "ratio_keys", []) or []:
        out.append({"file": f"{section.name}-{key}.png",
                    "title": f"{section.title}: {heads.get(key, key)}",
                    "kind": "bars", "metric": key, "ylabel": heads.get(key, key)})
    return out


def _bars(spec, meds, cases, variants, datafile, term):
    cases = [c for c in (spec.get("cases") or cases) if c in cases]
    vs = [v for v in variants if any((c, v) in meds and spec["metric"] in meds[(c, v)]
                                     for c in cases)]
    if not cases or not vs:
        return None
    with open(datafile, "w") as f:
        f.write("# case " + " ".join(_q(v) for v in vs) + "\n")
        for c in cases:
            row = [_q(c)]
            for v in vs:
                m = meds.get((c, v), {})
                val = m.get(spec["metric"])
                row.append("?" if val is None else repr(float(val)))
            f.write(" ".join(row) + "\n")
    n = len(vs)
    width = max(900, min(1600, 140 * len(cases) * max(1, n) // 4 + 300))
    rot = spec.get("rotate")
    xtics = (f"set xtics nomirror scale 0 noenhanced rotate by {-abs(rot)} left"
             if rot else "set xtics nomirror scale 0 noenhanced")
    plots, labels = [], []
    for i, v in enumerate(vs):
        col = i + 2
        plots.append(f"{_q(datafile)} using {col}:xtic(1) title {_q(v)} "
                     f"lc rgb {_q(COLOURS.get(v, '#777777'))}")
        off = (i - (n - 1) / 2) / (n + 1.5)
        labels.append(f"{_q(datafile)} using ($0+({off:.4f})):{col}:"
                      f"(column({col}) >= 100 ? sprintf('%.0f', column({col})) : sprintf('%.3g', column({col}))) with labels rotate by 90 left "
                      f"offset 0,0.4 font ',7' notitle")
    return f"""
set terminal {term} size {width},560 {"font 'DejaVu Sans,10'" if term == 'pngcairo' else ''}
set title {_q(spec.get('title', spec['metric']))}
set style data histogram
set style histogram clustered gap 1.5
set style fill solid 0.9 border lc rgb '#333333'
set boxwidth 1
set datafile missing '?'
set key outside right top vertical Left reverse noenhanced
{xtics}
set ytics nomirror
set border 3
set grid ytics lc rgb '#dddddd'
set ylabel {_q(spec.get('ylabel', spec['metric']))}
set yrange [0:*]
set xrange [-0.6:{len(cases) - 0.4}]
set offsets 0, 0, graph 0.12, 0
{"set logscale y" if spec.get('logy') else ""}
plot {", ".join(plots)}, {", ".join(labels)}
"""


def _lines(spec, meds, cases, variants, datafile, term):
    xs = spec.get("x") or {}
    cases = [c for c in (spec.get("cases") or cases) if c in cases and c in xs]
    vs = [v for v in variants if any((c, v) in meds and spec["metric"] in meds[(c, v)]
                                     for c in cases)]
    if not cases or not vs:
        return None
    cases.sort(key=lambda c: xs[c])
    with open(datafile, "w") as f:
        f.write("# x " + " ".join(_q(v) for v in vs) + "\n")
        for c in cases:
            row = [repr(float(xs[c]))]
            for v in vs:
                val = meds.get((c, v), {}).get(spec["metric"])
                row.append("?" if val is None else repr(float(val)))
            f.write(" ".join(row) + "\n")
    plots = []
    for i, v in enumerate(vs):
        dt = {"spliced": 1, "haproxy": 2, "nginx": 3}.get(v.split("-")[0], 1)
        plots.append(f"{_q(datafile)} using 1:{i + 2} with linespoints lw 2 dt {dt} pt 7 ps 0.8 "
                     f"lc rgb {_q(COLOURS.get(v, '#777777'))} title {_q(v)}")
    xt = spec.get("xtics")
    xtics = ("set xtics (" + ", ".join(f"{_q(lab)} {x!r}" for x, lab in sorted(xt.items())) +
             ")") if xt else ""
    return f"""
set terminal {term} size 1000,560 {"font 'DejaVu Sans,10'" if term == 'pngcairo' else ''}
set title {_q(spec.get('title', spec['metric']))}
set datafile missing '?'
set key outside right top vertical Left reverse noenhanced
set border 3
set xtics nomirror
set ytics nomirror
set grid xtics ytics lc rgb '#dddddd'
set xlabel {_q(spec.get('xlabel', ''))}
set ylabel {_q(spec.get('ylabel', spec['metric']))}
{"set logscale x 2" if spec.get('logx') else ""}
{"set logscale y" if spec.get('logy') else "set yrange [0:*]"}
{xtics}
plot {", ".join(plots)}
"""


def draw_charts(run, outdir):
    """Every section's charts as PNG under outdir; returns {section:
    [(file, title)]} of those made. Problems go to run.problems."""
    term = gnuplot_terminal()
    made = {}
    if term is None:
        run.skipped.append("charts: gnuplot (gnuplot-nox) with a PNG terminal is not installed")
        return made
    datadir = os.path.join(outdir, ".data")
    os.makedirs(datadir, exist_ok=True)
    for section in run.sections:
        res = run.results.get(section.name, {})
        meds = {cv: medians(runs) for cv, runs in res.items() if runs}
        if not meds:
            continue
        specs = section.charts() if hasattr(section, "charts") else _default_specs(section)
        cases = run.cases.get(section.name) or []
        for spec in specs or []:
            fname = spec["file"]
            base = os.path.splitext(fname)[0]
            datafile = os.path.join(datadir, base + ".dat")
            kind = spec.get("kind", "bars")
            build = _lines if kind == "lines" else _bars
            script = build(spec, meds, cases, variants_of(run, section), datafile, term)
            if script is None:
                continue
            png = os.path.join(outdir, fname)
            script = f"set output {_q(png)}\n" + script
            with open(os.path.join(datadir, base + ".gp"), "w") as f:
                f.write(script)
            try:
                r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True,
                                   timeout=60)
            except (OSError, subprocess.SubprocessError) as e:
                run.problems.append(f"chart {fname}: gnuplot: {e}")
                continue
            if r.returncode != 0 or not os.path.exists(png):
                run.problems.append(f"chart {fname}: gnuplot failed: {r.stderr.strip()[:300]}")
                continue
            made.setdefault(section.name, []).append((fname, spec.get("title", fname)))
    if made:
        note(f"charts: {sum(len(v) for v in made.values())} PNG(s) in {outdir}")
    return made
