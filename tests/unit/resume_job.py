"""A tiny training job through the real ``Trainer`` and ``cli.run_step``, run as a subprocess by
test_resume.py and test_distributed.py (so it can be SIGKILLed / SIGTERMed like a SLURM job).

    python resume_job.py OUT_DIR CKPT_DIR [--lr 0.05] [--epochs 6] [--sleep 0] [--progress FILE]

Writes OUT_DIR/model.safetensors and OUT_DIR/loss.tsv; the log goes to OUT_DIR/job.log.
Also holds the helpers both tests use to run it and compare results.
``--world N`` runs it data-parallel on N CPU processes (gloo) through
``fmrirecon.train.distributed``.
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

from fmrirecon.cli import run_step
from fmrirecon.train.device import select_device
from fmrirecon.train.distributed import is_main_process
from fmrirecon.train.files import save_model
from fmrirecon.train.loop import Trainer, write_loss_log

N_SAMPLES, N_IN, N_OUT = 48, 10, 3


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N_SAMPLES, N_IN, generator=g)
    w = torch.randn(N_IN, N_OUT, generator=g)
    return x, x @ w + 0.1 * torch.randn(N_SAMPLES, N_OUT, generator=g)


def train(out_dir: str, ckpt_dir: str, lr: float, epochs: int, sleep: float, progress: str,
          deterministic: bool = False) -> None:
    settings = {"epochs": epochs, "batch_size": 8, "lr": lr, "lr_min": lr / 10, "schedule": "cosine",
                "warmup_fraction": 0.1, "optimizer": "adamw", "weight_decay": 0.01, "grad_clip": 1.0}  # fmt: skip
    training = {"checkpoint_every_steps": 4, "checkpoint_every_minutes": 10, "precision": "bf16"}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    torch.manual_seed(0)  # initial weights: the same in every process and every rerun
    p_drop, noise_sd = (0.0, 0.0) if deterministic else (0.2, 0.01)
    net = nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Dropout(p_drop), nn.Linear(16, N_OUT))
    x, y = data()

    def step_fn(idx, gen):
        # both sources of randomness a method uses: the step's generator and torch's global RNG
        # (dropout); the Trainer reseeds both from (seed, step)
        noise = noise_sd * torch.randn(len(idx), N_IN, generator=gen)
        loss = nn.functional.mse_loss(net(x[idx] + noise), y[idx])
        if progress and trainer.step >= 5:
            Path(progress).touch()
        if sleep:
            time.sleep(sleep)
        return {"loss": loss, "mse": loss.detach()}

    trainer = Trainer(name="tiny", modules={"net": net}, settings=settings, training=training,
                      checkpoint_dir=ckpt_dir, fingerprint=fingerprint, seed=7,
                      device=select_device("auto"))  # fmt: skip
    history = trainer.fit(N_SAMPLES, step_fn)
    if is_main_process():
        save_model(os.path.join(out_dir, "model.safetensors"), {"net": net}, settings)
        write_loss_log(os.path.join(out_dir, "loss.tsv"), history)
    trainer.finish()


# -- helpers for the tests ---------------------------------------------------------------------
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
    a = p.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    if a.world > 1:
        os.environ["FMRIRECON_NPROC"] = str(a.world)
    smk = SimpleNamespace(log=[os.path.join(a.out_dir, "job.log")], threads=a.world,
                          resources=SimpleNamespace(gpu=a.world))  # fmt: skip
    run_step(smk, train, out_dir=a.out_dir, ckpt_dir=a.ckpt_dir, lr=a.lr, epochs=a.epochs,
             sleep=a.sleep, progress=a.progress, deterministic=a.deterministic)  # fmt: skip


if __name__ == "__main__":
    main()
