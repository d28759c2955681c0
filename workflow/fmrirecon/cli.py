"""Run a package function as a Snakemake step: logging, threads, and one-line user errors.

Every script in ``workflow/scripts`` is ``run_step(snakemake, function, **arguments)``.
A user-fixable problem (:class:`~fmrirecon.errors.InputError`) becomes one ``ERROR:`` line in the
rule's log and on stderr and a non-zero exit; anything else keeps its traceback in the log.
Outputs are written atomically by the package, so a failed step leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from .errors import InputError


def configure(log_path: str | None, threads: int = 1) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id must fail fast, never download
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers, force=True,
    )  # fmt: skip
    import torch

    torch.set_num_threads(max(1, int(threads)))


def run_step(smk, function, **kwargs) -> None:
    """Call ``function(**kwargs)`` inside a Snakemake ``script:`` job."""
    log_path = smk.log[0] if len(smk.log) else None
    configure(log_path, getattr(smk, "threads", 1))
    try:
        function(**kwargs)
    except InputError as exc:
        logging.getLogger("fmrirecon").error("%s", exc)
        sys.exit(1)
    except Exception:
        logging.getLogger("fmrirecon").error("unexpected failure:\n%s", traceback.format_exc())
        sys.exit(1)
