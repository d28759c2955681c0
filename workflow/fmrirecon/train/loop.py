"""The one training loop every trained method uses: resumable, deterministic, preemption-safe.

A method supplies its modules and a ``step_fn(batch_indices, generator) -> {"loss": ..., ...}``;
the :class:`Trainer` owns everything else: the optimizer, the per-step learning rate, batching,
seeding, checkpoints, signals, loss history and (when ``torch.distributed`` is initialised)
gradient averaging across processes.

Determinism: the batch order of epoch ``e`` comes from a generator seeded by (seed, e), and every
step reseeds torch (and hands the step a generator) from (seed, step). A run stopped at any step
and resumed from its checkpoint therefore continues with exactly the numbers an uninterrupted run
would have produced (on CPU, for a given thread count).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time

import torch
from torch import nn

from .checkpoint import Preempted, StopRequest, clear_checkpoint, load_checkpoint, save_checkpoint
from .device import autocast
from .schedules import lr_at

log = logging.getLogger("fmrirecon.train")

KILL_ENV = "FMRIRECON_KILL_AT_STEP"  # fault injection for the kill-and-resume tests


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919 + salt) % (2**63 - 1)


def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Trainer:
    """Train ``modules`` with ``step_fn`` for ``settings['epochs']`` epochs over ``n_samples``.

    Args:
        name: shown in logs.
        modules: the trainable modules (saved in checkpoints, in this order).
        settings: ``epochs``, ``batch_size``, ``lr``, ``lr_min``, ``schedule``, ``warmup_fraction``,
            ``cycles``, ``weight_decay``, ``optimizer`` (adam | adamw | sgd), ``grad_clip`` (0 = off).
        training: the config's ``training`` block (checkpoint intervals, precision).
        checkpoint_dir: this job's checkpoint folder (outside the rule's outputs).
        fingerprint: identifies settings + inputs; a checkpoint with another one is ignored.
        parameters: what the optimizer updates (default: every parameter of ``modules`` that
            requires grad) — frozen parts stay out.
    """

    def __init__(self, *, name: str, modules: dict[str, nn.Module], settings: dict, training: dict,
                 checkpoint_dir: str, fingerprint: str, seed: int, device: torch.device,
                 parameters=None):  # fmt: skip
        self.name = name
        self.modules = modules
        self.settings = settings
        self.training = training
        self.checkpoint_dir = checkpoint_dir
        self.fingerprint = fingerprint
        self.seed = int(seed)
        self.device = device
        if parameters is None:
            parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        self.parameters = list(parameters)
        self.optimizer = self._make_optimizer()
        self.history: list[dict] = []
        self.step = 0
        self.rank, self.world = _dist()

    def _make_optimizer(self):
        kind = self.settings.get("optimizer", "adam")
        lr, wd = float(self.settings["lr"]), float(self.settings.get("weight_decay", 0.0))
        if kind == "adam":
            return torch.optim.Adam(self.parameters, lr=lr, weight_decay=wd)
        if kind == "adamw":
            return torch.optim.AdamW(self.parameters, lr=lr, weight_decay=wd)
        if kind == "sgd":
            return torch.optim.SGD(self.parameters, lr=lr, momentum=0.9, weight_decay=wd)
        raise ValueError(f"unknown optimizer {kind!r}")

    def autocast(self):
        return autocast(self.device, self.training.get("precision", "bf16"))

    # -- checkpoints -------------------------------------------------------------------------
    def state(self, partial: dict) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "partial": partial,
        }

    def _save(self, partial: dict) -> None:
        if self.rank == 0:
            save_checkpoint(self.checkpoint_dir, self.state(partial))
            log.info("%s: checkpoint at step %d -> %s", self.name, self.step, self.checkpoint_dir)

    def _restore(self) -> dict:
        state = load_checkpoint(self.checkpoint_dir, self.fingerprint)
        if state is None:
            return {}
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        log.info("%s: resumed from step %d (%s)", self.name, self.step, self.checkpoint_dir)
        return dict(state.get("partial") or {})

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, n_samples: int, step_fn) -> list[dict]:
        """Run (or finish) training; returns the per-epoch loss history."""
        bs = int(self.settings["batch_size"])
        epochs = int(self.settings["epochs"])
        per_epoch = max(1, math.ceil(n_samples / bs))
        total = per_epoch * epochs
        partial = self._restore()
        every_steps = int(self.training.get("checkpoint_every_steps", 200))
        every_s = float(self.training.get("checkpoint_every_minutes", 10)) * 60.0
        kill_at = int(os.environ.get(KILL_ENV, "-1"))
        last_save = time.monotonic()
        start = time.monotonic() - float(partial.get("wall_s", 0.0))
        for m in self.modules.values():
            m.train()
        with StopRequest() as stop:
            while self.step < total:
                epoch, pos = divmod(self.step, per_epoch)
                order = torch.randperm(
                    n_samples, generator=torch.Generator().manual_seed(step_seed(self.seed, epoch, 1))
                )
                idx = order[pos * bs : (pos + 1) * bs]
                if self.world > 1:
                    idx = idx[self.rank :: self.world]
                lr = lr_at(self.step, total, self.settings)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(step_seed(self.seed, self.step))
                gen = torch.Generator().manual_seed(step_seed(self.seed, self.step, 2))
                self.optimizer.zero_grad(set_to_none=True)
                with self.autocast():
                    losses = step_fn(idx, gen)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: loss is {loss.item()} at step {self.step} (epoch {epoch}); "
                        "lower the learning rate"
                    )
                loss.backward()
                if self.world > 1:
                    for p in self.parameters:
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= self.world
                clip = float(self.settings.get("grad_clip", 0.0))
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.parameters, clip)
                self.optimizer.step()
                self.step += 1
                logged = {k: float(v.detach()) for k, v in losses.items()}
                stopping = stop.requested
                if self.world > 1:  # every rank logs the whole batch's losses and stops together
                    logged, stopping = self._sync(logged, stopping)
                for k, v in logged.items():
                    partial[k] = partial.get(k, 0.0) + v
                partial["_n"] = partial.get("_n", 0) + 1
                if pos + 1 == per_epoch:
                    n = partial.pop("_n")
                    partial.pop("wall_s", None)
                    row = {"epoch": epoch + 1, "step": self.step, "lr": lr}
                    row.update({k: v / n for k, v in sorted(partial.items())})
                    row["wall_s"] = round(time.monotonic() - start, 3)
                    self.history.append(row)
                    partial = {}
                    log.info("%s: %s", self.name, _fmt(row))
                partial["wall_s"] = time.monotonic() - start
                if self.step == kill_at:
                    self._inject_kill()
                due = self.step % every_steps == 0 or time.monotonic() - last_save >= every_s
                if stopping or (due and self.step < total):
                    self._save(partial)
                    last_save = time.monotonic()
                if stopping:
                    by = signal.Signals(stop.signum).name if stop.signum else "a signal to another rank"
                    raise Preempted(
                        f"{self.name}: stopped by {by} at step "
                        f"{self.step}/{total}; checkpoint saved in {self.checkpoint_dir}, a rerun resumes"
                    )
        for m in self.modules.values():
            m.eval()
        return self.history

    def _sync(self, logged: dict, stopping: bool) -> tuple[dict, bool]:
        """Average the step's logged losses over ranks and stop if any rank was signalled (ranks
        that stopped at different steps would wait for each other forever)."""
        keys = sorted(logged)
        vals = torch.tensor([logged[k] for k in keys] + [float(stopping)], dtype=torch.float64)
        vals = vals.to(self.device)  # NCCL reduces CUDA tensors only
        torch.distributed.all_reduce(vals)
        vals = vals.cpu()
        return {k: float(vals[i]) / self.world for i, k in enumerate(keys)}, bool(vals[-1] > 0)

    def _inject_kill(self) -> None:
        """Fault injection (``FMRIRECON_KILL_AT_STEP=N``): SIGKILL this process at step N, once
        per job. A marker in the checkpoint folder keeps the resumed run from killing itself again."""
        marker = os.path.join(self.checkpoint_dir, ".killed-once")
        if self.rank != 0 or os.path.exists(marker):
            return
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        open(marker, "w").close()
        log.warning("%s: %s=%d: killing myself with SIGKILL", self.name, KILL_ENV, self.step)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

    def finish(self) -> None:
        """Remove the checkpoint once the job's outputs are written."""
        if self.rank == 0:
            clear_checkpoint(self.checkpoint_dir)


def _fmt(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def write_loss_log(path: str, history: list[dict]) -> None:
    """Per-epoch losses as TSV (the report plots it)."""
    from ..data.atomic import atomic_path

    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(keys) + "\n")
        for row in history:
            fh.write("\t".join(str(row.get(k, "")) for k in keys) + "\n")
