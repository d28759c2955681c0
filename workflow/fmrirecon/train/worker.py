"""One rank of a data-parallel job, as started by :func:`fmrirecon.train.distributed.launch`.

    python -m torch.distributed.run --standalone --nproc-per-node N -m fmrirecon.train.worker SPEC

``SPEC`` is a JSON file: ``function`` ("module:qualname"), ``kwargs``, ``log`` (the rule's log
file), ``threads`` (per rank) and ``codes`` (a folder for the exit codes). The worker joins the
process group from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``PORT``): NCCL for CUDA tensors when every rank has its own GPU (each then uses
``cuda:LOCAL_RANK``), gloo otherwise. It runs the function like a single-process job
(:func:`fmrirecon.runner.run_function`): rank 0 logs to the rule's log, the other ranks to stderr
tagged with their rank. It leaves the group and exits with the job's code (0, 75 when preempted
after a checkpoint, else non-zero), which it also writes to ``codes/code-rank<R>`` for the launcher.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import traceback

import torch

from ..runner import run_function
from .distributed import rank, resolve_function, world_size

log = logging.getLogger("fmrirecon.train")


def _init_group() -> str:
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world:
        torch.cuda.set_device(local_rank)  # `cuda` now means this rank's GPU
        backend = "cpu:gloo,cuda:nccl"  # NCCL for the gradients; gloo should a CPU tensor come by
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend)  # env:// from torchrun's variables
    return backend


def _in_group(function, backend: str, **kwargs):
    """Log who joined (rank 0 lists every rank in the rule's log), then run the step."""
    me = {"rank": rank(), "pid": os.getpid(), "host": socket.gethostname(),
          "device": f"cuda:{torch.cuda.current_device()}" if "nccl" in backend else "cpu"}  # fmt: skip
    everyone = [None] * world_size()
    torch.distributed.all_gather_object(everyone, me)
    if rank() == 0:
        log.info("data-parallel: world size %d, backend %s", world_size(), backend)
        for m in everyone:
            log.info("data-parallel: rank %d of %d: pid %d on %s (%s)", m["rank"], world_size(), m["pid"],
                     m["host"], m["device"])  # fmt: skip
    return function(**kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        spec = json.load(fh)
    r = int(os.environ.get("RANK", "0"))
    code = 1
    try:
        function = resolve_function(spec["function"])
        backend = _init_group()
    except Exception:
        print(f"fmrirecon worker rank {r}: could not start:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    else:
        # rank 0 logs to the rule's log; the others to stderr (the SLURM log), tagged with their rank
        code = run_function(functools.partial(_in_group, function, backend), spec["kwargs"],
                            spec["log"] if r == 0 else None, spec["threads"], tag=f"rank{r}")  # fmt: skip
        try:
            torch.distributed.destroy_process_group()
        except Exception:  # a peer already left after a failure
            pass
    codes = spec.get("codes")
    if codes:
        tmp = os.path.join(codes, f".code-rank{r}.partial")
        with open(tmp, "w") as fh:
            fh.write(str(code))
        os.replace(tmp, os.path.join(codes, f"code-rank{r}"))
    logging.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
