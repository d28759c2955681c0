"""Every case of the bad-input matrix (``bad_inputs.py``): one line naming the file or key, no
traceback in the message, no partial output, nothing written outside the case's folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs import CASES, Context  # noqa: E402

from fmrirecon.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    return Context(tmp_path_factory.mktemp("bad-inputs"))


def test_the_matrix_is_large_and_covers_every_kind_of_input():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    wheres = {c.where for c in CASES}
    assert "parse" in wheres and "mask_roi" in wheres and any("ignored" in w for w in wheres)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_rejected_with_one_line(case, context):
    before = set(os.listdir(Path.cwd()))
    with pytest.raises(InputError) as info:
        case.run(context)
    message = str(info.value)
    assert case.expect in message, message
    assert "\n" not in message and "Traceback" not in message and "np.float64" not in message
    if case.output:
        out = context.tmp / case.output
        assert not out.exists() and not (out.parent.exists() and any(p.name.startswith(".") for p in out.parent.iterdir()))
    assert set(os.listdir(Path.cwd())) == before  # nothing written into the working folder
