"""Paper 003's graph pieces: the functional graph's rule and the dense ChebConv against its formula
(and against torch_geometric's ChebConv when that is installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmrirecon.models.graph import ChebConv, functional_graph, node_features, roi_nodes, scaled_laplacian


def test_functional_graph_keeps_strong_correlations_upper_triangle_no_self_loops():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    means = np.stack([a, a + 0.3 * rng.normal(size=200), -a + 0.3 * rng.normal(size=200), rng.normal(size=200)], 1)
    w = functional_graph(means)
    r = np.corrcoef(means, rowvar=False)
    assert w.dtype == np.float32 and np.all(np.diag(w) == 0) and np.all(np.tril(w) == 0)
    assert w[0, 1] == pytest.approx(r[0, 1], abs=1e-6) and w[0, 1] > 0.5
    assert w[0, 2] == pytest.approx(r[0, 2], abs=1e-6) and w[0, 2] < -0.5  # |r| > 0.5, r kept as weight
    assert w[0, 3] == 0 and w[1, 3] == 0  # weak correlations are no edges


def test_node_features_pad_each_roi_to_the_largest():
    fmri = np.arange(12, dtype=np.float32).reshape(2, 6)
    x = node_features(fmri, [np.array([0, 1]), np.array([2, 3, 4]), np.array([5])])
    assert x.shape == (2, 3, 3) and x[1, 0].tolist() == [6, 7, 0] and x[1, 2].tolist() == [11, 0, 0]


def _formula(x, w, theta, bias, lambda_max):
    """Σ_k T_k(L̃) X Θ_k + b with L = I − (D^-1/2 W D^-1/2)ᵀ, degrees over sources (numpy)."""
    deg = w.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    lap = np.eye(len(w)) - (inv[:, None] * w * inv[None, :]).T
    lam = np.max(np.linalg.eigvals(lap).real) if lambda_max is None else lambda_max
    lt = 2 * lap / lam - np.eye(len(w))
    t = [np.eye(len(w)), lt]
    for _ in range(2, len(theta)):
        t.append(2 * lt @ t[-1] - t[-2])
    return sum(np.einsum("ij,bjf->bif", t[k], x) @ theta[k] for k in range(len(theta))) + bias


@pytest.mark.parametrize("K,lambda_max", [(1, 2.0), (2, 2.0), (4, 2.0), (3, None)])
def test_chebconv_matches_the_chebyshev_formula(K, lambda_max):
    rng = np.random.default_rng(K)
    w = np.triu(rng.uniform(-1, 1, (5, 5)), 1) * (rng.uniform(size=(5, 5)) > 0.3)
    w[4] = 0  # a node without outgoing edges (degree 0)
    x = rng.normal(size=(3, 5, 4))
    torch.manual_seed(0)
    conv = ChebConv(4, 6, K, scaled_laplacian(torch.tensor(w, dtype=torch.float64), lambda_max)).double()
    with torch.no_grad():
        conv.bias.normal_()
        out = conv(torch.tensor(x)).numpy()
    ref = _formula(x, w, conv.weight.detach().numpy(), conv.bias.detach().numpy(), lambda_max)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_chebconv_equals_torch_geometric_when_installed():
    pyg = pytest.importorskip("torch_geometric.nn")
    rng = np.random.default_rng(3)
    w = np.triu(rng.uniform(0.5, 1, (4, 4)), 1)
    src, dst = np.nonzero(w)
    x = torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32)
    ref = pyg.ChebConv(3, 2, K=3)
    ours = ChebConv(3, 2, 3, scaled_laplacian(torch.tensor(w, dtype=torch.float32)))
    with torch.no_grad():
        for k, lin in enumerate(ref.lins):
            ours.weight[k].copy_(lin.weight.T)
        ours.bias.copy_(ref.bias)
    edge_index = torch.tensor(np.stack([src, dst]), dtype=torch.long)
    got = ours(x[None])[0]
    want = ref(x, edge_index, torch.tensor(w[src, dst], dtype=torch.float32))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_roi_nodes_unite_rois_of_the_prepared_voxels():
    names = np.array([b"V1", b"V2", b"V3", b"V4"])
    member = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 1]], bool)
    cols = roi_nodes(names, member, [["V1"], ["V2"], ["V3", "V4"]])
    assert [c.tolist() for c in cols] == [[0, 1], [2], [3, 4, 5]]
    with pytest.raises(ValueError, match=r"graph node LOC: ROI\(s\) \['LOC'\] not in the prepared voxels"):
        roi_nodes(names, member, [["LOC"]])
