"""Evaluation protocols: each paper's metrics with their exact settings, plus controls and CIs.

A protocol is plain data (YAML-friendly)::

    {"name": "...", "description": "...", "paper": "...",
     "metrics": [{"name": <metric>, "key": <output key>, ...settings}, ...]}

Metric names and their settings (every setting is echoed into the result):

``ssim``
    Mean SSIM of each reconstruction with its image. Settings of
    :func:`fmrirecon.evaluate.ssim.ssim_settings` (resolution, grey, gaussian_weights, sigma,
    win_size, data_range, pixel_scale, use_sample_covariance, K1, K2).
``pixcorr``
    Pearson r over pixels. ``resolution`` (0: native), ``grey`` (default False: RGB).
``pairwise_ssim_2way``
    Paper 000 (after Fang et al. 2020): SSIM to the own image against SSIM to each of the other
    N - 1 images; per-image fraction won, mean = accuracy over N(N - 1) comparisons. SSIM settings.
``identification``
    n-way identification from a similarity matrix. ``similarity``: ``ssim`` | ``pixcorr`` |
    ``mse`` | ``feature_corr`` | ``perceptual``; ``n_way``: int or ``"all"``; ``mode``:
    ``exact`` (all distractor sets — MindEye's all-pairs form for n = 2) or ``sampled``
    (``trials`` random draws per image); ``ties``: ``half`` | ``strict``. Feature similarities
    take ``network``, ``layer`` / ``layers``, ``resolution``.
``semantic_nway_topk``
    MinD-Vis / paper 001 n-way top-k semantic accuracy with an ImageNet ``classifier``:
    ``n_way``, ``top_k``, ``trials``, ``mode``.
``centroid_classification``
    Paper 002 class-centroid classification against a gallery: ``network``, ``layer``,
    ``top_k`` (list), ``n_way`` (list), ``trials``, ``mode``; outputs ``<key>_rank``,
    ``<key>_top<k>``, ``<key>_<n>way_top1``.
``feature_correlation_distance``
    ``1 - r`` of deep features (MindEye EffNet/SwAV distance, paper 003 EfficientNet distance):
    ``network``, ``layer``.
``perceptual_distance``
    LPIPS-style distance (paper 003 LPIPS): ``network``, ``layers``; calibrated with LPIPS's
    ``lin`` weights only for ``network: lpips-alex``.

Any metric takes ``samples`` (``first`` | ``mean`` | ``mean_and_max``) for reconstructions with S
samples per fMRI; ``mean_and_max`` adds ``<key>_max``, the sample with the best set mean (MinD-Vis
"top-1-class (max)"). Free-text keys (``paper_setting``, ``substitution``, ``choice``) are copied
into the settings so the report can show them.

Each result carries a 95% bootstrap CI over images, the chance level, n and the settings; every
evaluation also scores the same metrics with the images shuffled (a seeded derangement), which must
sit at chance.
"""

from __future__ import annotations

import copy
import math
import zlib
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from . import metrics as M
from .features import DEFAULT_NETWORK, PERCEPTUAL_LAYERS, NetworkUnavailable, load_network, network_status
from .ssim import pairwise_ssim, prepare_images, ssim, ssim_settings
from .presets import DEFAULT_PROTOCOLS  # noqa: F401  (re-exported)
from .stats import summarise

METRIC_NAMES = (
    "ssim",
    "pixcorr",
    "pairwise_ssim_2way",
    "identification",
    "semantic_nway_topk",
    "centroid_classification",
    "feature_correlation_distance",
    "perceptual_distance",
)
SAMPLE_MODES = ("first", "mean", "mean_and_max")
SIMILARITIES = ("ssim", "pixcorr", "mse", "feature_corr", "perceptual")

# --------------------------------------------------------------------------------------------
# keys


def _spec_key(spec: dict) -> str:
    if spec.get("key"):
        return str(spec["key"])
    name = spec.get("name")
    if name == "identification":
        sim = spec.get("similarity", "ssim")
        extra = f"_{spec.get('network', DEFAULT_NETWORK)}_{spec.get('layer', 'pooled')}" if sim == "feature_corr" else ""
        return f"identification_{sim}{extra}_{spec.get('n_way', 2)}way"
    if name == "semantic_nway_topk":
        return f"semantic_{spec.get('n_way', 50)}way_top{spec.get('top_k', 1)}"
    return str(name)


