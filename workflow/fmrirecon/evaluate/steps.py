"""The evaluation stages of the DAG: score one reconstruction file, aggregate all of them.

``evaluate_reconstructions`` scores one reconstruction file with every protocol of its method
(``metrics.json``); ``split_metrics`` then writes one JSON per (dataset, subject, ROI, method,
protocol) with, for each metric, value, 95% bootstrap CI, chance, n, settings and per-image scores, plus the
same protocol scored against permuted image ids (the shuffled control, which must sit at chance).
``aggregate_metrics`` merges them into ``results/metrics.csv`` and runs paired Wilcoxon tests
between methods on the same images (``results/method_comparisons.csv``).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from pathlib import Path

import numpy as np

from ..data import prepared
from ..data.atomic import atomic_path, write_json
from ..errors import InputError
from .protocols import evaluate_protocols
from .stats import paired_wilcoxon
from .truth_cache import load_truth_features, substitute_classifier

log = logging.getLogger(__name__)

METRICS_COLUMNS = ("dataset", "subject", "roi", "method", "protocol", "metric", "control",
                   "value", "ci_low", "ci_high", "chance", "n", "transductive")  # fmt: skip


def _gallery(stim) -> dict | None:
    if stim.gallery is None or not len(stim.gallery):
        return None
    return {"images": stim.gallery.images, "category": stim.gallery.category}


def evaluate_reconstructions(
    recon: str, images: str, protocols: dict[str, dict], seed: int, evaluation: dict,
    output: str, context: dict, truth_features: str | None = None,
) -> None:  # fmt: skip
    """Rule ``evaluate_reconstructions``: every protocol of the method in one process, sharing
    prepared images, features and similarity matrices; the ground-truth features come from the
    dataset's ``truth_features.h5`` where it has them. Writes ``{"context", "protocols": {name:
    result}}``; rule ``split_metrics`` makes the per-protocol files."""
    rec = prepared.read_recon_file(recon)
    stim = prepared.read_images_file(images, splits=("train", "test", "gallery"))
    rows = rec["image_index"]
    if rows.min() < 0 or rows.max() >= len(stim.test):
        raise InputError(f"{recon}: image_index outside the {len(stim.test)} test images of {images}")
    if not np.array_equal(stim.test.names[rows], rec["image_ids"]):
        raise InputError(f"{recon}: image_ids do not match the test images of {images} at image_index")
    truth = stim.test.images[rows]
    if rec["images"].shape[-3:-1] != truth.shape[1:3]:
        log.info("reconstructions are %s px, images %s px: metrics resize as their settings say",
                 rec["images"].shape[-3:-1], truth.shape[1:3])  # fmt: skip
    gallery = _gallery(stim)
    if gallery is not None:
        gallery["true_category"] = stim.test.category[rows]
    cache = None
    if truth_features:
        n_gallery = len(stim.gallery) if stim.gallery is not None else 0
        cache = {**load_truth_features(truth_features, stim.test.names, n_gallery), "rows": rows}
        if cache["classifier"] is not None:  # simulated data: the dataset's own semantic classifier
            protocols = substitute_classifier(protocols)
    results = evaluate_protocols(
        rec["images"], truth, {name: {"name": name, **spec} for name, spec in protocols.items()}, seed=seed,
        gallery=gallery, weights_dir=evaluation.get("weights_dir"), n_boot=evaluation.get("bootstrap_samples", 1000),
        controls=evaluation.get("shuffled_control", True), truth_cache=cache,
    )  # fmt: skip
    write_json(output, {
        "context": {**context, "family": rec["attrs"].get("family", ""),
                    # 1 when the method's training saw the test fMRI (never the test images); 2 when
                    # its checkpoint was chosen on the test set (paper 003's code, opt-in)
                    "transductive": 2 if int(rec["attrs"].get("selection_on_test", 0))
                    else int(rec["attrs"].get("transductive_test_fmri", 0))},
        "protocols": results,
    })  # fmt: skip
    log.info("wrote %s (%s)", output, ", ".join(f"{p}: {len(r.get('metrics', {}))} metrics" for p, r in results.items()))


def _rows_of(result: dict) -> list[dict]:
    ctx = result["context"]
    from ..methods import FAMILIES  # the family's control label (``none`` for a method)

    family = FAMILIES.get(ctx.get("family", ""))
    control = family.control if family is not None else "none"
    out = []
    shuffled = result.get("controls", {}).get("shuffled_truth")
    for label, block in (("", result), ("shuffled_ids", shuffled)):
        if not block:
            continue
        for metric, m in block.get("metrics", {}).items():
            out.append({
                "dataset": ctx["dataset"], "subject": ctx["subject"], "roi": ctx["roi"],
                "method": ctx["method"], "protocol": ctx["protocol"], "metric": metric,
                "control": label or control, "value": m.get("value"), "ci_low": m.get("ci_low"),
                "ci_high": m.get("ci_high"), "chance": m.get("chance"), "n": m.get("n"),
                "transductive": ctx.get("transductive", 0),
            })  # fmt: skip
    return out


def aggregate_metrics(inputs: list[str], table: str, comparisons: str, unavailable: str) -> None:
    """Rule ``aggregate_metrics``: one table of every metric, paired method comparisons, and the
    metrics a protocol asked for that could not run here (with the reason, e.g. missing weights)."""
    results = []
    for path in inputs:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a readable metrics JSON ({exc})") from exc
    rows = [r for res in results for r in _rows_of(res)]
    with atomic_path(table) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    _write_comparisons(results, comparisons)
    _write_unavailable(results, unavailable)
    log.info("wrote %s (%d rows), %s and %s", table, len(rows), comparisons, unavailable)


def _write_unavailable(results: list[dict], path: str) -> None:
    seen = {}
    for res in results:
        ctx = res["context"]
        for item in res.get("unavailable", []):
            key = (ctx["dataset"], ctx["protocol"], item.get("metric", ""))
            seen.setdefault(key, item.get("reason", ""))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("dataset", "protocol", "metric", "reason"))
        for (dataset, protocol, metric), reason in sorted(seen.items()):
            w.writerow((dataset, protocol, metric, reason))


def _write_comparisons(results: list[dict], path: str) -> None:
    """Paired Wilcoxon signed-rank tests between methods, per dataset/subject/ROI/protocol/metric."""
    groups: dict[tuple, dict[str, dict]] = {}
    for res in results:
        ctx = res["context"]
        key = (ctx["dataset"], ctx["subject"], ctx["roi"], ctx["protocol"])
        groups.setdefault(key, {})[ctx["method"]] = res
    fields = ("dataset", "subject", "roi", "protocol", "metric", "method_a", "method_b", "n",
              "mean_a", "mean_b", "statistic", "p_value")  # fmt: skip
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for key, by_method in sorted(groups.items()):
            for a, b in itertools.combinations(sorted(by_method), 2):
                ma, mb = by_method[a]["metrics"], by_method[b]["metrics"]
                for metric in sorted(set(ma) & set(mb)):
                    pa, pb = ma[metric].get("per_image"), mb[metric].get("per_image")
                    if not pa or not pb or len(pa) != len(pb):
                        continue
                    test = paired_wilcoxon(np.asarray(pa, float), np.asarray(pb, float))
                    w.writerow({
                        "dataset": key[0], "subject": key[1], "roi": key[2], "protocol": key[3],
                        "metric": metric, "method_a": a, "method_b": b, "n": len(pa),
                        "mean_a": float(np.nanmean(pa)), "mean_b": float(np.nanmean(pb)),
                        "statistic": test.get("statistic"), "p_value": test.get("p_value"),
                    })  # fmt: skip
