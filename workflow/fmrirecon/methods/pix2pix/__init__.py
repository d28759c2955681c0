"""Paper 004 (pix2pix from NSD fMRI): the multi-label category classifier and the pix2pix decoder.

=========================  ===================================================================
rule                       stage function
=========================  ===================================================================
train_category_classifier  :func:`.classifier.train_category_classifier` (per dataset × subject × ROI)
plot_category_classifier   :func:`.figures.plot_category_classifier` (the report's figure)
train_pix2pix              :func:`.gan.train_pix2pix` (per method)
reconstruct_pix2pix        :func:`.gan.reconstruct_pix2pix`
=========================  ===================================================================

Settings: the top-level blocks ``pix2pix`` (the family's) and ``category_classifier`` (schema:
``schema.yaml``). Inputs from the prepared files: :mod:`.labels`.
"""

from pathlib import Path

from ...errors import InputError
from .. import Family

SCHEMA = Path(__file__).with_name("schema.yaml")
FOLDERS = ("classifier",)  # results/<d>/sub-<s>/roi-<r>/classifier/
_GPU = ("train_pix2pix", "reconstruct_pix2pix", "train_category_classifier")


#: size -> (U-Net levels, default side) of :data:`fmrirecon.models.pix2pix.SIZES` (torch-free copy;
#: tests/unit/test_pix2pix_family.py checks they agree)
GENERATOR_LEVELS = {"tiny": (5, 32), "paper": (8, 256)}


def check(method: str, settings: dict, config: dict) -> None:
    """The generator's side must be a multiple of 2^levels (checked at parse time).
    ``category_classifier.datasets`` may name datasets an overlay has replaced: they are ignored."""
    levels, default = GENERATOR_LEVELS[settings["size"]]
    side = settings["image_size"] or default
    if side % 2**levels:
        raise InputError(f"config error at methods.{method} (pix2pix.image_size): {side} is not a multiple of "
                         f"{2**levels} (2^levels of size {settings['size']})")  # fmt: skip


FAMILIES = (
    Family("pix2pix", "pix2pix", "reconstruct_pix2pix", settings_block="pix2pix",
           stages=("train_category_classifier", "plot_category_classifier", "train_pix2pix", "reconstruct_pix2pix"),
           gpu_stages=_GPU, default_protocols=("report004", "mindeye_offline"), check=check),
)  # fmt: skip
