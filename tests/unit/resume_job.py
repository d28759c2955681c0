"""A tiny training job through the real ``Trainer`` and ``runner.run_step``, run as a subprocess by
test_resume.py and test_distributed.py (so it can be SIGKILLed / SIGTERMed like a SLURM job).

    python resume_job.py OUT_DIR CKPT_DIR [--lr 0.05] [--epochs 6] [--sleep 0] [--progress FILE] [--gan]

Writes OUT_DIR/model.safetensors, OUT_DIR/loss.tsv and OUT_DIR/summary.json; the log goes to
OUT_DIR/job.log. Also holds the helpers both tests use to run it and compare results.
``--world N`` runs it data-parallel on N CPU processes (gloo) through torchrun
(``fmrirecon.train.distributed.launch``). ``--gan`` trains a tiny conditional GAN instead (pix2pix's
two optimisers: the discriminator on detached fakes, then the generator against the updated
discriminator, plus an L1 term).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file
from torch import nn

from fmrirecon.runner import run_step
from fmrirecon.train.device import select_device
from fmrirecon.train.distributed import rank
from fmrirecon.train.files import save_model
from fmrirecon.train.loop import Phase, Trainer
from fmrirecon.train.records import write_loss_log, write_train_summary

N_SAMPLES, N_IN, N_OUT = 48, 10, 3


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N_SAMPLES, N_IN, generator=g)
    w = torch.randn(N_IN, N_OUT, generator=g)
    return x, x @ w + 0.1 * torch.randn(N_SAMPLES, N_OUT, generator=g)


def train(out_dir: str, ckpt_dir: str, lr: float, epochs: int, sleep: float, progress: str,
          deterministic: bool = False, gan: bool = False, batchnorm: bool = False, batch_size: int = 8) -> None:
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_min": lr / 10, "schedule": "cosine",
                "warmup_fraction": 0.1, "optimizer": "adamw", "weight_decay": 0.01, "grad_clip": 1.0}  # fmt: skip
    if gan:
        settings["gan"] = True  # a different job: a single-optimiser checkpoint must not be resumed
    training = {"checkpoint_every_steps": 4, "checkpoint_every_minutes": 10, "precision": "bf16"}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    torch.manual_seed(0)  # initial weights: the same in every process and every rerun
    p_drop, noise_sd = (0.0, 0.0) if deterministic else (0.2, 0.01)
    norm = nn.BatchNorm1d(16) if batchnorm else nn.Identity()  # after the ReLU: no bias it cancels
    net = nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), norm, nn.Dropout(p_drop), nn.Linear(16, N_OUT))
    x, y = data()

    def pause(trainer):
        if progress and trainer.step >= 5:
            Path(progress).touch()
        if sleep:
            time.sleep(sleep)

    def step_fn(idx, gen):
        # both sources of randomness a method uses: the step's generator and torch's global RNG
        # (dropout); the Trainer reseeds both from (seed, step)
        noise = noise_sd * torch.randn(len(idx), N_IN, generator=gen)
        loss = nn.functional.mse_loss(net(x[idx] + noise), y[idx])
        pause(trainer)
        return {"loss": loss, "mse": loss.detach()}

    if gan:
        modules = {"generator": net, "discriminator": _discriminator(p_drop)}
        trainer = Trainer(name="tinygan", modules=modules, settings=settings, training=training,
                          checkpoint_dir=ckpt_dir, fingerprint=fingerprint, seed=7, device=select_device("auto"),
                          phases=_gan_phases(net, modules["discriminator"], x, y, noise_sd, lambda: pause(trainer)))  # fmt: skip
        history = trainer.fit(N_SAMPLES)
    else:
        modules = {"net": net}
        trainer = Trainer(name="tiny", modules=modules, settings=settings, training=training,
                          checkpoint_dir=ckpt_dir, fingerprint=fingerprint, seed=7,
                          device=select_device("auto"))  # fmt: skip
        history = trainer.fit(N_SAMPLES, step_fn)
    if rank() == 0:
        save_model(os.path.join(out_dir, "model.safetensors"), modules, settings)
        write_loss_log(os.path.join(out_dir, "loss.tsv"), history)
    write_train_summary(os.path.join(out_dir, "summary.json"), trainer, {"job": "resume_job"})
    trainer.finish()


def _discriminator(p_drop: float) -> nn.Module:
    """Scores an (input, output) pair: real pairs high, generated ones low."""
    return nn.Sequential(nn.Linear(N_IN + N_OUT, 16), nn.LeakyReLU(0.2), nn.Dropout(p_drop), nn.Linear(16, 1))


def _gan_phases(G, D, x, y, noise_sd, pause) -> list[Phase]:
    """pix2pix's step: D on real pairs and detached fakes, then G against the updated D plus L1."""
    bce = nn.functional.binary_cross_entropy_with_logits
    adam = {"optimizer": "adam", "weight_decay": 0.0, "betas": (0.5, 0.999)}

    def d_step(idx, gen):
        with torch.no_grad():
            fake = G(x[idx] + noise_sd * torch.randn(len(idx), N_IN, generator=gen))
        real_score, fake_score = D(torch.cat([x[idx], y[idx]], 1)), D(torch.cat([x[idx], fake], 1))
        loss = 0.5 * (bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score)))
        return {"loss": loss}

    def g_step(idx, gen):
        fake = G(x[idx] + noise_sd * torch.randn(len(idx), N_IN, generator=gen))
        score = D(torch.cat([x[idx], fake], 1))
        adv, l1 = bce(score, torch.ones_like(score)), nn.functional.l1_loss(fake, y[idx])
        pause()
        return {"loss": adv + 10.0 * l1, "adv": adv.detach(), "l1": l1.detach()}

    return [Phase("discriminator", D.parameters(), d_step, {**adam, "lr": 0.01, "lr_min": 0.001}),
            Phase("generator", G.parameters(), g_step, {**adam, "lr": 0.05, "lr_min": 0.005})]  # fmt: skip


