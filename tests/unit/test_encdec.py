"""Papers 002 / 000: every loss term on tiny tensors against a direct reference, the networks'
defining properties, label maps, the stage functions end to end on tiny data, resume, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmrirecon.config import validate_config
from fmrirecon.errors import InputError
from fmrirecon.labels.foreground import binarise, iou, saliency_maps
from fmrirecon.losses import feature_mse, fmri_loss, image_loss, loop_loss, perceptual_cosine, total_variation
from fmrirecon.models.decoders import AttentionDecoder, GuidedDecoder, SelfAttention2d, SSLDecoder
from fmrirecon.models.encoder import ImageEncoder, SpaceFeatureReadout, random_shift
from fmrirecon.train.schedules import lr_at

REPO = Path(__file__).resolve().parents[2]


# -- losses -------------------------------------------------------------------------------------
def test_fmri_loss_matches_paper_definition_and_is_zero_for_a_perfect_prediction():
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    p, t = pred.numpy().astype(np.float64), true.numpy().astype(np.float64)
    cos = (p * t).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(t, axis=1)
    ref = np.mean(0.85 * ((p - t) ** 2).mean(1) + 0.15 * (1 - cos))
    assert fmri_loss(pred, true, 0.85).item() == pytest.approx(ref, rel=1e-5)
    assert fmri_loss(true, true, 0.85).item() == pytest.approx(0.0, abs=1e-6)
    # alpha = 0: only the angle matters, so a positive rescaling costs nothing
    assert fmri_loss(3.0 * true, true, 0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_total_variation_of_constant_and_step_images():
    flat = torch.full((1, 3, 4, 4), 0.3)
    assert total_variation(flat).item() == 0.0
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal neighbour pairs differ by 1
    assert total_variation(step).item() == pytest.approx(4 / 12)


def test_perceptual_cosine_is_zero_for_equal_features_and_ignores_per_location_scale():
    g = torch.Generator().manual_seed(1)
    feats = [torch.rand(2, 4, 3, 3, generator=g) + 0.1, torch.rand(2, 6, 2, 2, generator=g) + 0.1]
    assert perceptual_cosine(feats, feats).item() == pytest.approx(0.0, abs=1e-6)
    scaled = [f * (torch.rand(2, 1, *f.shape[2:], generator=g) + 0.5) for f in feats]
    assert perceptual_cosine(scaled, feats).item() == pytest.approx(0.0, abs=1e-6)  # channel-normalised
    other = [torch.rand(f.shape, generator=g) for f in feats]
    assert perceptual_cosine(other, feats).item() > 0.01


def test_feature_mse_and_image_loss_against_references():
    g = torch.Generator().manual_seed(2)
    a = [torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 5, 2, 2, generator=g)]
    b = [torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 5, 2, 2, generator=g)]
    ref = np.mean([((x - y).numpy() ** 2).mean() / (y.numpy() ** 2).mean() for x, y in zip(a, b)])
    assert feature_mse(a, b).item() == pytest.approx(ref, rel=1e-5)
    assert feature_mse(a, a).item() == 0.0
    assert feature_mse([torch.zeros_like(f) for f in b], b).item() == pytest.approx(1.0, rel=1e-6)
    img, tgt = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    w = {"l1": 2.0, "perceptual": 0.5, "tv": 0.1}
    terms = image_loss(img, tgt, a, b, w)
    assert terms["l1"].item() == pytest.approx(2.0 * (img - tgt).abs().mean().item(), rel=1e-6)
    assert terms["total"].item() == pytest.approx(
        terms["l1"].item() + 0.5 * perceptual_cosine(a, b).item() + 0.1 * total_variation(img).item(), rel=1e-6
    )
    assert image_loss(tgt, tgt, a, a, w)["total"].item() == pytest.approx(0.1 * total_variation(tgt).item(), abs=1e-6)


def test_loop_loss_is_zero_when_the_decoder_inverts_the_encoder_exactly():
    """E linear with full row rank, D = its pseudo-inverse: E(D(r)) = r, so both loop terms (and
    paper 002's D-E term, the same composition) vanish; a perturbed decoder does not."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(10, 48, generator=g, dtype=torch.float64)
    enc = lambda img: img.flatten(1) @ w.t()  # noqa: E731  images (B, 3, 4, 4) -> 10 voxels
    dec = lambda r: (r @ torch.linalg.pinv(w).t()).view(-1, 3, 4, 4)  # noqa: E731
    r = torch.randn(6, 10, generator=g, dtype=torch.float64)
    assert loop_loss(enc, [dec(r), dec(r)], r, 0.85).item() == pytest.approx(0.0, abs=1e-6)
    noisy = dec(r) + 0.1 * torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    assert loop_loss(enc, [noisy], r, 0.85).item() > 1e-3


# -- networks -----------------------------------------------------------------------------------
def test_space_feature_readout_equals_the_explicit_per_voxel_sum():
    torch.manual_seed(0)
    ro = SpaceFeatureReadout(n_voxels=3, channels=2, grid=4)
    torch.nn.init.normal_(ro.channel)
    f = torch.randn(2, 2, 4, 4)
    padded = torch.nn.functional.pad(f, (1, 1, 1, 1)).numpy()
    ws = ro.spatial.detach().numpy().reshape(3, 4, 4)
    wc = ro.channel.detach().numpy().reshape(3, 2, 9)  # unfold order: channel-major, then 3x3 offsets
    ref = np.zeros((2, 3))
    for b in range(2):
        for v in range(3):
            for c in range(2):
                for k in range(9):
                    dy, dx = divmod(k, 3)
                    ref[b, v] += (padded[b, c, dy : dy + 4, dx : dx + 4] * ws[v]).sum() * wc[v, c, k]
    np.testing.assert_allclose(ro(f).detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_encoder_shapes_frozen_backbone_and_nonnegative_branch_weights():
    enc = ImageEncoder(n_voxels=11, size="tiny")
    x = torch.rand(2, 3, 32, 32)
    assert enc(x).shape == (2, 11)
    assert all(not p.requires_grad for p in enc.backbone.parameters())
    assert not any(k.startswith("backbone") for k in enc.state_dict())  # not saved with the model
    with torch.no_grad():
        enc.combine.fill_(-1.0)  # forced non-negative: negative weights switch a branch off
    assert torch.allclose(enc(x), enc.bias.expand(2, 11))
    assert torch.equal(enc.from_features(enc.backbone_features(x)), enc(x))


def test_random_shift_moves_content_by_at_most_max_shift():
    img = torch.zeros(4, 1, 9, 9)
    img[:, :, 4, 4] = 1.0
    out = random_shift(img, 2, torch.Generator().manual_seed(0))
    for o in out:
        y, x = divmod(int(o.argmax()), 9)
        assert abs(y - 4) <= 2 and abs(x - 4) <= 2
    assert torch.equal(random_shift(img, 0, torch.Generator()), img)


def test_guided_decoder_attention_formula_and_ablation():
    torch.manual_seed(0)
    r = torch.randn(2, 20)
    guided = GuidedDecoder(20, "tiny", lam=0.7, mu=0.3)
    zero, ones = torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    assert not torch.allclose(guided(r, zero), guided(r, ones))  # the map matters
    # FA = 1 everywhere gives (λ + μ)·ConvF, exactly what an unguided decoder with μ' = λ + μ gives
    plain = GuidedDecoder(20, "tiny", lam=0.0, mu=1.0)
    plain.load_state_dict(guided.state_dict())
    assert torch.allclose(guided(r, ones), plain(r), atol=1e-6)
    assert not plain.uses_attention and plain(r, zero).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        guided(r, None)


def test_self_attention_rows_are_distributions_and_gate_starts_closed():
    att = SelfAttention2d(channels=4, qk=2)
    x = torch.randn(2, 4, 3, 3)
    a = att.attention(x)
    assert a.shape == (2, 9, 9) and torch.allclose(a.sum(-1), torch.ones(2, 9), atol=1e-6)
    assert torch.equal(att(x), x)  # gamma = 0 at initialisation
    with torch.no_grad():
        att.gamma.fill_(1.0)
    ref = x + torch.bmm(att.v(x).flatten(2), a.transpose(1, 2)).view_as(x)
    assert torch.allclose(att(x), ref, atol=1e-6)


def test_decoder_output_ranges_and_sizes():
    r = torch.randn(3, 15)
    for net in (SSLDecoder(15, "tiny"), GuidedDecoder(15, "tiny", 0.0, 1.0)):
        out = net(r)
        assert out.shape == (3, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    fa = AttentionDecoder(15, "tiny")(r)
    assert fa.shape == (3, 1, 32, 32) and fa.min() >= 0 and fa.max() <= 1


def test_sgdr_schedule_warms_up_decays_and_restarts():
    s = {"lr": 0.03, "lr_min": 4e-5, "schedule": "sgdr", "cycles": 4, "warmup_fraction": 0.1}
    total = 400  # 4 cycles of 100 steps, 10 warm-up steps each
    lrs = [lr_at(i, total, s) for i in range(total)]
    assert lrs[9] == pytest.approx(0.03)  # end of the linear warm-up
    assert lrs[0] < lrs[5] < lrs[9]
    assert lrs[99] == pytest.approx(4e-5, rel=0.05)  # bottom of the first cycle
    assert lrs[100] == lrs[0] and lrs[109] == pytest.approx(0.03)  # warm restart
    assert all(lrs[i] >= lrs[i + 1] for i in range(10, 99))
    cos = {"lr": 1.0, "lr_min": 0.0, "schedule": "cosine"}
    assert lr_at(50, 101, cos) == pytest.approx(0.5, abs=0.01)


# -- label maps ----------------------------------------------------------------------------------
def test_iou_against_a_direct_count():
    a = np.zeros((1, 4, 4)); a[0, :2] = 1.0  # 8 px
    b = np.zeros((1, 4, 4), bool); b[0, 1:3] = True  # 8 px, 4 shared
    assert iou(a, b)[0] == pytest.approx(4 / 12)


def test_binarise_recovers_a_blob_and_saliency_finds_an_object():
    yy, xx = np.mgrid[:32, :32]
    blob = ((yy - 14) ** 2 + (xx - 18) ** 2 < 36).astype(float)
    obj = blob * 0.8 + 0.1 * np.random.default_rng(0).random((32, 32))
    assert iou(binarise(obj)[None].astype(float), blob[None].astype(bool))[0] > 0.85
    img = np.full((1, 48, 48, 3), 120, np.uint8)  # a small odd-coloured object on a plain ground
    img[0, 18:26, 22:30] = (250, 30, 30)
    truth = np.zeros((1, 48, 48), bool)
    truth[0, 18:26, 22:30] = True
    sal = saliency_maps(img)
    assert sal[0][truth[0]].mean() > 3 * sal[0][~truth[0]].mean()
    assert iou(binarise(sal[0])[None].astype(float), truth)[0] > 0.25  # blobby, but on the object


# -- the stages end to end on tiny data -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_unit(tmp_path_factory, sim_raw, sim_images):
    from fmrirecon.data.steps import mask_roi

    out = tmp_path_factory.mktemp("encdec") / "roi-VC" / "data.h5"
    src = {
        "reader": "god_bdata",
        "files": {"subject": str(sim_raw / "Subject1.h5"), "unlabeled": str(sim_raw / "Subject1_unlabeled.h5")},
        "truth": str(sim_raw / "truth.h5"),
    }  # fmt: skip
    comps = {"VC": ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA"]}
    mask_roi(src, str(sim_images), "1", "VC", comps, "run", "metadata", str(out), "sim", "hash")
    return out


def _settings():
    cfg = validate_config({})
    for block in ("encoder", "attention_decoder", "ssl", "loopencdec"):
        cfg[block]["train"].update(epochs=1, batch_size=32)
    cfg["encoder"]["max_shift"] = 0
    cfg["training"]["checkpoint_every_steps"] = 1
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_unit, sim_images):
    """Encoder, label maps, attention decoder for the tiny unit (one epoch each)."""
    from fmrirecon.methods.encdec import attention as att_stage, encoder as enc_stage

    cfg = _settings()
    root = tmp_path_factory.mktemp("models")
    enc = root / "encoder.safetensors"
    enc_stage.pretrain_encoder(str(tiny_unit), str(sim_images), cfg["encoder"], cfg["training"], 0,
                           str(root / "ck-enc"), str(enc), str(root / "enc.tsv"), str(root / "acc.tsv"))  # fmt: skip
    maps = root / "label_maps.h5"
    att_stage.make_label_maps(str(sim_images), cfg["label_maps"], str(maps), str(root / "labels.json"))
    att = root / "attention.safetensors"
    att_stage.train_attention_decoder(str(tiny_unit), str(sim_images), str(maps), cfg["attention_decoder"],
                                  cfg["training"], 0, str(root / "ck-att"), str(att),
                                  str(root / "att.tsv"), str(root / "att.json"))  # fmt: skip
    return {"cfg": cfg, "root": root, "encoder": enc, "maps": maps, "attention": att}


def test_stage_outputs_and_summaries(trained):
    root = trained["root"]
    acc = np.genfromtxt(root / "acc.tsv", names=True, delimiter="\t")
    assert len(acc) > 0 and np.isfinite(acc["r"]).all() and np.isfinite(acc["noise_ceiling"]).all()
    labels = json.loads((root / "labels.json").read_text())
    assert 0 <= labels["train"]["iou_vs_truth"] <= 1 and "iou_vs_truth_saliency" in labels["train"]
    att = json.loads((root / "att.json").read_text())
    assert {"iou_vs_truth", "iou_vs_truth_shuffled", "iou_vs_label_maps"} <= set(att)
    log = (root / "enc.tsv").read_text().splitlines()
    assert log[0].split("\t")[:3] == ["epoch", "step", "lr"] and len(log) == 2
    assert not (root / "ck-enc").exists()  # the checkpoint is removed once the outputs exist


@pytest.mark.parametrize("method,family,overrides", [
    ("ssl", "ssl", {}),
    ("ssl-supervised", "ssl", {"losses": {"ED": 0.0, "DE": 0.0}}),
    ("loopencdec", "loopencdec", {}),
    ("loopencdec-nofa-noloop", "loopencdec", {"attention": {"lambda": 0.0, "mu": 1.0}, "losses": {"loop": 0.0}}),
])  # fmt: skip
def test_decoders_train_and_reconstruct(trained, tiny_unit, sim_images, tmp_path, method, family, overrides):
    from fmrirecon.config import _deep_merge
    from fmrirecon.data.prepared import read_recon_file
    from fmrirecon.methods.encdec import decoder as dec_stage

    cfg = trained["cfg"]
    settings = _deep_merge(cfg[family], overrides)
    model = tmp_path / "decoder.safetensors"
    dec_stage.train_decoder(method, family, str(tiny_unit), str(sim_images), str(trained["encoder"]),
                        str(trained["attention"]), settings, cfg["training"], 0, str(tmp_path / "ck"),
                        str(model), str(tmp_path / "losses.tsv"))  # fmt: skip
    header = (tmp_path / "losses.tsv").read_text().splitlines()[0].split("\t")
    expected = {"ssl": {"D", "ED", "DE"}, "ssl-supervised": {"D"}, "loopencdec": {"image", "loop", "imagenet"},
                "loopencdec-nofa-noloop": {"image", "imagenet"}}[method]  # fmt: skip
    assert expected <= set(header) and not ({"ED", "DE", "loop"} - expected) & set(header)
    dec_stage.reconstruct_decoder(method, str(tiny_unit), str(sim_images), str(model),
                              str(trained["attention"]), cfg["training"], 0, str(tmp_path / "recon.h5"))  # fmt: skip
    rec = read_recon_file(tmp_path / "recon.h5")
    assert rec["images"].shape == (10, 32, 32, 3) and rec["attrs"]["method"] == method


def test_voxel_count_mismatch_and_missing_inputs_fail_with_one_line(trained, tiny_unit, sim_images, tmp_path):
    from fmrirecon.methods.encdec import attention as att_stage, encoder as enc_stage
    from fmrirecon.models.backbone import Backbone

    with pytest.raises(InputError, match=r"encoder predicts \d+ voxels but the fMRI has 5"):
        enc_stage.load_encoder(str(trained["encoder"]), 5, torch.device("cpu"))
    with pytest.raises(InputError, match="label map file not found"):
        att_stage.read_label_maps(str(tmp_path / "nope.h5"), "train", 3)
    with pytest.raises(InputError, match="vgg19.pth"):
        Backbone("vgg19", 32, str(tmp_path))
    with pytest.raises(InputError, match="model weights file not found"):
        enc_stage.load_encoder(str(tmp_path / "missing.safetensors"), None, torch.device("cpu"))


RESUME_SCRIPT = """
import sys, json, logging
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {pkg!r})
from fmrirecon.methods.encdec.decoder import train_decoder
a = json.loads(sys.argv[1])
train_decoder(*a)
"""


def test_killed_decoder_training_resumes_to_identical_weights(trained, tiny_unit, sim_images, tmp_path):
    """SIGKILL at step 2 of 4, rerun: the same weights and loss log as an uninterrupted run."""
    cfg = trained["cfg"]
    settings = {**cfg["loopencdec"], "train": {**cfg["loopencdec"]["train"], "epochs": 2}}
    script = RESUME_SCRIPT.format(pkg=str(REPO / "workflow"))

    def run(tag, kill=None):
        out = tmp_path / tag
        args = ["loopencdec", "loopencdec", str(tiny_unit), str(sim_images), str(trained["encoder"]),
                str(trained["attention"]), settings, cfg["training"], 0, str(out / "ck"),
                str(out / "d.safetensors"), str(out / "losses.tsv")]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if kill:
            env.update(FMRIRECON_KILL_AT_STEP=str(kill), FMRIRECON_TEST_HOOKS="1")
        return subprocess.run([sys.executable, "-c", script, json.dumps(args)], env=env,
                              capture_output=True, text=True), out  # fmt: skip

    proc, _ = run("plain")
    assert proc.returncode == 0, proc.stderr[-2000:]
    killed, out = run("resumed", kill=2)
    assert killed.returncode == -9 and not (out / "d.safetensors").exists()
    assert (out / "ck" / "checkpoint.pt").exists()
    again, _ = run("resumed", kill=2)  # the marker keeps the rerun from killing itself again
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from step" in again.stderr
    a, b = load_file(tmp_path / "plain" / "d.safetensors"), load_file(out / "d.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda p: [line.rsplit("\t", 1)[0] for line in p.read_text().splitlines()]  # noqa: E731  (wall_s)
    assert strip(tmp_path / "plain" / "losses.tsv") == strip(out / "losses.tsv")
    assert math.isfinite(float(strip(out / "losses.tsv")[-1].split("\t")[3]))


def test_paper_sizes_build_with_the_papers_dimensions():
    """The GPU-size networks: 112 px (paper 002), attention decoder 512x10x10 -> 68x68 attention."""
    r = torch.randn(1, 12)
    assert SSLDecoder(12, "paper")(r).shape == (1, 3, 112, 112)
    assert GuidedDecoder(12, "paper")(r, torch.ones(1, 1, 112, 112)).shape == (1, 3, 112, 112)
    att = AttentionDecoder(12, "paper")
    assert att.fc.out_features == 512 * 10 * 10 and att.attn.q.out_channels == 8
    assert att(r).shape == (1, 1, 112, 112)
    enc = ImageEncoder(12, "paper")
    assert enc.backbone.input_size == 112 and enc(torch.rand(1, 3, 112, 112)).shape == (1, 12)
    assert max(br.out_size for br in enc.branches) == 28  # paper 002's 28x28 / 14x14 grids


def test_voxel_accuracy_matches_numpy_correlation_and_divides_by_the_ceiling():
    from fmrirecon.methods.encdec.encoder import voxel_accuracy

    rng = np.random.default_rng(0)
    true = rng.normal(size=(30, 4))
    pred = true + rng.normal(size=(30, 4))
    pred[:, 3] = 1.0  # a constant prediction has no correlation
    ceiling = np.array([0.5, 1.0, 0.0, 0.8])
    out = voxel_accuracy(pred, true, ceiling)
    ref = [np.corrcoef(pred[:, v], true[:, v])[0, 1] for v in range(3)]
    np.testing.assert_allclose(out["r"][:3], ref, rtol=1e-10)
    assert out["r"][3] == 0.0
    np.testing.assert_allclose(out["r_normalised"][[0, 1]], [ref[0] / 0.5, ref[1]], rtol=1e-10)
    assert np.isnan(out["r_normalised"][2])  # no ceiling, no normalised value
    assert np.isnan(voxel_accuracy(pred, true, None)["r_normalised"]).all()
