"""Loss terms of the encoder/decoder methods (papers 002 and 000), each on batched tensors.

All image tensors are (B, 3, H, W) in [0, 1]; fMRI tensors (B, V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fmri_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Paper 002 eq. 1 / paper 000 eq. 3: α·MSE − (1−α)·cos, written as α·MSE + (1−α)·(1 − cos)
    (the same gradients, but ≥ 0 and exactly 0 for a perfect prediction). Mean over the batch."""
    mse = (pred - target).pow(2).mean(1)
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8)
    return (alpha * mse + (1.0 - alpha) * (1.0 - cos)).mean()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (anisotropic TV)."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dh + dw


def _channel_normalise(f: torch.Tensor) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)


def perceptual_cosine(pred_feats, target_feats) -> torch.Tensor:
    """Paper 002 eq. 4: 1 − cosine between channel-normalised feature maps, averaged over blocks
    (0 when the features agree up to a positive per-location scale)."""
    terms = []
    for p, t in zip(pred_feats, target_feats):
        p, t = _channel_normalise(p).flatten(1), _channel_normalise(t).flatten(1)
        terms.append(1.0 - F.cosine_similarity(p, t, dim=1, eps=1e-8).mean())
    return torch.stack(terms).mean()


def feature_mse(pred_feats, target_feats) -> torch.Tensor:
    """Paper 000 eq. 6/8: squared error between backbone feature maps, mean over blocks.

    Each block's error is divided by the mean square of its target features, so that blocks (and
    this loss against the loop's fMRI loss, paper 000 eq. 5) weigh in on the same scale: 0 for a
    perfect match, 1 for predicting all-zero features.
    """
    terms = [(p - t).pow(2).mean() / (t.pow(2).mean() + 1e-8) for p, t in zip(pred_feats, target_feats)]
    return torch.stack(terms).mean()


def image_loss(pred, target, pred_feats, target_feats, weights: dict) -> dict[str, torch.Tensor]:
    """Paper 002 eq. 3: L1 + perceptual + TV, each term weighted (``weights``: l1, perceptual, tv).

    Returns the weighted terms and their sum under ``total``.
    """
    terms = {
        "l1": weights["l1"] * (pred - target).abs().mean(),
        "perceptual": weights["perceptual"] * perceptual_cosine(pred_feats, target_feats),
        "tv": weights["tv"] * total_variation(pred),
    }
    terms["total"] = terms["l1"] + terms["perceptual"] + terms["tv"]
    return terms


def loop_loss(encoder, images, fmri: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Paper 000 eq. 7: Σ over decoded images of the fMRI loss of E(image) against the measured fMRI."""
    return sum(fmri_loss(encoder(img).float(), fmri, alpha) for img in images)
