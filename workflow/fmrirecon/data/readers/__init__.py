"""Dataset formats as plugins: published layouts → :class:`SubjectRecording` + :class:`StimulusSet`.

The DAG knows a format only through :data:`READERS`: ``common.smk`` asks the :class:`Reader` for
the files rules ``prepare_images`` and ``mask_roi`` read (so Snakemake tracks them as inputs),
``data/steps.py`` calls its ``read_stimuli`` / ``read_subject``, the config checks call its
``check``, and prepared files list its ``rois`` roster. Masking, normalisation and everything
downstream consume only the dataclasses of :mod:`.base`.

Adding a format (NSD, BOLD5000, THINGS-fMRI, ...) is exactly:

1. one module here, e.g. ``nsd.py``, defining ``READER = Reader(name="nsd", description=...,
   rois=(...), image_inputs=..., subject_inputs=..., read_stimuli=..., read_subject=...,
   check=...)`` — ``read_subject`` returns a :class:`SubjectRecording` whose ``datatype`` marks
   training (1) and test (2) samples and whose ``image_index`` points into the
   :class:`StimulusSet`'s ``train`` / ``test`` rows; a subject-independent pretraining pool (HCP)
   is not a format but its own artifact;
2. one entry in :data:`READERS` below;
3. where the format needs settings of its own, keys under the dataset entry's ``options:``
   (free-form in the schema; the module's ``check`` validates them and fails with one line),
   and their documentation in ``config/README.md``.

Nothing else changes: the schema accepts any registered name in ``format`` / ``read_as``, the
wildcards, rules and report are format-blind. User-fixable problems raise
:class:`fmrirecon.errors.InputError` with the file and the expectation.
"""

from ...errors import InputError
from . import algonauts2023, bold5000, god_bdata, god_npz, nsd, things_fmri
from .base import IMAGERY, TEST, TRAIN, ImageSplit, Reader, StimulusSet, SubjectRecording

#: Every dataset format by the name a config uses (``datasets[].format``).
READERS: dict[str, Reader] = {
    r.name: r
    for r in (god_bdata.READER, god_npz.READER, nsd.READER, algonauts2023.READER, bold5000.READER,
              things_fmri.READER)
}


def get_reader(name: str) -> Reader:
    try:
        return READERS[name]
    except KeyError:
        raise InputError(f"unknown dataset format {name!r} (known: {sorted(READERS)})") from None


__all__ = ["READERS", "get_reader", "Reader", "TRAIN", "TEST", "IMAGERY", "ImageSplit", "StimulusSet",
           "SubjectRecording"]  # fmt: skip
