"""Print the bad-input matrix: each broken config, data file, weights file or checkpoint, where it
is caught, and the one line the user sees (the same cases ``tests/unit/test_bad_inputs.py`` runs).

    .venv/bin/python benchmarks/bad_input_matrix.py [--markdown]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "tests" / "unit"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bad_inputs import CASES, Context  # noqa: E402

from fmrirecon.errors import InputError  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(Path(tmp))
        for case in CASES:
            try:
                case.run(ctx)
                message = "NOT REJECTED"
            except InputError as exc:
                message = str(exc).replace(tmp, "<tmp>")
            rows.append((case.name, case.where, message))
    if args.markdown:
        print("| case | caught | message |\n|---|---|---|")
        for name, where, msg in rows:
            print(f"| {name} | {where} | `{msg}` |")
    else:
        for name, where, msg in rows:
            print(f"{name:45s} {where:38s} {msg}")
    print(f"{len(rows)} cases, {sum(m == 'NOT REJECTED' for *_, m in rows)} not rejected")


if __name__ == "__main__":
    main()
