"""Time of ``snakemake -n`` for a full GOD reproduction, and (``--slurm``) the per-job overhead of
the SLURM profile on the local test cluster.

    .venv/bin/python benchmarks/bench_dryrun.py [--repeat 3] [--slurm] [--slurm-jobs 6]

The dry run uses config/config.yaml (every method and ablation defined there, every protocol) with
one GOD dataset in the real BData layout: 5 subjects x VC/LVC/HVC. Placeholder files with the
published names are created in a temporary folder, so inputs resolve without the data
(target: under 10 s). Every SLURM job pays this parse again, since the job runs its own snakemake.

``--slurm`` (needs a running cluster, e.g. ``tests/cluster/slurm-local-cluster.sh start``): runs a
chain of N trivial jobs through ``--profile profiles/slurm`` + the test overlay
(``tests/cluster/profile``, 1 s polling), and the same chain with ``--cores 1``; prints the wall time
per job of both, the difference (scheduling + submission + polling + the job's own snakemake), and
sacct's elapsed time per job (what the job itself spends: srun + the nested snakemake).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SUBJECTS = ["1", "2", "3", "4", "5"]


def god_placeholders(root: Path) -> dict:
    """Empty files and folders with GOD's published names; returns the dataset entry."""
    for sub in ("images/training", "images/test", "unpaired", "gallery"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("imageID_training.csv", "imageID_test.csv"):
        (root / name).touch()
    for s in SUBJECTS:
        (root / f"Subject{s}.h5").touch()
        (root / f"Subject{s}_unlabeled.h5").touch()
    return {
        "name": "god", "format": "god_bdata", "path": str(root), "subjects": SUBJECTS,
        "rois": ["VC", "LVC", "HVC"], "unpaired_images": str(root / "unpaired"),
        "gallery_images": str(root / "gallery"),
        "unlabeled_fmri": str(root / "Subject{subject}_unlabeled.h5"),
    }  # fmt: skip


def dry_run(tmp: Path, repeat: int) -> None:
    cfg = tmp / "god-full.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": [god_placeholders(tmp / "god")]}, sort_keys=False))
    work = tmp / "work"
    cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(cfg)]  # fmt: skip
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            sys.exit(f"dry run failed:\n{out[-3000:]}")
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    total = counts.pop("total", sum(counts.values()))
    print(f"snakemake -n, full GOD config (5 subjects x VC/LVC/HVC, config.yaml methods, all protocols): "
          f"{total} jobs")  # fmt: skip
    for rule, n in sorted(counts.items()):
        print(f"  {rule:28s} {n:6d}")
    print(f"  wall: median {statistics.median(times):.2f} s, min {min(times):.2f} s over {repeat} runs "
          f"(target < 10 s)")  # fmt: skip


CHAIN = """
rule all:
    input: "out/{n}.txt"
    localrule: True

rule step:
    output: "out/{i}.txt"
    input: lambda wc: [] if int(wc.i) == 0 else [f"out/{int(wc.i) - 1}.txt"]
    threads: 1
    resources: mem_mb=200, runtime=5
    shell: "echo ${{SLURM_JOB_ID:-local}} > {output}"
"""


def slurm_overhead(tmp: Path, n: int) -> None:
    if not shutil.which("sbatch") or subprocess.run(["scontrol", "ping"], capture_output=True).returncode:
        sys.exit("--slurm: no SLURM controller answers (start one: tests/cluster/slurm-local-cluster.sh start)")
    (tmp / "Snakefile").write_text(CHAIN.replace("{n}", str(n - 1)))
    base = [SNAKEMAKE, "--snakefile", str(tmp / "Snakefile")]
    walls = {}
    for mode, extra in (("local", ["--cores", "1"]),
                        ("slurm", ["--profile", str(REPO / "profiles/slurm"), "--workflow-profile",
                                   str(REPO / "tests/cluster/profile"), "--slurm-keep-successful-logs"])):  # fmt: skip
        work = tmp / mode
        t = time.perf_counter()
        proc = subprocess.run([*base, "--directory", str(work), *extra], capture_output=True, text=True)
        walls[mode] = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"{mode} run failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        if mode == "slurm":
            run_id = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr).group(1)
    time.sleep(2)
    acct = subprocess.run(["sacct", "-X", "-P", "-n", "--name", run_id, "-o", "ElapsedRaw"],
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    elapsed = [int(x) for x in acct if x.isdigit()]
    print(f"\nper-job overhead, chain of {n} trivial jobs (each waits for the previous):")
    print(f"  local --cores 1:        {walls['local']:.1f} s total, {walls['local'] / n:.2f} s/job")
    print(f"  SLURM profile + 1 s polling: {walls['slurm']:.1f} s total, {walls['slurm'] / n:.2f} s/job")
    print(f"  overhead of SLURM:      {(walls['slurm'] - walls['local']) / n:.2f} s/job")
    if elapsed:
        print(f"  inside the job (sacct Elapsed: srun + nested snakemake): median {statistics.median(elapsed)} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--slurm", action="store_true", help="also measure per-job overhead on a running cluster")
    p.add_argument("--slurm-jobs", type=int, default=6)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dryrun-") as d:
        dry_run(Path(d), a.repeat)
        if a.slurm:
            slurm_overhead(Path(d), a.slurm_jobs)


if __name__ == "__main__":
    main()
