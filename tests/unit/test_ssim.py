"""Batched SSIM against scikit-image's structural_similarity (the reference) on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmrirecon.errors import InputError
from fmrirecon.evaluate.ssim import (
    NSD_SSIM,
    SKIMAGE_DEFAULT_RGB_SSIM,
    filter_taps,
    pairwise_ssim,
    pairwise_ssim_images,
    prepare_images,
    ssim,
    ssim_images,
    ssim_settings,
)

TOL = 1e-4


def _structured(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth colour blobs + edges + texture, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3))
    for i in range(n):
        for c in range(3):
            f = rng.uniform(1, 4, 2)
            base = 0.5 + 0.4 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + rng.uniform(0, 6))
            base += 0.3 * (xx > rng.uniform(0.2, 0.8))
            out[i, ..., c] = base + 0.05 * rng.standard_normal((size, size))
    return (np.clip(out, 0, 1.2) / 1.2 * 255).round().astype(np.uint8)


def _noisy(images: np.ndarray, seed: int, amp: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images.astype(int) + rng.integers(-amp, amp, images.shape), 0, 255).astype(np.uint8)


def _sk(x: np.ndarray, y: np.ndarray, s: dict) -> float:
    """skimage on float images (H, W) or (H, W, 3) given in [0, 1] units, scaled as settings say."""
    kw = {"channel_axis": -1} if x.ndim == 3 else {}
    scale = s["pixel_scale"]
    return structural_similarity(
        x * scale,
        y * scale,
        gaussian_weights=s["gaussian_weights"],
        sigma=s["sigma"],
        win_size=s["win_size"],
        data_range=s["data_range"],
        use_sample_covariance=s["use_sample_covariance"],
        **kw,
    )


def _reference_inputs(images: np.ndarray, s: dict) -> list[np.ndarray]:
    """Independent preparation: resize via torch (float64), grey via skimage's rgb2gray."""
    rgb = prepare_images(images, resolution=s["resolution"] or None, dtype=torch.float64).numpy()
    rgb = rgb.transpose(0, 2, 3, 1)
    return [rgb2gray(a) for a in rgb] if s["grey"] else list(rgb)


CASES = {
    "nsd_grey_gaussian": dict(NSD_SSIM, resolution=0),
    "nsd_grey_gaussian_resized": dict(NSD_SSIM, resolution=40),
    "uniform_7x7_sample_cov": {"grey": True, "gaussian_weights": False, "win_size": 7, "use_sample_covariance": True},
    "rgb_skimage_defaults_uint8": SKIMAGE_DEFAULT_RGB_SSIM,
    "rgb_gaussian": {"grey": False, "gaussian_weights": True, "sigma": 1.5},
    "gaussian_wider_than_window": {"grey": True, "gaussian_weights": True, "sigma": 2.5, "win_size": 7},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_aligned_ssim_matches_skimage(case, kind):
    s = ssim_settings(CASES[case])
    if kind == "random":
        rng = np.random.default_rng(1)
        truth = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    else:
        truth = _structured(4, 48, 2)
    recon = _noisy(truth, 3)
    recon[1] = truth[2]  # an unrelated pair too
    ours = ssim_images(recon, truth, s)
    xs, ys = _reference_inputs(recon, s), _reference_inputs(truth, s)
    ref = np.array([_sk(a, b, s) for a, b in zip(xs, ys)])
    assert np.abs(ours - ref).max() < TOL


@pytest.mark.parametrize("case", ["nsd_grey_gaussian", "rgb_skimage_defaults_uint8", "gaussian_wider_than_window"])
def test_pairwise_matrix_matches_skimage_double_loop(case):
    s = ssim_settings(CASES[case])
    truth = _structured(5, 32, 4)
    recon = _noisy(truth[[1, 0, 2]], 5)
    mat = pairwise_ssim_images(recon, truth, s, backend="eager")
    xs, ys = _reference_inputs(recon, s), _reference_inputs(truth, s)
    ref = np.array([[_sk(a, b, s) for b in ys] for a in xs])
    assert mat.shape == (3, 5)
    assert np.abs(mat - ref).max() < TOL


@pytest.mark.parametrize("backend", ["native", "compiled"])
@pytest.mark.parametrize("case", ["nsd_grey_gaussian", "rgb_skimage_defaults_uint8"])
def test_fast_cpu_backends_match_eager_and_skimage(backend, case):
    s = ssim_settings(CASES[case])
    truth = _structured(5, 26, 6)
    recon = _noisy(truth[:3], 7)
    x, y = prepare_images(recon, grey=s["grey"]), prepare_images(truth, grey=s["grey"])
    info: dict = {}
    fast = pairwise_ssim(x, y, s, backend=backend, chunk=(1, 2), info=info)
    eager = pairwise_ssim(x, y, s, backend="eager", chunk=(2, 3))
    assert info["backend"] == backend
    assert torch.allclose(fast, eager, atol=1e-6)
    assert torch.allclose(torch.diagonal(fast[:, :3]), ssim(x, y[:3], s), atol=1e-6)
    xs, ys = _reference_inputs(recon, s), _reference_inputs(truth, s)
    ref = np.array([[_sk(a, b, s) for b in ys] for a in xs])
    assert np.abs(fast.numpy() - ref).max() < TOL


def test_identical_images_score_one_and_taps_sum_to_one():
    img = _structured(2, 32, 7)
    assert np.allclose(ssim_images(img, img, NSD_SSIM | {"resolution": 0}), 1.0, atol=1e-6)
    assert abs(sum(filter_taps(True, 1.5, 11)) - 1.0) < 1e-12
    assert len(filter_taps(True, 1.5, 11)) == 11  # skimage: truncate 3.5 -> radius 5


def test_nsd_recipe_defaults():
    s = ssim_settings(NSD_SSIM)
    assert (s["resolution"], s["grey"], s["sigma"], s["win_size"], s["data_range"]) == (425, True, 1.5, 11, 1.0)
    assert s["use_sample_covariance"] is False
    assert ssim_settings({"gaussian_weights": False})["win_size"] == 7


def test_bad_inputs_raise_input_error():
    good = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="uint8"):
        prepare_images(good.astype(np.float32))
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        prepare_images(good[..., :2])
    with pytest.raises(InputError, match="odd"):
        ssim_settings(win_size=6)
    with pytest.raises(InputError, match="exceeds"):
        ssim_images(good[:, :5, :5], good[:, :5, :5], {"win_size": 7, "gaussian_weights": False})
    x = prepare_images(good)
    with pytest.raises(InputError, match="as many"):
        ssim(x, x[:1])
    with pytest.raises(InputError, match="differ in shape"):
        pairwise_ssim(x, prepare_images(good, grey=True))