def _derived_keys(spec: dict) -> list[str]:
    key = _spec_key(spec)
    if spec.get("name") == "centroid_classification":
        keys = [f"{key}_rank"] + [f"{key}_top{k}" for k in spec.get("top_k", [1, 5])]
        keys += [f"{key}_{n}way_top1" for n in spec.get("n_way", [])]
    else:
        keys = [key]
    if spec.get("samples") == "mean_and_max":
        keys = [k for base in keys for k in (base, f"{base}_max")]
    return keys


def metric_keys(protocol: dict) -> list[str]:
    """The result keys a protocol produces (before knowing which are unavailable)."""
    _check_protocol(protocol)
    return [k for spec in protocol["metrics"] for k in _derived_keys(spec)]


def _check_protocol(protocol: dict) -> None:
    if not isinstance(protocol, dict) or not isinstance(protocol.get("metrics"), list):
        raise InputError("a protocol must be a dict with a 'metrics' list")
    seen = set()
    for spec in protocol["metrics"]:
        if not isinstance(spec, dict) or spec.get("name") not in METRIC_NAMES:
            got = spec.get("name") if isinstance(spec, dict) else spec
            raise InputError(f"unknown metric '{got}' in protocol: expected one of {METRIC_NAMES}")
        if spec.get("samples", "first") not in SAMPLE_MODES:
            raise InputError(f"metric samples must be one of {SAMPLE_MODES}, got '{spec.get('samples')}'")
        if spec["name"] == "identification" and spec.get("similarity", "ssim") not in SIMILARITIES:
            raise InputError(f"unknown similarity '{spec.get('similarity')}': expected one of {SIMILARITIES}")
        for k in _derived_keys(spec):
            if k in seen:
                raise InputError(f"metric key '{k}' appears twice in the protocol: give a distinct 'key'")
            seen.add(k)


# --------------------------------------------------------------------------------------------
# inputs


