"""Paper 001 (CAD): contrastive losses, MAE shapes, cross-modal fusion, fMRI conditioning of the
UNet, the LDM freezing, and the user-facing errors. Tiny tensors, CPU, seconds."""

from __future__ import annotations

import pytest
import torch

from fmrirecon.errors import InputError
from fmrirecon.losses_contrastive import cross_contrastive, double_contrastive, self_contrastive
from fmrirecon.models.mae import CrossModalFusion, FmriMAE, ImageMAE, random_masking


def _pairs(n=16, k=40, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, generator=g)
    return a, a + noise * torch.randn(n, k, generator=g)


@pytest.mark.parametrize("loss", [cross_contrastive, self_contrastive])
def test_contrastive_loss_is_minimal_for_matching_pairs(loss):
    a, b = _pairs()
    matched = loss(a, b, 0.1)
    for seed in range(5):
        perm = torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))
        assert loss(a, b[perm], 0.1) > matched + 1.0
    # identical views: the positive is the best possible, the loss is near its floor
    assert loss(a, a, 0.05) < 0.01


def test_cross_contrastive_negatives_come_from_the_first_view():
    """Eq. 1: the denominator sums v_i^{dm1} . v_j^{dm1}, so moving view-1 samples apart helps."""
    a, b = _pairs(noise=0.0)
    close = a[:1].repeat(len(a), 1) + 0.1 * a  # view-1 decodings nearly identical: hard negatives
    assert cross_contrastive(close, close, 0.1) > cross_contrastive(a, a, 0.1)


def test_double_contrastive_weights_the_two_losses():
    a, b = _pairs()
    out = double_contrastive(a, b, a, 0.1, gamma_c=0.5, gamma_s=2.0)
    assert torch.isclose(out["loss"], 0.5 * out["cross_contrastive"] + 2.0 * out["self_contrastive"])


