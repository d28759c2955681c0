"""The multi-GPU path on CPU: two gloo processes launched by ``run_step`` (through torchrun and
``fmrirecon.train.worker``) train the tiny job of resume_job.py data-parallel; the result matches one
process on the same total batch.

Why not bit-identical: with two ranks each computes the mean loss of half the batch and the
gradients are averaged by an all-reduce, so the same sums are formed in another order (float
rounding, ~1e-7 relative per step). Per-sample randomness (dropout, noise) is drawn per rank, so
the comparison uses the job's deterministic variant; the stochastic variant is checked for
completing and resuming only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmrirecon.runner import PREEMPTED_EXIT
from fmrirecon.train import distributed
from fmrirecon.train.checkpoint import CHECKPOINT_NAME
from fmrirecon.train.distributed import CPUSyncBatchNorm, _job_code, function_ref, sync_batch_norm, world_size_for
from fmrirecon.train.distributed import batch_share


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
    assert "data-parallel: world size 2, backend gloo" in log
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    assert "[rank1]" in p2.stderr and "[rank1]" not in log  # the other rank logs to stderr, tagged
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 36 and summary["peak_memory_mib_max_rank"] > 0
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
    step = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 5 <= step < 36
    rerun = run_job(tmp_path, ckpt)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resumed from step {step}" in (tmp_path / "job.log").read_text()


def test_batchnorm_and_uneven_batches_match_one_process(tmp_path):
    """BatchNorm statistics span both ranks (synchronised), and a batch of 7 split 4/3 is weighted
    by samples: still the one-process result. Adam turns the ~1e-7 gradient differences of the
    4/3 split into ~1e-4 weight differences over 42 steps (without the sync or the weighting: ~0.5)."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = ("--deterministic", "--batchnorm", "--batch-size", "7")
    p1 = run_job(one, one / "ckpt", *args)
    p2 = run_job(two, two / "ckpt", *args, "--world", "2")
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stdout + p2.stderr
    assert "1 BatchNorm layer(s) synchronised across 2 ranks" in (two / "job.log").read_text()
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert "net.2.running_var" in w1
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=2e-3, atol=2e-3)
    for r1, r2 in zip(loss_rows(one)[1:], loss_rows(two)[1:], strict=True):
        for a, b in zip(r1[3:], r2[3:], strict=True):
            assert float(a) == pytest.approx(float(b), rel=1e-4)


def test_two_processes_train_the_gan(tmp_path):
    """Two optimisers data-parallel: both phases' gradients averaged, the same result as one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run_job(one, one / "ckpt", "--deterministic", "--gan", "--epochs", "2")
    p2 = run_job(two, two / "ckpt", "--deterministic", "--gan", "--epochs", "2", "--world", "2")
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stdout + p2.stderr
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert {k.split(".")[0] for k in w1} == {"generator", "discriminator"}
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)


def test_launcher_needs_an_importable_function():
    assert function_ref(world_size_for) == "fmrirecon.train.distributed:world_size_for"
    assert distributed.resolve_function(function_ref(world_size_for)) is world_size_for
    for bad in (lambda: None, "".join):
        with pytest.raises(TypeError, match="importable"):
            function_ref(bad)

    def nested():
        pass

    with pytest.raises(TypeError, match="importable"):
        function_ref(nested)


def test_job_exit_code_from_the_workers():
    assert _job_code(0, {0: 0, 1: 0}, 2) == 0
    assert _job_code(1, {0: PREEMPTED_EXIT, 1: PREEMPTED_EXIT}, 2) == PREEMPTED_EXIT
    assert _job_code(1, {0: PREEMPTED_EXIT}, 2) == PREEMPTED_EXIT  # rank 1 was stopped by torchrun
    assert _job_code(1, {0: PREEMPTED_EXIT, 1: 1}, 2) == 1  # a failure wins
    assert _job_code(1, {0: 0}, 2) == 1 and _job_code(0, {0: 0}, 2) == 1  # a rank never reported
    assert _job_code(-9, {}, 2) == 137


def test_no_import_circles():
    """Every module of fmrirecon.train, and the runner, imports alone in a fresh interpreter."""
    import pkgutil

    import fmrirecon.train

    modules = ["fmrirecon.runner"] + [f"fmrirecon.train.{m.name}" for m in pkgutil.iter_modules(fmrirecon.train.__path__)]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for m in modules:  # one interpreter per module: a circle shows only for the module imported first
        proc = subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{m}: {proc.stderr[-2000:]}"
    import ast

    tree = ast.parse(Path(distributed.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "runner" in m or "cli" in m]  # the launcher never imports the runner


def test_batch_shares_and_their_weights():
    idx = torch.arange(7)
    assert [(batch_share(idx, r, 2)[0].tolist(), batch_share(idx, r, 2)[1]) for r in (0, 1)] == [
        ([0, 2, 4, 6], 8 / 7), ([1, 3, 5], 6 / 7)]  # fmt: skip
    mine, w = batch_share(torch.arange(8), 1, 2)
    assert mine.tolist() == [1, 3, 5, 7] and w == 1.0
    mine, w = batch_share(torch.arange(1), 1, 2)  # nothing left for rank 1: rank 0's sample, weight 0
    assert mine.tolist() == [0] and w == 0.0


def test_sync_batch_norm_keeps_parameters_and_state_keys():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Sequential(torch.nn.BatchNorm1d(4)))
    params, keys = list(net.parameters()), list(net.state_dict())
    assert sync_batch_norm(net, torch.device("cpu")) == 2
    assert isinstance(net[1], CPUSyncBatchNorm) and isinstance(net[2][0], CPUSyncBatchNorm)
    assert all(p is q for p, q in zip(params, net.parameters(), strict=True)) and list(net.state_dict()) == keys
    x = torch.randn(5, 3)
    net.train()
    ref = torch.nn.functional.batch_norm(net[0](x), None, None, net[1].weight, net[1].bias, True)
    torch.testing.assert_close(net[1](net[0](x)), ref)  # one process: plain BatchNorm
    assert sync_batch_norm(net, torch.device("cpu")) == 0  # already synchronised