def _validate(recon, truth, gallery) -> tuple[np.ndarray, np.ndarray]:
    for name, a in (("recon", recon), ("truth", truth)):
        if not isinstance(a, np.ndarray):
            raise InputError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.dtype != np.uint8:
            raise InputError(f"{name} images must be uint8, got {a.dtype}")
    if truth.ndim != 4 or truth.shape[-1] != 3:
        raise InputError(f"truth must be (N, H, W, 3), got {truth.shape}")
    if recon.ndim == 4:
        recon = recon[:, None]
    if recon.ndim != 5 or recon.shape[-1] != 3:
        raise InputError(f"recon must be (N, H, W, 3) or (N, S, H, W, 3), got {recon.shape}")
    if recon.shape[0] != truth.shape[0]:
        raise InputError(f"recon has {recon.shape[0]} images but truth has {truth.shape[0]}: they must be aligned")
    if recon.shape[0] < 2:
        raise InputError("evaluation needs at least 2 images")
    if gallery is not None:
        need = ("images", "category", "true_category")
        if not isinstance(gallery, dict) or any(k not in gallery for k in need):
            raise InputError(f"gallery must be a dict with keys {need}")
        g = gallery["images"]
        if not isinstance(g, np.ndarray) or g.dtype != np.uint8 or g.ndim != 4 or g.shape[-1] != 3:
            raise InputError(f"gallery images must be uint8 (M, H, W, 3), got {getattr(g, 'shape', g)}")
        cat = np.asarray(gallery["category"])
        if cat.shape != (g.shape[0],) or not np.issubdtype(cat.dtype, np.integer):
            raise InputError(f"gallery category must be int (M,) = ({g.shape[0]},), got {cat.dtype} {cat.shape}")
        tc = np.asarray(gallery["true_category"])
        if tc.shape != (truth.shape[0],) or not np.issubdtype(tc.dtype, np.integer):
            raise InputError(f"gallery true_category must be int (N,) = ({truth.shape[0]},), got {tc.shape}")
        missing = sorted(set(tc.tolist()) - set(cat.tolist()))
        if missing:
            raise InputError(f"true categories {missing[:5]} have no gallery images")
    return recon, truth


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded random permutation of ``range(n)`` with no fixed point (n >= 2)."""
    if n < 2:
        raise InputError("a shuffled control needs at least 2 images")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


class _NotApplicable(Exception):
    """A metric cannot be computed on these inputs; the reason goes to 'unavailable'."""


class _Context:
    """Inputs plus caches shared between the main evaluation and its controls."""

    def __init__(self, recon, truth, gallery, weights_dir, device, seed):
        self.recon, self.truth, self.gallery = recon, truth, gallery
        self.weights_dir = weights_dir
        self.device = torch.device(device) if device else torch.device("cpu")
        self.seed = int(seed)
        self.n, self.s = recon.shape[0], recon.shape[1]
        self._img: dict = {}
        self._feat: dict = {}
        self._sim: dict = {}
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
        res = int(spec.get("resolution") or 0)
        return res if res else int(self.truth.shape[1])

    def images(self, side: str, s: int, resolution: int, grey: bool) -> torch.Tensor:
        key = (side, s if side == "recon" else 0, resolution, grey)
        if key not in self._img:
            src = self.recon[:, s] if side == "recon" else self.truth
            self._img[key] = prepare_images(src, resolution=resolution, grey=grey, device=self.device)
        return self._img[key]

    def net(self, name: str):
        try:
            return load_network(name, self.weights_dir)
        except NetworkUnavailable as exc:
            raise _NotApplicable(f"network '{name}' unavailable: {exc.reason}") from exc

    def features(self, side: str, s: int, network: str, layers: list[str], resolution: int | None):
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


# --------------------------------------------------------------------------------------------
# metric computations: each returns {suffix: (per_image, chance, higher_is_better, statistic)}


def _rng(ctx: _Context, key: str, s: int, control: bool) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([ctx.seed, zlib.crc32(key.encode()), s, int(control)]))


def _similarity(ctx: _Context, spec: dict, s: int) -> tuple[np.ndarray, bool, dict]:
    """Similarity matrix (N, N) of reconstruction sample s vs every image (original order)."""
    kind = spec.get("similarity", "ssim")
    info: dict = {"similarity": kind}
    if kind in ("ssim", "pixcorr", "mse"):
        res = ctx.resolution(spec)
        info["resolution"] = res
        if kind == "ssim":
            st = ssim_settings(spec, resolution=res)
            info.update(st)
            grey = st["grey"]
        else:
            grey = bool(spec.get("grey", False))
            info["grey"] = grey
        key = ("sim", kind, s, res, tuple(sorted(info.items())))
        if key not in ctx._sim:
            x = ctx.images("recon", s, res, grey)
            y = ctx.images("truth", 0, res, grey)
            if kind == "ssim":
                binfo: dict = {}
                mat = pairwise_ssim(x, y, st, info=binfo).cpu().numpy()
                ctx.notes["ssim_backend"] = binfo.get("backend")
            elif kind == "pixcorr":
                mat = M.pearson_matrix(x, y)
            else:  # MSE on [0, 1] pixels: the ranking equals MinD-Vis's on 0-255 values
                mat = M.mse_matrix(x, y)
            ctx._sim[key] = mat
        if kind == "ssim" and ctx.notes.get("ssim_backend"):
            info["backend"] = ctx.notes["ssim_backend"]
        return ctx._sim[key], kind != "mse", info
    network = spec.get("network", DEFAULT_NETWORK)
    res = int(spec.get("resolution") or 0) or None
    if kind == "feature_corr":
        layer = spec.get("layer", "pooled")
        info.update(network=network, layer=layer, resolution=res or "native")
        key = ("sim", kind, s, network, layer, res)
        if key not in ctx._sim:
            (fx,) = ctx.features("recon", s, network, [layer], res)
            (fy,) = ctx.features("truth", 0, network, [layer], res)
            ctx._sim[key] = M.pearson_matrix(fx, fy)
        _net_info(ctx, network, info)
        return ctx._sim[key], True, info
    layers = list(spec.get("layers") or PERCEPTUAL_LAYERS.get(network, []))
    info.update(network=network, layers=layers, resolution=res or "native")
    key = ("sim", kind, s, network, tuple(layers), res)
    if key not in ctx._sim:
        net = ctx.net(network)
        w = net.extra.get("lin_weights")
        ua = M.perceptual_embedding(ctx.features("recon", s, network, layers, res), w)
        ub = M.perceptual_embedding(ctx.features("truth", 0, network, layers, res), w)
        ctx._sim[key] = -M.squared_distance_matrix(ua, ub)
    info["calibrated"] = network == "lpips-alex"
    _net_info(ctx, network, info)
    return ctx._sim[key], True, info


def _net_info(ctx: _Context, network: str, info: dict) -> None:
    net = ctx.net(network)
    info["network_source"] = net.source
    info["network_input"] = net.input_size or "native"


def _run_metric(ctx: _Context, spec: dict, s: int, perm: np.ndarray, control: bool) -> tuple[dict, dict]:
    """One metric on reconstruction sample ``s``; truth rows are ``perm``-ed for controls."""
    name = spec["name"]
    key = _spec_key(spec)
    n = ctx.n
    rows = np.arange(n)
    if name in ("ssim", "pixcorr"):
        res = ctx.resolution(spec)
        if name == "ssim":
            st = ssim_settings(spec, resolution=res)
            x = ctx.images("recon", s, res, st["grey"])
            y = ctx.images("truth", 0, res, st["grey"])[torch.as_tensor(perm, device=ctx.device)]
            vals = ssim(x, y, st).cpu().numpy()
            return {"": (vals, None, True, "mean")}, dict(st)
        grey = bool(spec.get("grey", False))
        x = ctx.images("recon", s, res, grey)
        y = ctx.images("truth", 0, res, grey)[torch.as_tensor(perm, device=ctx.device)]
        return {"": (M.pixcorr(x, y), None, True, "mean")}, {"resolution": res, "grey": grey}
    if name in ("identification", "pairwise_ssim_2way"):
        if name == "pairwise_ssim_2way":
            spec = dict(spec, similarity="ssim", n_way=2, mode="exact")
        n_way = spec.get("n_way", 2)
        n_eff = n if n_way == "all" else int(n_way)
        if n_eff > n:
            raise _NotApplicable(f"{n_way}-way identification needs at least {n_way} images, have {n}")
        sim, higher, info = _similarity(ctx, spec, s)
        sim = sim[:, perm]
        mode = spec.get("mode", "exact")
        trials = int(spec.get("trials", 100))
        vals = M.identification_scores(
            sim if higher else -sim,
            n_way=n_way,
            mode=mode,
            trials=trials,
            rng=_rng(ctx, key, s, control),
            ties=spec.get("ties", "half"),
        )
        info.update(n_way=n_way, mode=mode, ties=spec.get("ties", "half"))
        if mode == "sampled" and n_eff - 1 < n - 1:
            info["trials"] = trials
        return {"": (vals, 1.0 / n_eff, True, "mean")}, info
    if name == "semantic_nway_topk":
        network = spec.get("classifier", DEFAULT_NETWORK)
        res = int(spec.get("resolution") or 0) or None
        (lr,) = ctx.features("recon", s, network, ["logits"], res)
        (lt,) = ctx.features("truth", 0, network, ["logits"], res)
        true_class = lt.argmax(dim=1).numpy()[perm]
        probs = torch.softmax(lr.double(), dim=1).numpy()
        n_way, top_k = int(spec.get("n_way", 50)), int(spec.get("top_k", 1))
        mode, trials = spec.get("mode", "sampled"), int(spec.get("trials", 1000))
        vals = M.semantic_nway_topk(
            probs, true_class, n_way=n_way, top_k=top_k, mode=mode, trials=trials,
            rng=_rng(ctx, key, s, control), ties=spec.get("ties", "half"),
        )  # fmt: skip
        info = {"classifier": network, "n_way": n_way, "top_k": top_k, "mode": mode, "ties": spec.get("ties", "half"),
                "resolution": res or "native", "true_class": "classifier argmax on the ground-truth image"}  # fmt: skip
        if mode == "sampled":
            info["trials"] = trials
        _net_info(ctx, network, info)
        return {"": (vals, top_k / n_way, True, "mean")}, info
    if name == "centroid_classification":
        if ctx.gallery is None:
            raise _NotApplicable("class-centroid classification needs a gallery (images, category, true_category)")
        network = spec.get("network", DEFAULT_NETWORK)
        layer = spec.get("layer", "block10")
        res = int(spec.get("resolution") or 0) or None
        (fr,) = ctx.features("recon", s, network, [layer], res)
        ckey = ("centroids", network, layer, res)
        if ckey not in ctx._sim:
            (fg,) = ctx.features("gallery", 0, network, [layer], res)
            ctx._sim[ckey] = M.class_centroids(fg, ctx.gallery["category"])
        cats, centroids = ctx._sim[ckey]
        true_cat = np.asarray(ctx.gallery["true_category"])[perm]
        true_idx = np.searchsorted(cats, true_cat)
        k_all = len(cats)
        n_ways = [int(v) for v in spec.get("n_way", [])]
        usable = [v for v in n_ways if v <= k_all]
        top_k = [int(k) for k in spec.get("top_k", [1, 5])]
        mode, trials = spec.get("mode", "sampled"), int(spec.get("trials", 500))
        out = M.centroid_classification(
            fr, centroids, true_idx, top_k=top_k, n_way=usable, mode=mode, trials=trials,
            rng=_rng(ctx, key, s, control), ties=spec.get("ties", "half"),
        )  # fmt: skip
        res_d = {"_rank": (out["rank"], (k_all + 1) / 2.0, False, "median")}
        for k in top_k:
            res_d[f"_top{k}"] = (out[f"top{k}"], min(1.0, k / k_all), True, "mean")
        for v in n_ways:
            if v in usable:
                res_d[f"_{v}way_top1"] = (out[f"nway{v}_top1"], 1.0 / v, True, "mean")
            else:
                res_d[f"_{v}way_top1"] = _NotApplicable(f"{v}-way classification needs {v} gallery categories, have {k_all}")
        info = {"network": network, "layer": layer, "resolution": res or "native", "n_categories": k_all,
                "gallery_images": int(len(ctx.gallery["category"])), "similarity": "pearson to class centroid",
                "mode": mode, "trials": trials, "ties": spec.get("ties", "half")}  # fmt: skip
        _net_info(ctx, network, info)
        return res_d, info
    if name == "feature_correlation_distance":
        network = spec.get("network", DEFAULT_NETWORK)
        layer = spec.get("layer", "pooled")
        res = int(spec.get("resolution") or 0) or None
        (fx,) = ctx.features("recon", s, network, [layer], res)
        (fy,) = ctx.features("truth", 0, network, [layer], res)
        vals = M.correlation_distance(fx, fy[torch.as_tensor(perm)])
        info = {"network": network, "layer": layer, "resolution": res or "native", "distance": "1 - pearson r"}
        _net_info(ctx, network, info)
        return {"": (vals, None, False, "mean")}, info
    if name == "perceptual_distance":
        network = spec.get("network", DEFAULT_NETWORK)
        layers = list(spec.get("layers") or PERCEPTUAL_LAYERS.get(network, []))
        res = int(spec.get("resolution") or 0) or None
        net = ctx.net(network)
        # feature maps of early layers are large (LPIPS-sized): score in chunks, keep nothing
        vals = []
        for c0 in range(0, n, 32):
            idx = rows[c0 : c0 + 32]
            fx = net.features(ctx.recon[idx, s], layers, resolution=res, device=ctx.device)
            fy = net.features(ctx.truth[perm[idx]], layers, resolution=res, device=ctx.device)
            w = net.extra.get("lin_weights")
            vals.append(M.perceptual_distance([fx[k] for k in layers], [fy[k] for k in layers], w))
        vals = np.concatenate(vals)
        info = {"network": network, "layers": layers, "resolution": res or "native",
                "calibrated": network == "lpips-alex"}  # fmt: skip
        _net_info(ctx, network, info)
        return {"": (vals, None, False, "mean")}, info
    raise InputError(f"unknown metric '{name}'")  # pragma: no cover - _check_protocol catches it


def _evaluate(ctx: _Context, protocol: dict, perm: np.ndarray, control: bool, n_boot: int) -> tuple[dict, list]:
    results: dict[str, dict] = {}
    unavailable: list[dict] = []
    for spec in protocol["metrics"]:
        key = _spec_key(spec)
        mode = spec.get("samples", "first")
        samples = [0] if mode == "first" else list(range(ctx.s))
        try:
            per_sample = [_run_metric(ctx, spec, s, perm, control) for s in samples]
        except _NotApplicable as exc:
            for k in _derived_keys(spec):
                unavailable.append({"metric": k, "reason": str(exc)})
            continue
        info = per_sample[0][1]
        extras = {k: v for k, v in spec.items() if k not in ("name", "key")}
        settings = {**_plain(extras), **_plain(info), "metric": spec["name"], "seed": ctx.seed}
        if mode == "first":
            settings["samples"] = "first" if ctx.s == 1 else f"first of {ctx.s} samples scored"
        else:
            settings["samples"] = f"{mode} over {ctx.s} samples"
        for suffix, first in per_sample[0][0].items():
            if isinstance(first, _NotApplicable):
                unavailable.append({"metric": key + suffix, "reason": str(first)})
                if mode == "mean_and_max":
                    unavailable.append({"metric": key + suffix + "_max", "reason": str(first)})
                continue
            _, chance, higher, statistic = first
            stack = np.stack([ps[0][suffix][0] for ps in per_sample])  # (S', N)
            variants = {"": stack.mean(axis=0)}
            if mode == "mean_and_max":
                set_means = np.nanmean(stack, axis=1)
                best = int(np.nanargmax(set_means) if higher else np.nanargmin(set_means))
                variants["_max"] = stack[best]
            for vsuf, per_image in variants.items():
                summary = summarise(per_image, statistic=statistic, seed=ctx.seed, n_boot=n_boot)
                st = dict(settings)
                if vsuf == "_max":
                    st["samples"] = (
                        f"max over {ctx.s} samples of the set {statistic} (sample {best}; "
                        "MinD-Vis 'top-1-class (max)')"
                    )
                results[key + suffix + vsuf] = {
                    **summary,
                    "chance": chance,
                    "chance_method": "analytic" if chance is not None else None,
                    "higher_is_better": higher,
                    "settings": st,
                    "per_image": _floats(per_image),
                }
    return results, unavailable


def _floats(v) -> list:
    return [None if (x is None or (isinstance(x, float) and math.isnan(x))) else float(x) for x in np.asarray(v, dtype=np.float64).tolist()]


def _plain(obj: Any) -> Any:
    """Make settings JSON-friendly (numpy scalars, tuples, NaN)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _header(protocol: dict, ctx: _Context) -> dict:
    return {
        "protocol": {
            "name": protocol.get("name", ""),
            "description": protocol.get("description", ""),
            "paper": protocol.get("paper", ""),
        },
        "n": ctx.n,
        "n_samples": ctx.s,
        "seed": ctx.seed,
    }


