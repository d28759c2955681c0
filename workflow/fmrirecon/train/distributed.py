"""Data-parallel training on several GPUs (or CPU processes) of one node.

A rule that asks for ``gpu=N`` with N > 1 (``training.gpus`` in the config, or ``set-resources`` in a
profile) gets N GPUs from SLURM in one job. :func:`cli.run_step <fmrirecon.cli.run_step>` then calls
:func:`launch`, which starts N worker processes (``torch.multiprocessing``, spawn), one per GPU. Each
joins a process group (NCCL on CUDA, gloo on CPU) and calls the same step function with the same
arguments. The :class:`~fmrirecon.train.loop.Trainer` sees the initialised group: each rank takes
its share of every batch, gradients and logged losses are averaged, and rank 0 writes checkpoints.
Everything a step writes outside the Trainer (model files, loss logs, reconstructions) must be
guarded with :func:`is_main_process`.

The number of processes (:func:`world_size_for`):

- ``FMRIRECON_NPROC`` if set (testing the data-parallel path on CPU, or forcing 1);
- else the job's ``gpu`` resource when torch sees at least that many CUDA devices;
- else as many CUDA devices as are visible (a log line says so), and 1 without CUDA: a rule that asked
  for 2 GPUs on a CPU-only run trains in one CPU process, exactly as with ``gpu=1``.

Signals: SLURM sends SIGTERM (preemption, time limit) or SIGUSR1 to every process of the job step.
The launcher ignores them itself and waits; the workers agree on the step at which to stop (the
Trainer all-reduces the stop flag), rank 0 checkpoints, and all exit 75. If any worker dies, the
others are terminated and the launcher exits with that worker's code, so Snakemake retries the job
and it resumes from rank 0's last checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

import torch

log = logging.getLogger("fmrirecon.train")

NPROC_ENV = "FMRIRECON_NPROC"


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def is_main_process() -> bool:
    """True in the one process that writes outputs (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op when not distributed)."""
    if world_size() > 1:
        torch.distributed.barrier()


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank_: int, world: int, port: int, threads: int, log_path, function, kwargs) -> None:
    """One rank: join the group, run the step like ``run_step`` does, leave the group."""
    from ..cli import run_function

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank_), LOCAL_RANK=str(rank_),
        WORLD_SIZE=str(world),
    )  # fmt: skip
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    if use_cuda:
        torch.cuda.set_device(rank_)  # `cuda` now means this rank's GPU
    backend = "nccl" if use_cuda else "gloo"
    torch.distributed.init_process_group(backend, rank=rank_, world_size=world)
    # rank 0 logs to the rule's log; the others to stderr (the SLURM log), tagged with their rank
    code = run_function(function, kwargs, log_path if rank_ == 0 else None, threads, tag=f"rank{rank_}")
    try:
        torch.distributed.destroy_process_group()
    except Exception:  # a peer already left after a failure
        pass
    sys.exit(code)


def launch(function, kwargs: dict, nproc: int, log_path: str | None, threads: int) -> int:
    """Run ``function(**kwargs)`` in ``nproc`` data-parallel processes; returns the exit code
    (0, 75 when preempted after a checkpoint, else the first failing worker's code)."""
    import torch.multiprocessing as mp

    per_rank_threads = max(1, int(threads) // nproc)
    port = _free_port()
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(r, nproc, port, per_rank_threads, log_path, function, kwargs))
        for r in range(nproc)
    ]
    for p in procs:
        p.start()
    # SLURM signals every process of the step; the workers handle them, the launcher only waits
    # (ignored after the start: spawned workers would inherit SIG_IGN)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        code = 0
        while any(p.is_alive() for p in procs):
            for p in procs:
                if p.exitcode not in (None, 0):
                    code = code or _code(p.exitcode)
            if code:
                time.sleep(2.0)  # let peers that are stopping at the same step finish writing
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                break
            time.sleep(0.1)
        for p in procs:
            p.join()
            if p.exitcode not in (None, 0) and not code:
                code = _code(p.exitcode)
        return code
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _code(exitcode: int) -> int:
    """A worker's exit status as a shell would report it (128 + N when killed by signal N)."""
    return 128 - exitcode if exitcode < 0 else exitcode
