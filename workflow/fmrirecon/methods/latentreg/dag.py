"""The latentreg family's part of the DAG (torch-free): stage keys, the slices of settings each
rule reads, inputs, and the files it hands the report, for ``workflow/rules/latentreg.smk``.

Shared stages are named by a key of the slice they read, as CAD's: the first stage
(``cad-autoencoder-<key>``, CAD's rule), the text LDM (``latentreg-ldm-<key>``, per dataset) and
each regressor branch (``latents/<z|c>-<key>``, per unit). Methods that differ only in their
``z`` regressor share the ``c`` branch's job and the generator; changing ``sampling`` retrains
nothing."""

from __future__ import annotations

import os

from ...config import config_hash
from .. import FAMILIES
from . import is_oracle

TABLE3 = "results/report/latentreg/table3.csv"
LATENTS = "latents"  # results/<d>/sub-<s>/roi-<r>/latents/: the regressor branches
#: the keys of a method's merged ``latentreg`` block each stage reads
STAGE_KEYS = {
    "text_ldm": ("size", "image_size", "ldm"),
    "sampling": ("size", "image_size", "sampling", "pretrained_ldm"),
}
_BRANCH_COMMON = ("size", "selection", "validation_fraction", "patience")


def stage_settings(settings: dict, stage: str) -> dict:
    return {k: settings[k] for k in STAGE_KEYS[stage]}


def branch_settings(settings: dict, branch: str) -> dict:
    """What rule ``train_latent_regressor`` reads for ``branch`` (``z`` or ``c``) of a method:
    its regressor, ROIs, the selection keys, and only the optimiser block (or ridge penalties,
    or graph) that regressor uses; ``z`` also the image size its latents are taken at."""
    kind = settings[f"{branch}_regressor"]
    out = {**{k: settings[k] for k in _BRANCH_COMMON}, "regressor": kind, "rois": settings[f"{branch}_rois"]}
    if branch == "z":
        out["image_size"] = settings["image_size"]
    if settings["pretrained_ldm"]:  # its VAE / text encoder make the targets
        out["pretrained_ldm"] = settings["pretrained_ldm"]
    if kind == "ridge":
        out["alphas"] = settings["alphas"]
    else:
        out["train"] = settings["train"]["text_cnn" if branch == "c" else kind]
    if kind == "gcn":
        out["graph"] = settings["graph"]
    return out