def evaluate_protocol(
    recon: np.ndarray,
    truth: np.ndarray,
    protocol: dict,
    *,
    seed: int,
    gallery: dict | None = None,
    weights_dir: str | None = None,
    controls: bool = True,
    device: str | None = None,
    n_boot: int = 2000,
) -> dict:
    """Score reconstructions with one protocol; JSON-serialisable result.

    ``recon``: uint8 ``(N, H, W, 3)`` or ``(N, S, H, W, 3)`` (S samples per fMRI); ``truth``:
    uint8 ``(N, H', W', 3)`` aligned with ``recon``; ``gallery`` (class-centroid metrics):
    ``{"images": uint8 (M, H, W, 3), "category": int (M,), "true_category": int (N,)}``;
    ``weights_dir``: where optional network weights are looked for (see
    :mod:`fmrirecon.evaluate.features`). Deterministic for a given ``seed``.

    Returns ``{"protocol": {name, description, paper}, "n", "n_samples", "seed",
    "metrics": {key: {"value", "ci_low", "ci_high", "n", "statistic", "chance", "chance_method",
    "higher_is_better", "settings", "per_image"}}, "unavailable": [{"metric", "reason"}],
    "controls": {"shuffled_truth": {...}}}``. With ``controls`` (default) the same metrics are also
    scored against the images permuted by a seeded derangement; metrics without an analytic chance
    level (SSIM, PixCorr, distances) take that control's value as their empirical chance level.
    """
    _check_protocol(protocol)
    recon5, truth = _validate(recon, truth, gallery)
    ctx = _Context(recon5, truth, gallery, weights_dir, device, seed)
    ctx.plan_features(protocol)
    ident = np.arange(ctx.n)
    out = _header(protocol, ctx)
    metrics, unavailable = _evaluate(ctx, protocol, ident, False, n_boot)
    if controls:
        perm = derangement(ctx.n, seed)
        cmetrics, _ = _evaluate(ctx, protocol, perm, True, n_boot)
        for k, r in metrics.items():
            if r["chance"] is None and k in cmetrics:
                r["chance"] = cmetrics[k]["value"]
                r["chance_method"] = "empirical: same metric with the images shuffled (control)"
        out["controls"] = {"shuffled_truth": _control_block(cmetrics, perm, seed)}
    out["metrics"] = metrics
    out["unavailable"] = unavailable
    return out


