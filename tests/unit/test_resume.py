"""Preemption and failure without SLURM: a tiny job through the real Trainer and ``run_step``, in a
subprocess, killed with SIGKILL (``FMRIRECON_KILL_AT_STEP``) or stopped with SIGTERM/SIGUSR1 like a
SLURM job, then rerun: the result must equal an uninterrupted run bit for bit (CPU, same seed)."""

from __future__ import annotations

import importlib.util
import signal
import time
from pathlib import Path

import pytest
import torch

from fmrirecon.cli import PREEMPTED_EXIT
from fmrirecon.train.checkpoint import CHECKPOINT_NAME

JOB = Path(__file__).with_name("resume_job.py")


def _load_job_module():
    spec = importlib.util.spec_from_file_location("resume_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = _load_job_module()
run_job, loss_rows, assert_same_result = job.run_job, job.loss_rows, job.assert_same_result


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    proc = run_job(out, out / "ckpt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(loss_rows(out)) == 1 + 6  # header + one row per epoch
    assert not (out / "ckpt").exists()  # a finished job removes its checkpoint
    return out


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    killed = run_job(tmp_path, ckpt, env={"FMRIRECON_KILL_AT_STEP": "23"})
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "model.safetensors").exists()  # no output from a killed job
    state = torch.load(ckpt / CHECKPOINT_NAME, weights_only=False)
    assert state["step"] == 20  # the last checkpoint (every 4 steps) before the kill at 23
    # the rerun (same environment, as a Snakemake retry has) resumes and does not kill itself again
    rerun = run_job(tmp_path, ckpt, env={"FMRIRECON_KILL_AT_STEP": "23"})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resumed from step 20" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, reference)
    assert not ckpt.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_exits_75_and_rerun_resumes(tmp_path, reference, sig):
    """SLURM's preemption (SIGTERM) and --signal=USR1@t warning: checkpoint, exit 75, resume."""
    ckpt, progress = tmp_path / "ckpt", tmp_path / "progress"
    proc = run_job(tmp_path, ckpt, "--sleep", "0.05", "--progress", str(progress), wait=False)
    deadline = time.monotonic() + 120
    while not progress.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT, out
    log = (tmp_path / "job.log").read_text()
    assert "PREEMPTED" in log and signal.Signals(sig).name in log
    stopped_at = torch.load(ckpt / CHECKPOINT_NAME, weights_only=False)["step"]
    assert 5 <= stopped_at < 36  # stopped part-way (6 epochs x 6 steps)
    assert not (tmp_path / "model.safetensors").exists()
    rerun = run_job(tmp_path, ckpt)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resumed from step {stopped_at}" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, reference)


def test_checkpoint_of_other_settings_is_ignored(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    other = tmp_path / "other"
    killed = run_job(other, ckpt, "--lr", "0.01", env={"FMRIRECON_KILL_AT_STEP": "10"})
    assert killed.returncode == -signal.SIGKILL and (ckpt / CHECKPOINT_NAME).exists()
    (ckpt / ".killed-once").unlink()  # the marker belongs to that job; this one must not be killed
    rerun = run_job(tmp_path, ckpt)  # the reference settings (lr 0.05): must start from scratch
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    log = (tmp_path / "job.log").read_text()
    assert "belongs to other settings" in log and "resumed from" not in log
    assert_same_result(tmp_path, reference)


def test_unreadable_checkpoint_is_ignored(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_NAME).write_bytes(b"truncated by a crash")
    proc = run_job(tmp_path, ckpt)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ignoring unreadable checkpoint" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, reference)
