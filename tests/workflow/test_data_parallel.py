"""Data-parallel training through Snakemake itself: the smoke config's ``pretrain_encoder`` once in one
process and once in two (``FMRIRECON_NPROC=2``: torchrun, gloo on CPU, each rank half of every
batch, gradients averaged). The two encoders agree up to float rounding, and the rule's log shows
both ranks. Under Snakemake the workers must not re-import the rule's adapter script (it only works
with Snakemake's ``snakemake`` object), which is what this test guards.

``FMRIRECON_TEST_REPO`` points the test at another checkout of the workflow (default: this one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(os.environ.get("FMRIRECON_TEST_REPO") or Path(__file__).resolve().parents[2])
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
ENCODER = "results/simgod/sub-1/roi-VC/encoder"
TARGET = f"{ENCODER}/encoder.safetensors"
LOG = "results/logs/pretrain_encoder/simgod/sub-1_roi-VC.log"

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, overlay: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, TARGET, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(REPO / "config" / "smoke.yaml"), str(overlay)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_two_processes_train_the_encoder_like_one(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    overlay.write_text(yaml.safe_dump({"datasets": [dict(smoke["datasets"][0], subjects=["1"], rois=["VC"])]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMRIRECON_")}
    one, two = tmp_path / "one", tmp_path / "two"
    snakemake(one, overlay, env={**env, "FMRIRECON_NPROC": "1"})
    # the same inputs, already built: only the training job runs again, in two processes
    shutil.copytree(one, two, symlinks=True)
    proc = snakemake(two, overlay, "--forcerun", "pretrain_encoder", env={**env, "FMRIRECON_NPROC": "2"})
    log_one, log_two = (one / LOG).read_text(), (two / LOG).read_text()
    assert "data-parallel" not in log_one
    assert "data-parallel: world size 2" in log_two, log_two[-3000:]
    assert "rank 0 of 2" in log_two and "rank 1 of 2" in log_two  # both ranks joined the group
    assert "[rank1]" in proc.stderr  # rank 1 logs to stderr (the SLURM log), tagged
    assert "NameError" not in proc.stderr and "resumed from" not in log_two
    a, b = load_file(one / TARGET), load_file(two / TARGET)
    assert a.keys() == b.keys()
    scale = max(float(t.abs().max()) for t in a.values() if t.is_floating_point())
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < 1e-4 * scale, f"max |diff| {worst:.3g} vs weight scale {scale:.3g}"
    assert all(torch.equal(a[k], b[k]) for k in a if not a[k].is_floating_point())
    # the per-epoch losses (averaged over the ranks' halves of each batch) agree too
    rows = [[ln.split("\t") for ln in (w / ENCODER / "losses.tsv").read_text().splitlines()] for w in (one, two)]
    assert rows[0][0] == rows[1][0] and len(rows[0]) == len(rows[1]) > 1
    for r1, r2 in zip(rows[0][1:], rows[1][1:], strict=True):
        for key, x, y in zip(rows[0][0], r1, r2, strict=True):
            if key != "wall_s":
                assert float(x) == pytest.approx(float(y), rel=1e-3, abs=1e-6), key
