"""Preemption and failure without SLURM: a tiny job through the real Trainer and ``run_step``, in a
subprocess, killed with SIGKILL (``FMRIRECON_KILL_AT_STEP`` with ``FMRIRECON_TEST_HOOKS=1``) or
stopped with SIGTERM/SIGUSR1 like a SLURM job, then rerun: the result must equal an uninterrupted run
bit for bit (CPU, same seed). The same for a two-optimiser GAN. Also: checkpoints are loaded without
unpickling code, the kill hook is off in production, finished jobs leave no empty folders, and a
training stage reports its throughput and memory."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from fmrirecon.runner import PREEMPTED_EXIT
from fmrirecon.train.checkpoint import CHECKPOINT_NAME, clear_checkpoint, load_checkpoint, save_checkpoint
from fmrirecon.train.loop import Phase, Trainer, _kill_step
from fmrirecon.train.records import write_train_summary

JOB = Path(__file__).with_name("resume_job.py")


def _load_job_module():
    spec = importlib.util.spec_from_file_location("resume_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = _load_job_module()
run_job, loss_rows, assert_same_result, kill_at = job.run_job, job.loss_rows, job.assert_same_result, job.kill_at


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
    killed = run_job(tmp_path, ckpt, env=kill_at(23))
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "model.safetensors").exists()  # no output from a killed job
    state = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 20  # the last checkpoint (every 4 steps) before the kill at 23
    # the rerun (same environment, as a Snakemake retry has) resumes and does not kill itself again
    rerun = run_job(tmp_path, ckpt, env=kill_at(23))
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
    stopped_at = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 5 <= stopped_at < 36  # stopped part-way (6 epochs x 6 steps)
    assert not (tmp_path / "model.safetensors").exists()
    rerun = run_job(tmp_path, ckpt)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resumed from step {stopped_at}" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, reference)


def test_checkpoint_of_other_settings_is_ignored(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    other = tmp_path / "other"
    killed = run_job(other, ckpt, "--lr", "0.01", env=kill_at(10))
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


def test_kill_hook_is_off_without_test_hooks(tmp_path, reference, monkeypatch):
    """SLURM passes the whole environment on: FMRIRECON_KILL_AT_STEP alone must not kill a job."""
    proc = run_job(tmp_path, tmp_path / "ckpt", env={"FMRIRECON_KILL_AT_STEP": "3"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FMRIRECON_TEST_HOOKS is not 1: ignored" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, reference)
    monkeypatch.setenv("FMRIRECON_KILL_AT_STEP", "5")
    for hooks, expected in (("", -1), ("0", -1), ("1", 5)):
        monkeypatch.setenv("FMRIRECON_TEST_HOOKS", hooks)
        assert _kill_step() == expected


class _Planted:
    """What an attacker would put in checkpoint.pt: unpickling it runs code (here: touches a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_pickle_checkpoint_runs_nothing_and_training_starts_fresh(tmp_path, reference):
    ckpt, marker = tmp_path / "ckpt", tmp_path / "pwned"
    ckpt.mkdir()
    torch.save({"fingerprint": "anything", "step": 30, "payload": _Planted(marker)}, ckpt / CHECKPOINT_NAME)
    proc = run_job(tmp_path, ckpt)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (tmp_path / "job.log").read_text()
    assert not marker.exists()  # nothing was unpickled
    assert "ignoring unreadable checkpoint" in log and "resumed from" not in log
    assert sum("ignoring unreadable checkpoint" in line for line in log.splitlines()) == 1  # one line
    assert_same_result(tmp_path, reference)
    # the plant was live: loading it the old way (weights_only=False) does run its code
    ckpt.mkdir()
    torch.save({"payload": _Planted(marker)}, ckpt / CHECKPOINT_NAME)
    torch.load(ckpt / CHECKPOINT_NAME, weights_only=False)
    assert marker.exists()


def test_checkpoints_hold_only_plain_values(tmp_path):
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path, {"fingerprint": "x", "bad": _Planted(tmp_path / "m")})
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    save_checkpoint(tmp_path, {"fingerprint": "x", "t": torch.ones(2), "rows": [{"a": 1.0}], "b": (0.5, 0.9)})
    assert load_checkpoint(tmp_path, "x")["b"] == (0.5, 0.9)