def _control_block(cmetrics: dict, perm: np.ndarray, seed: int) -> dict:
    return {
        "description": "reconstructions scored against shuffled image ids (a seeded derangement: no "
        "reconstruction keeps its own image); identification/classification must sit at chance",
        "permutation_seed": seed,
        "permutation": [int(p) for p in perm],
        "metrics": cmetrics,
    }


def shuffled_control(
    recon: np.ndarray,
    truth: np.ndarray,
    protocol: dict,
    *,
    seed: int,
    gallery: dict | None = None,
    weights_dir: str | None = None,
    device: str | None = None,
    n_boot: int = 2000,
) -> dict:
    """The protocol's metrics with the truth rows (and true categories) permuted by a seeded
    derangement: the same structure as :func:`evaluate_protocol` plus ``"control"`` and
    ``"permutation"``. Identification and classification scores must sit at chance."""
    _check_protocol(protocol)
    recon5, truth = _validate(recon, truth, gallery)
    ctx = _Context(recon5, truth, gallery, weights_dir, device, seed)
    ctx.plan_features(protocol)
    perm = derangement(ctx.n, seed)
    out = _header(protocol, ctx)
    metrics, unavailable = _evaluate(ctx, protocol, perm, True, n_boot)
    out.update(control="shuffled_truth", permutation=[int(p) for p in perm], metrics=metrics, unavailable=unavailable)
    return out


