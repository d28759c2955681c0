"""Paper 003's regressors from fMRI to the generator's latents: the image latent ``z`` (CNN, the
"VAE", the ChebNet GCN) and the text-token embedding ``c`` (CNN).

The report (§2.5) names the blocks; its public code (``subawocit/cs292f``: ``image_encoder.ipynb``,
``roi_image_encoder.ipynb``, ``text_encoder.ipynb``) settles the sizes, and some of it differs from
the text — followed here, and said where:

- **residual blocks share weights**: the code applies one block module two (image CNN, GCN) or
  three (text CNN) times, ``x = x + block(x)``; "two residual blocks" are one block used twice;
- **image CNN** (``paper``): (B, 1, V) → Conv1d(1, 64, k1) (no activation) → shared block
  [Conv1d(64, 64, k11, p5), ReLU, Conv1d(64, 64, k11, p5), ReLU] twice → Conv1d(64, 1, k1) →
  Linear(V, 512), ReLU, Linear(512, 512), ReLU, Linear(512, D_z);
- **text CNN**: the same shape with kernel 7 (p3), a block of three convolutions (ReLU after the
  first two) used three times, and Linear(V, 1024), ReLU, Linear(1024, 2048), ReLU,
  Linear(2048, D_c);
- **"VAE"** (no KL term, no skip connections, although the text names both): encoder Linear(V, 512),
  LeakyReLU, Linear(512, 256), then μ and log σ² heads of size D_z; the sampled
  ``z = μ + ε·exp(log σ²/2)`` *is* the predicted latent (also at test time in their code; here
  :meth:`LatentVAE.forward` samples only in training and returns μ in eval mode — a documented
  deviation so that a reconstruction is a function of the fMRI); decoder to the fMRI (three blocks
  Linear + BatchNorm1d + LeakyReLU, widths 4096, then Linear(4096, V)); loss
  ``MSE(fMRI recon, fMRI) + MSE(z, target)`` (:func:`vae_loss`);
- **GCN**: node features (B, N, F) → ChebConv(F, 512, K=4), ReLU → ``x + LeakyReLU(BN(ChebConv(512,
  512, K=3)(x)))`` → mean over nodes → (B, 1, 512) → Conv1d(1, 16, k1), LeakyReLU → shared block
  [Conv1d(16, 16, k3, p1), LeakyReLU] twice → Conv1d(16, 1, k1) → Linear(512, 1024), LeakyReLU,
  Linear(1024, D_z). torch_geometric's K counts terms T_0..T_{K−1}, as :class:`.graph.ChebConv`.

``tiny`` sizes scale every width down for CPU runs; ``paper`` is the code's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import SavedNetwork
from .graph import ChebConv

SIZES = {
    # conv: channels of the CNNs' convolutions; hidden: the image CNN's / text CNN's dense widths;
    # vae: encoder widths and decoder width; gcn: ChebConv width, conv channels, dense width
    "tiny": {"conv": 8, "hidden": (64, 64), "text_hidden": (128, 256), "vae": (128, 64, 256),
             "gcn": (64, 8, 128)},
    "paper": {"conv": 64, "hidden": (512, 512), "text_hidden": (1024, 2048), "vae": (512, 256, 4096),
              "gcn": (512, 16, 1024)},
}  # fmt: skip


def _size(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"latent regressor size {size!r}: expected one of {sorted(SIZES)}")
    return SIZES[size]


def _check(x: torch.Tensor, n: int, what: str) -> None:
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"{what}: expected fMRI (B, {n}), got {tuple(x.shape)}")


class _SharedResidual(nn.Module):
    """``x = x + block(x)`` ``repeats`` times with one ``block`` (their code's residual blocks)."""

    def __init__(self, block: nn.Module, repeats: int):
        super().__init__()
        self.block, self.repeats = block, int(repeats)

    def forward(self, x):
        for _ in range(self.repeats):
            x = x + self.block(x)
        return x


class LatentCNN(SavedNetwork, nn.Module):
    """(B, V) fMRI → (B, D) latent: paper 003's image (``kind="image"``) or text (``"text"``) CNN."""

    FILE_KEY = "regressor"

    def __init__(self, n_voxels: int, out_dim: int, kind: str = "image", size: str = "tiny"):
        super().__init__()
        d = _size(size)
        if kind not in ("image", "text"):
            raise ValueError(f"latent CNN kind {kind!r}: expected 'image' or 'text'")
        self.hparams = {"n_voxels": int(n_voxels), "out_dim": int(out_dim), "kind": kind, "size": size}
        c = d["conv"]
        if kind == "image":
            block = nn.Sequential(nn.Conv1d(c, c, 11, padding=5), nn.ReLU(), nn.Conv1d(c, c, 11, padding=5), nn.ReLU())
            repeats, hidden = 2, d["hidden"]
        else:
            block = nn.Sequential(nn.Conv1d(c, c, 7, padding=3), nn.ReLU(), nn.Conv1d(c, c, 7, padding=3), nn.ReLU(),
                                  nn.Conv1d(c, c, 7, padding=3))  # fmt: skip
            repeats, hidden = 3, d["text_hidden"]
        self.conv_in = nn.Conv1d(1, c, 1)
        self.residual = _SharedResidual(block, repeats)
        self.conv_out = nn.Conv1d(c, 1, 1)
        self.head = nn.Sequential(nn.Linear(n_voxels, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                                  nn.Linear(hidden[1], out_dim))  # fmt: skip

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["out_dim"], hp["kind"], hp["size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.hparams["n_voxels"], "latent CNN")
        h = self.conv_out(self.residual(self.conv_in(x[:, None])))
        return self.head(h[:, 0])


def _fbl(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.LeakyReLU())


class LatentVAE(SavedNetwork, nn.Module):
    """Paper 003's "VAE": fMRI → (μ, log σ²) of the image latent; a decoder back to the fMRI."""

    FILE_KEY = "regressor"

    def __init__(self, n_voxels: int, out_dim: int, size: str = "tiny"):
        super().__init__()
        e1, e2, dec = _size(size)["vae"]
        self.hparams = {"n_voxels": int(n_voxels), "out_dim": int(out_dim), "size": size}
        self.encoder = nn.Sequential(nn.Linear(n_voxels, e1), nn.LeakyReLU(), nn.Linear(e1, e2))
        self.mu, self.log_var = nn.Linear(e2, out_dim), nn.Linear(e2, out_dim)
        self.decoder = nn.Sequential(_fbl(out_dim, dec), _fbl(dec, dec), _fbl(dec, dec), nn.Linear(dec, n_voxels))

    @classmethod
    def from_hparams(cls, hp: dict):
        return cls(hp["n_voxels"], hp["out_dim"], hp["size"])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check(x, self.hparams["n_voxels"], "latent VAE")
        h = self.encoder(x)
        return self.mu(h), self.log_var(h)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The predicted latent: sampled while training (from ``generator``), μ in eval mode."""
        mu, log_var = self.encode(x)
        if not self.training:
            return mu
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return mu + eps * torch.exp(0.5 * log_var)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def vae_loss(model: LatentVAE, x: torch.Tensor, target: torch.Tensor,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Their loss: MSE of the fMRI reconstruction + MSE of the sampled latent to the target (1:1,
    no KL term)."""
    z = model(x, generator)
    recon = F.mse_loss(model.reconstruct(z), x)
    latent = F.mse_loss(z, target)
    return {"loss": recon + latent, "fmri_recon": recon.detach(), "latent": latent.detach()}


class LatentGCN(SavedNetwork, nn.Module):
    """(B, N, F) ROI-node features → (B, D) latent over a fixed functional graph (module doc)."""

    FILE_KEY = "regressor"

    def __init__(self, n_nodes: int, node_features: int, out_dim: int, laplacian: torch.Tensor, size: str = "tiny"):
        super().__init__()
        width, c, hidden = _size(size)["gcn"]
        if tuple(laplacian.shape) != (n_nodes, n_nodes):
            raise ValueError(f"latent GCN: laplacian {tuple(laplacian.shape)} does not match {n_nodes} nodes")
        self.hparams = {"n_nodes": int(n_nodes), "node_features": int(node_features), "out_dim": int(out_dim),
                        "size": size}  # fmt: skip
        self.cheb1 = ChebConv(node_features, width, 4, laplacian)
        self.cheb2 = ChebConv(width, width, 3, laplacian)
        self.norm = nn.BatchNorm1d(width)
        self.conv_in = nn.Conv1d(1, c, 1)
        self.residual = _SharedResidual(nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.LeakyReLU()), 2)
        self.conv_out = nn.Conv1d(c, 1, 1)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))

    @classmethod
    def from_hparams(cls, hp: dict):
        lap = torch.zeros(hp["n_nodes"], hp["n_nodes"])  # the saved buffer replaces it on loading
        return cls(hp["n_nodes"], hp["node_features"], hp["out_dim"], lap, hp["size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        if x.ndim != 3 or x.shape[1:] != (hp["n_nodes"], hp["node_features"]):
            raise ValueError(f"latent GCN: expected node features (B, {hp['n_nodes']}, {hp['node_features']}), "
                             f"got {tuple(x.shape)}")  # fmt: skip
        h = F.relu(self.cheb1(x))
        h2 = self.cheb2(h)  # BatchNorm over (batch x nodes), as torch_geometric's BatchNorm on node rows
        h2 = self.norm(h2.reshape(-1, h2.shape[-1])).reshape(h2.shape)
        h = h + F.leaky_relu(h2)
        pooled = h.mean(1)[:, None]  # global mean pool over the nodes -> (B, 1, width)
        out = F.leaky_relu(self.conv_in(pooled))
        out = self.conv_out(self.residual(out))[:, 0]
        return self.head(out)