# -- the two-optimiser GAN -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan_reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gan-reference")
    proc = run_job(out, out / "ckpt", "--gan")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_gan_trains_both_optimisers(gan_reference):
    rows = loss_rows(gan_reference)
    header, first, last = rows[0], dict(zip(rows[0], rows[1])), dict(zip(rows[0], rows[-1]))
    assert {"discriminator/loss", "generator/loss", "generator/adv", "generator/l1"} <= set(header)
    assert {"discriminator/lr", "generator/lr"} <= set(header)  # two schedules (lr 0.01 and 0.05)
    assert float(last["generator/l1"]) < 0.5 * float(first["generator/l1"])  # the generator learns
    assert 0.0 < float(last["discriminator/loss"]) < 2.0
    summary = json.loads((gan_reference / "summary.json").read_text())
    assert summary["optimizers"] == ["discriminator", "generator"]
    assert summary["settings"]["phases"]["generator"]["betas"] == [0.5, 0.999]
    assert summary["steps"] == summary["steps_this_run"] == 36


def test_gan_killed_mid_run_resumes_bit_identical(tmp_path, gan_reference):
    ckpt = tmp_path / "ckpt"
    killed = run_job(tmp_path, ckpt, "--gan", env=kill_at(15))
    assert killed.returncode == -signal.SIGKILL
    state = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 12 and set(state["optimizers"]) == {"discriminator", "generator"}
    assert all(s["state"] for s in state["optimizers"].values())  # both optimisers' moments are saved
    rerun = run_job(tmp_path, ckpt, "--gan", env=kill_at(15))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resumed from step 12" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, gan_reference)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 36 and summary["steps_this_run"] == 24


def test_gan_stopped_by_signal_resumes_bit_identical(tmp_path, gan_reference):
    ckpt, progress = tmp_path / "ckpt", tmp_path / "progress"
    proc = run_job(tmp_path, ckpt, "--gan", "--sleep", "0.05", "--progress", str(progress), wait=False)
    deadline = time.monotonic() + 120
    while not progress.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT, out
    rerun = run_job(tmp_path, ckpt, "--gan")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resumed from step" in (tmp_path / "job.log").read_text()
    assert_same_result(tmp_path, gan_reference)


# -- in-process: the Trainer's API ---------------------------------------------------------------
def _tiny_trainer(tmp_path, **kw):
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    settings = {"epochs": 2, "batch_size": 4, "lr": 0.01, **kw.pop("settings", {})}
    trainer = Trainer(name="t", modules={"net": net}, settings=settings, training={"precision": "bf16"},
                      checkpoint_dir=str(tmp_path / "ck"), fingerprint="f", seed=1, device=torch.device("cpu"), **kw)  # fmt: skip
    step = lambda idx, gen: {"loss": nn.functional.mse_loss(net(x[idx]), y[idx])}
    return trainer, step, net


def test_summary_reports_throughput_memory_and_settings(tmp_path):
    trainer, step, _ = _tiny_trainer(tmp_path, settings={"optimizer": "adamw", "betas": [0.5, 0.99]})
    trainer.fit(16, step)
    s = write_train_summary(str(tmp_path / "s" / "summary.json"), trainer, {"rule": "x", "steps_per_s": -1})
    assert json.loads((tmp_path / "s" / "summary.json").read_text()) == s
    assert s["steps"] == s["steps_this_run"] == s["total_steps"] == 8
    assert s["rule"] == "x" and s["steps_per_s"] == -1  # extra wins
    assert trainer.summary()["steps_per_s"] > 0 and s["wall_s"] >= 0
    assert s["peak_memory_kind"] == "process_peak_rss" and s["peak_memory_mib"] > 10
    assert (s["device"], s["precision"], s["world_size"]) == ("cpu", "fp32", 1)
    assert s["settings"]["betas"] == [0.5, 0.99] and s["settings"]["schedule"] == "constant"
    assert s["settings"]["grad_clip"] == 0.0 and s["settings"]["weight_decay"] == 0.0
    assert trainer.optimizer.param_groups[0]["betas"] == (0.5, 0.99)


