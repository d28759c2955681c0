"""Progress lines (issue 19): at a wall-clock interval (fake clock here), not per step, with the
right rates and time left (worked out by hand), counting only the remaining steps after a resume;
the Trainer, batched inference and the diffusion sampler emit them without changing any number."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from fmrirecon.train.loop import Phase, Trainer
from fmrirecon.train.progress import PROGRESS_ENV, Progress, format_duration, progress_seconds


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "fmrirecon.progress"]


def test_interval_comes_from_the_environment(monkeypatch, caplog):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_seconds() == 30.0
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert progress_seconds() == 0.0
    assert Progress("x", 10).interval == 0.0  # read when a Progress starts
    monkeypatch.setenv(PROGRESS_ENV, "2.5")
    assert progress_seconds() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(PROGRESS_ENV, bad)
        with caplog.at_level(logging.WARNING):
            assert progress_seconds() == 30.0
    assert sum(PROGRESS_ENV in r.getMessage() for r in caplog.records) == 3


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(float("inf")) == "?"


def test_lines_at_the_interval_not_per_step(caplog):
    clock = Clock()
    p = Progress("stage", 100, interval=30, clock=clock)
    logged_at = []
    with caplog.at_level(logging.INFO):
        for step in range(1, 101):
            clock.t += 1.0  # one step per second
            if p.update(step, loss=float(step), n_samples=8):
                logged_at.append(step)
        p.done()
    assert logged_at == [30, 60, 90]  # every 30 s, not every step
    lines = _lines(caplog)
    assert len(lines) == 4 and p.lines == 4
    # step 30 at 30 s: 1 step/s, 8 samples/s, 70 steps left -> 70 s; loss = mean(1..30) = 15.5
    assert lines[0] == ("stage: step 30/100 (30.0%) loss=15.5 | 1 steps/s 8 samples/s "
                        "| elapsed 0:00:30 eta 0:01:10")  # fmt: skip
    # the loss is the mean since the previous line: mean(31..60) = 45.5
    assert "step 60/100 (60.0%) loss=45.5" in lines[1] and "eta 0:00:40" in lines[1]
    assert lines[3].startswith("stage: done step 100/100 (100.0%) loss=95.5")
    assert lines[3].endswith("elapsed 0:01:40 eta 0:00:00")


def test_eta_arithmetic_and_epochs(caplog):
    clock = Clock(0.0)
    p = Progress("train_x", 1200, per_epoch=120, interval=60, clock=clock)
    with caplog.at_level(logging.INFO):
        clock.t = 59.9
        assert not p.update(150, loss=0.5, n_samples=32)
        clock.t = 75.0  # 250 steps in 75 s: 3.333 steps/s; 950 left -> 285 s
        assert p.update(250, loss={"loss": 0.25}, n_samples=32)
    steps_per_s, samples_per_s, eta = p.rates(75.0)
    assert steps_per_s == pytest.approx(250 / 75)
    assert samples_per_s == pytest.approx(64 / 75)
    assert eta == pytest.approx(950 / (250 / 75)) == pytest.approx(285.0)
    line = _lines(caplog)[0]
    assert "step 250/1200 (20.8%) epoch 3/10 loss=0.375" in line  # mean of 0.5 and 0.25
    assert "3.33 steps/s 0.8533 samples/s" in line and line.endswith("elapsed 0:01:15 eta 0:04:45")
    # the next line is due one interval after this one
    clock.t = 134.9
    assert not p.update(251)
    clock.t = 135.0
    assert p.update(252)


def test_a_resumed_job_counts_only_what_is_left(caplog):
    clock = Clock(500.0)
    p = Progress("train_ldm", 1000, start=600, per_epoch=100, interval=30, clock=clock)
    with caplog.at_level(logging.INFO):
        clock.t += 40.0  # 80 steps since the restart in 40 s: 2 steps/s; 320 left -> 160 s
        assert p.update(680, loss=1.0, n_samples=16)
    assert p.rates(clock.t) == pytest.approx((2.0, 0.4, 160.0))
    line = _lines(caplog)[0]
    assert "step 680/1000 (68.0%) epoch 7/10" in line
    assert "2 steps/s" in line and "elapsed 0:00:40 eta 0:02:40 (resumed at step 600)" in line


def test_no_steps_no_rate_and_disabled_logs_nothing(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO):
        p = Progress("y", 10, interval=0, clock=clock)
        assert p.rates(clock.t) == (0.0, 0.0, float("inf"))
        q = Progress("z", 10, interval=0, clock=clock, enabled=False)
        assert not q.update(1, 1.0, 1)
        q.done()
        p.done()  # a job resumed at its end: nothing done, nothing to divide by
    assert _lines(caplog) == ["y: done step 0/10 (0.0%) | 0 steps/s | elapsed 0:00:00 eta ?"]


# -- the Trainer ----------------------------------------------------------------------------------
def _trainer(tmp_path, phases=False):
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    x, y = torch.randn(10, 4), torch.randn(10, 2)
    step = lambda idx, gen: {"loss": nn.functional.mse_loss(net(x[idx]), y[idx])}
    kw = {"phases": [Phase("g", net.parameters(), step)]} if phases else {}
    t = Trainer(name="tiny", modules={"net": net}, settings={"epochs": 3, "batch_size": 4, "lr": 0.01},
                training={}, checkpoint_dir=str(tmp_path / "ck"), fingerprint="f", seed=1,
                device=torch.device("cpu"), **kw)  # fmt: skip
    return t, (None if phases else step), net


def test_the_trainer_logs_progress_without_changing_numbers(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)  # default 30 s: a tiny run logs only its end
    quiet, step, net_q = _trainer(tmp_path / "q")
    with caplog.at_level(logging.INFO):
        quiet.fit(10, step)
    (only,) = _lines(caplog)
    assert only.startswith("tiny: done step 9/9 (100.0%) epoch 3/3 loss=")
    caplog.clear()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    trainer, step, net = _trainer(tmp_path / "a")
    with caplog.at_level(logging.INFO):
        trainer.fit(10, step)
    lines = _lines(caplog)
    # 10 samples in batches of 4: 3 steps an epoch (4 + 4 + 2 samples), 3 epochs; a line per step + done
    assert len(lines) == 10
    for k, line in enumerate(lines[:9], 1):
        assert line.startswith(f"tiny: step {k}/9 ") and f"epoch {(k + 2) // 3}/3" in line
        assert "steps/s" in line and "samples/s" in line and "eta" in line
    assert lines[-1].startswith("tiny: done step 9/9 (100.0%) epoch 3/3 loss=")
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net_q.parameters()))  # same numbers
    assert trainer.history == [{**r, "wall_s": trainer.history[i]["wall_s"]} for i, r in enumerate(quiet.history)]


def test_a_phased_trainer_shows_each_phase_loss(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PROGRESS_ENV, "0")
    trainer, _, _ = _trainer(tmp_path, phases=True)
    with caplog.at_level(logging.INFO):
        trainer.fit(10)
    assert all(" g/loss=" in m for m in _lines(caplog))


def test_a_resumed_trainer_counts_from_its_checkpoint(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PROGRESS_ENV, "0")
    first, step, _ = _trainer(tmp_path)
    first.training = {"checkpoint_every_steps": 1}
    first.settings = {**first.settings, "epochs": 1}  # 3 steps, then a checkpoint "from a killed run"
    first.fit(10, step)  # finished runs save nothing at their last step: save it ourselves
    first._save({})
    again, step, _ = _trainer(tmp_path)
    with caplog.at_level(logging.INFO):
        again.fit(10, step)
    lines = _lines(caplog)
    assert [m.split(" (")[0] for m in lines] == ["tiny: step 4/9", "tiny: step 5/9", "tiny: step 6/9",
                                                 "tiny: step 7/9", "tiny: step 8/9", "tiny: step 9/9",
                                                 "tiny: done step 9/9"]  # fmt: skip
    assert all(m.endswith("(resumed at step 3)") for m in lines)


# -- inference loops --------------------------------------------------------------------------------
def test_batched_logs_progress_only_when_named(monkeypatch, caplog):
    from fmrirecon.methods.common import batched

    monkeypatch.setenv(PROGRESS_ENV, "0")
    x = torch.arange(10.0).reshape(10, 1)
    with caplog.at_level(logging.INFO):
        plain = batched(lambda u: u * 2, x, device="cpu", batch=4)
        assert _lines(caplog) == []
        named = batched(lambda u: u * 2, x, device="cpu", batch=4, progress="encode")
    assert torch.equal(plain, named)
    lines = _lines(caplog)
    assert [m.split(" (")[0] for m in lines] == ["encode: step 1/3", "encode: step 2/3", "encode: step 3/3",
                                                 "encode: done step 3/3"]  # fmt: skip
    assert all("batches/s" in m and "samples/s" in m for m in lines)


@pytest.mark.parametrize("sampler", ["ddim", "plms"])
def test_sampling_calls_back_every_unet_step_and_changes_nothing(sampler):
    from fmrirecon.models.ldm import build_unet, sample, sampling_scheduler, train_scheduler

    torch.manual_seed(0)
    unet = build_unet("tiny", latent_size=4, cross_attention_dim=16, pooled_dim=8).eval()
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    tokens, pooled = torch.randn(2, 3, 16), torch.randn(2, 8)
    sched = sampling_scheduler(train_scheduler(), sampler)
    sched.set_timesteps(3)
    expected = len(sched.timesteps)  # what reconstruct_cad counts per batch (PLMS: one more)
    seen = []
    with torch.no_grad():
        plain = sample(unet, sampling_scheduler(train_scheduler(), sampler), tokens, pooled, noise, 3)
        watched = sample(unet, sched, tokens, pooled, noise, 3, on_step=seen.append)
    assert torch.equal(plain, watched)
    assert seen == list(range(1, expected + 1))
