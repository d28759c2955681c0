"""Papers 002 (family ``ssl``) and 000 (family ``loopencdec``): the image → fMRI encoder both
share, paper 000's foreground-attention label maps and attention decoder, and the decoders.

=======================  ===================================================================
rule                     stage function
=======================  ===================================================================
make_label_maps          :func:`.attention.make_label_maps` (paper 000, per dataset)
pretrain_encoder         :func:`.encoder.pretrain_encoder` (per dataset × subject × ROI)
train_attention_decoder  :func:`.attention.train_attention_decoder` (paper 000)
train_decoder            :func:`.decoder.train_decoder` (per method: ``ssl`` or ``loopencdec``)
reconstruct_decoder      :func:`.decoder.reconstruct_decoder`
=======================  ===================================================================

Settings: the top-level blocks ``label_maps``, ``encoder``, ``attention_decoder``, ``ssl`` and
``loopencdec`` (schema: ``schema.yaml`` beside this file).
"""

from pathlib import Path

from .. import Family

SCHEMA = Path(__file__).with_name("schema.yaml")
FOLDERS = ("encoder", "attention")  # results/<d>/sub-<s>/roi-<r>/encoder/, .../attention/
_SSL_GPU = ("pretrain_encoder", "train_decoder", "reconstruct_decoder")
_PROTOCOLS = ("fang2020_pairwise_ssim", "gaziv2022")
FAMILIES = (
    Family("ssl", "encdec", "reconstruct_decoder", settings_block="ssl", stages=_SSL_GPU, gpu_stages=_SSL_GPU,
           default_protocols=_PROTOCOLS, ablation_group=True),
    Family("loopencdec", "encdec", "reconstruct_decoder", settings_block="loopencdec",
           stages=("make_label_maps", "plot_label_maps", *_SSL_GPU, "train_attention_decoder"),
           gpu_stages=(*_SSL_GPU, "train_attention_decoder"), default_protocols=_PROTOCOLS, ablation_group=True),
)  # fmt: skip


def uses_attention(family: str, settings: dict) -> bool:
    """Whether a method decodes F-attention (paper 000 with lambda != 0): it then needs the
    label maps and the attention decoder."""
    return family == "loopencdec" and settings["attention"]["lambda"] != 0
