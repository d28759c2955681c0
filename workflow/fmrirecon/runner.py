"""Run a package function as a Snakemake step: logging, threads, data-parallel launch, exit codes.

Every script in ``workflow/scripts`` is ``run_step(snakemake, function, **arguments)``.
A user-fixable problem (:class:`~fmrirecon.errors.InputError`) becomes one ``ERROR:`` line in the
rule's log and on stderr and a non-zero exit; anything else keeps its traceback in the log. A
training job stopped by SLURM after its checkpoint exits with :data:`PREEMPTED_EXIT` (75).
Outputs are written atomically by the package, so a failed step leaves nothing half-written.

A job given several GPUs runs ``function`` in that many processes started by torchrun
(:func:`fmrirecon.train.distributed.launch`, :mod:`fmrirecon.train.worker`); the function must then
be an importable module-level function and its arguments JSON values (Snakemake's inputs, outputs
and params are).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from .errors import InputError
from .train.checkpoint import PREEMPTED_EXIT, Preempted

__all__ = ["PREEMPTED_EXIT", "configure", "run_function", "run_step", "training_kwargs"]


def configure(log_path: str | None, threads: int = 1, tag: str = "") -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id must fail fast, never download
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    name = f"%(name)s[{tag}]" if tag else "%(name)s"  # tag: the rank of a data-parallel worker
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s",
        handlers=handlers, force=True,
    )  # fmt: skip
    import torch

    torch.set_num_threads(max(1, int(threads)))


def run_step(smk, function, **kwargs) -> None:
    """Call ``function(**kwargs)`` inside a Snakemake ``script:`` job; exits non-zero on failure.

    A job given several GPUs (``resources: gpu`` > 1) runs ``function`` in that many data-parallel
    processes (:mod:`fmrirecon.train.distributed`); ``FMRIRECON_NPROC`` overrides the count.
    """
    log_path = smk.log[0] if len(smk.log) else None
    threads = getattr(smk, "threads", 1)
    from .train.distributed import launch, world_size_for

    nproc = world_size_for(getattr(getattr(smk, "resources", None), "gpu", 0))
    if nproc > 1:
        configure(None, threads)  # the launcher logs to stderr; rank 0 writes the rule's log
        try:
            code = launch(function, kwargs, nproc, log_path, threads)
        except TypeError as exc:  # not an importable function, or arguments that are not JSON
            configure(log_path, threads)
            logging.getLogger("fmrirecon").error("%s", exc)
            code = 1
    else:
        code = run_function(function, kwargs, log_path, threads)
    if code:
        sys.exit(code)


def training_kwargs(smk) -> dict:
    """The arguments every training rule's stage function takes from its job: ``settings`` and
    ``seed`` (params), ``training`` (the machine keys of the config's ``training`` block, read now,
    + the rule's ``precision`` param), ``checkpoint_dir`` (per rule and wildcards) and the
    ``model``, ``loss_log`` and ``train_summary`` outputs."""
    from .config import checkpoint_folder, job_training

    return {
        "settings": smk.params.settings, "seed": smk.params.seed,
        "training": job_training(smk.config, smk.params.precision),
        "checkpoint_dir": checkpoint_folder(smk.config, smk.rule, smk.wildcards),
        "model": smk.output.model, "loss_log": smk.output.loss_log, "train_summary": smk.output.train_summary,
    }  # fmt: skip


def run_function(function, kwargs: dict, log_path: str | None, threads: int, tag: str = "") -> int:
    """``function(**kwargs)`` with logging configured; returns the exit code for the job."""
    configure(log_path, threads, tag)
    try:
        function(**kwargs)
    except InputError as exc:
        logging.getLogger("fmrirecon").error("%s", exc)
        return 1
    except Preempted as exc:  # checkpoint saved; a non-zero exit makes Snakemake retry/resume
        logging.getLogger("fmrirecon").warning("PREEMPTED: %s", exc)
        return PREEMPTED_EXIT
    except Exception:
        logging.getLogger("fmrirecon").error("unexpected failure:\n%s", traceback.format_exc())
        return 1
    return 0
