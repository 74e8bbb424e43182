"""Aggregate results/rep*/<run>.txt, as written by `./run_all.sh results/repN` (the directory is not
tracked; the figures it gave are in bench/RESULTS.md): for every (run, variant) the median over
repeats of the per-run medians, the range of us/send over repeats, and the median over repeats of the
within-run ratio to the run's first variant (its baseline, measured interleaved in the same process).
usage: python3 summarize.py [results_dir=results]"""

import glob
import os
import re
import statistics as st
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "results"
runs = {}
order = []
for f in sorted(glob.glob(os.path.join(d, "rep*", "*.txt"))):
    run = os.path.basename(f)[:-4]
    if run in ("all", "sysinfo"):
        continue
    rows = []
    for line in open(f):
        p = line.split()
        if len(p) >= 8 and p[1].isdigit() and re.match(r"^[\d.]+$", p[2]):
            rows.append(
                dict(
                    v=p[0],
                    n=int(p[1]),
                    us=float(p[2]),
                    ms=float(p[3]),
                    p90=float(p[4]),
                    cpu_ms=float(p[6]),
                    cw=float(p[7].rstrip("%")),
                )
            )
    if not rows:
        continue
    base = rows[0]["us"]
    for r in rows:
        r["ratio"] = r["us"] / base
        key = (run, r["v"])
        if key not in runs:
            runs[key] = []
            order.append(key)
        runs[key].append(r)
print(
    f"{'run':15s} {'variant':18s} {'conns':>6s} {'reps':>4s} {'us/send':>8s} {'(range)':>13s} {'round_ms':>8s} {'p90_ms':>7s} "
    f"{'cpu_us/send':>11s} {'cpu/wall':>8s} {'vs base':>8s}"
)
for key in order:
    rs = runs[key]

    def m(k, rs=rs):
        return st.median(r[k] for r in rs)

    us = [r["us"] for r in rs]
    print(
        f"{key[0]:15s} {key[1]:18s} {rs[0]['n']:6d} {len(rs):4d} {m('us'):8.2f} {min(us):6.2f}-{max(us):6.2f} {m('ms'):8.1f} "
        f"{m('p90'):7.1f} {m('cpu_ms') * 1000 / rs[0]['n']:11.2f} {m('cw'):7.0f}% {100 * (m('ratio') - 1):+7.0f}%"
    )
