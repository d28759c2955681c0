"""What each CAD stage reads of a method's merged ``cad`` settings (torch-free, read at parse time).

A rule's params (and, for the stages that methods share, the key in its file name) hold only its
slice, so changing a later stage's settings neither renames nor reruns an earlier one, and an
ablation of phase 2 reuses phase 1, the image MAE, the first stage and the label LDM.
"""

from __future__ import annotations

from ...config import config_hash

#: The top-level keys of the ``cad`` block each stage reads.
STAGE_KEYS = {
    "fmri_mae": ("size", "fmri_mae", "use_test_fmri_in_pretraining"),
    "image_mae": ("size", "image_size", "image_mae"),
    "cross_modal": ("image_size", "cross_modal"),
    "autoencoder": ("size", "image_size", "first_stage", "autoencoder"),
    "ldm": ("size", "image_size", "ldm_pretrain"),
    "fmri_ldm": ("size", "ldm"),
    "sampling": ("size", "image_size", "sampling"),
}
#: Stages whose outputs are shared by every method with the same slice (named by its key).
SHARED_STAGES = ("fmri_mae", "image_mae", "autoencoder", "ldm")


def stage_settings(settings: dict, stage: str) -> dict:
    """The part of ``settings`` (one method's merged ``cad`` block) that ``stage`` uses."""
    out = {k: settings[k] for k in STAGE_KEYS[stage]}
    if stage == "fmri_mae" and "pool" in out["fmri_mae"] and not out["fmri_mae"]["pool"]:
        out["fmri_mae"] = {k: v for k, v in out["fmri_mae"].items() if k != "pool"}  # "" = no pool
    if stage == "image_mae":  # phase 2 uses the image MAE's decoder, so it is built at that depth
        out["cross_modal"] = {"decoder_depth": settings["cross_modal"]["decoder_depth"]}
    if stage == "cross_modal":  # phase 2 sparsifies the fMRI as phase 1 did
        out["fmri_mae"] = {"sparsify": settings["fmri_mae"]["sparsify"]}
    if stage == "ldm":  # the UNet is built with the fMRI condition's widths
        out["ldm"] = {k: settings["ldm"][k] for k in ("cross_attention_dim", "pooled_dim")}
    return out


def fmri_pool(settings: dict) -> str:
    """The ``pools:`` entry DC-MAE pretrains on (``cad.fmri_mae.pool``), or "" (per subject)."""
    return settings["fmri_mae"].get("pool") or ""


def stage_keys(settings: dict, seed: int) -> dict[str, str]:
    """The 12-hex key of each shared stage of one method (a hash of the slice it reads; the LDM's
    also of the first stage it is trained on)."""
    keys = {s: config_hash(s, stage_settings(settings, s), seed)[:12] for s in ("fmri_mae", "image_mae", "autoencoder")}
    keys["ldm"] = config_hash("ldm", keys["autoencoder"], stage_settings(settings, "ldm"), seed)[:12]
    return keys


def shared_stage_table(methods: dict[str, dict], seed: int) -> dict[str, dict[str, dict]]:
    """``{stage: {key: params}}`` over every CAD method: what the rule that builds the shared
    file ``…-<key>`` is run with (``settings``; the LDM's also its ``autoencoder`` key)."""
    table: dict[str, dict[str, dict]] = {stage: {} for stage in SHARED_STAGES}
    for settings in methods.values():
        keys = stage_keys(settings, seed)
        for stage in SHARED_STAGES:
            entry = {"settings": stage_settings(settings, stage)}
            if stage == "ldm":
                entry["autoencoder"] = keys["autoencoder"]
            table[stage].setdefault(keys[stage], entry)
    return table


def trainer_settings(stage: dict) -> dict:
    """A stage block of the config -> the Trainer's settings (AdamW, cosine with warm-up)."""
    return {
        "epochs": int(stage["epochs"]), "batch_size": int(stage["batch_size"]), "lr": float(stage["lr"]),
        "lr_min": 0.01 * float(stage["lr"]), "schedule": "cosine", "cycles": 1,
        "warmup_fraction": float(stage["warmup_fraction"]), "weight_decay": float(stage["weight_decay"]),
        "optimizer": "adamw", "grad_clip": 1.0,
    }  # fmt: skip
