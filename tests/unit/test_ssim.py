"""Batched SSIM against scikit-image's structural_similarity (the reference) on small inputs,
and the safety of the native kernel's build cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmrirecon.errors import InputError
from fmrirecon.evaluate import ssim_backends, ssim_native
from fmrirecon.evaluate.ssim import (
    NSD_SSIM,
    SKIMAGE_DEFAULT_RGB_SSIM,
    filter_taps,
    pairwise_ssim,
    prepare_images,
    ssim,
    ssim_settings,
)

TOL = 1e-4
CC = shutil.which("gcc") or shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler here")


@pytest.fixture(scope="module", autouse=True)
def _private_kernel_cache(tmp_path_factory):
    """Native builds of this module go to a throwaway cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMRIRECON_CACHE", str(tmp_path_factory.mktemp("kernel-cache")))
        yield


def _images_ssim(recon: np.ndarray, truth: np.ndarray, s: dict) -> np.ndarray:
    """Per-image SSIM of uint8 images prepared as the settings say (resolution, grey)."""
    res = s["resolution"] or None
    x = prepare_images(recon, resolution=res, grey=s["grey"])
    y = prepare_images(truth, resolution=res, grey=s["grey"])
    return ssim(x, y, s).numpy()


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
    ours = _images_ssim(recon, truth, s)
    xs, ys = _reference_inputs(recon, s), _reference_inputs(truth, s)
    ref = np.array([_sk(a, b, s) for a, b in zip(xs, ys)])
    assert np.abs(ours - ref).max() < TOL


@pytest.mark.parametrize("case", ["nsd_grey_gaussian", "rgb_skimage_defaults_uint8", "gaussian_wider_than_window"])
def test_pairwise_matrix_matches_skimage_double_loop(case):
    s = ssim_settings(CASES[case])
    truth = _structured(5, 32, 4)
    recon = _noisy(truth[[1, 0, 2]], 5)
    res = s["resolution"] or None
    x, y = prepare_images(recon, resolution=res, grey=s["grey"]), prepare_images(truth, resolution=res, grey=s["grey"])
    mat = pairwise_ssim(x, y, s, backend="eager").numpy()
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


@needs_cc
@pytest.mark.parametrize("case", ["nsd_grey_gaussian", "rgb_skimage_defaults_uint8", "gaussian_wider_than_window"])
@pytest.mark.parametrize("size", [19, 37])
def test_native_kernel_block_edges_match_eager(case, size):
    """The C kernel works in blocks of 8 rows and panels of 8 columns: cropped maps that are not
    multiples of 8, tiles smaller than the matrix, 3 channels and 19 taps all give eager's values."""
    s = ssim_settings(CASES[case])
    truth = _structured(7, size, 11)
    recon = _noisy(truth[[2, 0, 1, 4, 3]], 12)
    x, y = prepare_images(recon, grey=s["grey"]), prepare_images(truth, grey=s["grey"])
    eager = pairwise_ssim(x, y, s, backend="eager")
    for tile in [(1, 1), (2, 3), (16, 16)]:
        assert torch.allclose(pairwise_ssim(x, y, s, backend="native", chunk=tile), eager, atol=1e-6)


@needs_cc
def test_native_kernel_at_nsd_scale_matches_skimage():
    """At 425 px (52 row blocks; float32 sums over at most 64 columns before a double add, float32
    statistics) the C kernel stays within TOL of skimage's float64 and within 1e-6 of eager."""
    s = ssim_settings(NSD_SSIM)
    truth = _structured(3, 425, 13)
    recon = _noisy(truth[[1, 0, 2]], 14)
    x = prepare_images(recon, resolution=425, grey=True)
    y = prepare_images(truth, resolution=425, grey=True)
    native = pairwise_ssim(x, y, s, backend="native")
    assert torch.allclose(native, pairwise_ssim(x, y, s, backend="eager"), atol=1e-6)
    xs, ys = _reference_inputs(recon, s), _reference_inputs(truth, s)
    ref = np.array([[_sk(a, b, s) for b in ys] for a in xs])
    assert np.abs(native.numpy() - ref).max() < TOL


