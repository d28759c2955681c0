"""Rule ``train_category_classifier``: paper 004's multi-label category classifier from fMRI.

One job per dataset × subject × ROI trains the 1-D CNN (:class:`~fmrirecon.models.category_classifier.CategoryCNN`)
four times and scores each on the test images:

- label sets: ``unfiltered`` (every category of the image) and ``filtered`` (paper 004's box
  filter, then — when ``count_filter.fraction`` > 0 — its count filter computed on the filtered
  training labels); each model is scored against the test labels of its own label set, so the two
  accuracies answer different questions (as in the paper);
- ``control: none`` (the real pairing) and ``control: shuffled_labels`` (the training label rows
  permuted across training samples with a seeded generator before training: a null that keeps
  every label's frequency, so a classifier that learns only label priors scores the same);
- besides, a ``label_prior`` floor without fMRI (every test image scored by the training labels'
  frequencies) and a ``ridge_reference`` (not the paper's: ridge regression from the same voxels to
  the multi-hot labels, :class:`~fmrirecon.models.ridge.RidgeDecoder`, its penalty chosen on a
  held-out fifth of the training samples), which says how much of the labels a linear read-out
  finds in the fMRI, as the ridge decoder does for the reconstructions.

Metrics per model (:mod:`fmrirecon.evaluate.multilabel`), each with a percentile-bootstrap 95% CI
over test images: ``keras_accuracy`` (what the paper calls accuracy: Keras' CategoricalAccuracy on
multi-hot labels), ``top1_in_set`` and ``mAP`` (its CI resamples labels, the mean's items). The paper's 8:2 split of the training data is not
used: training runs on the training split and every number is on the held-out test split (its
``test/fmri``, averaged over repeats).
"""

from __future__ import annotations

import logging

import h5py
import numpy as np
import torch

from ...data import prepared
from ...data.atomic import atomic_path, write_json
from ...evaluate.multilabel import average_precisions, keras_categorical_accuracy, top1_in_true_set
from ...evaluate.stats import summarise
from ...labels.boxes import box_filter, count_filter, multi_hot, zero_labels
from ...losses_pix2pix import multilabel_loss
from ...models.category_classifier import CategoryCNN
from ...models.ridge import RidgeDecoder
from ...train.device import select_device
from ...train.files import save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log, write_train_summary
from ..common import batched, fingerprint
from .labels import fmri_channels, image_labels

log = logging.getLogger(__name__)

VARIANTS = ("unfiltered", "filtered")
CONTROLS = ("none", "shuffled_labels")
METRICS = ("keras_accuracy", "top1_in_set", "mAP")


def label_sets(labels, train_rows: np.ndarray, test_rows: np.ndarray, settings: dict) -> dict:
    """``{variant: (train (n, L), test (m, L), info)}`` multi-hot labels of the fMRI samples."""
    objs = {"train": [labels.objects["train"][i] for i in train_rows],
            "test": [labels.objects["test"][i] for i in test_rows]}  # fmt: skip
    raw = {s: multi_hot(o, labels.names) for s, o in objs.items()}
    out = {"unfiltered": (raw["train"], raw["test"], {"zeroed_by_box_filter": 0, "dropped_labels": []})}
    area = float(settings["box_filter"]["max_area"])
    tr, n_tr = box_filter(raw["train"], labels.names, objs["train"], area)
    te, n_te = box_filter(raw["test"], labels.names, objs["test"], area)
    dropped = []
    frac = float(settings["count_filter"]["fraction"])
    if frac > 0:
        threshold = max(1, int(np.ceil(frac * len(tr))))
        keep = count_filter(tr, threshold, settings["count_filter"]["drop"])
        dropped = [n for n, k in zip(labels.names, keep) if not k]
        tr, te = zero_labels(tr, keep), zero_labels(te, keep)
    out["filtered"] = (tr, te, {"zeroed_by_box_filter": n_tr + n_te, "dropped_labels": dropped})
    return out


def score(scores: np.ndarray, truth: np.ndarray, seed: int, n_boot: int) -> dict:
    """The three metrics with CIs: exact binomial over test images for the accuracies (each image a
    hit or a miss), percentile bootstrap over labels for mAP."""
    out = {}
    for name, fn in (("keras_accuracy", keras_categorical_accuracy), ("top1_in_set", top1_in_true_set)):
        out[name] = summarise(fn(scores, truth), seed=seed, n_boot=n_boot)
    # mAP is a mean over labels (those with a positive test image): its CI resamples labels
    ap = average_precisions(scores, truth)
    out["mAP"] = {**summarise(ap, seed=seed, n_boot=n_boot, exact=False), "statistic": "mean over labels",
                  "interval": "percentile bootstrap over labels"}  # fmt: skip
    return out


