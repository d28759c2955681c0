"""One function per metric kind of a protocol, and :data:`METRICS`, the table from name to function.

Every function takes ``(ctx, spec, s, perm, control, key)`` — the shared :class:`.Context`, the
metric's spec, the reconstruction sample ``s``, the truth-row permutation (identity, or a
derangement for the shuffled control), whether this is the control, and the metric's result key —
and returns ``({suffix: (per_image, chance, higher_is_better, statistic)}, info)``; a suffix may
map to a :class:`.NotApplicable` instead when only that sub-score cannot be computed.

In the shuffled control the ranking metrics score reconstruction ``i`` against image ``perm[i]``
(its class / category for the semantic metrics) and leave the reconstruction's *own* image (class,
category centroid) out of the distractors; a partner image of the own class/category is replaced by
a random image of another one (:func:`_partners`) — see :mod:`.protocols`. Pixel and feature
metrics that are not rankings only swap the image.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch

from ..features.networks import DEFAULT_NETWORK
from . import metrics as M
from .features import PERCEPTUAL_LAYERS
from .protocol_context import Context, NotApplicable
from .protocol_spec import spec_key
from .ssim import pairwise_ssim, ssim, ssim_settings


def run_metric(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool) -> tuple[dict, dict]:
    """One metric on reconstruction sample ``s``; truth rows are ``perm``-ed for controls."""
    return METRICS[spec["name"]](ctx, spec, s, perm, control, spec_key(spec))


def _rng(ctx: Context, key: str, s: int, control: bool) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([ctx.seed, zlib.crc32(key.encode()), s, int(control)]))


#: The control's note in the settings of a ranking metric.
CONTROL_NOTE = "target: {target}; the reconstruction's own {own} is left out of the distractors"


def _partners(ctx: Context, own: np.ndarray, perm: np.ndarray, what: str) -> tuple[np.ndarray, dict]:
    """The control's partner image per row: ``perm[i]``, or — where image ``perm[i]`` has the own
    class/category, which would be no null comparison — a random image of another one (seeded by
    the evaluation's seed alone, so every sample and metric gets the same partners)."""
    same = np.flatnonzero(own[perm] == own)
    partner = perm.copy()
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0xC1A55]))
    for i in same:
        other = np.flatnonzero(own != own[i])
        if other.size == 0:
            raise NotApplicable(f"shuffled control: every image has the same {what}")
        partner[i] = rng.choice(other)
    return partner, {"control_rows_repaired": int(same.size),
                     "control_repair": f"partner of the own {what} replaced by a random image of another {what}"}


def _net_info(ctx: Context, network: str, info: dict) -> None:
    net = ctx.net(network)
    info["network_source"] = net.source
    info["network_input"] = net.input_size or "native"


# --------------------------------------------------------------------------------------------
# similarity matrices (N, N): reconstruction sample s vs every image, in the original order


def _similarity(ctx: Context, spec: dict, s: int) -> tuple[np.ndarray, bool, dict]:
    """Similarity matrix, whether higher is more similar, and the settings used."""
    kind = spec.get("similarity", "ssim")
    if kind in ("ssim", "pixcorr", "mse"):
        return _pixel_similarity(ctx, spec, s, kind)
    if kind == "feature_corr":
        return _feature_similarity(ctx, spec, s)
    return _perceptual_similarity(ctx, spec, s)


def _pixel_similarity(ctx: Context, spec: dict, s: int, kind: str) -> tuple[np.ndarray, bool, dict]:
    info: dict = {"similarity": kind}
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
    if key not in ctx.matrices:
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
        ctx.matrices[key] = mat
    if kind == "ssim" and ctx.notes.get("ssim_backend"):
        info["backend"] = ctx.notes["ssim_backend"]
    return ctx.matrices[key], kind != "mse", info


def _feature_similarity(ctx: Context, spec: dict, s: int) -> tuple[np.ndarray, bool, dict]:
    network = spec.get("network", DEFAULT_NETWORK)
    res = int(spec.get("resolution") or 0) or None
    layer = spec.get("layer", "pooled")
    info: dict = {"similarity": "feature_corr", "network": network, "layer": layer, "resolution": res or "native"}
    key = ("sim", "feature_corr", s, network, layer, res)
    if key not in ctx.matrices:
        (fx,) = ctx.features("recon", s, network, [layer], res)
        (fy,) = ctx.features("truth", 0, network, [layer], res)
        ctx.matrices[key] = M.pearson_matrix(fx, fy)
    _net_info(ctx, network, info)
    return ctx.matrices[key], True, info


