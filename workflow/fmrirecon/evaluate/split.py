"""Rule ``split_metrics``: one protocol's result out of an evaluation job's ``metrics.json``.

Runs inside the Snakemake process (a local ``run:`` rule), so it imports nothing heavy.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.atomic import write_json
from ..errors import InputError


def split_metrics(combined: str, protocol: str, output: str, log: str | None = None) -> None:
    """Write ``metrics-<protocol>.json``: that protocol's result with its context, exactly the
    file one evaluation per protocol used to write (and one line to ``log``)."""
    try:
        data = json.loads(Path(combined).read_text())
        result = data["protocols"][protocol]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{combined}: no result for protocol {protocol!r} ({type(exc).__name__}: {exc})") from None
    write_json(output, {**result, "context": {**data["context"], "protocol": protocol}})
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"{output}: protocol {protocol} of {combined} ({len(result.get('metrics', {}))} metrics)\n")