def _fit(x: torch.Tensor, y: torch.Tensor, n_labels: int, settings: dict, training: dict, seed: int,
         checkpoint_dir: str, fp: str, device, name: str):  # fmt: skip
    torch.manual_seed(seed)
    net = CategoryCNN(n_labels, x.shape[2], x.shape[1], settings["size"]).to(device)
    trainer = Trainer(name=name, modules={"classifier": net}, settings=settings["train"], training=training,
                      checkpoint_dir=checkpoint_dir, fingerprint=fp, seed=seed, device=device)  # fmt: skip

    def step(idx, gen):
        return {"loss": multilabel_loss(net(x[idx].to(device)), y[idx].to(device), settings["loss"])}

    trainer.fit(len(x), step)
    return net, trainer


def _merge_histories(histories: list[tuple[str, list[dict]]]) -> list[dict]:
    """One row per epoch with every run's loss side by side (``<run>/loss``; the runs share their
    step count: same samples and batch size)."""
    rows: dict[int, dict] = {}
    for tag, history in histories:
        for row in history:
            out = rows.setdefault(row["epoch"], {"epoch": row["epoch"], "step": row["step"]})
            out[f"{tag}/loss"] = row["loss"]
    return [rows[e] for e in sorted(rows)]


def train_category_classifier(data: str, images: str, truth: str, settings: dict, training: dict, seed: int,
                              checkpoint_dir: str, model: str, loss_log: str, train_summary: str, metrics: str,
                              scores: str) -> None:  # fmt: skip
    """Train the four classifiers of the module doc; write the filtered model, the metrics
    (JSON), the test scores of every model (HDF5, for the confusion figure) and the loss log."""
    d = prepared.read_subject_file(data)
    labels = image_labels(images, truth)
    x, layout = fmri_channels(d, layout=settings["layout"])
    xtr, xte = torch.from_numpy(x["train/fmri"]), torch.from_numpy(x["test/fmri"])
    sets = label_sets(labels, d["train/image_index"], d["test/image_index"], settings)
    device = select_device(training["device"])
    n_boot = int(settings["bootstrap_samples"])
    perm = np.random.default_rng([seed, 4004]).permutation(len(xtr))
    results, histories, test_scores, kept = {}, [], {}, None
    for variant in VARIANTS:
        ytr, yte, info = sets[variant]
        for control in CONTROLS:
            y = torch.from_numpy((ytr[perm] if control == "shuffled_labels" else ytr).astype(np.float32))
            tag = f"{variant}-{control}"
            fp = fingerprint("train_category_classifier", {**settings, "run": tag}, seed, [data, images, truth],
                             training, device)  # fmt: skip
            net, trainer = _fit(xtr, y, len(labels.names), settings, training, seed, f"{checkpoint_dir}/{tag}", fp,
                                device, f"train_category_classifier[{tag}]")  # fmt: skip
            net.eval()
            s = torch.sigmoid(batched(net, xte, device=device)).numpy()
            test_scores[tag] = s
            results[tag] = {"variant": variant, "control": control, **score(s, yte, seed, n_boot)}
            histories.append((tag, trainer.history))
            if tag == "filtered-none":
                kept = (net, trainer)
            else:
                trainer.finish()
        prior = np.broadcast_to(ytr.mean(0, dtype=np.float64), yte.shape)
        results[f"{variant}-label_prior"] = {"variant": variant, "control": "label_prior",
                                             **score(np.array(prior), yte, seed, n_boot)}  # fmt: skip
        results[f"{variant}-label_prior"]["labels"] = info
        ridge = RidgeDecoder(seed=seed).fit(d["train/fmri"], ytr).predict(d["test/fmri"])
        test_scores[f"{variant}-ridge_reference"] = ridge.astype(np.float32)
        results[f"{variant}-ridge_reference"] = {"variant": variant, "control": "ridge_reference",
                                                 **score(ridge, yte, seed, n_boot)}  # fmt: skip
    net, trainer = kept
    save_model(model, {"classifier": net}, {**net.hparams, "label_names": labels.names, "layout": layout, "seed": seed})
    write_loss_log(loss_log, _merge_histories(histories))
    write_train_summary(train_summary, trainer, {"stage_settings": settings, "runs": [h[0] for h in histories]})
    trainer.finish()
    payload = {
        "label_source": labels.source, "label_names": labels.names, "layout": layout,
        "n_train": int(len(xtr)), "n_test": int(len(xte)),
        "test_images_with_labels": {v: int(sets[v][1].any(1).sum()) for v in VARIANTS},
        "labels_per_image": {v: float(sets[v][1].sum(1).mean()) for v in VARIANTS},
        "settings": settings, "results": results,
        "note": "accuracy = Keras CategoricalAccuracy on multi-hot labels (first positive label), as the paper",
    }  # fmt: skip
    write_json(metrics, payload)
    with atomic_path(scores) as tmp, h5py.File(tmp, "w") as f:
        for tag, s in test_scores.items():
            f.create_dataset(f"scores/{tag}", data=s.astype(np.float32))
        for v in VARIANTS:
            f.create_dataset(f"labels/{v}", data=sets[v][1].astype(np.int8))
        f.create_dataset("label_names", data=np.array(labels.names, "S"))
