"""The CAD family's part of the DAG (torch-free): the keys of the stages methods share, the inputs
and params of its rules, and the files it hands the report, for ``workflow/rules/cad.smk``."""

from __future__ import annotations

import os

from .. import FAMILIES
from ...config import config_hash
from .settings import fmri_pool, shared_stage_table, stage_keys, stage_settings


class CadDag:
    """Input and params functions of rules ``pretrain_fmri_mae`` … ``reconstruct_cad``.

    Args:
        units: every (dataset, subject, roi, method) that gets a reconstruction.
        methods: the config's ``methods`` entries.
        settings: every method's merged settings.
        seed: the config's seed (part of the shared stages' keys).
    """

    def __init__(self, units: list[tuple], methods: dict, settings: dict, seed: int):
        self.methods = [m for m, spec in methods.items() if FAMILIES[spec["family"]].plugin == "cad"]
        self.settings = {m: settings[m] for m in self.methods}
        self.keys = {m: stage_keys(s, seed) for m, s in self.settings.items()}
        #: {stage: {key: {"settings": slice, ...}}} of the shared stages
        self.shared = shared_stage_table(self.settings, seed)
        self.units = [u for u in units if u[3] in self.methods]
        self.seed = seed

    def add_first_stage(self, settings: dict) -> str:
        """Register a first stage another plugin needs (``settings``: the ``autoencoder`` slice of
        :data:`.settings.STAGE_KEYS`); returns its key, the same as a CAD method's with that slice,
        so both share one ``train_autoencoder`` job."""
        key = config_hash("autoencoder", settings, self.seed)[:12]
        self.shared["autoencoder"].setdefault(key, {"settings": settings})
        return key

    # params
    def shared_settings(self, stage: str):
        return lambda wildcards: self.shared[stage][wildcards.key]["settings"]

    def method_settings(self, stage: str):
        return lambda wildcards: stage_settings(self.settings[wildcards.method], stage)

    # inputs
    def fmri_mae(self, wildcards) -> str:
        return self._fmri_mae_file(wildcards.dataset, wildcards.subject, wildcards.roi, wildcards.method, "safetensors")

    def _fmri_mae_file(self, dataset: str, subject: str, roi: str, method: str, suffix: str) -> str:
        """Phase 1's output: once per pool (``cad.fmri_mae.pool``), else per subject and ROI."""
        key, pool = self.keys[method]["fmri_mae"], fmri_pool(self.settings[method])
        if pool:
            return f"results/pools/{pool}/models/cad-fmri_mae-{key}.{suffix}"
        return f"results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.{suffix}"

    def image_mae(self, wildcards) -> str:
        return f"results/{wildcards.dataset}/models/cad-image_mae-{self.keys[wildcards.method]['image_mae']}.safetensors"

    def autoencoder(self, wildcards) -> str:
        return f"results/{wildcards.dataset}/models/cad-autoencoder-{self.shared['ldm'][wildcards.key]['autoencoder']}"

    def ldm_folder(self, wildcards) -> str:
        """The LDM that train_ldm starts from: the configured local folder, else our own."""
        if self.settings[wildcards.method]["pretrained_ldm"]:
            return self.settings[wildcards.method]["pretrained_ldm"]
        return f"results/{wildcards.dataset}/models/cad-ldm-{self.keys[wildcards.method]['ldm']}"

    def ldm_input(self, wildcards) -> list[str]:
        """A missing configured folder is not an input (the job then fails with a clear message)."""
        folder = self.ldm_folder(wildcards)
        return [folder] if folder.startswith("results/") or os.path.isdir(folder) else []

    # report
    def _stage_files(self, suffix: str) -> list[str]:
        files = set()
        for d, s, r, m in self.units:
            k = self.keys[m]
            unit = f"results/{d}/sub-{s}/roi-{r}"
            files |= {
                self._fmri_mae_file(d, s, r, m, suffix),
                f"results/{d}/models/cad-image_mae-{k['image_mae']}.{suffix}",
                f"{unit}/{m}/cad-cross_modal.{suffix}",
                f"{unit}/{m}/cad-ldm.{suffix}",
            }
            if not self.settings[m]["pretrained_ldm"]:
                files |= {
                    f"results/{d}/models/cad-autoencoder-{k['autoencoder']}.{suffix}",
                    f"results/{d}/models/cad-ldm-{k['ldm']}.{suffix}",
                }
        return sorted(files)

    def loss_logs(self) -> list[str]:
        return self._stage_files("losses.tsv")

    def train_summaries(self) -> list[str]:
        return self._stage_files("train.json")
