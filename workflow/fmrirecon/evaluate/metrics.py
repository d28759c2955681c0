"""Reconstruction metrics as the papers define them, on arrays and tensors.

Conventions: ``N`` reconstructions aligned with ``N`` ground-truth images; a similarity matrix
``sim`` is ``(N, N)`` with ``sim[i, j]`` = similarity of reconstruction ``i`` to image ``j`` (the
true pair on the diagonal). Every identification/classification score here is a per-image value in
[0, 1] (or a rank), so callers can bootstrap over images and run paired tests.

Identification and n-way classification share one counting rule. For reconstruction ``i`` the
other candidates are split into *better* than the true one (``b``), *tied* (``t``) and *worse*
(``w``). An n-way trial draws ``n - 1`` distractors without replacement from those ``b + t + w``
candidates; the true candidate is "in the top k" when fewer than ``k`` drawn candidates beat it.
Ties get the expected credit of a random tie-break (``ties="half"``; for n = 2 that is the
customary 0.5) or none (``ties="strict"``, the papers' code, which tests ``true > other``). The
two agree whenever no exact ties occur, which is the case for continuous scores; half credit only
keeps degenerate cases (e.g. constant reconstructions) exactly at chance.

* ``mode="exact"`` — the expectation over all distractor sets (hypergeometric). For n = 2 this is
  the all-pairs score of MindEye's ``two_way_identification`` and of the pairwise comparison of
  paper 000 / MinD-Vis ``pair_wise_score``: the fraction of the other N - 1 images the
  reconstruction is closer to its own image than to.
* ``mode="sampled"`` — ``trials`` random draws per image, as MinD-Vis ``n_way_scores`` /
  ``n_way_top_k_acc`` and the SelfSuperReconst notebook do. A trial depends only on how many
  better/tied/worse candidates are drawn, so draws are taken from the multivariate
  hypergeometric distribution directly (same distribution as drawing the candidates, O(trials)).
* ``n_way="all"`` — one comparison against every other candidate (n = N).

Shuffled-id control: the ranking functions take an ``exclude`` candidate per row, left out of the
comparison — the reconstruction's own image, class or category centroid, which as a distractor would
pull the control below chance. The pool shrinks by one (``"all"`` becomes (N - 1)-way); rows whose
target is the excluded candidate (two images of one class) come back NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import gammaln

from ..errors import InputError
from .ssim import pairwise_ssim

TIE_MODES = ("half", "strict")
MODES = ("exact", "sampled")


# --------------------------------------------------------------------------------------------
# correlations and distances


def _rows(a, name: str = "input") -> torch.Tensor:
    """Array/tensor ``(N, ...)`` → float64 tensor ``(N, D)``."""
    t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
    if t.ndim < 1 or t.shape[0] == 0:
        raise InputError(f"{name} must have at least one row, got shape {tuple(t.shape)}")
    return t.detach().reshape(t.shape[0], -1).to(torch.float64)


def _centre_normalise(t: torch.Tensor) -> torch.Tensor:
    t = t - t.mean(dim=1, keepdim=True)
    norm = t.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, t / norm.clamp_min(1e-300), torch.zeros_like(t))


def centred_rows(a) -> torch.Tensor:
    """Rows of ``a (N, ...)`` as float64, centred and scaled to unit norm (zero rows stay 0): the
    Pearson r of two rows is the sum of their products (:func:`pearson_rows`)."""
    return _centre_normalise(_rows(a))


def pearson_rows(a, b) -> np.ndarray:
    """Pearson r of each aligned row pair: ``(N, ...)`` x ``(N, ...)`` → ``(N,)``.

    A row with zero variance has correlation 0 with everything (instead of NaN).
    """
    x, y = _rows(a, "a"), _rows(b, "b")
    if x.shape != y.shape:
        raise InputError(f"correlation needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (_centre_normalise(x) * _centre_normalise(y.to(x.device))).sum(dim=1).cpu().numpy()


def pearson_matrix(a, b) -> np.ndarray:
    """Pearson r between every row of ``a (N, ...)`` and every row of ``b (M, ...)`` → ``(N, M)``."""
    x, y = _rows(a, "a"), _rows(b, "b")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"correlation needs equal row lengths, got {x.shape[1]} and {y.shape[1]}")
    return (_centre_normalise(x) @ _centre_normalise(y.to(x.device)).T).cpu().numpy()


def pixcorr(x, y) -> np.ndarray:
    """PixCorr: Pearson r over all pixels (and channels) of each aligned image pair → ``(N,)``.

    ``x``, ``y``: ``(N, C, H, W)`` tensors or arrays of the same shape (MindEye: RGB at 425 px).
    """
    return pearson_rows(x, y)


def correlation_distance(a, b) -> np.ndarray:
    """``1 - Pearson r`` of aligned feature rows → ``(N,)`` (scipy ``distance.correlation``).

    The EffNet/SwAV "distance" of MindEye and the EfficientNet distance of paper 003.
    """
    return 1.0 - pearson_rows(a, b)


def mse_matrix(a, b) -> np.ndarray:
    """Mean squared error between every row of ``a`` and every row of ``b`` → ``(N, M)``."""
    x, y = _rows(a, "a"), _rows(b, "b")
    return (torch.cdist(x, y.to(x.device)) ** 2 / x.shape[1]).cpu().numpy()


# --------------------------------------------------------------------------------------------
# perceptual (LPIPS-style) distance


def perceptual_embedding(
    feats: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Concatenated, channel-normalised feature maps ``(N, D)`` for the LPIPS-style distance.

    ``feats``: one tensor ``(N, C_l, h_l, w_l)`` per layer. Each spatial feature vector is scaled
    to unit length over channels (LPIPS ``normalize_tensor``, eps 1e-10), multiplied by
    ``sqrt(weights[l])`` per channel (LPIPS's learned ``lin`` layers when given, else 1) and by
    ``1 / sqrt(h_l * w_l)``, so that ``||u_a - u_b||^2`` equals
    ``sum_l mean_hw sum_c w_lc (f̂_a - f̂_b)^2`` — the LPIPS distance (uncalibrated when no weights).
    """
    parts = []
    for idx, f in enumerate(feats):
        if f.ndim == 2:
            f = f[:, :, None, None]
        f = f.to(torch.float32)
        f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        if weights is not None:
            f = f * weights[idx].to(f).clamp_min(0).sqrt().view(1, -1, 1, 1)
        parts.append((f / float(f.shape[-1] * f.shape[-2]) ** 0.5).flatten(1))
    return torch.cat(parts, dim=1)


