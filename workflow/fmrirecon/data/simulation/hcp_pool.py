"""A simulated HCP-like resting-state pool in the HCP derivative's layout (rule ``simulate_pool``).

Writes ``<outdir>/npz/<subject>/HCP_visual_voxel.npz`` with keys V1…V4 (the entry's ``rois``), each
(``trs``, n_vox) float32, for the pool's own subjects, as ``preprocess_hcp.py`` writes the real
ones. Its voxel space is its own (``pools.<name>.simulation.voxels``): neither the subjects' voxel
counts nor their order, so a method that pretrains on it has to bridge the two spaces.

The signal: a few slow latent sources per subject (AR(1), as resting-state fluctuations at a TR
of 0.72 s), mixed into the voxels by loadings that vary smoothly along each area's voxels and
are shared by all subjects (one grayordinate space), plus independent noise; each voxel is then
z-scored over time, as ``hcp_utils.normalize`` does. numpy only, from the seed and the pool's name,
so the same config gives byte-identical files and no other stream of the workflow is touched.
"""

from __future__ import annotations

import numpy as np

from ..atomic import atomic_path, save_npz_deterministic
from ..pools import hcp_npz

N_SOURCES = 6
AR = 0.9  # lag-1 autocorrelation of the sources per TR


def _rng(seed: int, name: str, *keys: int) -> np.random.Generator:
    tag = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
    return np.random.default_rng(np.random.SeedSequence([seed, 0x9001, tag, *keys]))


def _loadings(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, N_SOURCES) loadings that drift smoothly along the voxel index (a random walk)."""
    walk = np.cumsum(rng.normal(size=(n, N_SOURCES)), axis=0)
    walk -= walk.mean(0)
    return walk / max(1.0, float(np.sqrt(n)))


def simulate_subject(rng: np.random.Generator, loadings: dict[str, np.ndarray], trs: int, noise_sd: float) -> dict:
    """{roi: (trs, n_vox) float32}: AR(1) sources mixed by ``loadings`` + noise, z-scored per voxel."""
    src = np.empty((trs, N_SOURCES))
    src[0] = rng.normal(size=N_SOURCES)
    innov = rng.normal(size=(trs, N_SOURCES)) * np.sqrt(1 - AR**2)
    for t in range(1, trs):
        src[t] = AR * src[t - 1] + innov[t]
    out = {}
    for roi, w in loadings.items():
        x = src @ w.T
        x = x / x.std() + noise_sd * rng.normal(size=x.shape)
        out[roi] = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return out


def simulate_pool(name: str, settings: dict, subjects: list[str], rois: list[str], seed: int, outdir: str) -> None:
    """Rule ``simulate_pool``: the tree ``<outdir>/npz/<subject>/HCP_visual_voxel.npz``."""
    sim = settings
    space = _rng(seed, name, 0)  # the pool's own voxel space, shared by its subjects
    loadings = {r: _loadings(space, int(sim["voxels"][r])) for r in rois}
    with atomic_path(outdir) as tmp:
        for k, subject in enumerate(subjects):
            arrays = simulate_subject(_rng(seed, name, 1, k), loadings, int(sim["trs"]), float(sim["noise_sd"]))
            path = tmp / "npz" / subject / hcp_npz.FILE
            path.parent.mkdir(parents=True)
            save_npz_deterministic(path, **arrays)