def test_fmri_mae_wrap_pads_and_masks_with_the_right_shapes():
    mae = FmriMAE(100, patch_size=16, embed_dim=32, depth=1, num_heads=4, decoder_embed_dim=16,
                  decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    assert mae.num_patches == 7 and mae.padded == 112
    v = torch.arange(200, dtype=torch.float32).reshape(2, 100)
    padded = mae.pad(v)
    assert padded.shape == (2, 112) and torch.equal(padded[:, 100:], v[:, :12])  # wrapped around
    g = torch.Generator().manual_seed(0)
    h, restore, mask = mae.encode(v, 0.75, g)
    assert h.shape == (2, 2, 32) and restore.shape == (2, 7)  # round(7 * 0.25) = 2 visible
    assert mask.shape == (2, 7) and torch.equal(mask.sum(1), torch.tensor([5.0, 5.0]))
    assert mae.decode(h, restore).shape == (2, 112)
    assert mae.features(v).shape == (2, 7, 32)  # unmasked: every patch


def test_masking_is_reproducible_from_the_generator():
    a = random_masking(3, 10, 0.5, torch.Generator().manual_seed(4), "cpu")
    b = random_masking(3, 10, 0.5, torch.Generator().manual_seed(4), "cpu")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    keep, restore, mask = a
    # the kept ids are exactly the unmasked positions
    assert torch.equal(torch.zeros(3, 10).scatter(1, keep, 1.0), 1 - mask)


def test_image_mae_and_cross_modal_fusion_shapes():
    img = ImageMAE(16, patch_size=4, embed_dim=24, depth=1, num_heads=4, decoder_embed_dim=16,
                   decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    u = torch.rand(3, 3, 16, 16) * 2 - 1
    assert img.patchify(u).shape == (3, 16, 48)
    h_i, r_i, _ = img.encode(u, 0.5, torch.Generator().manual_seed(0))
    assert h_i.shape == (3, 8, 24)
    h_f = torch.randn(3, 5, 32)
    fusion = CrossModalFusion(fmri_dim=32, image_dim=24)
    f_f, f_i = fusion(h_f, h_i)
    assert f_f.shape == h_f.shape and f_i.shape == h_i.shape  # each stream keeps its own tokens
    assert img.decode(f_i, r_i).shape == (3, 16, 48)
    with pytest.raises(InputError, match="not a multiple"):
        ImageMAE(18, 4, 8, 1, 2, 8, 1, 2)


# -- the diffusion side ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_unet():
    from fmrirecon.models.ldm import build_unet

    torch.manual_seed(0)
    return build_unet("tiny", latent_size=4, cross_attention_dim=16, pooled_dim=8).eval()


@pytest.fixture(scope="module")
def conditioner():
    from fmrirecon.models.ldm import FmriConditioner

    torch.manual_seed(1)
    mae = FmriMAE(40, 8, 16, 1, 2, 8, 1, 2)
    return FmriConditioner(mae, cross_dim=16, pooled_dim=8, n_tokens=6).eval()


def _sample(unet, cond, v, seed=0, sampler="ddim"):
    from fmrirecon.models.ldm import sample, sampling_scheduler, train_scheduler

    noise = torch.randn(len(v), 4, 4, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        tokens, pooled = cond(v)
        return sample(unet, sampling_scheduler(train_scheduler(), sampler), tokens, pooled, noise, 3)


@pytest.mark.parametrize("sampler", ["ddim", "plms"])
def test_fmri_conditioning_reaches_the_unet(tiny_unet, conditioner, sampler):
    g = torch.Generator().manual_seed(2)
    v1, v2 = torch.randn(1, 40, generator=g), torch.randn(1, 40, generator=g)
    a = _sample(tiny_unet, conditioner, v1, sampler=sampler)
    again = _sample(tiny_unet, conditioner, v1, sampler=sampler)
    other = _sample(tiny_unet, conditioner, v2, sampler=sampler)
    assert torch.equal(a, again)  # same fMRI, same seed: identical sample
    assert (a - other).abs().max() > 1e-3  # different fMRI, same noise: a different sample


def test_both_condition_paths_are_used(tiny_unet):
    """Cross-attention tokens and the pooled vector (time embedding) each change the prediction."""
    z, t = torch.randn(1, 4, 4, 4), torch.tensor(500)
    tok, pooled = torch.randn(1, 3, 16), torch.randn(1, 8)
    with torch.no_grad():
        base = tiny_unet(z, t, encoder_hidden_states=tok, class_labels=pooled).sample
        new_tok = tiny_unet(z, t, encoder_hidden_states=tok + 1, class_labels=pooled).sample
        new_pool = tiny_unet(z, t, encoder_hidden_states=tok, class_labels=pooled + 1).sample
    assert (base - new_tok).abs().max() > 1e-4 and (base - new_pool).abs().max() > 1e-4


def test_ldm_fine_tuning_trains_only_the_condition_layers_and_the_fmri_conditioner(conditioner):
    from fmrirecon.models.ldm import build_unet, freeze_for_fmri_tuning

    unet = build_unet("tiny", latent_size=4, cross_attention_dim=16, pooled_dim=8)
    params = freeze_for_fmri_tuning(unet)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    # MinD-Vis' set: cross-attention, the layer norm in front of it, the condition's time-embedding projection
    assert any(".attn2." in n for n in trainable) and any(n.startswith("class_embedding.") for n in trainable)
    assert all(".attn2." in n or n.endswith(("norm2.weight", "norm2.bias")) or n.startswith("class_embedding.") for n in trainable)
    assert not any(".resnets." in n for n in trainable)  # the ResNet blocks' own norm2 stays frozen
    assert len(params) == len(trainable)
    assert not any(p.requires_grad for n, p in unet.named_parameters() if ".attn1." in n or "time_embedding" in n)
    assert all(p.requires_grad for p in conditioner.parameters())
    # a gradient step through the frozen UNet reaches the fMRI encoder
    tokens, pooled = conditioner(torch.randn(2, 40))
    assert tokens.shape == (2, 6, 16) and pooled.shape == (2, 8)
    out = unet(torch.randn(2, 4, 4, 4), torch.tensor([10, 900]), encoder_hidden_states=tokens, class_labels=pooled)
    out.sample.square().mean().backward()
    assert conditioner.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in unet.named_parameters() if n not in trainable)


def test_every_condition_token_sees_every_voxel_patch(conditioner):
    """The channel mapper mixes all L patch tokens into each condition token (MinD-Vis): changing
    the voxels of one patch moves every condition token."""
    v = torch.randn(1, 40, generator=torch.Generator().manual_seed(3))
    w = v.clone()
    w[0, :8] += 1.0  # the first patch of 8 voxels only
    with torch.no_grad():
        a, _ = conditioner(v)
        b, _ = conditioner(w)
    assert ((a - b).abs().amax(-1) > 1e-5).all()


# -- clear errors ---------------------------------------------------------------------------------
def test_missing_pretrained_ldm_folder_is_a_clear_error(tmp_path):
    from fmrirecon.models.ldm import load_ldm_folder

    with pytest.raises(InputError, match="cad.pretrained_ldm: .*not a folder"):
        load_ldm_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="expected vae/config.json"):
        load_ldm_folder(tmp_path / "empty")


def test_voxel_count_that_does_not_fit_the_pretrained_patches_is_a_clear_error():
    mae = FmriMAE(100, 16, 16, 1, 2, 8, 1, 2)
    mae.check_fits(97, "ok")  # 97 voxels still make 7 patches of 16
    with pytest.raises(InputError, match=r"130 voxels make 9 patches of 16.*expects 100 voxels \(7 patches\)"):
        mae.pad(torch.zeros(1, 130))


def test_cross_attention_width_mismatch_is_a_clear_error(tiny_unet):
    from fmrirecon.models.ldm import check_unet_fits

    check_unet_fits(tiny_unet, 16, 8, "unet")
    with pytest.raises(InputError, match="cross_attention_dim is 16 but the fMRI encoder's condition tokens are 32"):
        check_unet_fits(tiny_unet, 32, 8, "unet")
    with pytest.raises(InputError, match="projection_class_embeddings_input_dim is 8"):
        check_unet_fits(tiny_unet, 16, 4, "unet")


def test_ldm_folder_round_trip_and_width_check(tmp_path, tiny_unet):
    """A diffusers folder we write reads back; the fMRI side refuses a UNet of another width."""
    from fmrirecon.methods.cad.ldm import _fmri_conditioned
    from fmrirecon.models.ldm import build_autoencoder, load_ldm_folder, train_scheduler

    build_autoencoder("kl", "tiny").save_pretrained(tmp_path / "ldm" / "vae")
    tiny_unet.save_pretrained(tmp_path / "ldm" / "unet")
    train_scheduler().save_pretrained(tmp_path / "ldm" / "scheduler")
    ldm = load_ldm_folder(tmp_path / "ldm")
    assert ldm["kind"] == "kl" and ldm["unet"].config.cross_attention_dim == 16
    mae = FmriMAE(40, 8, 16, 1, 2, 8, 1, 2)
    _fmri_conditioned(tmp_path / "ldm", mae, {"cross_attention_dim": 16, "pooled_dim": 8, "condition_tokens": 4})
    with pytest.raises(InputError, match="cross_attention_dim is 16"):
        _fmri_conditioned(tmp_path / "ldm", mae, {"cross_attention_dim": 64, "pooled_dim": 8, "condition_tokens": 4})
