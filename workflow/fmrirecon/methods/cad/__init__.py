"""Paper 001 (CAD, Sun et al. NeurIPS 2023): DC-MAE, cross-modal tuning, our label-to-image LDM,
the fMRI-conditioned LDM and sampling, one stage function per rule.

=======================  ====================================================================
rule                     what it trains / writes
=======================  ====================================================================
pretrain_fmri_mae        phase 1, DC-MAE on the unlabeled pool + training fMRI (eqs. 1-3)
pretrain_fmri_mae_pool   phase 1 on a ``pools:`` entry instead (``cad.fmri_mae.pool``), once per pool
pretrain_image_mae       the image MAE phase 2 starts from (the paper uses He et al.'s release)
tune_cross_modal         phase 2, both MAEs fused by cross-attention, image decoder frozen (eq. 7)
train_autoencoder        first stage (AutoencoderKL / VQModel) on stimulus + unpaired images
pretrain_ldm             class-conditional UNet on the image categories: our label-to-image LDM
train_ldm                fMRI conditioning: cross-attention (attn2) + fMRI encoder trained (eq. 9)
reconstruct_cad          PLMS (or DDIM) sampling, several samples per test fMRI -> recon.h5
=======================  ====================================================================

The stage functions are in :mod:`.mae` (the first four) and :mod:`.ldm`; the settings are the
top-level ``cad`` block (schema: ``schema.yaml``), of which each stage reads only its slice
(:mod:`.settings`), so changing a later stage neither renames nor reruns an earlier one.

With ``cad.fmri_mae.pool`` phase 1 runs once on the pool, in the pool's voxel space, and every
later stage feeds the subject's voxels through :func:`.mae.bridge_voxels` (wrap-pad or truncate to
the pool's grid, as CAD's ``phase2_finetune_cross.py`` does); see :mod:`.mae`.
"""

from pathlib import Path

from ...errors import InputError
from .. import Family

SCHEMA = Path(__file__).with_name("schema.yaml")
FOLDERS = ("models",)  # results/<d>/sub-<s>/roi-<r>/models/: the shared fMRI MAE
_STAGES = ("pretrain_fmri_mae", "pretrain_fmri_mae_pool", "pretrain_image_mae", "tune_cross_modal",
           "train_autoencoder", "pretrain_ldm", "train_ldm", "reconstruct_cad")  # fmt: skip


def check(method: str, settings: dict, config: dict) -> None:
    """``cad.fmri_mae.pool`` names a ``pools:`` entry whose patch size the fMRI MAE uses."""
    pool = settings["fmri_mae"].get("pool")
    if not pool:
        return
    where = f"config error at methods.{method} (cad.fmri_mae.pool)"
    pools = config.get("pools", {})
    if pool not in pools:
        raise InputError(f"{where}: {pool!r} is not an entry of pools: (defined: {sorted(pools)})")
    if settings["use_test_fmri_in_pretraining"]:
        raise InputError(f"{where}: use_test_fmri_in_pretraining needs the per-subject pretraining; the pool "
                         f"{pool!r} is subject-independent")  # fmt: skip
    patch = settings["fmri_mae"]["patch_size"]
    if patch and patch != pools[pool]["patch_size"]:
        raise InputError(f"{where}: cad.fmri_mae.patch_size {patch} != pools.{pool}.patch_size "
                         f"{pools[pool]['patch_size']}; the pool is padded to the model's patches")  # fmt: skip


FAMILIES = (
    Family("cad", "cad", "reconstruct_cad", settings_block="cad", stages=_STAGES, gpu_stages=_STAGES,
           default_protocols=("mindvis_nway", "mindeye_offline"), check=check),
)  # fmt: skip