def _perceptual_similarity(ctx: Context, spec: dict, s: int) -> tuple[np.ndarray, bool, dict]:
    kind = spec.get("similarity", "ssim")
    network = spec.get("network", DEFAULT_NETWORK)
    res = int(spec.get("resolution") or 0) or None
    layers = list(spec.get("layers") or PERCEPTUAL_LAYERS.get(network, []))
    info: dict = {"similarity": kind, "network": network, "layers": layers, "resolution": res or "native"}
    key = ("sim", kind, s, network, tuple(layers), res)
    if key not in ctx.matrices:
        net = ctx.net(network)
        w = net.extra.get("lin_weights")
        ua = M.perceptual_embedding(ctx.features("recon", s, network, layers, res), w)
        ub = M.perceptual_embedding(ctx.features("truth", 0, network, layers, res), w)
        ctx.matrices[key] = -M.squared_distance_matrix(ua, ub)
    info["calibrated"] = network == "lpips-alex"
    _net_info(ctx, network, info)
    return ctx.matrices[key], True, info


# --------------------------------------------------------------------------------------------
# metrics


def _ssim(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    res = ctx.resolution(spec)
    st = ssim_settings(spec, resolution=res)
    x = ctx.images("recon", s, res, st["grey"])
    y = ctx.images("truth", 0, res, st["grey"])[torch.as_tensor(perm, device=ctx.device)]
    vals = ssim(x, y, st).cpu().numpy()
    return {"": (vals, None, True, "mean")}, dict(st)


#: Largest per-image array (bytes, all images of one side) kept between metrics: centred pixel rows
#: and perceptual embeddings of the default's 50 images at 425 px fit; NSD's 982 are recomputed.
CACHE_BYTES = 512 * 2**20


def _kept(ctx: Context, key: tuple, make: Callable[[], torch.Tensor | None]) -> torch.Tensor | None:
    """``make()``, kept under ``key`` (kind, side, sample, ...) when it fits in CACHE_BYTES, else
    returned without keeping it. A ``None`` from ``make`` (it found the array too large itself) is
    kept, so that the next call does not ask again. A reconstruction sample's entries replace the
    previous sample's, the truth's stay."""
    if key not in ctx.matrices:
        value = make()
        if value is not None and value.element_size() * value.nelement() > CACHE_BYTES:
            return value
        if key[1] == "recon":
            for old in [k for k in ctx.matrices if k[:2] == key[:2] and k[3:] == key[3:] and k[2] != key[2]]:
                del ctx.matrices[old]
        ctx.matrices[key] = value
    return ctx.matrices[key]


def _pixcorr(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    res = ctx.resolution(spec)
    grey = bool(spec.get("grey", False))
    # Pearson r per row = sum of the centred, unit-norm rows' products: each side's rows are
    # centred once and shared by every protocol and the control (same values as M.pixcorr)
    x = _kept(ctx, ("centred", "recon", s, res, grey), lambda: M.centred_rows(ctx.images("recon", s, res, grey)))
    y = _kept(ctx, ("centred", "truth", 0, res, grey), lambda: M.centred_rows(ctx.images("truth", 0, res, grey)))
    vals = (x * y[torch.as_tensor(perm, device=y.device)].to(x.device)).sum(dim=1).cpu().numpy()
    return {"": (vals, None, True, "mean")}, {"resolution": res, "grey": grey}


def _pairwise_ssim_2way(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    spec = dict(spec, similarity="ssim", n_way=2, mode="exact")
    return _identification(ctx, spec, s, perm, control, key)


def _identification(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    n = ctx.n
    n_way = spec.get("n_way", 2)
    n_eff = n if n_way == "all" else int(n_way)
    if n_eff > n:
        raise NotApplicable(f"{n_way}-way identification needs at least {n_way} images, have {n}")
    sim, higher, info = _similarity(ctx, spec, s)
    mode = spec.get("mode", "exact")
    trials = int(spec.get("trials", 100))
    run_way, target, exclude = n_way, None, None
    if control:  # target: image perm[i]; the own image i is no distractor, so n_eff <= N - 1
        if n < 3:
            raise NotApplicable(f"the shuffled control of identification needs 3 images (target, own, other), have {n}")
        target, exclude = perm, np.arange(n)
        if n_way == "all" or n_eff > n - 1:
            run_way, n_eff = "all", n - 1
        info["control_n_way"] = n_eff
        info["control"] = CONTROL_NOTE.format(target="image perm[i]", own="image")
    vals = M.identification_scores(
        sim if higher else -sim,
        n_way=run_way,
        mode=mode,
        trials=trials,
        rng=_rng(ctx, key, s, control),
        ties=spec.get("ties", "half"),
        target=target,
        exclude=exclude,
    )
    info.update(n_way=n_way, mode=mode, ties=spec.get("ties", "half"))
    if mode == "sampled" and n_eff - 1 < n - 1 - int(control):
        info["trials"] = trials
    return {"": (vals, 1.0 / n_eff, True, "mean")}, info


def _semantic_nway_topk(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    network = spec.get("classifier", DEFAULT_NETWORK)
    res = int(spec.get("resolution") or 0) or None
    (lr,) = ctx.features("recon", s, network, ["logits"], res)
    (lt,) = ctx.features("truth", 0, network, ["logits"], res)
    own = lt.argmax(dim=1).numpy()
    probs = torch.softmax(lr.double(), dim=1).numpy()
    n_way, top_k = int(spec.get("n_way", 50)), int(spec.get("top_k", 1))
    mode, trials = spec.get("mode", "sampled"), int(spec.get("trials", 1000))
    if n_way > probs.shape[1]:
        raise NotApplicable(f"{n_way}-way needs {n_way} classes; classifier '{network}' has {probs.shape[1]}")
    info = {"classifier": network, "n_way": n_way, "top_k": top_k, "mode": mode, "ties": spec.get("ties", "half"),
            "resolution": res or "native", "true_class": "classifier argmax on the ground-truth image",
            "distinct_true_classes": int(len(np.unique(own)))}  # fmt: skip
    if control:
        if n_way > probs.shape[1] - 1:
            raise NotApplicable(f"the shuffled control of {n_way}-way needs {n_way} classes besides the own one")
        note = CONTROL_NOTE.format(target="the class of image perm[i]", own="class (its image's label)")
        perm, repaired = _partners(ctx, own, perm, "class")
        info.update(repaired, control=note)
    vals = M.semantic_nway_topk(
        probs, own[perm], n_way=n_way, top_k=top_k, mode=mode, trials=trials,
        rng=_rng(ctx, key, s, control), ties=spec.get("ties", "half"), exclude_class=own if control else None,
    )  # fmt: skip
    if mode == "sampled":
        info["trials"] = trials
    _net_info(ctx, network, info)
    return {"": (vals, top_k / n_way, True, "mean")}, info


def _centroid_classification(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    if ctx.gallery is None:
        raise NotApplicable("class-centroid classification needs a gallery (images, category, true_category)")
    network = spec.get("network", DEFAULT_NETWORK)
    layer = spec.get("layer", "block10")
    res = int(spec.get("resolution") or 0) or None
    (fr,) = ctx.features("recon", s, network, [layer], res)
    ckey = ("centroids", network, layer, res)
    if ckey not in ctx.matrices:
        (fg,) = ctx.features("gallery", 0, network, [layer], res)
        ctx.matrices[ckey] = M.class_centroids(fg, ctx.gallery["category"])
    cats, centroids = ctx.matrices[ckey]
    own = np.searchsorted(cats, np.asarray(ctx.gallery["true_category"]))
    if control:
        perm, repaired = _partners(ctx, own, perm, "category")
    k_all = len(cats)
    k_eff = k_all - 1 if control else k_all  # the control leaves the own category out
    besides = " besides the own one (shuffled control)" if control else ""
    if k_eff < 2:
        raise NotApplicable(f"class-centroid classification needs 2 gallery categories{besides}, have {k_eff}")
    n_ways = [int(v) for v in spec.get("n_way", [])]
    usable = [v for v in n_ways if v <= k_eff]
    top_k = [int(k) for k in spec.get("top_k", [1, 5])]
    mode, trials = spec.get("mode", "sampled"), int(spec.get("trials", 500))
    out = M.centroid_classification(
        fr, centroids, own[perm], top_k=top_k, n_way=usable, mode=mode, trials=trials,
        rng=_rng(ctx, key, s, control), ties=spec.get("ties", "half"), exclude_index=own if control else None,
    )  # fmt: skip
    res_d = {"_rank": (out["rank"], (k_eff + 1) / 2.0, False, "median")}
    for k in top_k:
        res_d[f"_top{k}"] = (out[f"top{k}"], min(1.0, k / k_eff), True, "mean")
    for v in n_ways:
        if v in usable:
            res_d[f"_{v}way_top1"] = (out[f"nway{v}_top1"], 1.0 / v, True, "mean")
        else:
            why = f"{v}-way classification needs {v} gallery categories{besides}, have {k_eff}"
            res_d[f"_{v}way_top1"] = NotApplicable(why)
    info = {"network": network, "layer": layer, "resolution": res or "native", "n_categories": k_all,
            "gallery_images": len(ctx.gallery["category"]), "similarity": "pearson to class centroid",
            "mode": mode, "trials": trials, "ties": spec.get("ties", "half")}  # fmt: skip
    if control:
        note = CONTROL_NOTE.format(target="the category of image perm[i]", own="category centroid")
        info.update(repaired, control=note, control_n_categories=k_eff)
    _net_info(ctx, network, info)
    return res_d, info


def _feature_correlation_distance(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    network = spec.get("network", DEFAULT_NETWORK)
    layer = spec.get("layer", "pooled")
    res = int(spec.get("resolution") or 0) or None
    (fx,) = ctx.features("recon", s, network, [layer], res)
    (fy,) = ctx.features("truth", 0, network, [layer], res)
    vals = M.correlation_distance(fx, fy[torch.as_tensor(perm)])
    info = {"network": network, "layer": layer, "resolution": res or "native", "distance": "1 - pearson r"}
    _net_info(ctx, network, info)
    return {"": (vals, None, False, "mean")}, info


def _perceptual_distance(ctx: Context, spec: dict, s: int, perm: np.ndarray, control: bool, key: str):
    network = spec.get("network", DEFAULT_NETWORK)
    layers = list(spec.get("layers") or PERCEPTUAL_LAYERS.get(network, []))
    res = int(spec.get("resolution") or 0) or None
    net = ctx.net(network)
    w = net.extra.get("lin_weights")

    def one(images: np.ndarray) -> torch.Tensor:
        f = net.features(images, layers, resolution=res, device=ctx.device)
        return M.perceptual_embedding([f[k] for k in layers], w)

    def embed(images: np.ndarray) -> torch.Tensor | None:
        """Every image's LPIPS-style embedding, in chunks of 32; None when they would not fit in
        CACHE_BYTES (early layers' maps are large at NSD's size)."""
        first = one(images[:32])
        if first.element_size() * first[:1].nelement() * len(images) > CACHE_BYTES:
            return None
        return torch.cat([first] + [one(images[c0 : c0 + 32]) for c0 in range(32, len(images), 32)])

    ua = _kept(ctx, ("perceptual", "recon", s, network, tuple(layers), res), lambda: embed(ctx.recon[:, s]))
    ub = _kept(ctx, ("perceptual", "truth", 0, network, tuple(layers), res), lambda: embed(ctx.truth))
    if ua is not None and ub is not None:
        vals = M.embedding_distance(ua, ub[torch.as_tensor(perm, device=ub.device)])
    else:  # too large to keep: score chunk by chunk, keeping nothing
        chunks = [np.arange(ctx.n)[c0 : c0 + 32] for c0 in range(0, ctx.n, 32)]
        vals = np.concatenate([M.embedding_distance(one(ctx.recon[idx, s]), one(ctx.truth[perm[idx]]))
                               for idx in chunks])  # fmt: skip
    info = {"network": network, "layers": layers, "resolution": res or "native",
            "calibrated": network == "lpips-alex"}  # fmt: skip
    _net_info(ctx, network, info)
    return {"": (vals, None, False, "mean")}, info


MetricFn = Callable[[Context, dict, int, np.ndarray, bool, str], tuple[dict, dict]]

#: Metric name → the function that computes it (the names of :data:`.protocol_spec.METRIC_NAMES`).
METRICS: dict[str, MetricFn] = {
    "ssim": _ssim,
    "pixcorr": _pixcorr,
    "pairwise_ssim_2way": _pairwise_ssim_2way,
    "identification": _identification,
    "semantic_nway_topk": _semantic_nway_topk,
    "centroid_classification": _centroid_classification,
    "feature_correlation_distance": _feature_correlation_distance,
    "perceptual_distance": _perceptual_distance,
}
