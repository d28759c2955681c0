"""A CAD training stage (DC-MAE pretraining) killed mid-run with SIGKILL and rerun gives the same
weights as an uninterrupted run: masks, sparsification and batch order all come from the step's
generator, so the resumed run draws exactly the same numbers (CPU, same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
KILL_AT_7 = {"FMRIRECON_KILL_AT_STEP": "7", "FMRIRECON_TEST_HOOKS": "1"}  # the hook needs test hooks on

JOB = """
import sys
from types import SimpleNamespace
from fmrirecon.methods.cad.mae import pretrain_fmri_mae
from fmrirecon.runner import run_step
from fmrirecon.config import validate_config

out, ckpt, data = sys.argv[1:4]
settings = validate_config({})["cad"]
settings["fmri_mae"].update(patch_size=8, epochs=2, batch_size=8)
training = {"device": "cpu", "checkpoint_every_steps": 3, "checkpoint_every_minutes": 10}
smk = SimpleNamespace(log=[out + "/job.log"], threads=1)
run_step(smk, pretrain_fmri_mae, data=data, settings=settings, training=training, checkpoint_dir=ckpt,
         seed=3, model=out + "/mae.safetensors", loss_log=out + "/losses.tsv")
"""


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    from fmrirecon.data.prepared import PreparedSubject, write_subject_file

    rng = np.random.default_rng(0)
    f = lambda n: rng.standard_normal((n, 50)).astype(np.float32)  # noqa: E731
    groups = {
        "train": {"fmri": f(16), "image_index": np.arange(16)},
        "test": {"fmri": f(4), "image_index": np.arange(4)},
        "unlabeled": {"fmri": f(24)},
        "voxels": {"source_index": np.arange(50)},
    }
    path = tmp_path_factory.mktemp("cad") / "data.h5"
    write_subject_file(path, PreparedSubject(groups, {"subject": "1"}))
    return path


def _run(out: Path, ckpt: Path, data: Path, env=None):
    out.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", JOB, str(out), str(ckpt), str(data)], env=environ,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_dc_mae_killed_and_resumed_equals_uninterrupted(tmp_path, data_file):
    ref = _run(tmp_path / "ref", tmp_path / "ref-ckpt", data_file)
    assert ref.returncode == 0, ref.stderr
    killed = _run(tmp_path / "run", tmp_path / "ckpt", data_file, KILL_AT_7)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "mae.safetensors").exists()  # nothing half-written
    rerun = _run(tmp_path / "run", tmp_path / "ckpt", data_file, KILL_AT_7)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from step 6" in (tmp_path / "run" / "job.log").read_text()
    a, b = load_file(tmp_path / "ref" / "mae.safetensors"), load_file(tmp_path / "run" / "mae.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (tmp_path / "ref" / "losses.tsv").read_text().splitlines()[1:] != []
    ref_rows = [r.split("\t")[:-1] for r in (tmp_path / "ref" / "losses.tsv").read_text().splitlines()]
    run_rows = [r.split("\t")[:-1] for r in (tmp_path / "run" / "losses.tsv").read_text().splitlines()]
    assert ref_rows == run_rows  # same losses in every epoch (wall time aside)