def test_identical_images_score_one_and_taps_sum_to_one():
    img = _structured(2, 32, 7)
    assert np.allclose(_images_ssim(img, img, ssim_settings(NSD_SSIM, resolution=0)), 1.0, atol=1e-6)
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
        ssim(prepare_images(good[:, :5, :5]), prepare_images(good[:, :5, :5]), win_size=7, gaussian_weights=False)
    x = prepare_images(good)
    with pytest.raises(InputError, match="as many"):
        ssim(x, x[:1])
    with pytest.raises(InputError, match="differ in shape"):
        pairwise_ssim(x, prepare_images(good, grey=True))


# --------------------------------------------------------------------------------------------
# the native kernel's build cache: nothing in it is trusted


PLANTED_SOURCE = r"""
#include <stdio.h>
static void leave_marker(void) { FILE* f = fopen(MARKER, "w"); if (f) { fputs("ran", f); fclose(f); } }
__attribute__((constructor)) static void planted_constructor(void) { leave_marker(); }
void ssim_matrix(void) { leave_marker(); }
"""


@pytest.fixture
def build_tmp(tmp_path, monkeypatch):
    """Route tempfile (where builds happen) to a folder of our own, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def planted(tmp_path):
    """A library whose constructor (and ssim_matrix) writes a marker file: bytes, marker path."""
    marker = tmp_path / "planted-code-ran"
    src, lib = tmp_path / "planted.c", tmp_path / "planted.so"
    src.write_text(PLANTED_SOURCE)
    subprocess.run([CC, f'-DMARKER="{marker}"', "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   capture_output=True)  # fmt: skip
    # the marker works: loading the library (in another process) runs its constructor
    subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"], check=True)
    assert marker.exists()
    marker.unlink()
    return lib.read_bytes(), marker


def _record(root) -> dict:
    (path,) = root.glob("ssim-*.json")
    return json.loads(path.read_text())


@needs_cc
def test_planted_or_swapped_library_is_never_loaded(tmp_path, build_tmp, planted, caplog):
    caplog.set_level(logging.WARNING, logger=ssim_native.__name__)
    code, marker = planted
    root = tmp_path / "cache"
    assert ssim_native.load_library(11, CC, str(root)) is not None
    rec = _record(root)
    key, lib = rec["key"], root / rec["library"]
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == rec["sha256"]
    # planted next to ours under the names a loader might try, and in the old layout
    for name in (f"ssim-{key}-{hashlib.sha256(code).hexdigest()[:16]}.so", "ssim_matrix_k11.so"):
        (root / name).write_bytes(code)
    (root / f"ssim-{key[:16]}").mkdir()
    (root / f"ssim-{key[:16]}" / "ssim_matrix_k11.so").write_bytes(code)
    # swapped in place of ours (its record unchanged), then garbage in its place
    for content in (code, b"garbage, not a library"):
        lib.write_bytes(content)
        assert ssim_native.load_library(11, CC, str(root)) is not None
        assert not marker.exists(), "code of a planted library ran"
        assert "does not match the digest" in caplog.text
        rec = _record(root)  # rebuilt and recorded again
        assert hashlib.sha256((root / rec["library"]).read_bytes()).hexdigest() == rec["sha256"]
        caplog.clear()
    # a record that names the planted library, which is a symlink: refused, rebuilt
    evil = tmp_path / "evil.so"
    evil.write_bytes(code)
    digest = hashlib.sha256(code).hexdigest()
    link = root / f"ssim-{key}-{digest[:16]}.so"
    link.unlink()
    link.symlink_to(evil)
    (root / f"ssim-{key}.json").write_text(json.dumps({"key": key, "sha256": digest}))
    assert ssim_native.load_library(11, CC, str(root)) is not None
    assert "not loading the cached SSIM kernel" in caplog.text
    assert not marker.exists()
    assert os.listdir(build_tmp) == []


@needs_cc
def test_group_writable_or_foreign_cache_is_refused(tmp_path, build_tmp, planted, caplog):
    caplog.set_level(logging.WARNING, logger=ssim_native.__name__)
    code, marker = planted
    key = ssim_native.cache_key(ssim_native.kernel_source(), 11, CC)
    digest = hashlib.sha256(code).hexdigest()
    folders = [("group", 0o770, None)]
    if os.geteuid() == 0:
        folders.append(("foreign", 0o700, 65534))
    for name, mode, owner in folders:
        root = tmp_path / name
        root.mkdir()
        # even a consistent-looking library + record there is not used
        (root / f"ssim-{key}-{digest[:16]}.so").write_bytes(code)
        (root / f"ssim-{key}.json").write_text(json.dumps({"key": key, "sha256": digest}))
        os.chmod(root, mode)
        if owner is not None:
            os.chown(root, owner, owner)
        before = sorted(os.listdir(root))
        assert ssim_native.load_library(11, CC, str(root)) is not None  # built privately instead
        assert not marker.exists(), "code of a planted library ran"
        assert "refusing the SSIM kernel cache" in caplog.text
        assert sorted(os.listdir(root)) == before  # nothing written there either
        caplog.clear()
    assert not marker.exists()
    assert os.listdir(build_tmp) == []


@needs_cc
def test_cache_is_private_reused_and_keyed_by_cpu(tmp_path, build_tmp, monkeypatch):
    root = tmp_path / "new" / "cache"
    assert ssim_native.load_library(7, CC, str(root)) is not None
    assert stat.S_IMODE(os.stat(root).st_mode) & 0o077 == 0
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o022 == 0 for p in root.iterdir())
    with monkeypatch.context() as mp:  # a verified build is loaded without compiling
        mp.setattr(ssim_native, "_build", lambda *a: pytest.fail("rebuilt although a verified build was cached"))
        assert ssim_native.load_library(7, CC, str(root)) is not None
    assert os.listdir(build_tmp) == []
    key = ssim_native.cache_key(b"src", 11, CC)
    ssim_native.toolchain_identity.cache_clear()
    try:
        with monkeypatch.context() as mp:  # another CPU model: another key
            mp.setattr(ssim_native, "cpu_identity", lambda: ["x86_64", "", [("flags", "sse2")]])
            assert ssim_native.cache_key(b"src", 11, CC) != key
    finally:
        ssim_native.toolchain_identity.cache_clear()
    assert ssim_native.cache_key(b"src", 11, CC) == key
    assert ssim_native.cache_key(b"src2", 11, CC) != key and ssim_native.cache_key(b"src", 7, CC) != key


@needs_cc
def test_compile_failure_is_logged_cleaned_up_and_falls_back(tmp_path, build_tmp, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=ssim_native.__name__)
    bad = tmp_path / "bad-cc"
    bad.write_text("#!/bin/sh\necho 'error: this compiler always fails' >&2\nexit 1\n")
    bad.chmod(0o755)
    assert ssim_native.load_library(11, str(bad), str(tmp_path / "cache")) is None
    assert "this compiler always fails" in caplog.text
    assert os.listdir(build_tmp) == []
    # large enough for "auto" to pick the C kernel: it falls back, with the C kernel's values
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 256, (160, 40, 40, 3), dtype=np.uint8)
    recon = _noisy(truth, 9)
    s = ssim_settings(NSD_SSIM, resolution=0)
    x, y = prepare_images(recon, grey=True), prepare_images(truth, grey=True)
    monkeypatch.setenv("FMRIRECON_CACHE", str(tmp_path / "cache"))
    native = pairwise_ssim(x, y, s, backend="native")
    monkeypatch.setenv("CC", str(bad))
    monkeypatch.setattr(ssim_backends, "compiled_kernel", lambda *a: None)  # skip torch.compile here
    with pytest.raises(InputError, match="native SSIM kernel"):
        pairwise_ssim(x, y, s, backend="native")
    info: dict = {}
    with pytest.warns(UserWarning, match="falling back"):
        fallback = pairwise_ssim(x, y, s, info=info)
    assert info["backend"] == "eager"
    assert torch.allclose(fallback, native, atol=1e-6)
    assert os.listdir(build_tmp) == []
