"""State shared by the metrics of one evaluation: inputs, prepared images, features, matrices.

One :class:`Context` serves the main evaluation and its shuffled control, so images are prepared,
features computed and similarity matrices built once.
"""

from __future__ import annotations

import torch

from ..features.networks import DEFAULT_NETWORK, NetworkUnavailable, load_network
from .ssim import prepare_images


class NotApplicable(Exception):
    """A metric cannot be computed on these inputs; the reason goes to 'unavailable'."""


class Context:
    """Inputs plus caches shared between the main evaluation and its controls."""

    def __init__(self, recon, truth, gallery, weights_dir, device, seed):
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

    def plan_features(self, protocol: dict) -> None:
        """Record every layer each (network, resolution) will need, so one pass computes them."""
        for spec in protocol["metrics"]:
            name, sim = spec["name"], spec.get("similarity")
            res = int(spec.get("resolution") or 0) or None
            if name == "semantic_nway_topk":
                net, layers = spec.get("classifier", DEFAULT_NETWORK), ["logits"]
            elif name in ("feature_correlation_distance",) or (name == "identification" and sim == "feature_corr"):
                net, layers = spec.get("network", DEFAULT_NETWORK), [spec.get("layer", "pooled")]
            elif name == "centroid_classification":
                net, layers = spec.get("network", DEFAULT_NETWORK), [spec.get("layer", "block10")]
            else:
                continue
            self.wanted.setdefault((net, res), [])
            self.wanted[(net, res)] += [k for k in layers if k not in self.wanted[(net, res)]]

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
