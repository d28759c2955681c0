"""The reference decoder and the evaluation controls (rule ``reconstruct_baseline``).

- ``ridge``: ridge regression from the ROI's voxels to pixels (the reference decoder);
- ``mean_image``: the mean training image for every test pattern (a floor: no fMRI used);
- ``oracle_ridge``: simulated data only — the same ridge decoder trained and tested on the
  noise-free voxel signals, a ceiling for what these voxels can carry linearly.

Their settings are the method entry itself (``target_size``, ``alphas``). The shuffled-id control
needs no reconstruction: the evaluation scores every method against permuted image ids.
"""

from ...errors import InputError
from .. import Family


def check_target_size(method: str, settings: dict, config: dict) -> None:
    """The ridge pixel grid must tile the images (checked at parse time, not when the job runs)."""
    size, target = int(config["image_size"]), int(settings.get("target_size") or config["image_size"])
    if size % target:
        raise InputError(f"config error at methods.{method}.target_size: {target} does not divide image_size {size}")


_RULE = "reconstruct_baseline"
FAMILIES = (
    Family("ridge", "baselines", _RULE, stages=(_RULE,), check=check_target_size),
    Family("mean_image", "baselines", _RULE, stages=(_RULE,), control="mean_image"),
    Family("oracle_ridge", "baselines", _RULE, stages=(_RULE,), control="oracle", needs_truth=True,
           check=check_target_size),
)  # fmt: skip
