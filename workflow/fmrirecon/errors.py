"""User-facing errors.

Every problem a user can fix (a wrong config key, a corrupt or missing file, a missing ROI, NaNs in
the voxels, counts that disagree) raises :class:`InputError` with one line that names the file, key
or shape and what was expected. The Snakemake script adapters turn it into that one line in the
rule's log and a non-zero exit (see :func:`fmrirecon.runner.run_step`).
"""


class InputError(Exception):
    """A problem with the user's input, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
