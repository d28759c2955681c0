"""The shuffled-id control is a null: it sits at chance whether or not the method works.

The control scores reconstruction i against image perm[i] (a derangement) and, for the ranking
metrics, leaves the reconstruction's own image / class / category centroid out of the distractors.
The old construction (``sim[:, perm]`` with every other image a distractor) kept the own image in,
so the better the method, the further below chance its control fell. Two kinds of test:

* exact: averaged over every pairing (the N - 1 cyclic derangements pair each i with each j != i
  once) the control equals chance for every row, for an oracle and a noisy method; the old
  construction's average is below chance (for an oracle: exactly (1/n)(N - n)/(N - 1)).
* statistical, through :func:`evaluate_protocol` with its seeded derangement over 20 runs: the
  control's mean is within 4 standard errors of chance and most runs' 95% CIs contain chance; the
  ``test_old_*`` tests put the old construction through the same check and it fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmrirecon.evaluate import metrics as M
from fmrirecon.evaluate import protocol_context
from fmrirecon.evaluate.protocol_spec import derangement
from fmrirecon.evaluate.protocols import evaluate_protocol
from fmrirecon.evaluate.ssim import pairwise_ssim, prepare_images
from fmrirecon.evaluate.stats import summarise

SEEDS = range(20)  # independent runs (images, method noise, permutation) pooled by the checks
N_IDENT = 40


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Distinct smooth colour images, uint8 (n, size, size, 3)."""
    gen = torch.Generator().manual_seed(seed)
    img = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=(size, size), mode="bilinear", align_corners=False)
    img = img + 0.1 * torch.rand(n, 3, size, size, generator=gen)
    return (img.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _good_but_noisy(truth: np.ndarray, seed: int) -> np.ndarray:
    """Half the true image, half an unrelated image, plus pixel noise: identifies well, not perfectly."""
    other = _images(truth.shape[0], truth.shape[1], 1000 + seed).astype(float)
    noise = np.random.default_rng(seed).normal(0, 25, truth.shape)
    return np.clip(0.5 * truth + 0.5 * other + noise, 0, 255).round().astype(np.uint8)


METHODS = {"oracle": lambda truth, seed: truth.copy(), "noisy": _good_but_noisy}


def _z(runs: list, chance: float) -> float:
    """(mean over runs - chance) / its standard error, from the runs' means (the runs are
    independent; the images within a run are not quite: a derangement pairs them up)."""
    means = np.array([np.nanmean(np.asarray(r["per_image"], dtype=float)) for r in runs])
    se = means.std(ddof=1) / np.sqrt(means.size)
    return (means.mean() - chance) / se if se > 0 else (0.0 if means.mean() == chance else -np.inf)


def _near_chance(runs: list, chance: float, ci_share: float | None = 0.7) -> bool:
    """The check a null must pass: over the runs the mean is within 4 standard errors of chance,
    and (``ci_share``) at least that share of the runs' own 95% CIs contain chance. A percentile
    bootstrap over a few dozen images covers ~92%, not 95%. A rare hit (chance < 0.2, e.g. 1-in-39)
    gets the exact binomial CI: with the bootstrap its 0 hits gave [0, 0], and the identification
    checks below failed on that alone."""
    if abs(_z(runs, chance)) >= 4:
        return False
    return ci_share is None or np.mean([r["ci_low"] <= chance <= r["ci_high"] for r in runs]) >= ci_share


def _rotations(n: int):
    """The n - 1 cyclic derangements: together they pair every i with every j != i exactly once."""
    return [(np.arange(n) + k) % n for k in range(1, n)]


# -------------------------------------------------------------------------------- identification


@pytest.mark.parametrize("method", sorted(METHODS))
def test_identification_control_is_exactly_chance_over_all_pairings(method):
    """Averaged over targets (every j != i once), the control is chance for every row, for any
    similarity matrix; the old construction averages (1/n)(N - n)/(N - 1) for an oracle."""
    n = 12
    truth = _images(n, 16, 0)
    recon = METHODS[method](truth, 0)
    x, y = prepare_images(recon), prepare_images(truth)
    ssim = pairwise_ssim(prepare_images(recon, grey=True), prepare_images(truth, grey=True)).numpy()
    for sim in (M.pearson_matrix(x, y), -M.mse_matrix(x, y), ssim):
        for n_way in (2, 5, 11, "all"):
            chance = 1 / (n - 1 if n_way == "all" else n_way)
            new = np.mean([M.identification_scores(sim, n_way=n_way, target=p, exclude=np.arange(n))
                           for p in _rotations(n)], axis=0)  # fmt: skip
            assert np.allclose(new, chance, atol=1e-12), (n_way, new)
            old = np.mean([M.identification_scores(sim[:, p], n_way=n_way) for p in _rotations(n)], axis=0)
            old_chance = 1 / (n if n_way == "all" else n_way)
            assert old.mean() < old_chance - 0.01, (n_way, old.mean())
            if method == "oracle":  # the own image always wins: (1/n)(N - n)/(N - 1), 0 for "all"
                assert np.allclose(old, old_chance * (n - (n if n_way == "all" else n_way)) / (n - 1))


_IDENT = {
    "name": "ctrl",
    "metrics": [
        {"name": "identification", "key": "pix_2way", "similarity": "pixcorr", "n_way": 2},
        {"name": "identification", "key": "pix_5way", "similarity": "pixcorr", "n_way": 5,
         "mode": "sampled", "trials": 50},
        {"name": "identification", "key": "mse_40way", "similarity": "mse", "n_way": N_IDENT},  # control: 39-way
        {"name": "identification", "key": "pix_all", "similarity": "pixcorr", "n_way": "all"},
        {"name": "pairwise_ssim_2way", "key": "ssim_2way", "grey": True, "ties": "strict"},
    ],
}  # fmt: skip
#: The control's chance levels: the own image is out, so "all" and N-way are (N - 1)-way.
_IDENT_CHANCE = {"pix_2way": 0.5, "pix_5way": 0.2, "mse_40way": 1 / 39, "pix_all": 1 / 39, "ssim_2way": 0.5}


@pytest.fixture(scope="module")
def ident_runs():
    """{method: [result per seed]} of the identification protocol on N = 40 images."""
    out = {}
    for method, make in METHODS.items():
        out[method] = []
        for seed in SEEDS:
            truth = _images(N_IDENT, 16, seed)
            out[method].append(evaluate_protocol(make(truth, seed), truth, _IDENT, seed=seed, n_boot=500))
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_identification_control_sits_at_chance_for_oracle_and_noisy_methods(ident_runs, method):
    runs = ident_runs[method]
    for key, chance in _IDENT_CHANCE.items():
        assert min(res["metrics"][key]["value"] for res in runs) > 0.85  # the method works ...
        ctrl = [res["controls"]["shuffled_truth"]["metrics"][key] for res in runs]
        assert all(c["chance"] == pytest.approx(chance) for c in ctrl)
        assert _near_chance(ctrl, chance, 0.7), (key, _z(ctrl, chance))  # ... at chance
    assert runs[0]["metrics"]["mse_40way"]["chance"] == pytest.approx(1 / 40)
    block = runs[0]["controls"]["shuffled_truth"]
    assert block["metrics"]["pix_all"]["settings"]["control_n_way"] == N_IDENT - 1
    assert block["metrics"]["pix_5way"]["settings"]["control_n_way"] == 5
    assert "left out of the distractors" in block["metrics"]["pix_all"]["settings"]["control"]
    assert "own image" in block["description"] and block["unavailable"] == []


def test_old_identification_control_fails_the_same_check():
    """The same check on the old construction (the own image kept among the distractors) fails:
    N = 10, a perfect method, "all"-way: exactly 0 (chance 1/10), the new control 1/9. (The smaller
    n-way biases, e.g. 0.5 * 8/9 for 2-way, need more than 20 runs of 10 images to show reliably;
    the exact test above shows them.)"""
    n, old, new = 10, [], []
    for seed in SEEDS:
        truth = _images(n, 16, seed)
        sim, perm = M.pearson_matrix(prepare_images(truth), prepare_images(truth)), derangement(n, seed)
        vals = M.identification_scores(sim[:, perm], n_way="all")
        old.append({"per_image": vals, **summarise(vals, n_boot=200)})
        vals = M.identification_scores(sim, n_way="all", target=perm, exclude=np.arange(n))
        new.append({"per_image": vals, **summarise(vals, n_boot=200)})
    assert all(r["value"] == 0.0 for r in old)
    assert not _near_chance(old, 1 / n, None)
    assert _near_chance(new, 1 / (n - 1), None)


def test_identification_control_needs_three_images():
    truth = _images(2, 16, 0)
    res = evaluate_protocol(truth.copy(), truth, _IDENT, seed=0)
    ctrl = res["controls"]["shuffled_truth"]
    assert "pix_2way" not in ctrl["metrics"] and "ssim_2way" not in ctrl["metrics"]
    reasons = {u["metric"]: u["reason"] for u in ctrl["unavailable"]}
    assert "needs 3 images" in reasons["pix_2way"] and "needs 3 images" in reasons["ssim_2way"]
    assert res["metrics"]["pix_2way"]["value"] == 1.0


# -------------------------------------------------------------------------------- semantic and centroid
# Class scores and features come from a stand-in network (no download, no image model): each test
# image has latent logits / a latent feature vector; a reconstruction's are those of its image plus
# the method's noise (none for the oracle). Classes and categories are exchangeable by construction.
# Two layouts: N = 12 images of the 12 classes, one each (as GOD's 50 test images of 50
# categories), and N = 60 images of 12 classes, where a shuffled partner often has the own class:
# the control then pairs that row with a random image of another class. (In the old construction
# such rows were hits for a working method, which offset part of its bias; the distinct layout
# shows the bias undiluted.)

K_CLASSES = 12


def _class_data(seed: int, n: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Latent logits (n, K) of the images and of a method's reconstructions."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, K_CLASSES))
    if n <= K_CLASSES:  # one image per class: plant a distinct top class in each
        logits[np.arange(n), rng.permutation(K_CLASSES)[:n]] += 10
    recon = logits if method == "oracle" else logits + rng.normal(0, 0.5, logits.shape)
    return logits, recon


def _centroid_data(seed: int, n: int, method: str) -> dict:
    """K categories with 4 gallery images each; n test images (distinct categories when n <= K)."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(0, 1, (K_CLASSES, 16))
    gallery_cat = np.repeat(np.arange(K_CLASSES), 4)
    gallery = protos[gallery_cat] + rng.normal(0, 0.5, (len(gallery_cat), 16))
    true_cat = rng.permutation(K_CLASSES)[:n] if n <= K_CLASSES else rng.integers(0, K_CLASSES, n)
    truth = protos[true_cat] + rng.normal(0, 0.5, (n, 16))
    recon = truth if method == "oracle" else truth + rng.normal(0, 0.3, truth.shape)
    return {"gallery": gallery, "gallery_cat": gallery_cat, "true_cat": true_cat, "truth": truth, "recon": recon}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_semantic_and_centroid_controls_are_exactly_chance_over_all_pairings(method):
    """One image per class: averaged over targets (every other image's class once), the control is
    exactly chance for every row; the old construction is below (for an oracle, (1/n)(K - n)/(K - 1))."""
    n = K_CLASSES
    logits, recon = _class_data(0, n, method)
    own = logits.argmax(1)
    assert len(set(own)) == n
    for n_way, top_k in ((2, 1), (5, 1), (5, 2), (11, 1)):
        chance = top_k / n_way
        kw = {"n_way": n_way, "top_k": top_k, "mode": "exact"}
        new = np.mean([M.semantic_nway_topk(recon, own[p], exclude_class=own, **kw) for p in _rotations(n)], axis=0)
        assert np.allclose(new, chance, atol=1e-12), (n_way, top_k, new)
        old = np.mean([M.semantic_nway_topk(recon, own[p], **kw) for p in _rotations(n)], axis=0)
        assert old.mean() < chance - 0.01
        if method == "oracle" and top_k == 1:
            assert np.allclose(old, chance * (K_CLASSES - n_way) / (K_CLASSES - 1))
    d = _centroid_data(0, n, method)
    _, cents = M.class_centroids(d["gallery"], d["gallery_cat"])
    kw = {"top_k": [1, 3], "n_way": [5, 11], "mode": "exact"}
    new = [M.centroid_classification(d["recon"], cents, d["true_cat"][p], exclude_index=d["true_cat"], **kw)
           for p in _rotations(n)]  # fmt: skip
    old = [M.centroid_classification(d["recon"], cents, d["true_cat"][p], **kw) for p in _rotations(n)]
    for key, chance, old_chance in (("rank", 6.0, 6.5), ("top1", 1 / 11, 1 / 12), ("top3", 3 / 11, 3 / 12),
                                    ("nway5_top1", 1 / 5, 1 / 5), ("nway11_top1", 1 / 11, 1 / 11)):  # fmt: skip
        assert np.allclose(np.mean([o[key] for o in new], axis=0), chance, atol=1e-12), key
        old_mean = np.mean([o[key] for o in old])
        assert old_mean > old_chance + 0.1 if key == "rank" else old_mean < old_chance - 0.01, (key, old_mean)


class _StubNet:
    source, input_size, extra = "stub", None, {}


def _stub_features(monkeypatch, truth_feats, recon_feats, gallery_feats=None):
    def features(self, side, s, network, layers, resolution):
        src = {"truth": truth_feats, "recon": recon_feats, "gallery": gallery_feats}[side]
        return [torch.as_tensor(src, dtype=torch.float32) for _ in layers]

    monkeypatch.setattr(protocol_context.Context, "features", features)
    monkeypatch.setattr(protocol_context.Context, "net", lambda self, name: _StubNet())


def _blank(n: int) -> np.ndarray:
    return np.zeros((n, 8, 8, 3), dtype=np.uint8)  # pixels unused: the stub network gives the features


_SEM = {"metrics": [
    {"name": "semantic_nway_topk", "key": "sem5_top1", "n_way": 5, "top_k": 1, "mode": "exact"},
    {"name": "semantic_nway_topk", "key": "sem5_top2", "n_way": 5, "top_k": 2, "mode": "sampled", "trials": 200},
]}  # fmt: skip
_SEM_CHANCE = {"sem5_top1": 0.2, "sem5_top2": 0.4}


@pytest.mark.parametrize("n", [12, 60])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_semantic_control_sits_at_chance_without_the_own_class(monkeypatch, method, n):
    runs: dict = {key: [] for key in _SEM_CHANCE}
    for seed in SEEDS:
        logits, recon = _class_data(seed, n, method)
        _stub_features(monkeypatch, logits, recon)
        res = evaluate_protocol(_blank(n), _blank(n), _SEM, seed=seed, n_boot=500)
        assert res["metrics"]["sem5_top1"]["value"] > 0.6  # the method works
        for key, values in runs.items():
            values.append(res["controls"]["shuffled_truth"]["metrics"][key])
    for key, chance in _SEM_CHANCE.items():
        assert all(r["chance"] == pytest.approx(chance) for r in runs[key])
        assert _near_chance(runs[key], chance, 0.7), (key, _z(runs[key], chance))
    st = runs["sem5_top1"][0]["settings"]
    assert "own class (its image's label) is left out of the distractors" in st["control"]
    repaired = sum(r["settings"]["control_rows_repaired"] for r in runs["sem5_top1"])
    assert (repaired > 0) == (n > K_CLASSES)  # partners of the own class are replaced ...
    assert all(r["n"] == n for r in runs["sem5_top1"])  # ... so every image keeps its row


def test_old_semantic_control_fails_the_same_check():
    """8-way top-1, one image per class, a perfect method: expected 1/8 * 4/11 = 0.045, not 1/8."""
    n, old = K_CLASSES, []
    for seed in SEEDS:
        logits, recon = _class_data(seed, n, "oracle")
        own = logits.argmax(1)
        vals = M.semantic_nway_topk(recon, own[derangement(n, seed)], n_way=8, top_k=1, mode="exact")
        old.append({"per_image": vals, **summarise(vals, n_boot=200)})
    assert not _near_chance(old, 1 / 8, None), _z(old, 1 / 8)


_CENT = {"metrics": [{"name": "centroid_classification", "key": "cent", "top_k": [1, 3], "n_way": [5, 11, 12],
                      "mode": "exact"}]}  # fmt: skip
#: The control's chance levels: the own category is out, so 11 candidate categories remain.
_CENT_CHANCE = {"cent_top1": 1 / 11, "cent_top3": 3 / 11, "cent_5way_top1": 1 / 5, "cent_11way_top1": 1 / 11}


def _centroid_eval(monkeypatch, d: dict, seed: int) -> dict:
    _stub_features(monkeypatch, d["truth"], d["recon"], d["gallery"])
    n = len(d["true_cat"])
    gallery = {"images": _blank(len(d["gallery_cat"])), "category": d["gallery_cat"] + 100,
               "true_category": d["true_cat"] + 100}  # fmt: skip
    return evaluate_protocol(_blank(n), _blank(n), _CENT, seed=seed, gallery=gallery, n_boot=500)


@pytest.mark.parametrize("n", [12, 60])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_centroid_control_sits_at_chance_without_the_own_centroid(monkeypatch, method, n):
    runs = []
    for seed in SEEDS:
        res = _centroid_eval(monkeypatch, _centroid_data(seed, n, method), seed)
        assert res["metrics"]["cent_top1"]["value"] > 0.6  # the method works
        runs.append(res["controls"]["shuffled_truth"])
    for key, chance in _CENT_CHANCE.items():
        vals = [r["metrics"][key] for r in runs]
        assert all(v["chance"] == pytest.approx(chance) for v in vals)
        assert _near_chance(vals, chance, 0.7), (key, _z(vals, chance))
    ranks = [r["metrics"]["cent_rank"] for r in runs]
    assert all(r["chance"] == 6.0 and r["statistic"] == "median" for r in ranks)  # out of K - 1 = 11
    assert _near_chance(ranks, 6.0, None), _z(ranks, 6.0)  # the rank is uniform on 1..11: its mean is 6 too
    st = runs[0]["metrics"]["cent_top1"]["settings"]
    assert st["control_n_categories"] == 11 and "own category centroid" in st["control"]
    repaired = sum(r["metrics"]["cent_top1"]["settings"]["control_rows_repaired"] for r in runs)
    assert (repaired > 0) == (n > K_CLASSES) and all(r["metrics"]["cent_top1"]["n"] == n for r in runs)
    reasons = {u["metric"]: u["reason"] for u in runs[0]["unavailable"]}
    assert "besides the own one" in reasons["cent_12way_top1"]  # 12-way needs 12 candidates: 11 left


def test_old_centroid_control_fails_the_same_check():
    """One image per category, a perfect method: its own centroid nearly always wins, so the old
    top-1 is about 0 (chance 1/12). (Its 5-way, about 1/5 * 7/11, is too close to chance for 20 runs
    of 12 images; the exact test above shows it.)"""
    n, top1 = K_CLASSES, []
    for seed in SEEDS:
        d = _centroid_data(seed, n, "oracle")
        _, cents = M.class_centroids(d["gallery"], d["gallery_cat"])
        out = M.centroid_classification(d["recon"], cents, d["true_cat"][derangement(n, seed)], top_k=[1])
        top1.append({"per_image": out["top1"], **summarise(out["top1"], n_boot=200)})
    assert not _near_chance(top1, 1 / 12, None), _z(top1, 1 / 12)


def test_control_of_images_that_all_share_one_category_is_unavailable(monkeypatch):
    d = _centroid_data(0, 6, "oracle")
    d["true_cat"][:] = 3
    res = _centroid_eval(monkeypatch, d, 0)
    assert res["metrics"]["cent_top1"]["n"] == 6  # the method is scored ...
    reasons = {u["metric"]: u["reason"] for u in res["controls"]["shuffled_truth"]["unavailable"]}
    assert "every image has the same category" in reasons["cent_top1"]  # ... its control has no null pairing


def test_a_control_without_hits_keeps_the_analytic_chance():
    """The default's class-centroid top-1 (chance 1/249): a control with no hit among 50 images is
    what chance gives 82% of the time. Its exact CI contains 1/249, so the method's chance stays the
    analytic one; the bootstrap's [0, 0] swapped it for an empirical 0."""
    from fmrirecon.evaluate.protocols import _true_chance

    result = {"chance": 1 / 249, "chance_method": "analytic", "settings": {}}
    _true_chance(result, summarise(np.zeros(50), n_boot=200))
    assert result == {"chance": 1 / 249, "chance_method": "analytic", "settings": {}}
    biased = summarise(np.r_[np.ones(20), np.zeros(30)], n_boot=200)  # 0.4 where chance is 1/249
    _true_chance(result, biased)
    assert result["chance"] == 0.4 and result["analytic_chance"] == 1 / 249
