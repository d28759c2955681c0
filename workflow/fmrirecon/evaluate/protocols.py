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
    N - 1 images; per-image fraction won, mean = accuracy over N(N - 1) comparisons. SSIM settings
    and ``ties`` (``half``, the default, or ``strict``: won only when strictly greater, paper 000's
    rule and the ``fang2020_pairwise_ssim`` preset's setting).
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
    ``network``, ``layer``. ``network: swav`` (MindEye's SwAV ResNet-50) needs a TorchScript file in
    ``weights_dir`` (see :mod:`.protocol_context`); no SwAV weights ship offline, so without it the
    metric is listed under ``unavailable`` with the path looked for.
``perceptual_distance``
    LPIPS-style distance (paper 003 LPIPS): ``network``, ``layers``; calibrated with LPIPS's
    ``lin`` weights only for ``network: lpips-alex``.

Any metric takes ``samples`` (``first`` | ``mean`` | ``mean_and_max``) for reconstructions with S
samples per fMRI; ``mean_and_max`` adds ``<key>_max``, the sample with the best set mean (MinD-Vis
"top-1-class (max)"). Free-text keys (``paper_setting``, ``substitution``, ``choice``) are copied
into the settings so the report can show them.

Each result carries a 95% bootstrap CI over images, the chance level, n and the settings.

Shuffled-id control. Every evaluation also scores the same metrics with the image ids shuffled by a
seeded derangement ``perm``: reconstruction ``i`` is scored against image ``perm[i]`` as if it were
its own. The ranking metrics leave the reconstruction's *own* candidate out of the distractors —
its own image (``identification``, ``pairwise_ssim_2way``), its own class, i.e. the classifier's
label of image ``i`` (``semantic_nway_topk``), or its own category's centroid
(``centroid_classification``): otherwise a method that works ranks that own candidate first, it
beats the control's target whenever drawn, and the control falls *below* chance the better the
method is ("all"-way identification of a perfect method would score exactly 0). With the own
candidate left out, the target is a random other image (class, category), so the control sits at
chance whatever the method does (averaged over pairings, exactly chance for identification). Its
chance levels are the control's own: n-way stays n-way (``1 / n``) while N - 1 images remain;
``"all"`` and n > N - 1 become (N - 1)-way (``1 / (N - 1)``, recorded as ``control_n_way``); a
centroid rank is out of K - 1 categories (chance K / 2), top-k chance is k / (K - 1); semantic
n-way chance stays ``top_k / n_way``. When image ``perm[i]`` has the reconstruction's own class or
category (two test images of one class) it would be no null comparison: that row's partner is
replaced by a random image of another class, seeded (``control_rows_repaired`` in the settings),
so every image keeps a row (n = N). What a control still shows above chance is a bias of the
metric itself — e.g. the classes of test images may be likelier than random ImageNet classes for
any natural-looking image, or the max over samples picks the luckiest sample. Pixel and feature
scores that are not rankings (SSIM, PixCorr, distances) are simply scored against image
``perm[i]``; their control value is their empirical chance level. Control metrics that cannot be
computed (identification needs 3 images) are listed in the control block's ``unavailable``.

Module layout: specs, result keys and input checks in :mod:`.protocol_spec`; the state shared by
the metrics in :mod:`.protocol_context`; one function per metric kind, and the table from metric
name to function, in :mod:`.protocol_metrics`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .presets import DEFAULT_PROTOCOLS  # noqa: F401  (re-exported)
from .protocol_context import Context, NotApplicable
from .protocol_metrics import run_metric
from .protocol_spec import METRIC_NAMES, check_protocol, derangement, derived_keys, spec_key, validate_inputs
from .stats import summarise


def _evaluate(ctx: Context, protocol: dict, perm: np.ndarray, control: bool, n_boot: int) -> tuple[dict, list]:
    results: dict[str, dict] = {}
    unavailable: list[dict] = []
    for spec in protocol["metrics"]:
        key = spec_key(spec)
        mode = spec.get("samples", "first")
        samples = [0] if mode == "first" else list(range(ctx.s))
        try:
            per_sample = [run_metric(ctx, spec, s, perm, control) for s in samples]
        except NotApplicable as exc:
            for k in derived_keys(spec):
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
            if isinstance(first, NotApplicable):
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


def _header(protocol: dict, ctx: Context) -> dict:
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
    truth_cache: dict | None = None,
) -> dict:
    """Score reconstructions with one protocol; JSON-serialisable result.

    ``recon``: uint8 ``(N, H, W, 3)`` or ``(N, S, H, W, 3)`` (S samples per fMRI); ``truth``:
    uint8 ``(N, H', W', 3)`` aligned with ``recon``; ``gallery`` (class-centroid metrics):
    ``{"images": uint8 (M, H, W, 3), "category": int (M,), "true_category": int (N,)}``;
    ``weights_dir``: where optional network weights are looked for (see
    :mod:`fmrirecon.evaluate.features`); ``truth_cache``: precomputed ground-truth features
    (see :class:`.protocol_context.Context`). Deterministic for a given ``seed``.

    Returns ``{"protocol": {name, description, paper}, "n", "n_samples", "seed",
    "metrics": {key: {"value", "ci_low", "ci_high", "n", "statistic", "chance", "chance_method",
    "higher_is_better", "settings", "per_image"}}, "unavailable": [{"metric", "reason"}],
    "controls": {"shuffled_truth": {...}}}``. With ``controls`` (default) the same metrics are also
    scored against the images permuted by a seeded derangement; metrics without an analytic chance
    level (SSIM, PixCorr, distances) take that control's value as their empirical chance level.
    """
    name = protocol.get("name", "")
    return evaluate_protocols(
        recon, truth, {name: protocol}, seed=seed, gallery=gallery, weights_dir=weights_dir, controls=controls,
        device=device, n_boot=n_boot, truth_cache=truth_cache,
    )[name]  # fmt: skip


def evaluate_protocols(
    recon: np.ndarray,
    truth: np.ndarray,
    protocols: dict[str, dict],
    *,
    seed: int,
    gallery: dict | None = None,
    weights_dir: str | None = None,
    controls: bool = True,
    device: str | None = None,
    n_boot: int = 2000,
    truth_cache: dict | None = None,
) -> dict[str, dict]:
    """:func:`evaluate_protocol` for several protocols at once: ``{name: result}``, each result
    equal to scoring that protocol alone. One :class:`Context` serves them all, so prepared images,
    network features (one pass per network and resolution for every layer any protocol needs) and
    similarity matrices (keyed by their full settings) are computed once."""
    for protocol in protocols.values():
        check_protocol(protocol)
    recon5, truth = validate_inputs(recon, truth, gallery)
    ctx = Context(recon5, truth, gallery, weights_dir, device, seed, truth_cache=truth_cache)
    for protocol in protocols.values():
        ctx.plan_features(protocol)
    return {name: _score(ctx, protocol, controls, n_boot) for name, protocol in protocols.items()}


def _score(ctx: Context, protocol: dict, controls: bool, n_boot: int) -> dict:
    ident = np.arange(ctx.n)
    out = _header(protocol, ctx)
    metrics, unavailable = _evaluate(ctx, protocol, ident, False, n_boot)
    if controls:
        perm = derangement(ctx.n, ctx.seed)
        cmetrics, cunavailable = _evaluate(ctx, protocol, perm, True, n_boot)
        for k, r in metrics.items():
            if r["chance"] is None and k in cmetrics:
                r["chance"] = cmetrics[k]["value"]
                r["chance_method"] = "empirical: same metric with the images shuffled (control)"
            elif k in cmetrics and r["settings"].get("metric") in CLASS_RANKING_METRICS:
                _true_chance(r, cmetrics[k])
        out["controls"] = {"shuffled_truth": _control_block(cmetrics, cunavailable, perm, ctx.seed)}
    out["metrics"] = metrics
    out["unavailable"] = unavailable
    return out


#: Metrics that rank classes or categories: their analytic chance assumes the candidates are
#: exchangeable, which a classifier's or a gallery's bias can break (see :func:`_true_chance`).
CLASS_RANKING_METRICS = ("semantic_nway_topk", "centroid_classification")


def _true_chance(result: dict, control: dict) -> None:
    """Class rankings (semantic n-way, class centroids): the analytic chance assumes the candidate
    classes are exchangeable. When the ground-truth labels collapse to a few classes (ImageNet
    labels of simple images), or the candidates mix test-like and other categories, a
    reconstruction that merely looks like the test set is ranked away from k/n, and the shuffled
    control shows it: where its CI excludes the analytic value, the control's value is the chance
    reported (the empirical floor), the analytic one is kept beside it and the reason is said."""
    analytic, lo, hi = result["chance"], control.get("ci_low"), control.get("ci_high")
    if analytic is None or lo is None or hi is None or lo <= analytic <= hi:
        return
    distinct = result["settings"].get("distinct_true_classes")
    why = (f"the ground-truth images take {distinct} distinct classifier labels" if distinct is not None
           else "the candidate categories are not exchangeable for these reconstructions")  # fmt: skip
    result["analytic_chance"] = analytic
    result["chance"] = control["value"]
    result["chance_method"] = (
        f"empirical: the shuffled control {control['value']:.3f} [{lo:.3f}, {hi:.3f}] excludes the analytic "
        f"{analytic:.3f}; {why}, so the analytic chance does not hold here"
    )


#: What the shuffled control does, as the result (and the report) states it.
CONTROL_DESCRIPTION = (
    "reconstruction i scored against image perm[i] (a seeded derangement: no reconstruction keeps "
    "its own image). Ranking metrics (identification, pairwise SSIM, semantic n-way, class-centroid) "
    "leave the reconstruction's own image / own class / own category centroid out of the distractors, "
    "so they sit at chance whether or not the method works; chance is the control's own ('all'-way "
    "and n > N - 1 become (N - 1)-way, centroid ranks are out of K - 1 categories); where image "
    "perm[i] has the own class/category, a random image of another one (seeded) is the partner. "
    "Non-ranking scores (SSIM, PixCorr, distances) give the empirical chance level of the main metrics"
)


def _control_block(cmetrics: dict, cunavailable: list, perm: np.ndarray, seed: int) -> dict:
    return {
        "description": CONTROL_DESCRIPTION,
        "permutation_seed": seed,
        "permutation": [int(p) for p in perm],
        "metrics": cmetrics,
        "unavailable": cunavailable,
    }


__all__ = [
    "DEFAULT_PROTOCOLS",
    "METRIC_NAMES",
    "derangement",
    "evaluate_protocol",
    "evaluate_protocols",
]
