"""The two InfoNCE losses of the double-contrastive MAE (paper 001, eqs. 1-3).

Vectors are L2-normalised before the dot products (cosine similarity, as in MoCo v3, the paper's
reference [47]); the paper writes plain dot products, which on raw voxel vectors overflow ``exp``.
Negatives come from the same batch (j != i).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _infonce(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """-log exp(a_i.p_i/tau) / (exp(a_i.p_i/tau) + sum_{j != i} exp(a_i.n_j/tau)), batch mean.

    anchor, positive, negatives: (B, K).
    """
    a, p, n = (F.normalize(t.flatten(1).float(), dim=1) for t in (anchor, positive, negatives))
    pos = (a * p).sum(1, keepdim=True) / tau  # (B, 1)
    neg = a @ n.T / tau  # (B, B)
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    neg = neg.masked_fill(eye, float("-inf"))  # j != i
    logits = torch.cat([pos, neg], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def cross_contrastive(dec_m1: torch.Tensor, dec_m2: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1: decodings of two masked views of sample i are the positive pair; the negatives are
    the first view's decodings of the other samples, v_i^{dm1} . v_j^{dm1}. (B, K) each."""
    return _infonce(dec_m1, dec_m2, dec_m1, tau)


def self_contrastive(dec: torch.Tensor, original: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 2: the decoding of a masked sample and the unmasked sample are the positive pair; the
    negatives are the decodings of the other samples, v_i^{dm} . v_j^{dm}. (B, K) each."""
    return _infonce(dec, original, dec, tau)


def double_contrastive(dec_m1, dec_m2, original, tau: float, gamma_c: float, gamma_s: float) -> dict:
    """Eq. 3: gamma_C L_C + gamma_S L_S (L_S averaged over both masked views)."""
    lc = cross_contrastive(dec_m1, dec_m2, tau)
    ls = 0.5 * (self_contrastive(dec_m1, original, tau) + self_contrastive(dec_m2, original, tau))
    return {"loss": gamma_c * lc + gamma_s * ls, "cross_contrastive": lc, "self_contrastive": ls}
