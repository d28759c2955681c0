"""Paper 003's regressors (building blocks for family ``latentreg``): shapes at both sizes, the
shared residual blocks of their code, the "VAE"'s loss without a KL term, and the GCN's graph
saved with its weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmrirecon.models.graph import scaled_laplacian
from fmrirecon.models.latentreg import LatentCNN, LatentGCN, LatentVAE, vae_loss
from fmrirecon.train.files import save_model


def test_image_and_text_cnns_shapes_and_shared_residual_blocks():
    torch.manual_seed(0)
    x = torch.randn(3, 50)
    img = LatentCNN(50, 64, "image", "paper")
    assert img(x).shape == (3, 64)
    # one block of two k11 convolutions (64 -> 64), applied twice: its weights exist once
    convs = [m for m in img.residual.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [tuple(c.weight.shape) for c in convs] == [(64, 64, 11), (64, 64, 11)] and img.residual.repeats == 2
    assert img.head[0].in_features == 50 and img.head[2].out_features == 512
    txt = LatentCNN(50, 14 * 8, "text", "paper")
    convs = [m for m in txt.residual.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 3 and convs[0].kernel_size == (7,) and txt.residual.repeats == 3
    assert [txt.head[i].out_features for i in (0, 2, 4)] == [1024, 2048, 112]
    assert LatentCNN(50, 16, "text", "tiny")(x).shape == (3, 16)


def test_vae_loss_is_fmri_reconstruction_plus_latent_mse_without_kl():
    torch.manual_seed(0)
    vae = LatentVAE(40, 12, "tiny")
    x, target = torch.randn(5, 40), torch.randn(5, 12)
    loss = vae_loss(vae, x, target, torch.Generator().manual_seed(1))
    vae.train()
    mu, log_var = vae.encode(x)
    z = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(1)) * torch.exp(0.5 * log_var)
    want = F.mse_loss(vae.reconstruct(z), x) + F.mse_loss(z, target)
    torch.testing.assert_close(loss["loss"], want)
    vae.eval()  # the prediction is the mean, a function of the fMRI
    torch.testing.assert_close(vae(x), vae(x))
    torch.testing.assert_close(vae(x), vae.encode(x)[0])


def test_gcn_forward_and_graph_saved_with_the_weights(tmp_path):
    torch.manual_seed(0)
    w = torch.tensor([[0.0, 0.8, -0.6], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0]])
    gcn = LatentGCN(3, 20, 32, scaled_laplacian(w), "tiny").eval()
    x = torch.randn(4, 3, 20)
    out = gcn(x)
    assert out.shape == (4, 32)
    save_model(str(tmp_path / "gcn.safetensors"), {"regressor": gcn}, gcn.hparams)
    again = LatentGCN.from_file(str(tmp_path / "gcn.safetensors")).eval()
    torch.testing.assert_close(again.cheb1.laplacian, scaled_laplacian(w))
    torch.testing.assert_close(again(x), out)
    paper = LatentGCN(3, 20, 32, scaled_laplacian(w), "paper")
    assert paper.cheb1.weight.shape == (4, 20, 512) and paper.cheb2.weight.shape == (3, 512, 512)
    assert paper.head[0].out_features == 1024
