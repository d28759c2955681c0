"""The multi-GPU path on CPU: two gloo processes launched by ``run_step`` train the tiny job of
resume_job.py data-parallel; the result matches one process on the same total batch.

Why not bit-identical: with two ranks each computes the mean loss of half the batch and the
gradients are averaged by an all-reduce, so the same sums are formed in another order (float
rounding, ~1e-7 relative per step). Per-sample randomness (dropout, noise) is drawn per rank, so
the comparison uses the job's deterministic variant; the stochastic variant is checked for
completing and resuming only.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmrirecon.cli import PREEMPTED_EXIT
from fmrirecon.train.checkpoint import CHECKPOINT_NAME
from fmrirecon.train.distributed import world_size_for


def _load_job_module():
    spec = importlib.util.spec_from_file_location("resume_job", Path(__file__).with_name("resume_job.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = _load_job_module()
run_job, loss_rows = job.run_job, job.loss_rows

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def test_world_size_follows_the_gpu_resource(monkeypatch):
    monkeypatch.delenv("FMRIRECON_NPROC", raising=False)
    assert world_size_for(0) == world_size_for(1) == world_size_for(None) == 1
    if not torch.cuda.is_available():  # asked for 2 GPUs, sees none: one CPU process, no error
        assert world_size_for(2) == 1
    monkeypatch.setenv("FMRIRECON_NPROC", "3")
    assert world_size_for(1) == 3


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run_job(one, one / "ckpt", "--deterministic")
    assert p1.returncode == 0, p1.stdout + p1.stderr
    p2 = run_job(two, two / "ckpt", "--deterministic", "--world", "2")
    assert p2.returncode == 0, p2.stdout + p2.stderr
    log = (two / "job.log").read_text()
    assert "resumed" not in log and "tiny: epoch=6" in log  # rank 0 logged the run
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    # the logged loss is the whole batch's (averaged over ranks), not rank 0's half
    for r1, r2 in zip(loss_rows(one)[1:], loss_rows(two)[1:], strict=True):
        assert r1[:3] == r2[:3]  # epoch, step, lr
        for a, b in zip(r1[3:], r2[3:], strict=True):
            assert float(a) == pytest.approx(float(b), rel=1e-4, abs=1e-6)
    assert not (two / "ckpt").exists()


def test_two_processes_stop_together_on_sigterm_and_resume(tmp_path):
    """SIGTERM to the launcher's whole process group (as SLURM signals a job step): both ranks stop
    at the same step, rank 0 checkpoints, the job exits 75, and a single-process rerun resumes."""
    ckpt, progress = tmp_path / "ckpt", tmp_path / "progress"
    proc = run_job(tmp_path, ckpt, "--world", "2", "--sleep", "0.05", "--progress", str(progress), wait=False)
    deadline = time.monotonic() + 120
    while not progress.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)  # the launcher and both workers, as SLURM signals a step
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT, out
    step = torch.load(ckpt / CHECKPOINT_NAME, weights_only=False)["step"]
    assert 5 <= step < 36
    rerun = run_job(tmp_path, ckpt)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resumed from step {step}" in (tmp_path / "job.log").read_text()