def test_phases_and_step_fn_are_exclusive(tmp_path):
    trainer, step, net = _tiny_trainer(tmp_path)
    with pytest.raises(TypeError):
        trainer.fit(16)
    with pytest.raises(ValueError, match="settings of the whole run"):
        _tiny_trainer(tmp_path, phases=[Phase("a", net.parameters(), step, {"epochs": 3})])
    with pytest.raises(ValueError, match="distinct"):
        _tiny_trainer(tmp_path, phases=[("a", net.parameters(), step), ("a", net.parameters(), step)])
    phased, step, net = _tiny_trainer(tmp_path, phases=[("only", net.parameters(), step)])
    with pytest.raises(TypeError):
        phased.fit(16, step)


def test_one_phase_equals_the_single_optimiser(tmp_path):
    """Phase 0 is seeded like the single optimiser: the same numbers (only the log keys differ)."""
    a, step_a, net_a = _tiny_trainer(tmp_path / "a", settings={"schedule": "cosine"})
    a.fit(16, step_a)
    b, step_b, net_b = _tiny_trainer(tmp_path / "b", settings={"schedule": "cosine"})
    b = Trainer(name="t", modules={"net": net_b}, settings=b.settings, training=b.training, checkpoint_dir=str(tmp_path / "b"),
                fingerprint="f", seed=1, device=torch.device("cpu"), phases=[("p", net_b.parameters(), step_b)])  # fmt: skip
    b.fit(16)
    assert all(torch.equal(p, q) for p, q in zip(net_a.parameters(), net_b.parameters()))
    assert [r["loss"] for r in a.history] == [r["p/loss"] for r in b.history]
    assert [r["lr"] for r in a.history] == [r["lr"] for r in b.history]


# -- clear_checkpoint ----------------------------------------------------------------------------
def test_clear_checkpoint_removes_emptied_parents_up_to_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("results/checkpoints")
    mine = root / "pretrain_encoder" / "simgod" / "sub-1" / "roi-VC"
    other = root / "pretrain_encoder" / "simgod" / "sub-2" / "roi-VC"
    for folder in (mine, other):
        save_checkpoint(folder, {"fingerprint": "x"})
    clear_checkpoint(mine, root=root)
    assert not (root / "pretrain_encoder/simgod/sub-1").exists()  # emptied: gone
    assert (other / CHECKPOINT_NAME).exists()  # a sibling job's checkpoint stays, and its parents
    clear_checkpoint(str(other))  # no root: stops below the `checkpoints` ancestor
    assert root.is_dir() and not any(root.iterdir())
    # a root given as an absolute path works the same; a folder outside the root: only itself
    save_checkpoint(mine, {"fingerprint": "x"})
    clear_checkpoint(mine.resolve(), root=root.resolve())
    assert root.is_dir() and not any(root.iterdir())
    elsewhere = tmp_path / "scratch" / "a" / "ck"
    save_checkpoint(elsewhere, {"fingerprint": "x"})
    clear_checkpoint(elsewhere, root=root)
    assert not elsewhere.exists() and (tmp_path / "scratch" / "a").is_dir()


def test_clear_checkpoint_never_climbs_above_the_working_directory(tmp_path, monkeypatch):
    work = tmp_path / "checkpoints" / "project"
    folder = work / "job" / "ck"
    save_checkpoint(folder, {"fingerprint": "x"})
    monkeypatch.chdir(work)
    clear_checkpoint(folder)  # the `checkpoints` ancestor lies above the working directory
    assert not (work / "job").exists() and work.is_dir() and (tmp_path / "checkpoints").is_dir()
    os.chdir(tmp_path)
    save_checkpoint(folder, {"fingerprint": "x"})
    clear_checkpoint(folder, root=tmp_path)  # the root is the working directory: all below it goes
    assert not (tmp_path / "checkpoints").exists() and tmp_path.is_dir()
