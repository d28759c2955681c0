"""Paper 003 (nonlinear regressors from fMRI to diffusion latents): family ``latentreg``.

=======================  ====================================================================
rule                     stage function
=======================  ====================================================================
caption_tokens           :func:`.text.caption_tokens` (per dataset): captions -> MiniLM tokens
train_autoencoder        CAD's first stage (shared with paper 001 when the settings agree)
train_text_ldm           :func:`.generator.train_text_ldm` (per dataset): our text-to-image LDM
train_latent_regressor   :func:`.regress.train_latent_regressor` (per unit and branch z / c;
                         shared by the methods with the same branch settings)
reconstruct_latentreg    :func:`.generator.reconstruct_latentreg`: img2img from z, guided by c
summarise_latentreg      :func:`.tables.summarise_latentreg`: Table 3 (latent MSE) on our data
=======================  ====================================================================

Settings: the top-level block ``latentreg`` (schema: ``schema.yaml``); a method picks its
regressors with ``overrides: {z_regressor: gcn}`` etc. ``z_regressor: oracle`` with
``c_regressor: oracle`` is the oracle-latent ceiling (the test images' own latents through the
frozen generator); its rows carry ``control: oracle_latent``.

Substitutions, each named in the outputs: all-MiniLM-L6-v2 token embeddings for CLIP's
(:mod:`fmrirecon.features.text`); our own text-conditioned LDM (trained on training and unpaired
images only, then frozen) for Stable Diffusion; a validation split of the training images for the
paper's test-set early stopping (``selection: test`` restores the paper's choice, flagged
transductive).
"""

from pathlib import Path

from ...errors import InputError
from .. import Family

SCHEMA = Path(__file__).with_name("schema.yaml")
FOLDERS = ("latents",)  # results/<d>/sub-<s>/roi-<r>/latents/: the regressor branches
_STAGES = ("caption_tokens", "train_text_ldm", "train_latent_regressor", "reconstruct_latentreg")
_GPU = ("train_text_ldm", "train_latent_regressor", "reconstruct_latentreg")


def is_oracle(settings: dict) -> bool:
    return settings["z_regressor"] == "oracle" and settings["c_regressor"] == "oracle"


def check(method: str, settings: dict, config: dict) -> None:
    """Oracle branches come in pairs; the latent side must be a multiple of the first stage's
    downsampling (4 at both sizes)."""
    where = f"config error at methods.{method}"
    if (settings["z_regressor"] == "oracle") != (settings["c_regressor"] == "oracle"):
        raise InputError(f"{where} (latentreg.z_regressor / c_regressor): 'oracle' is the oracle-latent row and "
                         "needs both; a method predicts both latents")  # fmt: skip
    if settings["image_size"] % 4:
        raise InputError(f"{where} (latentreg.image_size): {settings['image_size']} is not a multiple of 4 "
                         "(the first stage's downsampling)")  # fmt: skip


def check_oracle(method: str, settings: dict, config: dict) -> None:
    check(method, settings, config)
    if not is_oracle(settings):
        raise InputError(f"config error at methods.{method}: family latentreg_oracle needs overrides "
                         "{z_regressor: oracle, c_regressor: oracle}")  # fmt: skip


FAMILIES = (
    Family("latentreg", "latentreg", "reconstruct_latentreg", settings_block="latentreg", stages=_STAGES,
           gpu_stages=_GPU, default_protocols=("report003",), check=check, ablation_group=True),
    Family("latentreg_oracle", "latentreg", "reconstruct_latentreg", settings_block="latentreg", stages=_STAGES,
           gpu_stages=_GPU, default_protocols=("report003",), control="oracle_latent", check=check_oracle),
)  # fmt: skip
