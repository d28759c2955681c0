"""The encoder/decoder family's part of the DAG (torch-free): the inputs of its rules and the
files it hands the report, for ``workflow/rules/encdec.smk``."""

from __future__ import annotations

from .. import FAMILIES
from . import uses_attention


class EncdecDag:
    """Input functions and report files of rules ``make_label_maps`` … ``reconstruct_decoder``.

    Args:
        units: every (dataset, subject, roi, method) that gets a reconstruction.
        methods: the config's ``methods`` entries.
        settings: every method's merged settings.
    """

    def __init__(self, units: list[tuple], methods: dict, settings: dict):
        self.methods = [m for m, spec in methods.items() if FAMILIES[spec["family"]].plugin == "encdec"]
        self.attention = {m: uses_attention(methods[m]["family"], settings[m]) for m in self.methods}
        self.units = [u for u in units if u[3] in self.methods]

    def decoder_inputs(self, wildcards) -> dict:
        unit = f"results/{wildcards.dataset}/sub-{wildcards.subject}/roi-{wildcards.roi}"
        inputs = {
            "data": f"{unit}/data.h5",
            "images": f"results/{wildcards.dataset}/images.h5",
            "encoder": f"{unit}/encoder/encoder.safetensors",
        }
        if self.attention[wildcards.method]:
            inputs["attention"] = f"{unit}/attention/attention_decoder.safetensors"
        return inputs

    def _stage_files(self, encoder: str, attention: str, decoder: str) -> list[str]:
        files = set()
        for d, s, r, m in self.units:
            unit = f"results/{d}/sub-{s}/roi-{r}"
            files |= {f"{unit}/encoder/{encoder}", f"{unit}/{m}/{decoder}"}
            if self.attention[m]:
                files.add(f"{unit}/attention/{attention}")
        return sorted(files)

    def loss_logs(self) -> list[str]:
        return self._stage_files("losses.tsv", "losses.tsv", "losses.tsv")

    def train_summaries(self) -> list[str]:
        return self._stage_files("encoder.train.json", "attention_decoder.train.json", "decoder.train.json")

    def report_inputs(self) -> dict[str, list[str]]:
        """Encoder accuracies, attention-decoder and label-map summaries behind the methods."""
        acc, att, labels = set(), set(), set()
        for d, s, r, m in self.units:
            unit = f"results/{d}/sub-{s}/roi-{r}"
            acc.add(f"{unit}/encoder/voxel_accuracy.tsv")
            if self.attention[m]:
                att.add(f"{unit}/attention/summary.json")
                labels.add(f"results/{d}/labels/summary.json")
        return {"accuracy": sorted(acc), "attention": sorted(att), "labels": sorted(labels)}

    def targets(self) -> list[str]:
        """The label-map figure of every dataset whose methods decode F-attention."""
        return sorted({f"results/report/label_maps/{d}.png" for d, s, r, m in self.units if self.attention[m]})