# -- helpers for the tests ---------------------------------------------------------------------
def kill_at(step: int) -> dict:
    """The environment of a job that SIGKILLs itself at ``step`` (the hook needs test hooks on)."""
    return {"FMRIRECON_KILL_AT_STEP": str(step), "FMRIRECON_TEST_HOOKS": "1"}


def run_job(out: Path, ckpt: Path, *args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, str(Path(__file__).resolve()), str(out), str(ckpt), *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FMRIRECON_")}
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    if not wait:  # own process group, so a test can signal the job and its workers like SLURM does
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # fmt: skip
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


def loss_rows(out: Path) -> list[list[str]]:
    """The loss log without its wall-clock column (the only field allowed to differ)."""
    lines = [ln.split("\t") for ln in (out / "loss.tsv").read_text().splitlines()]
    keep = [i for i, k in enumerate(lines[0]) if k != "wall_s"]
    return [[row[i] for i in keep] for row in lines]


def assert_same_result(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"
    assert loss_rows(a) == loss_rows(b)


# -- the job ---------------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("ckpt_dir")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--progress", default="")
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--deterministic", action="store_true", help="no dropout, no input noise")
    p.add_argument("--gan", action="store_true", help="a tiny two-optimiser GAN instead of a regression")
    p.add_argument("--batchnorm", action="store_true", help="a BatchNorm layer in the network")
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    if a.world > 1:
        os.environ["FMRIRECON_NPROC"] = str(a.world)
    smk = SimpleNamespace(log=[os.path.join(a.out_dir, "job.log")], threads=a.world,
                          resources=SimpleNamespace(gpu=a.world))  # fmt: skip
    # the data-parallel workers import the step function: this file as module `resume_job`, not __main__
    import resume_job

    run_step(smk, resume_job.train, out_dir=a.out_dir, ckpt_dir=a.ckpt_dir, lr=a.lr, epochs=a.epochs,
             sleep=a.sleep, progress=a.progress, deterministic=a.deterministic, gan=a.gan,
             batchnorm=a.batchnorm, batch_size=a.batch_size)  # fmt: skip


if __name__ == "__main__":
    main()