class LatentregDag:
    """Args:
    units: every (dataset, subject, roi, method) that gets a reconstruction.
    methods: the config's ``methods`` entries.
    settings: every method's merged settings.
    cad: the config's ``cad`` block (its ``first_stage`` and ``autoencoder`` train the first stage).
    seed: the config's seed.
    add_first_stage: ``CadDag.add_first_stage`` (registers the shared ``train_autoencoder`` job).
    """

    def __init__(self, units: list[tuple], methods: dict, settings: dict, cad: dict, seed: int, add_first_stage):
        self.methods = [m for m, spec in methods.items() if FAMILIES[spec["family"]].plugin == "latentreg"]
        self.settings = {m: settings[m] for m in self.methods}
        self.units = [u for u in units if u[3] in self.methods]
        self.trained = [m for m in self.methods if not is_oracle(self.settings[m])]
        self.keys, self.ldm_table, self.branch_table, self.text_table = {}, {}, {}, {}
        for m, s in self.settings.items():
            folder = s["pretrained_ldm"]
            if folder:  # a user's Stable Diffusion folder: no first stage or LDM of ours
                ae = key = ""
                text = config_hash("text", folder)[:12]
            else:
                first = {"size": s["size"], "image_size": s["image_size"], "first_stage": cad["first_stage"],
                         "autoencoder": cad["autoencoder"]}  # fmt: skip
                ae = add_first_stage(first)
                ldm = stage_settings(s, "text_ldm")
                key = config_hash("text_ldm", ae, ldm, seed)[:12]
                self.ldm_table.setdefault(key, {"settings": ldm, "autoencoder": ae})
                text = "minilm"
            self.text_table[text] = folder
            self.keys[m] = {"ldm": key, "text": text, "pretrained": folder}
            if m in self.trained:
                for branch in ("z", "c"):
                    b = branch_settings(s, branch)
                    bkey = config_hash("latent_regressor", branch, b, ae if branch == "z" else "", seed)[:12]
                    self.keys[m][branch] = bkey
                    self.branch_table.setdefault(bkey, {"settings": b, "autoencoder": ae, "text": text,
                                                        "pretrained": folder, "methods": []})  # fmt: skip
                    self.branch_table[bkey]["methods"].append(m)

    # params
    def text_encoder(self, wildcards) -> str:
        """The Stable Diffusion folder whose text encoder makes the tokens; "" = MiniLM."""
        return self.text_table[wildcards.encoder]

    def ldm_settings(self, wildcards) -> dict:
        return self.ldm_table[wildcards.key]["settings"]

    def branch_settings(self, wildcards) -> dict:
        return self.branch_table[wildcards.key]["settings"]

    def method_settings(self, stage: str):
        return lambda wildcards: stage_settings(self.settings[wildcards.method], stage)

    # inputs
    @staticmethod
    def _existing(folder: str) -> list[str]:
        """A user's folder is an input only when it exists (else the job fails with one line)."""
        return [folder] if os.path.isdir(folder) else []

    def text_encoder_input(self, wildcards) -> list[str]:
        folder = self.text_table[wildcards.encoder]
        return self._existing(folder) if folder else []

    def autoencoder(self, wildcards) -> str:
        """The first stage our text LDM is trained on (CAD's rule)."""
        return f"results/{wildcards.dataset}/models/cad-autoencoder-{self.ldm_table[wildcards.key]['autoencoder']}"

    def first_stage_folder(self, wildcards) -> str:
        """The first stage the targets ``z`` of a branch come from: CAD's, or the pretrained VAE."""
        entry = self.branch_table[wildcards.key]
        return entry["pretrained"] or f"results/{wildcards.dataset}/models/cad-autoencoder-{entry['autoencoder']}"

    def first_stage_input(self, wildcards) -> list[str]:
        entry = self.branch_table[wildcards.key]
        folder = self.first_stage_folder(wildcards)
        return self._existing(folder) if entry["pretrained"] else [folder]

    def branch_text(self, wildcards) -> str:
        return f"results/{wildcards.dataset}/models/latentreg-text-{self.branch_table[wildcards.key]['text']}.h5"

    def text(self, wildcards) -> str:
        return f"results/{wildcards.dataset}/models/latentreg-text-{self.keys[wildcards.method]['text']}.h5"

    def ldm_folder(self, wildcards) -> str:
        """The frozen generator: the pretrained folder, or our text LDM."""
        k = self.keys[wildcards.method]
        return k["pretrained"] or f"results/{wildcards.dataset}/models/latentreg-ldm-{k['ldm']}"

    def ldm(self, wildcards) -> list[str]:
        k = self.keys[wildcards.method]
        return self._existing(k["pretrained"]) if k["pretrained"] else [self.ldm_folder(wildcards)]

    def _branch_file(self, d: str, s: str, r: str, m: str, branch: str, suffix: str) -> str:
        return f"results/{d}/sub-{s}/roi-{r}/{LATENTS}/{branch}-{self.keys[m][branch]}{suffix}"

    def prediction_inputs(self, wildcards) -> dict:
        """``{"z_predictions": …, "c_predictions": …}``: the test predictions of the method's two
        branches; none for the oracle-latent row."""
        if wildcards.method not in self.trained:
            return {}
        w = wildcards
        return {f"{b}_predictions": self._branch_file(w.dataset, w.subject, w.roi, w.method, b, "-predictions.h5")
                for b in ("z", "c")}  # fmt: skip

    # report
    def _branch_files(self, suffix: str) -> set[str]:
        return {self._branch_file(d, s, r, m, b, suffix) for d, s, r, m in self.units if m in self.trained for b in "zc"}

    def _files(self, suffix: str) -> list[str]:
        files = {f for f in self._branch_files(f".{suffix}")}
        files |= {f"results/{d}/models/latentreg-ldm-{self.keys[m]['ldm']}.{suffix}" for d, _, _, m in self.units
                  if not self.keys[m]["pretrained"]}  # fmt: skip
        return sorted(files)

    def loss_logs(self) -> list[str]:
        return self._files("losses.tsv")

    def train_summaries(self) -> list[str]:
        return self._files("train.json")

    def all_predictions(self) -> list[str]:
        return sorted(self._branch_files("-predictions.h5"))

    def methods_of(self, key: str) -> list[str]:
        return self.branch_table[key]["methods"]

    def prediction_methods(self) -> dict[str, list[str]]:
        """Each branch prediction file -> the methods that use it (Table 3's ``methods`` column)."""
        return {p: self.methods_of(p.rsplit("/", 1)[1].split("-")[1]) for p in self.all_predictions()}

    def targets(self) -> list[str]:
        return [TABLE3] if self.all_predictions() else []
