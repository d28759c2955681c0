"""Data-parallel training on several GPUs (or CPU processes) of one node.

A rule that asks for ``gpu=N`` with N > 1 (``training.gpus`` in the config, or ``set-resources`` in a
profile) gets N GPUs from SLURM in one job. :func:`fmrirecon.runner.run_step` then calls
:func:`launch`, which runs torch's own launcher (``python -m torch.distributed.run --standalone``)
on :mod:`fmrirecon.train.worker`: N fresh interpreters, one per GPU, that never import the rule's
adapter script. Each joins the process group (NCCL on CUDA, gloo on CPU) from the environment
torchrun sets and calls the same step function with the same arguments (read from a JSON spec, so
the function must be an importable module-level function and its arguments JSON values). The
:class:`~fmrirecon.train.loop.Trainer` sees the initialised group: each rank takes its share of
every batch, gradients and logged losses are averaged, and rank 0 writes checkpoints. Everything a
step writes outside the Trainer goes through :func:`fmrirecon.data.atomic.atomic_path`, which lets
only rank 0 write; anything else must check ``rank() == 0``. BatchNorm layers of the Trainer's
modules are synchronised (:func:`sync_batch_norm`): their batch statistics cover every rank's
samples, as in one process on the whole batch. Per-sample random draws (dropout, noise from the
step's generator) are not the ones one process would make, so only deterministic steps give the
one-process result (up to float rounding).

The number of processes (:func:`world_size_for`):

- ``FMRIRECON_NPROC`` if set (testing the data-parallel path on CPU, or forcing 1);
- else the job's ``gpu`` resource when torch sees at least that many CUDA devices;
- else as many CUDA devices as are visible (a log line says so), and 1 without CUDA: a rule that asked
  for 2 GPUs on a CPU-only run trains in one CPU process, exactly as with ``gpu=1``.

Signals: SLURM sends SIGTERM (preemption, time limit) or SIGUSR1 to every process of the job step.
The launcher ignores them and waits; torchrun forwards both to the workers (``--signals-to-handle``);
the workers agree on the step at which to stop (the Trainer all-reduces the stop flag), rank 0
checkpoints, and all exit 75. If any worker dies, torchrun terminates the others and the launcher
exits non-zero, so Snakemake retries the job and it resumes from rank 0's last checkpoint. Each
worker reports its exit code in a file, because torchrun's own exit status is 1 for any failure.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .checkpoint import PREEMPTED_EXIT

log = logging.getLogger("fmrirecon.train")

NPROC_ENV = "FMRIRECON_NPROC"
# the signals torchrun forwards to the workers (its default list lacks SLURM's SIGUSR1 warning)
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
SHUTDOWN_TIMEOUT_S = 60  # how long torchrun lets signalled workers checkpoint before SIGKILL


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def world_size() -> int:
    """How many data-parallel processes train together (1 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def world_size_for(gpus) -> int:
    """How many data-parallel processes a job with ``gpu=gpus`` should run (see module doc)."""
    env = os.environ.get(NPROC_ENV, "").strip()
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"{NPROC_ENV}={env!r}: expected a positive integer")
        return n
    try:
        wanted = int(gpus or 0)
    except (TypeError, ValueError):
        wanted = 0
    if wanted <= 1:
        return 1
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible >= wanted:
        return wanted
    log.warning(
        "the job asked for %d GPUs but torch sees %d: running %d process(es)",
        wanted, visible, max(1, visible),
    )  # fmt: skip
    return max(1, visible)


# -- synchronised BatchNorm ------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks (the backward sums the gradients over ranks as well)."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover every rank's samples, for CPU processes (gloo);
    torch's :class:`~torch.nn.SyncBatchNorm` needs a GPU. Same parameters and buffers as BatchNorm
    (checkpoints and model files are unchanged); in eval mode, or in one process, it is BatchNorm."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // max(c, 1)], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / n  # two passes: no E[x²]-E[x]² cancellation
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n_ = float(n)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n_ / max(n_ - 1, 1)), alpha=m)
        return y


def sync_batch_norm(module: nn.Module, device: torch.device) -> int:
    """Replace the BatchNorm layers inside ``module`` by synchronised ones (torch's
    :class:`~torch.nn.SyncBatchNorm` on CUDA, :class:`CPUSyncBatchNorm` on CPU), keeping their
    parameter and buffer objects, so optimisers and callers' references stay valid. Returns how
    many were replaced. ``module`` itself is never replaced (callers hold it)."""
    cls = nn.SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.modules.batchnorm._BatchNorm) or isinstance(
                child, (nn.SyncBatchNorm, CPUSyncBatchNorm)
            ):
                continue
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(parent, name, new)
            replaced += 1
    return replaced


# -- the launcher (parent side) -----------------------------------------------------------------
def function_ref(function) -> str:
    """``"module:qualname"`` of an importable module-level function (what a worker imports).

    Raises:
        TypeError: ``function`` is a lambda, a nested function, a bound method or lives in
            ``__main__`` (a script run directly): a fresh interpreter could not import it.
    """
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "." in qualname or "<" in qualname:
        raise TypeError(
            f"data-parallel training needs an importable module-level function, not "
            f"{module}:{qualname or function!r}"
        )
    if resolve_function(f"{module}:{qualname}") is not function:
        raise TypeError(f"{module}:{qualname} does not import back to the same function")
    return f"{module}:{qualname}"