def get_protocol(name: str, protocols: dict | None = None) -> dict:
    """A deep copy of a named preset (from ``protocols`` or :data:`DEFAULT_PROTOCOLS`)."""
    table = protocols if protocols is not None else DEFAULT_PROTOCOLS
    if name not in table:
        raise InputError(f"unknown protocol '{name}': expected one of {sorted(table)}")
    proto = copy.deepcopy(table[name])
    proto.setdefault("name", name)
    return proto


def network_availability(protocol: dict, weights_dir: str | None = None) -> list[dict]:
    """Which networks a protocol asks for and whether each can be loaded here."""
    nets = []
    for spec in protocol.get("metrics", []):
        for k in ("network", "classifier"):
            if spec.get(k) and spec[k] not in nets:
                nets.append(spec[k])
        if spec.get("name") in ("identification",) and spec.get("similarity") in ("feature_corr", "perceptual"):
            if not spec.get("network") and DEFAULT_NETWORK not in nets:
                nets.append(DEFAULT_NETWORK)
    return [network_status(n, weights_dir) for n in nets]


__all__ = [
    "DEFAULT_PROTOCOLS",
    "METRIC_NAMES",
    "derangement",
    "evaluate_protocol",
    "get_protocol",
    "metric_keys",
    "network_availability",
    "shuffled_control",
]
