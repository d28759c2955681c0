"""Paper 003's family plugin: img2img with classifier-free guidance, early stopping on a
validation split (and its resume), the validation split itself, Table 3's statistics, the
simulated captions, the stage keys (what is shared, what reruns) and the config checks."""

from __future__ import annotations

import types

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from fmrirecon.config import config_hash
from fmrirecon.errors import InputError
from fmrirecon.methods.cad.settings import stage_keys
from fmrirecon.methods.latentreg import check
from fmrirecon.methods.latentreg.dag import LatentregDag, branch_settings, stage_settings
from fmrirecon.methods.latentreg.regress import EarlyStopping, roi_columns, split_images, standardise
from fmrirecon.methods.latentreg.tables import latent_rows, per_image_mse
from fmrirecon.methods.latentreg.text import _where, truth_captions
from fmrirecon.models.ldm import img2img
from fmrirecon.train.loop import Trainer


# -- img2img -------------------------------------------------------------------------------------
class _Unet(nn.Module):
    """eps = 1 for a conditional row (tokens of ones), 0 for the unconditional (null = zeros)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, encoder_hidden_states):
        self.calls.append((x.shape[0], int(t)))
        eps = encoder_hidden_states.mean((1, 2))[:, None, None, None].expand_as(x)
        return types.SimpleNamespace(sample=eps)


class _Sched:
    """Records what img2img hands the scheduler (the guided eps and the start timestep)."""

    def __init__(self, steps_total=1000):
        self.total, self.outputs, self.noised_at = steps_total, [], None

    def set_timesteps(self, n):
        self.timesteps = torch.arange(self.total - 1, -1, -(self.total // n))[:n]

    def add_noise(self, z0, noise, t):
        self.noised_at = t.tolist()
        return z0 + noise

    def scale_model_input(self, x, t):
        return x

    def step(self, eps, t, z):
        self.outputs.append(eps.clone())
        return types.SimpleNamespace(prev_sample=z - 0.01 * eps)


def test_img2img_runs_strength_times_steps_and_guides_from_the_null_caption():
    unet, sched = _Unet(), _Sched()
    z0, noise = torch.zeros(3, 4, 2, 2), torch.ones(3, 4, 2, 2)
    tokens, null = torch.ones(3, 5, 8), torch.zeros(5, 8)
    img2img(unet, sched, z0, tokens, null, noise, steps=50, strength=0.8, guidance=5.0)
    assert len(unet.calls) == 40 and all(b == 6 for b, _ in unet.calls)  # conditional + unconditional rows
    assert sched.noised_at == [int(sched.timesteps[10])] * 3  # noised to the 11th of 50 timesteps
    assert [t for _, t in unet.calls] == sched.timesteps[10:].tolist()
    for eps in sched.outputs:  # eps_u + 5 (eps_c - eps_u) = 0 + 5 (1 - 0)
        torch.testing.assert_close(eps, torch.full_like(eps, 5.0))


def test_img2img_strength_zero_returns_the_start_latent():
    z0 = torch.randn(2, 4, 2, 2)
    out = img2img(_Unet(), _Sched(), z0, torch.ones(2, 5, 8), torch.zeros(5, 8), torch.randn(2, 4, 2, 2), 50, 0.0, 5.0)
    assert out is z0


def test_img2img_matches_diffusers_ddim_timesteps():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    unet = _Unet()
    img2img(unet, sched, torch.zeros(1, 4, 2, 2), torch.ones(1, 5, 8), torch.zeros(5, 8), torch.zeros(1, 4, 2, 2),
            50, 0.8, 1.0)  # fmt: skip
    sched.set_timesteps(50)
    # diffusers' StableDiffusionImg2ImgPipeline.get_timesteps: t_start = steps - int(steps * strength)
    assert [t for _, t in unet.calls] == sched.timesteps[50 - 40 :].tolist()


# -- early stopping ------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_keeps_the_best_weights():
    net = nn.Linear(2, 1, bias=False)
    vals = iter([3.0, 2.0, 2.5, 2.6, 2.7])

    def predict(_x):  # a scripted validation MSE; the weights record which epoch they are from
        v = next(vals)
        with torch.no_grad():
            net.weight.fill_(v)
        return torch.tensor([v**0.5])

    stopper = EarlyStopping(net, predict, None, torch.zeros(1), patience=2)
    history = []
    for epoch in range(1, 6):
        history.append(stopper(epoch))
        if stopper.stop_when(history):
            break
    assert epoch == 4 and stopper.best_epoch == 2  # epochs 3 and 4 did not improve on 2.0
    assert [round(r["val_mse"], 6) for r in history] == [3.0, 2.0, 2.5, 2.6]
    stopper.restore()
    assert float(net.weight.detach()[0, 0]) == pytest.approx(2.0)


def test_early_stopping_restores_the_best_weights_after_a_resume(tmp_path):
    """A job killed after its best epoch resumes with a fresh stopper: the history names the best
    epoch and the store beside the checkpoint still holds its weights."""
    net = nn.Linear(2, 1, bias=False)
    store = str(tmp_path / "ck" / "z-best.safetensors")
    vals = [3.0, 2.0, 2.5]

    def scripted(values):
        it = iter(values)

        def predict(_x):
            v = next(it)
            with torch.no_grad():
                net.weight.fill_(v)
            return torch.tensor([v**0.5])

        return predict

    first = EarlyStopping(net, scripted(vals), None, torch.zeros(1), patience=3, store=store)
    history = [first(e) for e in (1, 2, 3)]  # killed here: the checkpoint holds epoch 3's weights
    resumed = EarlyStopping(net, scripted([2.6, 2.7, 2.8]), None, torch.zeros(1), patience=3, store=store)
    assert not resumed.stop_when(history) and resumed.best_epoch == 2
    for e in (4, 5):
        history.append(resumed(e))
        assert resumed.stop_when(history) == (e == 5)
    resumed.restore()
    assert float(net.weight.detach()[0, 0]) == pytest.approx(2.0)
    assert not (tmp_path / "ck" / "z-best.safetensors").exists()


def _regression(tmp_path, epochs=40):
    torch.manual_seed(0)
    x, w = torch.randn(64, 5), torch.randn(5, 1)
    y = x @ w
    x_val = torch.randn(16, 5)
    y_val = torch.randn(16, 1)  # unrelated to x: validation MSE rises as the fit improves
    net = nn.Linear(5, 1)
    stopper = EarlyStopping(net, net, x_val, y_val, patience=3)
    trainer = Trainer(name="t", modules={"net": net}, settings={"epochs": epochs, "batch_size": 16, "lr": 0.05,
                      "optimizer": "adam", "schedule": "constant"}, training={"precision": "bf16"},
                      checkpoint_dir=str(tmp_path / "ck"), fingerprint="f", seed=1, device=torch.device("cpu"))  # fmt: skip
    step = lambda idx, gen: {"loss": nn.functional.mse_loss(net(x[idx]), y[idx])}  # noqa: E731
    return trainer, step, stopper, net


def test_trainer_stops_early_on_validation_and_records_it(tmp_path):
    trainer, step, stopper, _ = _regression(tmp_path)
    history = trainer.fit(64, step, on_epoch=stopper, stop_when=stopper.stop_when)
    vals = [r["val_mse"] for r in history]
    assert trainer.stopped_early and len(history) < 40
    assert len(vals) - 1 - int(np.argmin(vals)) == 3 and stopper.best == min(vals)
    assert trainer.summary()["stopped_early"] is True
    # a rerun that finds a history which already stopped trains no further
    again, step2, stopper2, _ = _regression(tmp_path)
    again.history, again.step = list(history), trainer.step
    again.fit(64, step2, on_epoch=stopper2, stop_when=stopper2.stop_when)
    assert again.step == trainer.step and again.stopped_early


def test_validation_split_holds_out_whole_images_deterministically():
    rows = np.repeat(np.arange(20), 3)
    fit, val = split_images(rows, 0.1, seed=4)
    assert val.sum() == 6 and not set(rows[fit]) & set(rows[val])
    assert np.array_equal(val, split_images(rows, 0.1, seed=4)[1])
    with pytest.raises(InputError, match="validation_fraction"):
        split_images(np.zeros(3, int), 0.5, 0)


def test_standardise_uses_one_scalar_per_set():
    x = np.array([[1.0, 3.0], [5.0, 7.0]])
    np.testing.assert_allclose(standardise(x), (x - 4.0) / np.sqrt(5.0))


def test_roi_columns_union_and_clear_error():
    d = {"train/fmri": np.zeros((2, 4)), "voxels/roi_names": np.array([b"V1", b"LOC"]),
         "voxels/roi_membership": np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool)}  # fmt: skip
    assert roi_columns(d, ["V1"], "f.h5", "z_rois").tolist() == [0, 1]
    assert roi_columns(d, [], "f.h5", "z_rois").tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match=r"latentreg.c_rois names ROI\(s\) \['FFA'\]"):
        roi_columns(d, ["FFA"], "f.h5", "c_rois")


# -- Table 3 -------------------------------------------------------------------------------------
def test_per_image_mse_against_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    ref = [np.mean([(a[i].ravel()[k] - b[i].ravel()[k]) ** 2 for k in range(6)]) for i in range(4)]
    np.testing.assert_allclose(per_image_mse(a, b), ref)


def _predictions(path, pred, true, branch, regressor):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["pred"], f["true"], f["train_mean"], f["image_index"] = pred, true, true.mean(0), np.arange(len(true))
        f.attrs.update({"branch": branch, "regressor": regressor, "selection": "validation", "transductive": 0})


def test_table3_rows_perfect_predictions_sit_below_their_controls(tmp_path):
    rng = np.random.default_rng(1)
    latents = tmp_path / "simgod" / "sub-1" / "roi-VC" / "latents"
    z, c = rng.normal(size=(8, 4, 2, 2)), rng.normal(size=(8, 3, 5))
    _predictions(latents / "z-aaa-predictions.h5", z, z, "z", "gcn")
    _predictions(latents / "c-bbb-predictions.h5", c + 0.1, c, "c", "cnn")
    rows = latent_rows(str(latents / "z-aaa-predictions.h5"), ["latentreg"], seed=0, n_boot=200)
    rows += latent_rows(str(latents / "c-bbb-predictions.h5"), ["latentreg", "latentreg-vae"], seed=0, n_boot=200)
    rows = {(r["latent"], r["scored"]): r for r in rows}
    assert rows[("z", "predicted")]["mse"] == 0.0
    assert rows[("c", "predicted")]["mse"] == pytest.approx(0.01)
    assert rows[("z", "shuffled_pairs")]["mse"] > 1.0 and rows[("z", "training_mean")]["mse"] > 0.5
    assert rows[("z", "predicted")]["regressor"] == "gcn" and rows[("c", "predicted")]["methods"] == "latentreg latentreg-vae"
    assert (rows[("z", "predicted")]["dataset"], rows[("z", "predicted")]["roi"]) == ("simgod", "VC")


# -- captions ------------------------------------------------------------------------------------
def test_caption_place_words():
    m = np.zeros((9, 9), bool)
    m[0:2, 0:2] = True
    assert _where(m) == "at the top left"
    m[:] = False
    m[4, 4] = True
    assert _where(m) == "in the centre"
    m[:] = False
    m[4, 7:] = True
    assert _where(m) == "at the right"


def test_truth_captions_name_the_category(tmp_path):
    truth = tmp_path / "truth.h5"
    with h5py.File(truth, "w") as f:
        f["categories/shape"] = np.array([b"star", b"ring"])
        f["categories/hue"] = np.array([0.0, 0.625])
        f["categories/pattern"] = np.array([b"stripes", b"solid"])
        f["images/train/names"] = np.array([b"a", b"b"])
        f["images/train/category"] = np.array([1, 0])
    fg = np.zeros((2, 6, 6), bool)
    fg[:, 2:4, 2:4] = True
    part = types.SimpleNamespace(names=np.array(["a", "b"]), foreground=fg)
    stim = types.SimpleNamespace(train=part, path="images.h5")
    caps = truth_captions(str(truth), stim, ("train",))
    assert caps["train"] == [["a blue ring", "a blue ring in the centre"],
                             ["a red striped star", "a red striped star in the centre"]]  # fmt: skip


# -- the DAG's keys ------------------------------------------------------------------------------
def _settings(**over):
    from fmrirecon.config import method_settings, validate_config

    cfg = {"datasets": [{"name": "simgod", "format": "simulated", "subjects": ["1"], "rois": ["VC"]}],
           "methods": {"a": {"family": "latentreg"}, "b": {"family": "latentreg", "overrides": over},
                       "o": {"family": "latentreg_oracle", "overrides": {"z_regressor": "oracle", "c_regressor": "oracle"}}}}  # fmt: skip
    validate_config(cfg)
    return cfg, {m: method_settings(cfg, m) for m in cfg["methods"]}


def test_regressor_variants_share_the_generator_the_c_branch_and_cads_first_stage():
    cfg, settings = _settings(z_regressor="vae")
    added = {}

    def add_first_stage(s):
        key = config_hash("autoencoder", s, 0)[:12]
        added[key] = s
        return key

    units = [("simgod", "1", "VC", m) for m in settings]
    dag = LatentregDag(units, cfg["methods"], settings, cfg["cad"], 0, add_first_stage)
    assert len({k["ldm"] for k in dag.keys.values()}) == 1 and len(added) == 1
    assert dag.trained == ["a", "b"] and dag.keys["a"]["c"] == dag.keys["b"]["c"] != dag.keys["a"]["z"]
    assert dag.keys["a"]["z"] != dag.keys["b"]["z"]  # gcn vs vae
    files = dag.prediction_methods()
    assert len(files) == 3 and sorted(map(len, files.values())) == [1, 1, 2]  # z of a, z of b, the shared c
    # the same first stage as a CAD method of that size and image size
    cad = {**cfg["cad"], "size": "tiny", "image_size": 32}
    assert next(iter(added)) == stage_keys(cad, 0)["autoencoder"]
    # sampling settings are not the regressors': changing them retrains nothing
    s2 = {**settings["a"], "sampling": {**settings["a"]["sampling"], "steps": 7}}
    assert branch_settings(s2, "z") == branch_settings(settings["a"], "z")
    assert "graph" not in branch_settings(settings["b"], "z") and branch_settings(settings["b"], "z")["train"]["lr"] == 5e-4
    assert branch_settings(settings["a"], "c")["train"]["batch_size"] == 16 and "image_size" not in branch_settings(settings["a"], "c")
    assert stage_settings(s2, "text_ldm") == stage_settings(settings["a"], "text_ldm")


def test_config_checks():
    _, settings = _settings()
    with pytest.raises(InputError, match="needs both"):
        check("m", {**settings["a"], "z_regressor": "oracle"}, {})
    with pytest.raises(InputError, match="multiple of 4"):
        check("m", {**settings["a"], "image_size": 30}, {})


def _images_file(path, captions):
    from fmrirecon.data.prepared import write_images_file
    from fmrirecon.data.readers.base import ImageSplit, StimulusSet

    def split(n, caps):
        return ImageSplit(np.zeros((n, 4, 4, 3), np.uint8), np.array([f"i{k}" for k in range(n)]), np.full(n, np.nan),
                          np.zeros(n, int), captions=caps)  # fmt: skip

    write_images_file(path, StimulusSet(split(2, captions), split(1, captions and captions[:1])), {})


def test_captions_come_from_images_h5_and_a_dataset_without_them_fails_with_one_line(tmp_path):
    from fmrirecon.methods.latentreg.text import image_captions

    _images_file(tmp_path / "with.h5", [["a cat"], ["a dog", "two dogs"]])
    caps, source = image_captions(str(tmp_path / "with.h5"))
    assert caps["train"] == [["a cat"], ["a dog", "two dogs"]] and source.startswith("images.h5")
    _images_file(tmp_path / "without.h5", None)
    with pytest.raises(InputError, match=r"without.h5: no /train/captions and /test/captions"):
        image_captions(str(tmp_path / "without.h5"))


# -- a user's Stable Diffusion folder (latentreg.pretrained_ldm) ----------------------------------
def test_a_pretrained_folder_replaces_our_first_stage_generator_and_text_encoder(tmp_path):
    cfg, settings = _settings()
    folder = str(tmp_path / "sd")
    for m in settings:
        settings[m] = {**settings[m], "pretrained_ldm": folder}
    calls = []
    units = [("simgod", "1", "VC", m) for m in settings]
    dag = LatentregDag(units, cfg["methods"], settings, cfg["cad"], 0, lambda s: calls.append(s) or "k")
    assert calls == [] and not dag.ldm_table  # neither CAD's first stage nor our LDM is planned
    w = types.SimpleNamespace(dataset="simgod", subject="1", roi="VC", method="a", key=dag.keys["a"]["z"],
                              encoder=dag.keys["a"]["text"])  # fmt: skip
    assert dag.ldm_folder(w) == folder and dag.first_stage_folder(w) == folder
    assert dag.ldm(w) == [] and dag.first_stage_input(w) == [] and dag.text_encoder_input(w) == []  # missing: the job says so
    (tmp_path / "sd").mkdir()
    assert dag.ldm(w) == [folder] and dag.text_encoder(w) == folder
    assert dag.text(w).endswith(f"latentreg-text-{dag.keys['a']['text']}.h5") and dag.keys["a"]["text"] != "minilm"
    assert not any("latentreg-ldm" in p for p in dag.loss_logs())


def test_caption_tokens_use_the_pretrained_folders_own_text_encoder(tmp_path):
    import shutil

    from fmrirecon.features.text import TextEncoder, minilm_folder
    from fmrirecon.methods.latentreg.text import caption_tokens

    sd = tmp_path / "sd"
    for sub in ("text_encoder", "tokenizer"):  # MiniLM laid out as a Stable Diffusion folder's parts
        shutil.copytree(minilm_folder(), sd / sub)
    _images_file(tmp_path / "images.h5", [["a cat"], ["a dog", "two dogs"]])
    caption_tokens(str(tmp_path / "images.h5"), "", str(tmp_path / "text.h5"), pretrained=str(sd))
    with h5py.File(tmp_path / "text.h5", "r") as f:
        tokens, attrs = f["train/tokens"][()], dict(f.attrs)
    ref = TextEncoder().encode_images([["a cat"], ["a dog", "two dogs"]])
    np.testing.assert_allclose(tokens, ref, atol=2e-3)  # stored as float16
    assert attrs["substitution"] == "" and "text_encoder" in attrs["text_encoder"]
    with pytest.raises(InputError, match="model.safetensors: missing"):
        TextEncoder(tmp_path / "nowhere")