def resolve_function(ref: str):
    """The function named by :func:`function_ref`'s ``"module:qualname"``."""
    module, _, qualname = ref.partition(":")
    return getattr(importlib.import_module(module), qualname)


def _import_root(module_name: str) -> str | None:
    """The sys.path folder ``module_name`` was imported from (``.../workflow`` for fmrirecon.*)."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return None
    root = Path(path).resolve().parent
    depth = module_name.count(".") + (1 if Path(path).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    return str(root)


def _json_kwargs(kwargs: dict) -> dict:
    """``kwargs`` as JSON values (paths become strings); refuses anything else."""

    def default(obj):
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(
            f"data-parallel training passes the step's arguments as JSON; {type(obj).__name__} is not"
        )

    text = json.dumps(kwargs, default=default, allow_nan=True)
    decoded = json.loads(text)
    changed = sorted(k for k in kwargs if decoded.get(k) != kwargs[k] and not isinstance(kwargs[k], os.PathLike))
    if changed:  # tuples become lists, int keys strings: usually harmless, so only say so
        log.info("arguments %s change type through JSON (tuples -> lists, keys -> strings)", changed)
    return decoded


def launch(function, kwargs: dict, nproc: int, log_path: str | None, threads: int) -> int:
    """Run ``function(**kwargs)`` in ``nproc`` data-parallel processes started by torchrun.

    Returns the job's exit code: 0; 75 when the workers stopped on a signal after rank 0's
    checkpoint; else non-zero (the first failing rank's code, or torchrun's).
    """
    ref = function_ref(function)
    per_rank_threads = max(1, int(threads) // nproc)
    with tempfile.TemporaryDirectory(prefix="fmrirecon-ddp-") as private:
        spec_path = os.path.join(private, "spec.json")
        spec = {
            "function": ref, "kwargs": _json_kwargs(kwargs), "log": log_path,
            "threads": per_rank_threads, "codes": private,
        }  # fmt: skip
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        env = dict(os.environ)
        roots = [_import_root("fmrirecon"), _import_root(function.__module__)]
        old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([r for r in roots if r] + old))
        env["OMP_NUM_THREADS"] = str(per_rank_threads)  # else torchrun sets 1 with a warning
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--signals-to-handle", FORWARDED_SIGNALS, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S),
            "--log-dir", os.path.join(private, "torchrun"),
            "-m", "fmrirecon.train.worker", spec_path,
        ]  # fmt: skip
        log.info("launching %d data-parallel processes (%s, %d thread(s) each)", nproc, ref, per_rank_threads)
        # SLURM signals every process of the step; torchrun forwards them to the workers, which
        # checkpoint and stop. The launcher only waits (ignored after the start, so torchrun does
        # not inherit SIG_IGN).
        proc = subprocess.Popen(cmd, env=env)
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
        try:
            rc = proc.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return _job_code(rc, _worker_codes(private, nproc), nproc)


def _worker_codes(folder: str, nproc: int) -> dict[int, int]:
    codes = {}
    for r in range(nproc):
        try:
            codes[r] = int(Path(folder, f"code-rank{r}").read_text())
        except (OSError, ValueError):  # killed before it could say
            pass
    return codes


def _job_code(torchrun_rc: int, codes: dict[int, int], nproc: int) -> int:
    """The job's exit status from torchrun's and the workers' (see :func:`launch`)."""
    failed = [c for _, c in sorted(codes.items()) if c not in (0, PREEMPTED_EXIT)]
    if failed:
        return failed[0]
    if codes.get(0) == PREEMPTED_EXIT:  # rank 0 checkpointed; the others stopped with it or were stopped
        return PREEMPTED_EXIT
    if len(codes) == nproc and all(c == 0 for c in codes.values()):
        return 0
    if torchrun_rc == 0:  # a rank that never reported: a failure all the same
        return 1
    return 128 - torchrun_rc if torchrun_rc < 0 else torchrun_rc


ALL_REDUCE_BUCKET = 1 << 24  # gradient elements per all-reduce call


def batch_share(idx: torch.Tensor, rank_: int, world: int) -> tuple[torch.Tensor, float]:
    """This rank's samples of the batch ``idx`` and the weight of its mean loss among the ranks'.

    Ranks take every ``world``-th sample; each backpropagates its loss times ``weight`` = (samples
    of this rank) x world / (batch size), and gradients and logged losses are averaged over ranks,
    so the result is the mean over the whole batch even when a last batch does not split evenly
    (for losses that are means over the batch). A rank left without a sample (a batch smaller than
    the world) reuses rank 0's samples with weight 0.
    """
    mine = idx[rank_::world]
    if len(mine) == 0:
        return idx[0::world], 0.0
    if len(idx) % world == 0:
        return mine, 1.0
    return mine, len(mine) * world / len(idx)


def all_reduce_mean(grads: list[torch.Tensor], world: int) -> None:
    """Average gradients over ranks in place, a few large all-reduce calls instead of one per tensor."""
    groups: dict = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    for same in groups.values():
        bucket, size = [], 0
        for g in [*same, None]:
            if g is not None and (not bucket or size + g.numel() <= ALL_REDUCE_BUCKET):
                bucket.append(g)
                size += g.numel()
                continue
            flat = torch.cat([t.reshape(-1) for t in bucket])
            torch.distributed.all_reduce(flat)
            flat /= world
            offset = 0
            for t in bucket:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
            bucket, size = ([g], g.numel()) if g is not None else ([], 0)
