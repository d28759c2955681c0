"""Paper 004's losses: the classifier's focal / binary cross-entropy loss and pix2pix's cGAN + L1.

Every function takes *logits* (the networks end without a sigmoid); probabilities are
``sigmoid(logits)``. Means are over every element, as Keras' ``sum_over_batch_size`` reduction of
a per-sample mean over labels.

Focal loss (paper §III.C "cross entropy using focal loss"; their code, ``project_classification.ipynb``
cell 48, ``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=2)``, Keras'
default ``alpha=0.25``)::

    p_t = y·p + (1 − y)·(1 − p),   α_t = y·α + (1 − y)·(1 − α)
    FL  = α_t · (1 − p_t)^γ · (−log p_t)

Their final run trained plain binary cross-entropy (cell 51) with the focal loss commented out:
:func:`multilabel_loss` offers both (``"focal"``, the paper's text, or ``"bce"``). Keras clips
probabilities to [1e-7, 1 − 1e-7]; from logits nothing needs clipping.

pix2pix (Isola et al. 2017, eq. 4; paper 004 eqs. 3–5): G minimises BCE(D(x, G(x)), real) +
λ·|y − G(x)|₁ with λ = 100; D minimises BCE(D(x, y), real) + BCE(D(x, G(x)), fake) — summed as in
the TensorFlow pix2pix tutorial that paper 004's discriminator follows; the pix2pix paper halves it
(``halve=True``), which Adam makes nearly immaterial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Keras' BinaryFocalCrossentropy defaults, which their code kept (only gamma is passed)
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
L1_WEIGHT = 100.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = FOCAL_ALPHA,
               gamma: float = FOCAL_GAMMA) -> torch.Tensor:  # fmt: skip
    """Binary focal loss of multi-hot ``targets`` (B, L) in {0, 1} (soft targets work too); mean.

    ``alpha=None``: no class balancing (α_t = 1); ``gamma=0`` with ``alpha=None`` is plain BCE.
    """
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # −log p_t
    p = torch.sigmoid(logits)
    p_t = targets * p + (1 - targets) * (1 - p)
    loss = (1 - p_t).pow(gamma) * bce
    if alpha is not None:
        loss = (targets * alpha + (1 - targets) * (1 - alpha)) * loss
    return loss.mean()


def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "focal",
                    alpha: float | None = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA) -> torch.Tensor:  # fmt: skip
    """The classifier's loss: ``"focal"`` (the paper's text) or ``"bce"`` (their final code)."""
    if kind == "focal":
        return focal_loss(logits, targets, alpha, gamma)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    raise ValueError(f"classifier loss {kind!r}: expected 'focal' or 'bce'")


def generator_loss(fake_logits: torch.Tensor, fake: torch.Tensor, target: torch.Tensor,
                   l1_weight: float = L1_WEIGHT) -> dict[str, torch.Tensor]:  # fmt: skip
    """The pix2pix generator objective: ``loss`` = adv + l1_weight · l1, with ``adv`` the BCE of the
    discriminator's patch logits on generated pairs against "real" and ``l1`` the mean absolute
    error of the image."""
    adv = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    l1 = (fake - target).abs().mean()
    return {"loss": adv + l1_weight * l1, "adv": adv.detach(), "l1": l1.detach()}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       halve: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """The pix2pix discriminator objective: BCE of real pairs against 1 plus BCE of generated pairs
    (detached by the caller) against 0; ``halve``: times 1/2 as in the pix2pix paper."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    loss = real + fake
    return {"loss": 0.5 * loss if halve else loss, "real": real.detach(), "fake": fake.detach()}