def perceptual_distance(
    feats_a: Sequence[torch.Tensor],
    feats_b: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor] | None = None,
) -> np.ndarray:
    """LPIPS-style distance of aligned pairs → ``(N,)`` (lower is more similar).

    ``feats_a``/``feats_b``: lists of ``(N, C_l, h_l, w_l)`` maps from the same layers.
    """
    return embedding_distance(perceptual_embedding(feats_a, weights), perceptual_embedding(feats_b, weights))


def embedding_distance(ua: torch.Tensor, ub: torch.Tensor) -> np.ndarray:
    """``||ua_i - ub_i||^2`` of aligned embeddings ``(N, D)`` → ``(N,)`` (float64)."""
    if ua.shape != ub.shape:
        raise InputError(f"perceptual distance needs matching feature shapes, got {ua.shape}, {ub.shape}")
    return ((ua.double() - ub.double()) ** 2).sum(dim=1).cpu().numpy()


def squared_distance_matrix(ua: torch.Tensor, ub: torch.Tensor) -> np.ndarray:
    """``||ua_i - ub_j||^2`` for embeddings ``(N, D)``, ``(M, D)`` → ``(N, M)`` (float64)."""
    a, b = ua.double(), ub.double().to(ua.device)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min(0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# n-way counting


def _index(idx, shape: tuple, name: str) -> np.ndarray:
    i = np.asarray(idx)
    if i.shape != (shape[0],) or not np.issubdtype(i.dtype, np.integer) or (i < 0).any() or (i >= shape[1]).any():
        raise InputError(f"{name} must be (N,) = ({shape[0]},) integers in [0, {shape[1]})")
    return i.astype(np.int64)


def _counts_vs_index(s: np.ndarray, idx: np.ndarray, exclude=None) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Per row ``i``: candidates scoring above / the same as column ``idx[i]`` (not itself), the
    pool size, and the rows with ``exclude[i] == idx[i]``. ``exclude (N,)``: one more column per
    row left out (the control's own image/class); rows whose target is excluded count nothing."""
    rows = np.arange(s.shape[0])
    true = s[rows, idx]
    better = (s > true[:, None]).sum(axis=1)
    tied = (s == true[:, None]).sum(axis=1) - 1
    same = np.zeros(s.shape[0], dtype=bool)
    if exclude is None:
        return better, tied, s.shape[1] - 1, same
    ex = _index(exclude, s.shape, "exclude")
    same = ex == idx
    other = s[rows, ex]
    better = np.where(same, 0, better - (other > true))
    tied = np.where(same, 0, tied - (other == true))
    return better, tied, s.shape[1] - 2, same


def _log_comb(n, k):
    n, k = np.asarray(n, dtype=np.float64), np.asarray(k, dtype=np.float64)
    lc = gammaln(n + 1) - gammaln(np.clip(k, 0, None) + 1) - gammaln(np.clip(n - k, 0, None) + 1)
    return np.where((k >= 0) & (k <= n), lc, -np.inf)


def _credit(xb, xt, top_k: int, tie_mode: str):
    """Credit of a trial with ``xb`` better and ``xt`` tied distractors drawn."""
    xb, xt = np.asarray(xb, dtype=np.float64), np.asarray(xt, dtype=np.float64)
    if tie_mode == "strict":
        return (xb + xt < top_k).astype(np.float64)
    return np.clip(top_k - xb, 0, xt + 1) / (xt + 1)


def nway_credit(
    better,
    ties,
    pool: int,
    *,
    n_way: int | str = 2,
    top_k: int = 1,
    mode: str = "exact",
    trials: int = 100,
    rng: np.random.Generator | None = None,
    ties_mode: str = "half",
) -> np.ndarray:
    """Per-item n-way top-k credit from counts of better/tied competitors → ``(N,)``.

    ``better``, ``ties``: ``(N,)`` counts among ``pool`` competitors (the candidates other than
    the true one). ``n_way``: int >= 2 or ``"all"`` (= pool + 1). See the module docstring.
    """
    better = np.asarray(better, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    if mode not in MODES:
        raise InputError(f"unknown n-way mode '{mode}': expected one of {MODES}")
    if ties_mode not in TIE_MODES:
        raise InputError(f"unknown ties mode '{ties_mode}': expected one of {TIE_MODES}")
    n = pool + 1 if n_way == "all" else int(n_way)
    if n < 2 or n - 1 > pool:
        raise InputError(f"{n_way}-way needs between 1 and {pool} distractors (have {pool} candidates)")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    d = n - 1
    worse = pool - better - ties
    if d == pool:  # every competitor is in the comparison
        return _credit(better, ties, top_k, ties_mode)
    if mode == "exact":
        total = _log_comb(pool, d)
        out = np.zeros(better.shape, dtype=np.float64)
        for xb in range(min(top_k, d + 1)):
            max_t = int(min(ties.max(initial=0), d - xb))
            for xt in range(max_t + 1):
                lp = _log_comb(better, xb) + _log_comb(ties, xt) + _log_comb(worse, d - xb - xt) - total
                out += np.exp(lp) * _credit(xb, xt, top_k, ties_mode)
        return out
    rng = rng if rng is not None else np.random.default_rng(0)
    out = np.empty(better.shape, dtype=np.float64)
    for i in range(better.shape[0]):
        draws = rng.multivariate_hypergeometric([better[i], ties[i], worse[i]], d, size=trials)
        out[i] = _credit(draws[:, 0], draws[:, 1], top_k, ties_mode).mean()
    return out


def identification_scores(
    sim,
    *,
    n_way: int | str = 2,
    mode: str = "exact",
    trials: int = 100,
    rng: np.random.Generator | None = None,
    higher_is_better: bool = True,
    ties: str = "half",
    target=None,
    exclude=None,
) -> np.ndarray:
    """n-way identification of each reconstruction among its image and n - 1 others → ``(N,)``.

    ``sim (N, N)``: similarity (or distance with ``higher_is_better=False``) of reconstruction i
    to image j. Chance is ``1 / n``. With n = 2 and ``mode="exact"`` this is the all-pairs 2-way
    score (MindEye; paper 000's N(N - 1) SSIM comparisons, averaged per reconstruction).
    ``target (N,)``: the true image of each row (default: the diagonal); ``exclude (N,)``: an image
    per row left out of the distractors (the shuffled control: ``target=perm``,
    ``exclude=arange(N)``; ``"all"`` is then (N - 1)-way, chance ``1 / (N - 1)``).
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise InputError(f"identification needs a square (N, N) similarity matrix, got {sim.shape}")
    if np.isnan(sim).any():
        raise InputError("identification similarity matrix contains NaN")
    idx = np.arange(sim.shape[0]) if target is None else _index(target, sim.shape, "target")
    better, tied, pool, same = _counts_vs_index(sim if higher_is_better else -sim, idx, exclude)
    if same.any():
        raise InputError("identification: a row's excluded image must not be its target")
    return nway_credit(better, tied, pool, n_way=n_way, top_k=1, mode=mode, trials=trials, rng=rng, ties_mode=ties)


def pairwise_ssim_2way(x: torch.Tensor, y: torch.Tensor, settings=None, *, ties: str = "half", **kw) -> np.ndarray:
    """Pairwise-SSIM 2-way identification (paper 000 after Fang et al. 2020) → ``(N,)``.

    For each reconstruction ``x[i]`` its SSIM to ``y[i]`` is compared with its SSIM to each of the
    other N - 1 images; the per-image score is the fraction won, so the mean is the accuracy over
    all N(N - 1) comparisons. Paper 000 counts a comparison as won only when the SSIM is strictly
    greater (``ties="strict"``); ``ties="half"`` gives ties half credit. ``x``, ``y``: prepared
    float tensors (N, C, H, W).
    """
    if x.shape[0] != y.shape[0]:
        raise InputError(f"pairwise SSIM needs as many reconstructions as images: {x.shape[0]} vs {y.shape[0]}")
    sim = pairwise_ssim(x, y, settings, **kw).cpu().numpy()
    return identification_scores(sim, n_way=2, mode="exact", ties=ties)


def semantic_nway_topk(
    scores,
    true_class,
    *,
    n_way: int = 50,
    top_k: int = 1,
    mode: str = "sampled",
    trials: int = 1000,
    rng: np.random.Generator | None = None,
    ties: str = "half",
    exclude_class=None,
) -> np.ndarray:
    """n-way top-k semantic accuracy (MinD-Vis ``n_way_top_k_acc``; paper 001 Algorithm 1) → ``(N,)``.

    ``scores (N, K)``: the classifier's class probabilities (or logits: the ranking is the same)
    for each reconstruction; ``true_class (N,)``: the class the classifier gives the ground-truth
    image (a pseudo-label). Each trial keeps the true class and ``n_way - 1`` random other classes
    and scores a hit when the true class is in the reconstruction's top ``top_k`` among them.
    Chance is ``top_k / n_way``. ``exclude_class (N,)``: a class per row kept out of the
    distractors (the shuffled control's own class; rows where it is the true class are NaN).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise InputError(f"semantic n-way needs scores (N, K), got {s.shape}")
    c = _index(true_class, s.shape, "true classes")
    better, tied, pool, same = _counts_vs_index(s, c, exclude_class)
    out = nway_credit(better, tied, pool, n_way=n_way, top_k=top_k, mode=mode, trials=trials, rng=rng, ties_mode=ties)
    out[same] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# class-centroid classification (paper 002)


def class_centroids(gallery_feats, gallery_category) -> tuple[np.ndarray, torch.Tensor]:
    """Mean feature per category: ``(M, ...)`` features, ``(M,)`` labels → (categories ``(K,)``,
    centroids ``(K, D)``), categories sorted ascending."""
    f = _rows(gallery_feats, "gallery features")
    cat = np.asarray(gallery_category)
    if cat.shape != (f.shape[0],):
        raise InputError(f"gallery categories {cat.shape} do not match {f.shape[0]} gallery images")
    cats, inv = np.unique(cat, return_inverse=True)
    inv_t = torch.as_tensor(inv, device=f.device)
    sums = torch.zeros((len(cats), f.shape[1]), dtype=f.dtype, device=f.device).index_add_(0, inv_t, f)
    counts = torch.bincount(inv_t, minlength=len(cats)).to(f.dtype)[:, None]
    return cats, sums / counts


def centroid_classification(
    feats,
    centroids,
    true_index,
    *,
    top_k: Sequence[int] = (1, 5),
    n_way: Sequence[int] = (),
    mode: str = "sampled",
    trials: int = 500,
    rng: np.random.Generator | None = None,
    ties: str = "half",
    exclude_index=None,
) -> dict[str, np.ndarray]:
    """Classify reconstructions against class centroids by Pearson correlation (paper 002).

    ``feats (N, D)``: deep features of the reconstructions; ``centroids (K, D)``; ``true_index
    (N,)``: row of each reconstruction's true category in ``centroids``. Returns per-image arrays:
    ``rank`` (1 = the true category correlates best; ties share the mean rank), ``top{k}`` for each
    k (among all K categories; chance k / K) and ``nway{n}_top1`` for each n (true category plus
    n - 1 random others; chance 1 / n), plus ``scores (N, K)``. ``exclude_index (N,)``: a category
    per row left out of the candidates (the shuffled control's own category: K - 1 candidates, so
    rank chance K / 2 and top-k chance k / (K - 1)); rows where it is the true one are NaN.
    """
    scores = pearson_matrix(feats, centroids)
    idx = _index(true_index, scores.shape, "true category indices")
    better, tied, pool, same = _counts_vs_index(scores, idx, exclude_index)
    out: dict[str, np.ndarray] = {"scores": scores, "rank": 1.0 + better + tied / 2.0}
    for k in top_k:
        out[f"top{k}"] = nway_credit(better, tied, pool, n_way="all", top_k=int(k), ties_mode=ties)
    for n in n_way:
        kw = {"mode": mode, "trials": trials, "rng": rng, "ties_mode": ties}
        out[f"nway{n}_top1"] = nway_credit(better, tied, pool, n_way=int(n), top_k=1, **kw)
    for key in out.keys() - {"scores"}:
        out[key][same] = np.nan
    return out


__all__ = [
    "centroid_classification",
    "class_centroids",
    "correlation_distance",
    "identification_scores",
    "mse_matrix",
    "nway_credit",
    "pairwise_ssim_2way",
    "pearson_matrix",
    "pearson_rows",
    "perceptual_distance",
    "perceptual_embedding",
    "pixcorr",
    "semantic_nway_topk",
    "squared_distance_matrix",
]
