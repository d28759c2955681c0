"""Paper 003's graph pieces: the fMRI graph of ROI nodes and a dense Chebyshev graph convolution.

**The fMRI graph** (paper 003 §2.5.3, after Saeidi et al. 2022; its code settles the details):
nodes are ROIs (V1, V2 and V3 ∪ V4 by default), each node's features its voxels' normalised
activity zero-padded to the largest node (:func:`node_features`). Edges: the Pearson correlation
of the nodes' mean activity over the *training* trials; an edge i → j where |r| exceeds the
threshold (0.5), weighted by r, no self-loops, and only i < j (the upper triangle: information
flows from earlier to later areas, "bottom-up") — :func:`functional_graph`.

**ChebConv** (Defferrard et al. 2016, as ``torch_geometric.nn.ChebConv`` computes it, which their
code uses): with edge weights ``W[i, j]`` of edges i → j, degrees over the source node
``d_i = Σ_j W[i, j]``, ``Â = D^{-1/2} W D^{-1/2}`` (0 where a degree is 0) and, acting on the
targets' features, the normalised Laplacian ``L = I − Âᵀ``; scaled ``L̃ = 2L/λ_max − I``
(``lambda_max`` 2.0, torch_geometric's default when none is given; ``None`` = the largest
eigenvalue's real part, the paper's text); ``T_0 = X, T_1 = L̃X, T_k = 2L̃T_{k−1} − T_{k−2}`` and
``out = Σ_{k<K} T_k Θ_k + b``. Dense: graphs of a handful of nodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def functional_graph(node_means: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(n_trials, N) mean activity of each node over training trials → (N, N) float32 edge
    weights: Pearson r where |r| > ``threshold`` and i < j, else 0."""
    x = np.asarray(node_means, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"functional graph: expected (trials >= 2, nodes), got {x.shape}")
    r = np.corrcoef(x, rowvar=False)
    r = np.nan_to_num(r)  # a constant node correlates with nothing
    w = np.where(np.abs(r) > threshold, r, 0.0)
    return np.triu(w, k=1).astype(np.float32)


def node_features(fmri: np.ndarray, nodes: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """(n, V) fMRI and each node's voxel columns → (n, N, length) float32, each node zero-padded."""
    length = int(length or max(len(c) for c in nodes))
    out = np.zeros((len(fmri), len(nodes), length), np.float32)
    for k, cols in enumerate(nodes):
        if len(cols) > length:
            raise ValueError(f"graph node {k} has {len(cols)} voxels, more than the padded length {length}")
        out[:, k, : len(cols)] = np.asarray(fmri, np.float32)[:, cols]
    return out


def roi_nodes(roi_names, roi_membership, nodes: list[list[str]]) -> list[np.ndarray]:
    """Voxel columns of each graph node: the union of its ROIs in a prepared file's
    ``voxels/roi_names`` (R,) and ``voxels/roi_membership`` (R, V) (paper 003: ``[["V1"], ["V2"],
    ["V3", "V4"]]``). A ROI the file lacks fails with one line listing those it has."""
    names = [str(n) for n in np.asarray(roi_names).astype(str)]
    member = np.asarray(roi_membership, bool)
    out = []
    for node in nodes:
        missing = [r for r in node if r not in names]
        if missing:
            raise ValueError(f"graph node {'+'.join(node)}: ROI(s) {missing} not in the prepared voxels (have {names})")
        cols = np.flatnonzero(member[[names.index(r) for r in node]].any(0))
        if not len(cols):
            raise ValueError(f"graph node {'+'.join(node)} has no voxels")
        out.append(cols)
    return out


def scaled_laplacian(weights: torch.Tensor, lambda_max: float | None = 2.0) -> torch.Tensor:
    """``L̃ = 2L/λ_max − I`` of the module doc for (N, N) edge weights ``W[i, j]`` (i → j)."""
    w = weights.to(torch.float64)
    deg = w.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
    a_hat = inv[:, None] * w * inv[None, :]
    lap = torch.eye(len(w), dtype=w.dtype) - a_hat.T
    lam = float(torch.linalg.eigvals(lap).real.max()) if lambda_max is None else float(lambda_max)
    return (2.0 * lap / lam - torch.eye(len(w), dtype=w.dtype)).to(weights.dtype)


class ChebConv(nn.Module):
    """(B, N, F_in) node features → (B, N, F_out) with ``K`` Chebyshev terms over a fixed graph.

    The graph is a buffer (``laplacian``: the scaled Laplacian of :func:`scaled_laplacian`), so it
    is saved with the weights. Θ_k are Glorot-initialised without bias, plus one bias (as
    torch_geometric's ``ChebConv``).
    """

    def __init__(self, in_features: int, out_features: int, K: int, laplacian: torch.Tensor):
        super().__init__()
        if K < 1:
            raise ValueError(f"ChebConv: K must be >= 1, got {K}")
        self.K = int(K)
        self.register_buffer("laplacian", laplacian.detach().clone())
        self.weight = nn.Parameter(torch.empty(self.K, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for k in range(self.K):
            nn.init.xavier_uniform_(self.weight[k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lap = self.laplacian.to(x.dtype)
        t_prev, t = x, None
        out = t_prev @ self.weight[0]
        if self.K > 1:
            t = torch.einsum("ij,bjf->bif", lap, x)
            out = out + t @ self.weight[1]
        for k in range(2, self.K):
            t_next = 2.0 * torch.einsum("ij,bjf->bif", lap, t) - t_prev
            out = out + t_next @ self.weight[k]
            t_prev, t = t, t_next
        return out + self.bias
