"""Kill-and-resume through Snakemake itself, without SLURM: a real training rule of the smoke config
(``pretrain_encoder``) SIGKILLs itself mid-run (``FMRIRECON_KILL_AT_STEP``); ``--retries 1`` reruns it,
it resumes from its checkpoint, and its model and loss log equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
ENCODER = "results/simgod/sub-1/roi-VC/encoder"
TARGETS = [f"{ENCODER}/encoder.safetensors", f"{ENCODER}/losses.tsv", f"{ENCODER}/voxel_accuracy.tsv"]

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, overlay: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(REPO / "config" / "smoke.yaml"), str(overlay)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def without_wall_clock(tsv: Path) -> list[list[str]]:
    rows = [ln.split("\t") for ln in tsv.read_text().splitlines()]
    keep = [i for i, k in enumerate(rows[0]) if k != "wall_s"]
    return [[r[i] for i in keep] for r in rows]


def test_killed_training_rule_is_retried_resumes_and_matches(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    ds = dict(smoke["datasets"][0], subjects=["1"], rois=["VC"])
    overlay.write_text(yaml.safe_dump({
        "datasets": [ds],
        "training": {"checkpoint_every_steps": 2},  # so a kill at step 3 has a checkpoint at 2
        "encoder": {"train": {"epochs": 1}},
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMRIRECON_")}
    ref, killed = tmp_path / "reference", tmp_path / "killed"
    snakemake(ref, overlay, *TARGETS, env=env)
    # the same inputs, already built; only the training job runs again, and kills itself at step 3
    shutil.copytree(ref, killed, symlinks=True)
    proc = snakemake(killed, overlay, *TARGETS, "--forcerun", "pretrain_encoder", "--retries", "1",
                     env={**env, "FMRIRECON_KILL_AT_STEP": "3", "FMRIRECON_TEST_HOOKS": "1"})  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "Error in rule pretrain_encoder" in out and "1 of 1 steps (100%) done" in out  # failed once, then done
    log = (killed / "results/logs/pretrain_encoder/simgod/sub-1_roi-VC.log").read_text()
    assert "resumed from step 2" in log, log[-2000:]
    a, b = load_file(ref / TARGETS[0]), load_file(killed / TARGETS[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert without_wall_clock(ref / TARGETS[1]) == without_wall_clock(killed / TARGETS[1])
    assert (ref / TARGETS[2]).read_text() == (killed / TARGETS[2]).read_text()
    ja = json.loads((ref / ENCODER / "encoder.json").read_text())
    jb = json.loads((killed / ENCODER / "encoder.json").read_text())
    assert ja == jb
    assert not (killed / "results/checkpoints/pretrain_encoder").exists() or not any(
        (killed / "results/checkpoints/pretrain_encoder").rglob("checkpoint.pt")
    )  # a finished job removes its checkpoint
