"""The pix2pix family's part of the DAG (torch-free): its units, the classifier's units, and the
files it hands the report, for ``workflow/rules/pix2pix.smk``."""

from __future__ import annotations

from .. import FAMILIES

CLASSIFIER_SUMMARY = "results/report/classifier/summary.csv"


class Pix2pixDag:
    """Args:
    units: every (dataset, subject, roi, method) that gets a reconstruction.
    methods: the config's ``methods`` entries.
    classifier: the config's ``category_classifier`` block.
    generated: simulated dataset -> its generated folder (whose truth.h5 holds the labels when
        images.h5 has no objects).
    """

    def __init__(self, units: list[tuple], methods: dict, classifier: dict, generated: dict[str, str]):
        self.generated = generated
        self.methods = [m for m, spec in methods.items() if FAMILIES[spec["family"]].plugin == "pix2pix"]
        self.units = [u for u in units if u[3] in self.methods]
        #: (dataset, subject, roi) the classifier runs on: those of every pix2pix method
        only = set(classifier["datasets"])
        self.classifier_units = sorted({u[:3] for u in self.units if not only or u[0] in only}) if classifier["enabled"] else []

    def classifier_inputs(self, wildcards) -> dict:
        """The prepared files, and for simulated data the generated folder."""
        inputs = {
            "data": f"results/{wildcards.dataset}/sub-{wildcards.subject}/roi-{wildcards.roi}/data.h5",
            "images": f"results/{wildcards.dataset}/images.h5",
        }
        if wildcards.dataset in self.generated:
            inputs["source"] = self.generated[wildcards.dataset]
        return inputs

    def _files(self, suffix: str) -> list[str]:
        files = {f"results/{d}/sub-{s}/roi-{r}/{m}/pix2pix.{suffix}" for d, s, r, m in self.units}
        files |= {f"results/{d}/sub-{s}/roi-{r}/classifier/classifier.{suffix}" for d, s, r in self.classifier_units}
        return sorted(files)

    def loss_logs(self) -> list[str]:
        return self._files("losses.tsv")

    def train_summaries(self) -> list[str]:
        return self._files("train.json")

    def classifier_metrics(self) -> list[str]:
        return [f"results/{d}/sub-{s}/roi-{r}/classifier/metrics.json" for d, s, r in self.classifier_units]

    def targets(self) -> list[str]:
        """The classifier's figure per unit and its summary table."""
        if not self.classifier_units:
            return []
        figures = [f"results/report/classifier/{d}_sub-{s}_roi-{r}.png" for d, s, r in self.classifier_units]
        return figures + [CLASSIFIER_SUMMARY]
