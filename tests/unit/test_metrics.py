"""Metrics against independent references (brute-force loops, numpy/scipy, hand-built cases)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats as st
from scipy.spatial.distance import correlation as scipy_correlation
from skimage.metrics import structural_similarity

from fmrirecon.errors import InputError
from fmrirecon.evaluate.metrics import (
    centroid_classification,
    class_centroids,
    correlation_distance,
    identification_scores,
    mse_matrix,
    pairwise_ssim_2way,
    pearson_matrix,
    perceptual_distance,
    perceptual_embedding,
    pixcorr,
    semantic_nway_topk,
    squared_distance_matrix,
)
from fmrirecon.evaluate.ssim import NSD_SSIM, prepare_images
from fmrirecon.evaluate.stats import (
    BOOTSTRAP,
    EXACT,
    binomial_sd,
    bootstrap_ci,
    clopper_pearson,
    paired_wilcoxon,
    summarise,
)


def _brute_nway(sim: np.ndarray, n: int) -> np.ndarray:
    """Enumerate every distractor set: success when the true item beats all drawn (ties: shared)."""
    out = []
    for i in range(sim.shape[0]):
        others = [j for j in range(sim.shape[0]) if j != i]
        credits = []
        for combo in itertools.combinations(others, n - 1):
            vals = sim[i, list(combo)]
            if (vals > sim[i, i]).any():
                credits.append(0.0)
            else:
                credits.append(1.0 / (1 + (vals == sim[i, i]).sum()))
        out.append(np.mean(credits))
    return np.array(out)


# ---------------------------------------------------------------------------- correlations


def test_pixcorr_and_pearson_matrix_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 3, 8, 8)), rng.random((5, 3, 8, 8))
    ref = np.corrcoef(a.reshape(4, -1), b.reshape(5, -1))[:4, 4:]
    assert np.allclose(pearson_matrix(a, b), ref, atol=1e-12)
    assert np.allclose(pixcorr(a, b[:4]), np.diag(ref), atol=1e-12)
    assert pixcorr(np.ones((1, 10)), rng.random((1, 10)))[0] == 0.0  # constant: 0, not NaN


def test_correlation_distance_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 50)), rng.random((3, 50))
    ref = [scipy_correlation(x, y) for x, y in zip(a, b)]
    assert np.allclose(correlation_distance(a, b), ref, atol=1e-12)
    assert np.allclose(mse_matrix(a, b)[1, 2], ((a[1] - b[2]) ** 2).mean())


# ---------------------------------------------------------------------------- identification


def test_identification_exact_matches_brute_force():
    rng = np.random.default_rng(2)
    sim = rng.random((7, 7)).round(1)  # rounding creates ties
    for n in (2, 3, 5, 7):
        assert np.allclose(identification_scores(sim, n_way=n, mode="exact"), _brute_nway(sim, n), atol=1e-12)
    assert np.allclose(identification_scores(sim, n_way="all"), _brute_nway(sim, 7))


def test_two_way_exact_is_mindeye_all_pairs():
    rng = np.random.default_rng(3)
    feats_true, feats_rec = rng.random((9, 20)), rng.random((9, 20))
    r = np.corrcoef(feats_true, feats_rec)[:9, 9:]  # MindEye: rows real, columns reconstructions
    mindeye = (r < np.diag(r)).sum(axis=0) / 8  # their success count per reconstruction
    ours = identification_scores(pearson_matrix(feats_rec, feats_true), n_way=2)
    assert np.allclose(ours, mindeye)


def test_identification_sampled_agrees_with_exact_within_binomial_sd():
    rng = np.random.default_rng(4)
    sim = rng.random((20, 20)) + 0.3 * np.eye(20)
    exact = identification_scores(sim, n_way=5, mode="exact")
    trials = 400
    sampled = identification_scores(sim, n_way=5, mode="sampled", trials=trials, rng=np.random.default_rng(0))
    sd = binomial_sd(0.5, trials * 20)
    assert abs(sampled.mean() - exact.mean()) < 4 * sd
    again = identification_scores(sim, n_way=5, mode="sampled", trials=trials, rng=np.random.default_rng(0))
    assert np.array_equal(sampled, again)


def test_identification_known_cases():
    n = 10
    perfect = -np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)  # diagonal best
    assert identification_scores(perfect, n_way=2).mean() == 1.0
    assert identification_scores(perfect, n_way=5, mode="sampled", trials=50).mean() == 1.0
    constant = np.zeros((n, n))  # e.g. PixCorr of constant reconstructions: every candidate ties
    for k in (2, 5, "all"):
        expected = 1 / (n if k == "all" else k)
        assert np.allclose(identification_scores(constant, n_way=k), expected)
    # identical (non-constant) reconstructions: each row is the same vector of distinct values
    row = np.random.default_rng(5).random(n)
    same = np.tile(row, (n, 1))
    assert np.isclose(identification_scores(same, n_way=2).mean(), 0.5)
    assert np.isclose(identification_scores(same, n_way=4).mean(), 0.25)
    # distances: lower is better
    assert identification_scores(-perfect + 5, n_way=2, higher_is_better=False).mean() == 1.0
    with pytest.raises(InputError, match="11-way"):
        identification_scores(perfect, n_way=11)


def test_target_and_exclude_match_brute_force_on_the_remaining_candidates():
    """The shuffled control's form: row i's true candidate is column target[i] and column
    exclude[i] is no candidate at all (n-way among the N - 2 others; "all" is (N - 1)-way)."""
    rng = np.random.default_rng(11)
    sim = rng.random((7, 7)).round(1)  # rounding creates ties
    target, own = np.roll(np.arange(7), -1), np.arange(7)
    for n in (2, 3, 6, "all"):
        k = 6 if n == "all" else n
        ref = []
        for i in range(7):
            others = [j for j in range(7) if j not in (i, target[i])]
            credits = []
            for combo in itertools.combinations(others, k - 1):
                vals = sim[i, list(combo)]
                t = sim[i, target[i]]
                credits.append(0.0 if (vals > t).any() else 1.0 / (1 + (vals == t).sum()))
            ref.append(np.mean(credits))
        ours = identification_scores(sim, n_way=n, target=target, exclude=own)
        assert np.allclose(ours, ref, atol=1e-12), n
    with pytest.raises(InputError, match="excluded"):
        identification_scores(sim, target=target, exclude=target)
    with pytest.raises(InputError, match="7-way"):
        identification_scores(sim, n_way=7, target=target, exclude=own)  # only 6 candidates remain
    # semantic and centroid: the excluded class is no distractor; a row whose target is excluded is NaN
    scores = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    got = semantic_nway_topk(scores, np.array([1, 3]), n_way=3, mode="exact", exclude_class=np.array([0, 3]))
    assert got[0] == 1.0 and np.isnan(got[1])  # without the exclusion row 0 scores 1/3 (class 0 beats 1)
    assert semantic_nway_topk(scores, np.array([1, 3]), n_way=3, mode="exact")[0] == pytest.approx(1 / 3)
    feats = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    cents = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0]])
    out = centroid_classification(feats, cents, np.array([1, 1]), top_k=[1], exclude_index=np.array([0, 1]))
    assert out["rank"][0] == 1.0 and out["top1"][0] == 1.0 and np.isnan(out["rank"][1]) and np.isnan(out["top1"][1])


def test_pairwise_ssim_2way_matches_skimage_double_loop():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(truth).permute(0, 3, 1, 2).float(), 3, 1, 1)
    recon = (0.5 * smooth.permute(0, 2, 3, 1).numpy() + 0.5 * rng.integers(0, 256, truth.shape)).astype(np.uint8)
    s = dict(NSD_SSIM, resolution=0)
    x, y = prepare_images(recon, grey=True), prepare_images(truth, grey=True)
    ours = pairwise_ssim_2way(x, y, s)
    xg, yg = x[:, 0].double().numpy(), y[:, 0].double().numpy()
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    correct, total, per_image = 0, 0, []
    for i in range(6):
        own = structural_similarity(xg[i], yg[i], **kw)
        wins = [own > structural_similarity(xg[i], yg[j], **kw) for j in range(6) if j != i]
        correct += sum(wins)
        total += len(wins)
        per_image.append(np.mean(wins))
    assert total == 6 * 5
    assert np.allclose(ours, per_image)
    assert np.isclose(ours.mean(), correct / total)
    # an image shown twice ties with its copy: paper 000 counts that comparison lost (strict)
    truth2 = np.concatenate([truth[:1], truth[:1], truth[2:]])
    y2 = prepare_images(truth2, grey=True)
    assert pairwise_ssim_2way(y2, y2, s, ties="strict")[0] == pytest.approx(4 / 5)
    assert pairwise_ssim_2way(y2, y2, s, ties="half")[0] == pytest.approx(4.5 / 5)


# ---------------------------------------------------------------------------- semantic n-way


def test_semantic_nway_hand_built_logits():
    # 5 classes; true class 2 is second to class 4 for reconstruction 0, top for reconstruction 1
    scores = np.array([[0.1, 0.2, 0.3, 0.05, 0.35], [0.1, 0.2, 0.5, 0.1, 0.1]])
    true = np.array([2, 2])
    # 3-way: 2 distractors from the 4 others; a hit needs class 4 not drawn: C(3,2)/C(4,2) = 1/2
    assert np.allclose(semantic_nway_topk(scores, true, n_way=3, top_k=1, mode="exact"), [0.5, 1.0])
    # top-2 of 3-way always contains class 2 for both
    assert np.allclose(semantic_nway_topk(scores, true, n_way=3, top_k=2, mode="exact"), [1.0, 1.0])
    # brute force over all distractor sets
    hits = []
    for combo in itertools.combinations([0, 1, 3, 4], 2):
        cand = [2, *combo]
        hits.append(cand[int(np.argmax(scores[0, cand]))] == 2)
    assert np.isclose(np.mean(hits), 0.5)
    sampled = semantic_nway_topk(scores, true, n_way=3, trials=4000, rng=np.random.default_rng(0))
    assert abs(sampled[0] - 0.5) < 4 * binomial_sd(0.5, 4000)
    # logits and probabilities rank the same
    logits = np.log(scores)
    assert np.allclose(semantic_nway_topk(logits, true, n_way=3, mode="exact"), [0.5, 1.0])
    with pytest.raises(InputError):
        semantic_nway_topk(scores, np.array([2, 7]), n_way=3)


# ---------------------------------------------------------------------------- class centroids


def test_centroid_rank_hand_computed():
    gallery = np.array([[1.0, 0, 0, 0], [1.0, 0.2, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.8, 0.2]])
    cats, cents = class_centroids(gallery, np.array([7, 7, 3, 5, 5]))
    assert list(cats) == [3, 5, 7]
    assert np.allclose(cents.numpy()[2], [1.0, 0.1, 0, 0])
    feats = np.array([[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 1.0, 0.1]])
    true_idx = np.array([0, 1])  # recon 0 is "category 3" (but looks like 7), recon 1 is "category 5"
    out = centroid_classification(feats, cents, true_idx, top_k=(1, 2), n_way=(2,), mode="exact")
    r = np.corrcoef(np.vstack([feats, cents.numpy()]))[:2, 2:]
    expected_rank = [1 + (r[0] > r[0, 0]).sum(), 1 + (r[1] > r[1, 1]).sum()]
    assert np.allclose(out["rank"], expected_rank)
    assert np.allclose(out["rank"], [2, 1])
    assert np.allclose(out["top1"], [0, 1]) and np.allclose(out["top2"], [1, 1])
    assert np.allclose(out["nway2_top1"], [0.5, 1.0])  # 2-way: category 7 drawn half of the time


# ---------------------------------------------------------------------------- perceptual distance


def test_perceptual_distance_matches_lpips_formula_loop():
    rng = np.random.default_rng(7)
    fa = [torch.from_numpy(rng.random((3, 4, 5, 5))).float(), torch.from_numpy(rng.random((3, 6, 2, 2))).float()]
    fb = [torch.from_numpy(rng.random((3, 4, 5, 5))).float(), torch.from_numpy(rng.random((3, 6, 2, 2))).float()]
    w = [torch.rand(4), torch.rand(6)]
    ref = np.zeros(3)
    for la, lb, wl in zip(fa, fb, w):
        na = la / (la.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = lb / (lb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ref += ((na - nb) ** 2 * wl.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2)).double().numpy()
    assert np.allclose(perceptual_distance(fa, fb, w), ref, atol=1e-5)
    mat = squared_distance_matrix(perceptual_embedding(fa, w), perceptual_embedding(fb, w))
    assert np.allclose(np.diag(mat), ref, atol=1e-5)


# ---------------------------------------------------------------------------- statistics


def test_bootstrap_ci_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(8)
    small, large = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 600)
    lo_s, hi_s = bootstrap_ci(small, seed=0)
    lo_l, hi_l = bootstrap_ci(large, seed=0)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 2
    assert bootstrap_ci(small, seed=0) == (lo_s, hi_s)  # seeded
    med = summarise(small, statistic="median", seed=1)
    assert med["ci_low"] <= med["value"] <= med["ci_high"] and med["n"] == 30


def test_clopper_pearson_equals_closed_forms_and_scipy_and_covers():
    """Independent references: the closed forms at 0 and n hits ((a/2)^(1/n)), scipy's
    ``binomtest(...).proportion_ci(method="exact")`` inside, and the exact coverage of the interval
    (the binomial probability of the hit counts whose interval contains p) at least 95%."""
    n = 50
    assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n)))
    assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n)), 1.0)
    for k in (1, 7, 25, 49):
        ref = st.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == (pytest.approx(ref.low, abs=1e-12), pytest.approx(ref.high, abs=1e-12))
    ks = np.arange(n + 1)
    bounds = np.array([clopper_pearson(int(k), n) for k in ks])
    for p in (0.004, 0.02, 0.1, 0.5, 0.93):
        covered = (bounds[:, 0] <= p) & (p <= bounds[:, 1])
        assert st.binom.pmf(ks, n, p)[covered].sum() >= 0.95
    with pytest.raises(InputError, match="0 <= hits <= n"):
        clopper_pearson(3, 2)


def test_summarise_gives_hit_rates_the_exact_interval():
    """No hit among 50 images at chance 0.004 (what chance gives 82% of the time): the bootstrap's
    [0, 0] excludes chance, the exact interval does not. Fractions keep the bootstrap."""
    hits = summarise(np.zeros(50), n_boot=200)
    assert hits["interval"] == EXACT and hits["ci_low"] == 0.0 and hits["ci_high"] > 0.004
    assert bootstrap_ci(np.zeros(50), n_boot=200) == (0.0, 0.0)
    some = summarise([1, 0, 0, 1, 0, 0, 0, 0, 0, 0], n_boot=200)
    assert some["interval"] == EXACT and (some["ci_low"], some["ci_high"]) == clopper_pearson(2, 10)
    frac = summarise([0.5, 1.0, 0.0, 0.25], n_boot=200, seed=3)
    assert frac["interval"] == BOOTSTRAP and (frac["ci_low"], frac["ci_high"]) == bootstrap_ci(
        [0.5, 1.0, 0.0, 0.25], n_boot=200, seed=3
    )
    assert summarise([0, 1, 1], statistic="median", n_boot=50)["interval"] == BOOTSTRAP


def test_paired_wilcoxon_equals_scipy():
    rng = np.random.default_rng(9)
    a = rng.random(40)
    b = a - 0.05 + 0.1 * rng.random(40)
    res = paired_wilcoxon(a, b)
    ref = st.wilcoxon(a, b)
    assert res["p_value"] == pytest.approx(ref.pvalue) and res["statistic"] == pytest.approx(ref.statistic)
    assert paired_wilcoxon(a, a)["p_value"] == 1.0 and res["method"] == "exact"
    assert binomial_sd(0.5, 100) == pytest.approx(0.05)


def test_paired_wilcoxon_with_ties_is_the_tie_corrected_normal_approximation():
    """Per-image 2-way scores tie a lot; the test is then the normal approximation with tie
    correction (R's wilcox.test), checked against the textbook formula."""
    from scipy.stats import norm, rankdata

    rng = np.random.default_rng(3)
    a = rng.integers(0, 10, 30) / 9
    b = rng.integers(0, 10, 30) / 9
    res = paired_wilcoxon(a, b)
    d = (a - b)[a != b]
    r = rankdata(np.abs(d))
    w_plus = r[d > 0].sum()
    n = d.size
    _, counts = np.unique(np.abs(d), return_counts=True)
    sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24 - (counts**3 - counts).sum() / 48)
    p = 2 * norm.sf(abs(w_plus - n * (n + 1) / 4) / sd)
    assert res["method"] == "approx" and res["p_value"] == pytest.approx(p, rel=1e-9)
