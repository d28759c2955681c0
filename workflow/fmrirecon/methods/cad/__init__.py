"""Paper 001 (CAD, Sun et al. NeurIPS 2023): DC-MAE, cross-modal tuning, our label-to-image LDM,
the fMRI-conditioned LDM and sampling, one stage function per rule.

=====================  ====================================================================
rule                   what it trains / writes
=====================  ====================================================================
pretrain_fmri_mae      phase 1, DC-MAE on the unlabeled pool + training fMRI (eqs. 1-3)
pretrain_image_mae     the image MAE phase 2 starts from (the paper uses He et al.'s release)
tune_cross_modal       phase 2, both MAEs fused by cross-attention, image decoder frozen (eq. 7)
train_autoencoder      first stage (AutoencoderKL / VQModel) on stimulus + unpaired images
pretrain_ldm           class-conditional UNet on the image categories: our label-to-image LDM
train_ldm              fMRI conditioning: cross-attention (attn2) + fMRI encoder trained (eq. 9)
reconstruct_cad        PLMS (or DDIM) sampling, several samples per test fMRI -> recon.h5
=====================  ====================================================================

The stage functions are in :mod:`.mae` (the first three) and :mod:`.ldm`; the settings are the
top-level ``cad`` block (schema: ``schema.yaml``), of which each stage reads only its slice
(:mod:`.settings`), so changing a later stage neither renames nor reruns an earlier one.
"""

from pathlib import Path

from .. import Family

SCHEMA = Path(__file__).with_name("schema.yaml")
FOLDERS = ("models",)  # results/<d>/sub-<s>/roi-<r>/models/: the shared fMRI MAE
_STAGES = ("pretrain_fmri_mae", "pretrain_image_mae", "tune_cross_modal", "train_autoencoder", "pretrain_ldm",
           "train_ldm", "reconstruct_cad")  # fmt: skip
FAMILIES = (
    Family("cad", "cad", "reconstruct_cad", settings_block="cad", stages=_STAGES, gpu_stages=_STAGES,
           default_protocols=("mindvis_nway", "mindeye_offline")),
)  # fmt: skip
