"""State shared by the metrics of one evaluation: inputs, prepared images, features, matrices.

One :class:`Context` serves the main evaluation and its shuffled control, so images are prepared,
features computed and similarity matrices built once.

Networks are loaded from the shared registry (:mod:`fmrirecon.features.networks`), plus those in
:data:`EVAL_NETWORKS`, which only the evaluation uses and which are looked for the same way: a file
in ``weights_dir`` (else ``$FMRIRECON_WEIGHTS_DIR``); without it the metric is reported unavailable
with the path looked for. ``swav`` is MindEye's SwAV ResNet-50: no SwAV weights ship offline (only
EfficientNet-Lite0's do), so supply ``swav_resnet50.torchscript.pt``, a TorchScript module mapping
ImageNet-normalised ``(N, 3, 224, 224)`` images to the ``avgpool`` features ``(N, 2048)`` (e.g.
``torch.jit.trace`` of ``torch.hub.load("facebookresearch/swav:main", "resnet50")`` with ``fc``
replaced by ``Identity``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..features.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureNet,
    NetworkUnavailable,
    _affine,
    _broken,
    load_network,
    resolve_weights_dir,
)
from .ssim import prepare_images
from .truth_cache import DATASET_CLASSIFIER, DEFAULT_NETWORK, SUBSTITUTION, spec_features

#: Evaluation-only networks: name → (file looked for in the weights directory, what it must be).
EVAL_NETWORKS = {
    "swav": (
        "swav_resnet50.torchscript.pt",
        "TorchScript SwAV ResNet-50: ImageNet-normalised (N, 3, 224, 224) -> avgpool features (N, 2048)",
    ),
}
_EVAL_CACHE: dict = {}


class NotApplicable(Exception):
    """A metric cannot be computed on these inputs; the reason goes to 'unavailable'."""


class Context:
    """Inputs plus caches shared between the main evaluation and its controls."""

    def __init__(self, recon, truth, gallery, weights_dir, device, seed, truth_cache: dict | None = None):
        """``truth_cache``: ``{"features": {(side, network, resolution, layer): array over all test
        (or gallery) images}, "rows": the test rows ``truth`` holds}`` from the dataset's
        ``truth_features.h5`` (:mod:`.truth_cache`); those features are used, not recomputed."""
        self.recon, self.truth, self.gallery = recon, truth, gallery
        self.weights_dir = weights_dir
        self.device = torch.device(device) if device else torch.device("cpu")
        self.seed = int(seed)
        self.n, self.s = recon.shape[0], recon.shape[1]
        self._img: dict = {}
        self._feat: dict = {}
        self.matrices: dict = {}  # similarity matrices and class centroids, by metric settings
        self.notes: dict = {}
        self.wanted: dict = {}  # (network, resolution) -> layers the protocol needs (one pass each)
        self.truth_cache = dict(truth_cache or {})
        for (side, network, res, layer), value in (truth_cache or {}).get("features", {}).items():
            value = value[truth_cache["rows"]] if side == "truth" else value
            self._feat[(side, 0, network, res, layer)] = torch.from_numpy(np.ascontiguousarray(value))

    def plan_features(self, protocol: dict) -> None:
        """Record every layer each (network, resolution) will need, so one pass computes them
        (the features a metric reads: :func:`.truth_cache.spec_features`)."""
        for spec in protocol["metrics"]:
            for _, net, res, layer in spec_features(spec):
                layers = self.wanted.setdefault((net, res or None), [])
                if layer not in layers:
                    layers.append(layer)

    def resolution(self, spec: dict) -> int:
        """The spec's pixel resolution, else the images' own."""
        res = int(spec.get("resolution") or 0)
        return res if res else int(self.truth.shape[1])

    def images(self, side: str, s: int, resolution: int, grey: bool) -> torch.Tensor:
        """Prepared float images of ``recon`` sample ``s`` or of ``truth`` (cached)."""
        key = (side, s if side == "recon" else 0, resolution, grey)
        if key not in self._img:
            src = self.recon[:, s] if side == "recon" else self.truth
            self._img[key] = prepare_images(src, resolution=resolution, grey=grey, device=self.device)
        return self._img[key]

    def net(self, name: str):
        """The loaded network, or NotApplicable with the reason it is unavailable."""
        if name == DATASET_CLASSIFIER:
            return self._dataset_classifier()
        if name in EVAL_NETWORKS:
            return _eval_network(name, self.weights_dir)
        try:
            return load_network(name, self.weights_dir)
        except NetworkUnavailable as exc:
            raise NotApplicable(f"network '{name}' unavailable: {exc.reason}") from exc

    def features(self, side: str, s: int, network: str, layers: list[str], resolution: int | None):
        """Features of ``recon`` sample ``s``, ``truth`` or ``gallery`` images (cached; every layer
        the protocol wants from this network and resolution is computed in the same pass)."""
        net = self.net(network)
        base = (side, s if side in ("recon",) else 0, network, resolution)
        missing = [k for k in layers if base + (k,) not in self._feat]
        if missing:
            extra = [k for k in self.wanted.get((network, resolution), []) if base + (k,) not in self._feat]
            missing += [k for k in extra if k not in missing]
            if side == "recon":
                src = self.recon[:, s]
            elif side == "truth":
                src = self.truth
            else:
                src = self.gallery["images"]
            got = net.features(src, missing, resolution=resolution, device=self.device)
            for k, v in got.items():
                self._feat[base + (k,)] = v
        return [self._feat[base + (k,)] for k in layers]


    def _dataset_classifier(self) -> FeatureNet:
        """:data:`.truth_cache.DATASET_CLASSIFIER`: logits = pooled EfficientNet-Lite0 features x
        the fitted weights (from the dataset's ``truth_features.h5``)."""
        weights = self.truth_cache.get("classifier")
        if weights is None:
            raise NotApplicable(f"'{DATASET_CLASSIFIER}' needs the classifier of the dataset's truth_features.h5")
        if "net" not in self.truth_cache:
            base = load_network(DEFAULT_NETWORK, None)
            coef, bias = torch.from_numpy(weights["coef"]), torch.from_numpy(weights["intercept"])

            def forward(x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
                pooled = base.forward(x, ("pooled",))["pooled"]
                return {k: pooled @ coef.T + bias for k in layers}

            self.truth_cache["net"] = FeatureNet(
                name=DATASET_CLASSIFIER, input_size=base.input_size, normalise=base.normalise, forward=forward,
                module=base.module, source=f"{SUBSTITUTION} ({len(bias)} classes; {base.source})", layers=("logits",),
            )  # fmt: skip
        return self.truth_cache["net"]


def _eval_network(name: str, weights_dir) -> FeatureNet:
    """An evaluation-only network (:data:`EVAL_NETWORKS`) from its TorchScript file (cached)."""
    fname, what = EVAL_NETWORKS[name]
    wdir = resolve_weights_dir(weights_dir)
    path = wdir / fname if wdir is not None else None
    if path is None or not path.is_file():
        where = "no weights_dir configured (set weights_dir or $FMRIRECON_WEIGHTS_DIR); " if wdir is None else ""
        raise NotApplicable(
            f"network '{name}' unavailable: no {name} weights ship offline (only efficientnet-lite0's do); "
            f"{where}weights not found: looked for {path or '<weights_dir>/' + fname} ({what})"
        )
    if str(path) not in _EVAL_CACHE:
        try:
            model = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, OSError, ValueError) as exc:  # a file that is there but broken: an error
            raise _broken(path, name, exc) from None

        def forward(x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
            emb = model(x).flatten(1)
            return {k: emb for k in layers}

        _EVAL_CACHE[str(path)] = FeatureNet(
            name=name, input_size=224, normalise=_affine(IMAGENET_MEAN, IMAGENET_STD), forward=forward,
            module=model, source=str(path), layers=("embedding",),
        )  # fmt: skip
    return _EVAL_CACHE[str(path)]
