"""Benchmark: the embedded default (`make run`) from a clean ``results/``, timed per rule.

Runs what ``make run`` runs -- ``snakemake --cores N`` then ``snakemake --report`` -- in a fresh
working folder (the repository's own ``results/`` is not touched), then prints

* the wall time of the DAG, of the report, and their sum (the ``make run`` figure, without the
  one-off ``pip install``),
* per rule: jobs, the sum of job wall time and of job CPU time (Snakemake's ``benchmark:`` files,
  which every rule has), and the largest peak RSS,
* the ten longest jobs,
* the load average when it started (other processes on the machine make every figure worse).

    python benchmarks/bench_default.py                   # 2 cores, the default config
    python benchmarks/bench_default.py --cores 2 --keep  # keep the working folder
    python benchmarks/bench_default.py --configfile config/smoke.yaml   # the smoke DAG, quickly
    python benchmarks/bench_default.py --from-results DIR/results       # re-summarise a finished run

Like ``make run`` it caps each job at ``--max-threads`` (half the cores, at least 1). The CPU sum over
the wall time says how many cores were busy on average. (Snakemake 9.10-9.19 started more jobs
than ``--cores`` allowed, upstream #3913; the pinned 9.27.1 does not.)
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Local rules that run inside the Snakemake process (``run:``): their benchmark's CPU time is the
#: whole Snakemake process's, so their wall time stands in for it.
IN_PROCESS = {"split_metrics"}
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _run(cmd: list[str], log: Path) -> float:
    t = time.monotonic()
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - t


def read_benchmarks(results: Path) -> list[dict]:
    """One row per job: rule, job (the file's path below the rule's folder), s, cpu_time, max_rss."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        rel = path.relative_to(results / "benchmarks")
        # results/benchmarks/<rule>/<job>.tsv, or <rule>.tsv for a rule with one job and no wildcards
        rule, job = (rel.parts[0], str(Path(*rel.parts[1:]).with_suffix(""))) if len(rel.parts) > 1 else (rel.stem, "")
        with open(path) as fh:
            for rec in csv.DictReader(fh, delimiter="\t"):
                rows.append({
                    "rule": rule, "job": job,
                    "s": float(rec["s"]),
                    "cpu_time": float(rec["s"]) if rule in IN_PROCESS else float(rec.get("cpu_time") or 0.0),
                    "max_rss": float(rec["max_rss"]) if rec.get("max_rss") not in (None, "", "-") else 0.0,
                })  # fmt: skip
    return rows


#: A job of one method: its benchmark file is named ``sub-<s>_roi-<r>_<method or regressor key>``.
#: Every other job (simulation, masking, encoders, attention decoders, first stages, classifiers,
#: the text LDM, ``truth_features``, plots) is shared by the methods, or not a method's at all.
PER_METHOD = re.compile(r"(^|/)sub-[^_/]+_roi-[^_/]+_[^/]+$")


def floor(rows: list[dict], cores: int) -> list[str]:
    """What no schedule can beat: job CPU over ``cores``, in all and for the shared stages alone
    (``split_metrics`` runs inside Snakemake and is left out: its CPU is the whole process's)."""
    jobs = [r for r in rows if r["rule"] not in IN_PROCESS]
    cpu = sum(r["cpu_time"] for r in jobs)
    shared = sum(r["cpu_time"] for r in jobs if not PER_METHOD.search(r["job"]))
    return [
        f"floor on {cores} cores (job CPU / cores, Snakemake's own CPU not counted): {cpu / 60 / cores:.1f} min; "
        f"the stages shared by methods alone: {shared / 60:.1f} CPU-min = {shared / 60 / cores:.1f} min",
    ]


def report(rows: list[dict], dag_s: float | None, report_s: float | None, cores: int = 2) -> str:
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu": 0.0, "rss": 0.0})
    for r in rows:
        agg = per_rule[r["rule"]]
        agg["jobs"] += 1
        agg["s"] += r["s"]
        agg["cpu"] += r["cpu_time"]
        agg["rss"] = max(agg["rss"], r["max_rss"])
    cpu = sum(a["cpu"] for a in per_rule.values())
    lines = [f"{len(rows)} jobs, job CPU time {cpu / 60:.1f} min"]
    if dag_s is not None and report_s is not None:
        lines = [
            f"DAG (snakemake --cores): {dag_s / 60:.1f} min wall, {len(rows)} jobs, job CPU time {cpu / 60:.1f} min "
            f"(= {cpu / dag_s:.2f} busy cores on average)",
            f"report (snakemake --report): {report_s:.0f} s",
            f"make run total (without pip install): {(dag_s + report_s) / 60:.1f} min",
        ]
    lines += [
        *floor(rows, cores),
        "",
        f"{'rule':32s} {'jobs':>5s} {'wall s':>9s} {'CPU s':>9s} {'CPU %':>6s} {'max RSS MiB':>12s}",
    ]
    for rule, a in sorted(per_rule.items(), key=lambda kv: -kv[1]["cpu"]):
        share = 100 * a["cpu"] / cpu if cpu else 0.0
        lines.append(f"{rule:32s} {a['jobs']:5d} {a['s']:9.1f} {a['cpu']:9.1f} {share:6.1f} {a['rss']:12.0f}")
    lines += ["", "ten longest jobs (wall s, CPU s):"]
    for r in sorted(rows, key=lambda r: -r["s"])[:10]:
        lines.append(f"  {r['s']:8.1f} {r['cpu_time']:8.1f}  {r['rule']}/{r['job']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--max-threads", type=int, help="threads of one job (default: as make run, cores // 2 from 4 cores on, else 1)")
    ap.add_argument("--configfile", action="append", default=[], help="extra config files (layered)")
    ap.add_argument("--workdir", help="working folder (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument("--from-results", metavar="DIR", help="only summarise the benchmark files of a finished run's results/")
    args = ap.parse_args()
    if args.from_results:
        print(report(read_benchmarks(Path(args.from_results)), None, None, args.cores))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fmrirecon-bench-default-")).resolve()
    if (work / "results").exists():
        sys.exit(f"{work}/results exists: the benchmark starts from a clean results/ (choose another --workdir)")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench_default.log"
    base = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work)]
    extra = ["--configfile", *[str(Path(c).resolve()) for c in args.configfile]] if args.configfile else []
    load = os.getloadavg()
    print(f"working folder {work}; {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    threads = args.max_threads or (args.cores // 2 if args.cores > 3 else 1)
    print(f"--cores {args.cores} --max-threads {threads}")
    dag_s = _run([*base, "--cores", str(args.cores), "--max-threads", str(threads), *extra], log)
    report_s = _run([*base, *extra, "--report", str(work / "results" / "report.html")], log)
    print(report(read_benchmarks(work / "results"), dag_s, report_s, args.cores))
    if not args.keep and not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
