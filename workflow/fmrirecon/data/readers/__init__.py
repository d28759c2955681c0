"""Readers: published dataset layouts → :class:`SubjectRecording` + :class:`StimulusSet`.

Every reader is a function ``reader(subject_file, stimuli: StimulusSet, ...) -> SubjectRecording``
registered in :data:`READERS` under the name a config uses (``data.format``); the images of a
dataset are read once by a stimulus reader (:mod:`.images`) into a :class:`StimulusSet`, and each
sample's ``image_index`` points into its ``train`` or ``test`` split.

Adding a dataset (NSD, BOLD5000, THINGS-fMRI, HCP) means adding one module here, e.g.
``nsd.py`` with ``read_nsd(subject_dir, stimuli) -> SubjectRecording`` (betas → ``fmri``, the
shared1000 images as ``datatype`` 2, ``nsdgeneral``/``prf-visualrois`` → ``rois``) plus a
stimulus function returning a :class:`StimulusSet`, and one entry in :data:`READERS`. An
unlabeled pool such as HCP fills ``SubjectRecording.unlabeled`` (no images needed). Masking,
normalisation and everything downstream consume only the dataclasses of :mod:`.base`, so they
stay unchanged. User-fixable problems raise :class:`fmrirecon.errors.InputError`.
"""

from .base import IMAGERY, TEST, TRAIN, ImageSplit, StimulusSet, SubjectRecording
from .god import read_god_bdata, read_god_npz

#: Subject readers by format name.
READERS = {
    "god_bdata": read_god_bdata,
    "god_npz": read_god_npz,
}

__all__ = ["READERS", "TRAIN", "TEST", "IMAGERY", "ImageSplit", "StimulusSet",
           "SubjectRecording", "read_god_bdata", "read_god_npz"]
