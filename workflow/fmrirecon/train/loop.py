"""The one training loop every trained method uses: resumable, deterministic, preemption-safe.

A method supplies its modules and a ``step_fn(batch_indices, generator) -> {"loss": ..., ...}``;
the :class:`Trainer` owns everything else: the optimizer, the per-step learning rate, batching,
seeding, checkpoints, signals, loss history and (when ``torch.distributed`` is initialised)
gradient averaging across processes.

Several optimisers (a GAN: the discriminator, then the generator against the updated
discriminator) are :class:`Phase` s, run in order within one global step, each with its own
optimiser, learning rate, backward pass, gradient all-reduce and clipping::

    trainer = Trainer(..., phases=[
        Phase("discriminator", D.parameters(), d_step, {"lr": 2e-4, "betas": (0.5, 0.999)}),
        Phase("generator", G.parameters(), g_step, {"lr": 2e-4, "betas": (0.5, 0.999)}),
    ])
    trainer.fit(n_samples)

Their losses are logged as ``<phase>/<key>``; checkpoints hold every optimiser's state.

Determinism: the batch order of epoch ``e`` comes from a generator seeded by (seed, e), and every
step reseeds torch (and hands the step a generator) from (seed, step) — phase ``k`` with its own
salts (``10k`` for torch's global RNG, ``10k + 2`` for the generator; phase 0 and the single
optimiser use 0 and 2). A run stopped at any step and resumed from its checkpoint therefore
continues with exactly the numbers an uninterrupted run would have produced (on CPU, for a given
thread count).

Throughput and memory of a run: :meth:`Trainer.summary`, written by :func:`write_train_summary`.
While it runs: a progress line (step, epoch, loss, rate, time left) every
``FMRIRECON_PROGRESS_SECONDS`` and at the end (:mod:`.progress`).
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
from .distributed import all_reduce_mean, batch_share, rank, sync_batch_norm, world_size
from .optim import LR_KEYS, PHASE_KEYS, OptimiserState, Phase, make_optimizer, resolved_settings
from .progress import Progress
from .records import format_row, peak_memory_mib
from .schedules import lr_at

log = logging.getLogger("fmrirecon.train")

KILL_ENV = "FMRIRECON_KILL_AT_STEP"  # fault injection for the kill-and-resume tests ...
TEST_HOOKS_ENV = "FMRIRECON_TEST_HOOKS"  # ... armed only when this is "1" as well

def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919 + salt) % (2**63 - 1)


class Trainer:
    """Train ``modules`` with ``step_fn`` for ``settings['epochs']`` epochs over ``n_samples``.

    Args:
        name: shown in logs.
        modules: the trainable modules (saved in checkpoints, in this order).
        settings: ``epochs``, ``batch_size``, ``lr``, ``lr_min``, ``schedule``, ``warmup_fraction``,
            ``cycles``, ``weight_decay``, ``optimizer`` (adam | adamw | sgd), ``betas`` (Adam/AdamW,
            default (0.9, 0.999)), ``grad_clip`` (0 = off).
        training: the config's ``training`` block (checkpoint intervals, precision, checkpoint_dir).
        checkpoint_dir: this job's checkpoint folder (outside the rule's outputs).
        fingerprint: identifies settings + inputs; a checkpoint with another one is ignored.
        parameters: what the optimizer updates (default: every parameter of ``modules`` that
            requires grad) — frozen parts stay out. Not with ``phases``.
        phases: several optimisers, each with its own step function (:class:`Phase`, or tuples
            ``(name, parameters, step_fn[, settings])``), run in order within every step; then
            :meth:`fit` takes no ``step_fn``. Without: one optimiser over ``parameters``.

    After :meth:`fit`: ``step`` (global steps done), ``history`` and :meth:`summary`.
    ``optimizer`` is the single optimiser (None with phases); ``optimizers`` maps phase names to
    theirs (``""`` for the single one).
    """

    def __init__(self, *, name: str, modules: dict[str, nn.Module], settings: dict, training: dict,
                 checkpoint_dir: str, fingerprint: str, seed: int, device: torch.device,
                 parameters=None, phases=None):  # fmt: skip
        self.name = name
        self.modules = modules
        self.settings = settings
        self.training = training
        self.checkpoint_dir = checkpoint_dir
        self.fingerprint = fingerprint
        self.seed = int(seed)
        self.device = device
        self.history: list[dict] = []
        self.step = 0
        self.stopped_early = False  # fit ended by its stop_when
        self.rank, self.world = rank(), world_size()
        if self.world > 1:  # batch statistics over every rank's samples, as in one process
            synced = sum(sync_batch_norm(m, device) for m in modules.values())
            if synced:
                log.info("%s: %d BatchNorm layer(s) synchronised across %d ranks", name, synced, self.world)
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules.values()):
                log.warning("%s: a BatchNorm given as a top-level module stays per-rank", name)
        self.phased = phases is not None
        if self.phased:
            if parameters is not None:
                raise ValueError("Trainer: give the parameters of each phase, not `parameters`, with phases")
            self._opts = [self._phase(k, Phase(*p) if isinstance(p, tuple) else p) for k, p in enumerate(phases)]
            if not self._opts or len({o.name for o in self._opts}) != len(self._opts):
                raise ValueError("Trainer: phases need distinct, non-empty names")
            self.optimizer = None
            self.parameters = [p for o in self._opts for p in o.parameters]
        else:
            if parameters is None:
                parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
            self.parameters = list(parameters)
            self.optimizer = make_optimizer(self.parameters, self.settings)
            self._opts = [OptimiserState("", self.parameters, None, self.settings, self.optimizer, 0, 2, "")]
        self.optimizers = {o.name: o.optimizer for o in self._opts}
        self._run = {"steps": 0, "wall_s": 0.0, "train_wall_s": 0.0, "total_steps": None, "peak_all": None}

    def _phase(self, k: int, phase: Phase) -> OptimiserState:
        extra = sorted(set(phase.settings) - set(PHASE_KEYS))
        if extra or not phase.name:
            raise ValueError(f"Trainer phase {phase.name!r}: {extra} are settings of the whole run, not of a phase"
                             if extra else "Trainer: every phase needs a name")  # fmt: skip
        settings = {**self.settings, **phase.settings}
        params = list(phase.parameters)
        return OptimiserState(phase.name, params, phase.step_fn, settings, make_optimizer(params, settings),
                    10 * k, 10 * k + 2, f"{phase.name}/")  # fmt: skip

    def autocast(self):
        return autocast(self.device, self.training.get("precision", "bf16"))

    # -- checkpoints -------------------------------------------------------------------------
    def state(self, partial: dict) -> dict:
        state = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
        }
        if self.phased:
            state["optimizers"] = {o.name: o.optimizer.state_dict() for o in self._opts}
        else:
            state["optimizer"] = self.optimizer.state_dict()
        state.update(history=self.history, partial=partial)
        return state

    def _save(self, partial: dict) -> None:
        if self.rank == 0:
            save_checkpoint(self.checkpoint_dir, self.state(partial))
            log.info("%s: checkpoint at step %d -> %s", self.name, self.step, self.checkpoint_dir)

    def _restore(self) -> dict:
        state = load_checkpoint(self.checkpoint_dir, self.fingerprint)
        if state is None:
            return {}
        saved = state.get("optimizers") if self.phased else {"": state.get("optimizer")}
        fits = (isinstance(saved, dict) and set(saved) == set(self.optimizers)
                and all(isinstance(v, dict) for v in saved.values())
                and isinstance(state.get("modules"), dict) and set(state["modules"]) == set(self.modules))  # fmt: skip
        if not fits:
            log.warning("ignoring checkpoint in %s: its optimisers or modules are not this job's", self.checkpoint_dir)
            return {}
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for o in self._opts:
            o.optimizer.load_state_dict(saved[o.name])
        self.step = int(state["step"])
        self.history = list(state["history"])
        log.info("%s: resumed from step %d (%s)", self.name, self.step, self.checkpoint_dir)
        return dict(state.get("partial") or {})

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, n_samples: int, step_fn=None, on_epoch=None, stop_when=None) -> list[dict]:
        """Run (or finish) training; returns the per-epoch loss history.

        ``step_fn(batch_indices, generator) -> {"loss": ..., ...}`` for the single optimiser; none
        with phases (each phase has its own). ``on_epoch(epoch) -> {name: value}`` (optional) adds
        columns to each epoch's row (e.g. a validation loss, modules in eval mode meanwhile);
        ``stop_when(history) -> bool`` (optional) ends training after an epoch (early stopping), and
        is asked again after a resume, so a run killed after it stopped does not train on.
        """
        if self.phased == (step_fn is not None):
            raise TypeError("Trainer.fit: pass step_fn without phases, and none with phases")
        if not self.phased:
            self._opts[0].step_fn = step_fn
        t_begin = time.monotonic()
        bs = int(self.settings["batch_size"])
        epochs = int(self.settings["epochs"])
        per_epoch = max(1, math.ceil(n_samples / bs))
        total = per_epoch * epochs
        self._run["total_steps"] = total
        partial = self._restore()
        first_step = self.step
        every_steps = int(self.training.get("checkpoint_every_steps", 200))
        every_s = float(self.training.get("checkpoint_every_minutes", 10)) * 60.0
        kill_at = _kill_step()
        # one "lr" column when every phase follows the same schedule, else "<phase>/lr"
        one_lr = len({tuple(str(o.settings.get(k)) for k in LR_KEYS) for o in self._opts}) == 1
        last_save = time.monotonic()
        start = time.monotonic() - float(partial.get("wall_s", 0.0))
        # a line every FMRIRECON_PROGRESS_SECONDS (rate and time left measured since this start)
        progress = Progress(self.name, total, start=first_step, per_epoch=per_epoch, enabled=self.rank == 0)
        for m in self.modules.values():
            m.train()
        self.stopped_early = bool(stop_when and self.history and stop_when(self.history))
        with StopRequest() as stop:
            while self.step < total and not self.stopped_early:
                epoch, pos = divmod(self.step, per_epoch)
                order = torch.randperm(
                    n_samples, generator=torch.Generator().manual_seed(step_seed(self.seed, epoch, 1))
                )
                idx = order[pos * bs : (pos + 1) * bs]
                n_batch = len(idx)  # the global batch (every rank's share)
                weight = 1.0  # this rank's share of the batch x world size (1 when the shares are equal)
                if self.world > 1:
                    idx, weight = batch_share(idx, self.rank, self.world)
                logged, lrs = {}, {}
                for o in self._opts:
                    lrs[o.name] = lr = lr_at(self.step, total, o.settings)
                    for group in o.optimizer.param_groups:
                        group["lr"] = lr
                    torch.manual_seed(step_seed(self.seed, self.step, o.seed_salt))
                    gen = torch.Generator().manual_seed(step_seed(self.seed, self.step, o.gen_salt))
                    o.optimizer.zero_grad(set_to_none=True)
                    with self.autocast():
                        losses = o.step_fn(idx, gen)
                    loss = losses["loss"]
                    if not torch.isfinite(loss):
                        where = f" ({o.name})" if o.name else ""
                        raise FloatingPointError(
                            f"{self.name}: loss{where} is {loss.item()} at step {self.step} (epoch {epoch}); "
                            "lower the learning rate"
                        )
                    # a last, uneven batch: weigh each rank's mean loss by its share of the samples
                    (loss if weight == 1.0 else loss * weight).backward()
                    if self.world > 1:
                        all_reduce_mean([p.grad for p in o.parameters if p.grad is not None], self.world)
                    clip = float(o.settings.get("grad_clip", 0.0))
                    if clip > 0:
                        torch.nn.utils.clip_grad_norm_(o.parameters, clip)
                    o.optimizer.step()
                    logged.update({o.prefix + k: float(v.detach()) * weight for k, v in losses.items()})
                self.step += 1
                self._run["steps"] = self.step - first_step
                stopping = stop.requested
                if self.world > 1:  # every rank logs the whole batch's losses and stops together
                    logged, stopping = self._sync(logged, stopping)
                for k, v in logged.items():
                    partial[k] = partial.get(k, 0.0) + v
                partial["_n"] = partial.get("_n", 0) + 1
                if pos + 1 == per_epoch:
                    n = partial.pop("_n")
                    partial.pop("wall_s", None)
                    row = {"epoch": epoch + 1, "step": self.step}
                    if one_lr:
                        row["lr"] = lrs[self._opts[0].name]
                    else:
                        row.update({f"{name}/lr": v for name, v in lrs.items()})
                    row.update({k: v / n for k, v in sorted(partial.items())})
                    if on_epoch is not None:
                        for m in self.modules.values():
                            m.eval()
                        with torch.no_grad():
                            row.update(on_epoch(epoch + 1))
                        for m in self.modules.values():
                            m.train()
                    row["wall_s"] = round(time.monotonic() - start, 3)
                    self.history.append(row)
                    partial = {}
                    log.info("%s: %s", self.name, format_row(row))
                    if stop_when is not None and stop_when(self.history):
                        self.stopped_early = True
                        log.info("%s: early stop after epoch %d", self.name, epoch + 1)
                progress.update(self.step, _progress_loss(logged, self.phased), n_batch)
                partial["wall_s"] = time.monotonic() - start
                self._run["wall_s"] = time.monotonic() - t_begin
                self._run["train_wall_s"] = partial["wall_s"]
                if self.step == kill_at:
                    self._inject_kill()
                due = self.step % every_steps == 0 or time.monotonic() - last_save >= every_s
                if stopping or (due and self.step < total and not self.stopped_early):
                    self._save(partial)
                    last_save = time.monotonic()
                if stopping:
                    by = signal.Signals(stop.signum).name if stop.signum else "a signal to another rank"
                    raise Preempted(
                        f"{self.name}: stopped by {by} at step "
                        f"{self.step}/{total}; checkpoint saved in {self.checkpoint_dir}, a rerun resumes"
                    )
        progress.done()
        for m in self.modules.values():
            m.eval()
        self._run["wall_s"] = time.monotonic() - t_begin
        if self.world > 1:  # the largest peak of any rank (every rank gets here together)
            peak = torch.tensor([peak_memory_mib(self.device)[0]], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
            self._run["peak_all"] = float(peak.cpu()[0])
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
        """Fault injection (``FMRIRECON_KILL_AT_STEP=N`` with ``FMRIRECON_TEST_HOOKS=1``): SIGKILL
        this process at step N, once per job. A marker in the checkpoint folder keeps the resumed
        run from killing itself again."""
        marker = os.path.join(self.checkpoint_dir, ".killed-once")
        if self.rank != 0 or os.path.exists(marker):
            return
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        open(marker, "w").close()
        log.warning("%s: %s=%d: killing myself with SIGKILL", self.name, KILL_ENV, self.step)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

    # -- reporting ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """Throughput and memory of this process's run, and the settings it trained with.

        ``steps``: global steps done (all attempts); ``steps_this_run`` / ``wall_s``: this
        process's :meth:`fit` (after a resume: only the rest) and ``steps_per_s`` of it;
        ``samples_per_s``: ``steps_per_s`` x the global batch size; ``peak_memory_mib``: CUDA's
        ``max_memory_allocated`` on a GPU, else the process's peak RSS (``peak_memory_kind`` says
        which), with ``peak_memory_mib_max_rank`` the largest over data-parallel ranks.
        """
        run = self._run
        steps_per_s = run["steps"] / run["wall_s"] if run["wall_s"] > 0 else 0.0
        peak, kind = peak_memory_mib(self.device)
        precision = self.training.get("precision", "bf16")
        if self.phased:
            settings = {
                "epochs": self.settings.get("epochs"), "batch_size": self.settings.get("batch_size"),
                "phases": {o.name: resolved_settings({k: v for k, v in o.settings.items() if k in PHASE_KEYS})
                           for o in self._opts},
            }  # fmt: skip
        else:
            settings = resolved_settings(self.settings)
        out = {
            "name": self.name,
            "steps": self.step,
            "total_steps": run["total_steps"],
            "steps_this_run": run["steps"],
            "wall_s": round(run["wall_s"], 3),
            "train_wall_s_all_runs": round(run["train_wall_s"], 3),
            "steps_per_s": round(steps_per_s, 4),
            "samples_per_s": round(steps_per_s * int(self.settings.get("batch_size", 0)), 3),
            "peak_memory_mib": round(peak, 1),
            "peak_memory_kind": kind,
            "device": self.device.type,
            "precision": "bf16" if self.device.type == "cuda" and precision == "bf16" else "fp32",
            "world_size": self.world,
            "stopped_early": self.stopped_early,
            "threads": torch.get_num_threads(),
            "optimizers": [o.name for o in self._opts] if self.phased else [],
            "settings": settings,
            "training": {k: self.training[k] for k in ("checkpoint_every_steps", "checkpoint_every_minutes",
                                                        "precision", "device") if k in self.training},
        }  # fmt: skip
        if self.device.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(self.device)
        if run["peak_all"] is not None:
            out["peak_memory_mib_max_rank"] = round(run["peak_all"], 1)
        return out

    def finish(self) -> None:
        """Remove the checkpoint (and its emptied parent folders below ``training.checkpoint_dir``)
        once the job's outputs are written."""
        if self.rank == 0:
            clear_checkpoint(self.checkpoint_dir, root=self.training.get("checkpoint_dir"))


def _progress_loss(logged: dict, phased: bool):
    """The step's loss for the progress line: ``loss``, or each phase's ``<phase>/loss``."""
    if phased:
        return {k: v for k, v in logged.items() if k.endswith("/loss")}
    return logged.get("loss")


def _kill_step() -> int:
    """The step of the fault-injection SIGKILL, or -1 (off unless test hooks are enabled)."""
    at = os.environ.get(KILL_ENV, "").strip()
    if not at:
        return -1
    if os.environ.get(TEST_HOOKS_ENV, "") != "1":
        log.warning("%s is set but %s is not 1: ignored (a test hook)", KILL_ENV, TEST_HOOKS_ENV)
        return -1
    return int(at)


