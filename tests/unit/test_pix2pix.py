"""Paper 004's building blocks: focal loss, the box and count label filters, the Keras-style
accuracy and honest multi-label scores, the fMRI square map and jitter, the pix2pix U-Net and
PatchGAN, the 1-D category CNN, and a pix2pix GAN resumed through the Trainer bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from fmrirecon.evaluate.multilabel import (average_precisions, keras_categorical_accuracy,
                                           mean_average_precision, top1_in_true_set)  # fmt: skip
from fmrirecon.labels.boxes import box_filter, count_filter, multi_hot, small_categories, zero_labels
from fmrirecon.losses_pix2pix import discriminator_loss, focal_loss, generator_loss, multilabel_loss
from fmrirecon.models.category_classifier import CategoryCNN, hemisphere_channels
from fmrirecon.models.pix2pix import (ALGONAUTS_SIDE, PatchDiscriminator, UNetGenerator, fmri_map,
                                      random_jitter, resize_map)  # fmt: skip
from fmrirecon.train.checkpoint import CHECKPOINT_NAME
from fmrirecon.train.loop import Phase, Trainer


# -- losses ----------------------------------------------------------------------------------------
def test_focal_loss_matches_its_closed_form():
    # sigmoid(log 4) = 0.8, sigmoid(log 1/4) = 0.2, sigmoid(0) = 0.5, sigmoid(log 9) = 0.9
    logits = torch.log(torch.tensor([[4.0, 0.25], [1.0, 9.0]], dtype=torch.float64))
    y = torch.tensor([[1, 0], [0, 1]])
    # α_t (1 − p_t)^γ (−log p_t) with α = 0.25, γ = 2; p_t = p for y = 1, 1 − p for y = 0
    terms = [0.25 * 0.2**2 * -math.log(0.8),  # y=1, p=0.8
             0.75 * 0.2**2 * -math.log(0.8),  # y=0, p=0.2 → p_t = 0.8
             0.75 * 0.5**2 * -math.log(0.5),  # y=0, p=0.5
             0.25 * 0.1**2 * -math.log(0.9)]  # y=1, p=0.9  # fmt: skip
    assert focal_loss(logits, y).item() == pytest.approx(sum(terms) / 4, rel=1e-12)
    assert multilabel_loss(logits, y, "focal").item() == pytest.approx(sum(terms) / 4, rel=1e-12)
    # γ = 3, no class balancing
    no_alpha = [0.2**3 * -math.log(0.8), 0.2**3 * -math.log(0.8), 0.5**3 * -math.log(0.5), 0.1**3 * -math.log(0.9)]
    assert focal_loss(logits, y, alpha=None, gamma=3.0).item() == pytest.approx(sum(no_alpha) / 4, rel=1e-12)
    # BCE: −mean log p_t
    bce = -(2 * math.log(0.8) + math.log(0.5) + math.log(0.9)) / 4
    assert multilabel_loss(logits, y, "bce").item() == pytest.approx(bce, rel=1e-12)
    assert focal_loss(logits, y, alpha=None, gamma=0.0).item() == pytest.approx(bce, rel=1e-12)
    with pytest.raises(ValueError, match="focal"):
        multilabel_loss(logits, y, "softmax")


def test_pix2pix_losses_on_hand_values():
    zero = torch.zeros(2, 1, 3, 3)  # logit 0: probability 1/2, BCE log 2 against either label
    fake, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    g = generator_loss(zero, fake, target)
    assert g["adv"].item() == pytest.approx(math.log(2))
    assert g["l1"].item() == pytest.approx(0.5)
    assert g["loss"].item() == pytest.approx(math.log(2) + 100 * 0.5)
    assert generator_loss(zero, fake, target, l1_weight=10.0)["loss"].item() == pytest.approx(math.log(2) + 5.0)
    real_logits = torch.full((2, 1, 3, 3), math.log(3.0))  # D says real with p = 0.75
    d = discriminator_loss(real_logits, zero)
    assert d["real"].item() == pytest.approx(-math.log(0.75))
    assert d["loss"].item() == pytest.approx(-math.log(0.75) + math.log(2))
    assert discriminator_loss(real_logits, zero, halve=True)["loss"].item() == pytest.approx(
        0.5 * (-math.log(0.75) + math.log(2))
    )


# -- label filters -----------------------------------------------------------------------------------
NAMES = ["person", "dog", "cat", "sky"]


def _box(category: str, w: float, h: float) -> dict:
    return {"category": category, "category_id": 0, "bbox": [3.7, 1.2, w, h], "area_fraction": 0.1, "iscrowd": 0}


def test_box_filter_zeroes_a_label_when_any_instance_is_small():
    objects = [
        # a large and a small person: "person" goes (the any-instance quirk); a 60×60 dog stays
        [_box("person", 100, 100), _box("person", 10, 10), _box("dog", 60, 60)],
        # 50.9 × 50.9 truncates to 50 × 50 = 2500 ≤ 2500: small; 10 × 300 = 3000 > 2500: an area
        # rule, not both sides ≤ 50
        [_box("cat", 50.9, 50.9), _box("dog", 10, 300)],
        # 51 × 50 = 2550: kept; a small giraffe is not a column; "sky" (stuff) has no instances
        [_box("dog", 51, 50), _box("giraffe", 5, 5)],
    ]
    labels = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]])
    filtered, removed = box_filter(labels, NAMES, objects)
    np.testing.assert_array_equal(filtered, [[0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1]])
    assert removed == 2
    np.testing.assert_array_equal(labels, [[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]])  # input untouched
    assert small_categories(objects[0]) == {"person"}
    # a larger threshold also drops the 60×60 dog of image 0 and the 51×50 one of image 2
    np.testing.assert_array_equal(box_filter(labels, NAMES, objects, max_area=3600)[0],
                                  [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # fmt: skip
    np.testing.assert_array_equal(multi_hot(objects, NAMES), [[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0]])
    with pytest.raises(ValueError, match="rows"):
        box_filter(labels[:2], NAMES, objects)


def test_count_filter_drops_frequent_labels_as_their_code():
    train = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])  # counts 3, 2, 1, 0
    keep = count_filter(train, threshold=2)
    np.testing.assert_array_equal(keep, [False, False, True, True])  # count >= 2 is dropped
    np.testing.assert_array_equal(count_filter(train, threshold=2, drop="rare"), [True, True, False, False])
    val = np.array([[1, 1, 1, 1]])
    np.testing.assert_array_equal(zero_labels(val, keep), [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="frequent"):
        count_filter(train, drop="often")


# -- metrics ---------------------------------------------------------------------------------------
def test_keras_categorical_accuracy_takes_the_first_positive_label():
    scores = np.array([[0.1, 0.9, 0.8], [0.7, 0.2, 0.6], [0.3, 0.3, 0.9], [0.5, 0.1, 0.2]])
    labels = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    # row 0: top 1 is label 1, the first positive is 0 → miss (though label 1 is true);
    # row 1: top 0, first positive 1 → miss; row 2: hit; row 3: no labels, argmax 0 == 0 → "hit"
    np.testing.assert_array_equal(keras_categorical_accuracy(scores, labels), [0, 0, 1, 1])
    np.testing.assert_array_equal(top1_in_true_set(scores, labels), [1, 0, 1, np.nan])


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 6)) < 0.3).astype(int)
    labels[:, 4] = 0  # a label without positives: excluded from the mean
    labels[0, 5], labels[1:, 5] = 1, 0  # a single positive
    scores = np.round(rng.random((40, 6)) + 0.3 * labels, 1)  # rounded: many ties
    ap = average_precisions(scores, labels)
    assert np.isnan(ap[4])
    for j in (0, 1, 2, 3, 5):
        assert ap[j] == pytest.approx(average_precision_score(labels[:, j], scores[:, j]), abs=1e-12)
    cols = [0, 1, 2, 3, 5]
    expected = average_precision_score(labels[:, cols], scores[:, cols], average="macro")
    assert mean_average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert mean_average_precision(labels + 0.0, labels) == pytest.approx(1.0)  # perfect ranking


# -- the fMRI layouts --------------------------------------------------------------------------------
def test_square_map_pads_with_zeros_and_reshapes_row_major():
    left = np.arange(1, 11, dtype=float).reshape(2, 5)  # 5 vertices
    right = -np.arange(1, 15, dtype=float).reshape(2, 7)  # 7 vertices → side 3 (9 ≥ 7 > 4)
    m = fmri_map(left, right, scale=False)
    assert m.shape == (2, 2, 3, 3) and m.dtype == np.float32
    np.testing.assert_array_equal(m[0, 0], [[1, 2, 3], [4, 5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(m[1, 1], [[-8, -9, -10], [-11, -12, -13], [-14, 0, 0]])
    # min–max over each hemisphere's whole padded array: left spans 0 (padding) … 10
    s = fmri_map(left, right)
    np.testing.assert_allclose(s[0, 0], np.array([[1, 2, 3], [4, 5, 0], [0, 0, 0]]) / 10)
    # right spans −14 … 0 (padding): a padded vertex maps to 1, the most negative one to 0
    np.testing.assert_allclose(s[1, 1], (np.array([[-8, -9, -10], [-11, -12, -13], [-14, 0, 0]]) + 14) / 14)
    # their Algonauts layout: 19,004 + 20,544 vertices in a 145 × 145 map (the smallest square: 144)
    lh, rh = np.ones((1, 19004)), np.ones((1, 20544))
    assert fmri_map(lh, rh, side=ALGONAUTS_SIDE, scale=False).shape == (1, 2, 145, 145)
    assert fmri_map(lh, rh, scale=False).shape == (1, 2, 144, 144)
    with pytest.raises(ValueError, match="do not fit"):
        fmri_map(lh, rh, side=143)
    flat = hemisphere_channels(left, right, length=9, scale=False)
    np.testing.assert_array_equal(flat.reshape(2, 2, 3, 3), m)


def test_random_jitter_is_a_function_of_the_generator():
    g0 = torch.Generator().manual_seed(0)
    x = torch.rand(8, 2, 32, 32, generator=g0)
    y = torch.rand(8, 3, 32, 32, generator=g0)
    a = random_jitter(x, y, generator=torch.Generator().manual_seed(11), load_size=36)
    b = random_jitter(x, y, generator=torch.Generator().manual_seed(11), load_size=36)
    c = random_jitter(x, y, generator=torch.Generator().manual_seed(12), load_size=36)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # each output is a 32 × 32 window of the enlarged input, the same window for map and image
    bx, by = resize_map(x, 36), resize_map(y, 36)
    for i in range(8):
        hits = [(r, k) for r in range(5) for k in range(5) if torch.equal(a[0][i], bx[i, :, r : r + 32, k : k + 32])]
        assert hits and any(torch.equal(a[1][i], by[i, :, r : r + 32, k : k + 32]) for r, k in hits)
    # mirroring flips some samples left-right (the same draw for both tensors)
    m = random_jitter(x, y, generator=torch.Generator().manual_seed(11), load_size=36, mirror=True)
    flipped = [i for i in range(8) if not torch.equal(m[0][i], a[0][i])]
    assert 0 < len(flipped) < 8
    for i in flipped:
        assert torch.equal(m[0][i], a[0][i].flip(-1)) and torch.equal(m[1][i], a[1][i].flip(-1))
    assert torch.equal(random_jitter(x, generator=g0, load_size=32)[0], x)  # no enlargement: unchanged


# -- networks ----------------------------------------------------------------------------------------
def _shapes(maps):
    return [tuple(t.shape[1:]) for t in maps]


def test_unet_skip_shapes_tiny():
    g = UNetGenerator(2, 3, "tiny").eval()
    with torch.no_grad():
        out, enc, dec = g(torch.rand(2, 2, 32, 32), return_skips=True)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert _shapes(enc) == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (64, 2, 2), (64, 1, 1)]
    assert _shapes(dec) == [(128, 2, 2), (128, 4, 4), (64, 8, 8), (32, 16, 16)]  # up ⊕ skip
    with torch.no_grad():
        _, enc, _ = g(torch.rand(1, 2, 64, 64), return_skips=True)
    assert _shapes(enc)[-1] == (64, 2, 2)
    with pytest.raises(ValueError, match="multiple of 32"):
        g(torch.rand(1, 2, 48, 48))


def test_unet_and_patchgan_paper_sizes():
    g = UNetGenerator(2, 3, "paper").eval()
    with torch.no_grad():
        out, enc, dec = g(torch.rand(1, 2, 256, 256), return_skips=True)
    # pix2pix: C64-C128-C256-C512-C512-C512-C512-C512, decoder maps concatenated with the skips
    assert _shapes(enc) == [(64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 16, 16), (512, 8, 8),
                            (512, 4, 4), (512, 2, 2), (512, 1, 1)]  # fmt: skip
    assert _shapes(dec) == [(1024, 2, 2), (1024, 4, 4), (1024, 8, 8), (1024, 16, 16), (512, 32, 32),
                            (256, 64, 64), (128, 128, 128)]  # fmt: skip
    assert out.shape == (1, 3, 256, 256)
    drops = [any(isinstance(m, torch.nn.Dropout) for m in block) for block in g.up]
    assert drops == [True, True, True, False, False, False, False]
    # parameter counts of the authors' PyTorch pix2pix (unet_256 / basic D) for RGB → RGB
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert round(n(UNetGenerator(3, 3, "paper")) / 1e6, 3) == 54.414
    d = PatchDiscriminator(2, 3, "paper").eval()
    assert round(n(PatchDiscriminator(3, 3, "paper")) / 1e6, 3) == 2.769
    x = torch.rand(1, 2, 256, 256, requires_grad=True)
    logits = d(x, torch.rand(1, 3, 256, 256))
    assert logits.shape == (1, 1, 30, 30)
    # one logit sees a 70 × 70 patch of the input
    logits[0, 0, 15, 15].backward()
    seen = x.grad[0].abs().sum(0) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    assert len(rows) == len(cols) == 70 and rows[-1] - rows[0] == cols[-1] - cols[0] == 69


def test_category_cnn_layout():
    # Conv1D k3 valid ×2 then pool 2, three times: 21025 → 21021 → 10510 → 10506 → 5253 → 5249 → 2624
    net = CategoryCNN(n_labels=133, size="tiny").eval()
    assert net.flat_features == 32 * 2624
    x = torch.from_numpy(hemisphere_channels(np.random.default_rng(0).normal(size=(2, 19004)),
                                             np.random.default_rng(1).normal(size=(2, 20544))))  # fmt: skip
    assert x.shape == (2, 2, 21025) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    p = net.probabilities(x)
    assert p.shape == (2, 133) and bool(((p > 0) & (p < 1)).all())
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bn) == 6 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bn)  # Keras' defaults
    with pytest.raises(ValueError, match="expected input"):
        net(x[:, :, :100])


# -- the GAN through the Trainer ----------------------------------------------------------------------
class _Crash(RuntimeError):
    pass


def _train_pix2pix(ckpt, crash_at: int | None = None):
    """A tiny pix2pix on 6 random (map, image) pairs: 2 epochs × 3 steps, D then G per step,
    checkpoints every 3 steps; ``crash_at``: the G phase of that step raises."""
    torch.manual_seed(0)
    G, D = UNetGenerator(2, 3, "tiny"), PatchDiscriminator(2, 3, "tiny")
    data = torch.Generator().manual_seed(3)
    maps, images = torch.rand(6, 2, 32, 32, generator=data), torch.rand(6, 3, 32, 32, generator=data) * 2 - 1
    adam = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}
    trainer = None
    batch = {}

    def d_step(idx, gen):  # the step's jitter is drawn once, in its first phase
        batch["x"], batch["y"] = random_jitter(maps[idx], images[idx], generator=gen, load_size=36)
        with torch.no_grad():
            fake = G(batch["x"])
        return discriminator_loss(D(batch["x"], batch["y"]), D(batch["x"], fake))

    def g_step(idx, gen):
        if trainer.step == crash_at:
            raise _Crash(f"crash at step {crash_at}")
        fake = G(batch["x"])
        return generator_loss(D(batch["x"], fake), fake, batch["y"])

    trainer = Trainer(name="pix2pix-tiny", modules={"generator": G, "discriminator": D},
                      settings={"epochs": 2, "batch_size": 2, **adam},
                      training={"checkpoint_every_steps": 3, "checkpoint_every_minutes": 60, "precision": "fp32"},
                      checkpoint_dir=str(ckpt), fingerprint="pix2pix-test", seed=5, device=torch.device("cpu"),
                      phases=[Phase("discriminator", D.parameters(), d_step, adam),
                              Phase("generator", G.parameters(), g_step, adam)])  # fmt: skip
    trainer.fit(len(maps))
    return trainer, {f"{k}.{n}": t.clone() for k, m in trainer.modules.items() for n, t in m.state_dict().items()}


def test_pix2pix_gan_resumed_at_half_equals_uninterrupted(tmp_path):
    torch.manual_seed(0)
    initial = {f"generator.{n}": t.clone() for n, t in UNetGenerator(2, 3, "tiny").state_dict().items()}
    full, reference = _train_pix2pix(tmp_path / "full")
    assert full.step == 6 and {"generator/adv", "generator/l1", "discriminator/loss"} <= set(full.history[-1])
    assert not torch.equal(reference["generator.last.weight"], initial["generator.last.weight"])  # it trained
    with pytest.raises(_Crash):
        _train_pix2pix(tmp_path / "cut", crash_at=3)
    state = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 3 and set(state["optimizers"]) == {"discriminator", "generator"}
    resumed, weights = _train_pix2pix(tmp_path / "cut")
    assert resumed.step == 6 and resumed._run["steps"] == 3  # only the second half ran
    assert weights.keys() == reference.keys()
    for k in reference:  # weights and BatchNorm statistics of both networks
        assert torch.equal(weights[k], reference[k]), f"{k} differs after resuming"
    no_clock = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert no_clock(resumed.history) == no_clock(full.history)
