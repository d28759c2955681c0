"""One evaluation job per reconstruction: every protocol in one process, ground-truth features from
the dataset's cache; the results must equal scoring each protocol on its own, from scratch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmrirecon.data.prepared import read_images_file, write_images_file
from fmrirecon.data.readers.base import ImageSplit, StimulusSet
from fmrirecon.errors import InputError
from fmrirecon.evaluate.presets import resolve_protocols
from fmrirecon.evaluate.protocols import evaluate_protocol, evaluate_protocols
from fmrirecon.evaluate.split import split_metrics
from fmrirecon.evaluate.truth_cache import feature_plan, load_truth_features, spec_features, truth_features

PRESETS = ("fang2020_pairwise_ssim", "mindvis_nway", "gaziv2022", "mindeye_offline", "report003")


def _images(n: int, size: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    img = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=(size, size), mode="bilinear")
    img = img + 0.1 * torch.rand(n, 3, size, size, generator=gen)
    return (img.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _split(images: np.ndarray, prefix: str, category: np.ndarray) -> ImageSplit:
    n = len(images)
    return ImageSplit(images=images, names=np.array([f"{prefix}{i}" for i in range(n)]),
                      stimulus_id=np.full(n, np.nan), category=category)  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """images.h5 with 8 test images of 8 categories and a 16-image gallery, its truth features,
    and reconstructions of test rows 1..7 (a method scored on a subset, as image_index allows)."""
    tmp = tmp_path_factory.mktemp("evaljobs")
    test = _images(8, 32, 1)
    gallery = np.concatenate([_images(8, 32, 2), _images(8, 32, 3)])
    stim = StimulusSet(
        train=_split(_images(4, 32, 4), "tr", np.arange(4) + 50), test=_split(test, "te", np.arange(8) + 100),
        gallery=_split(gallery, "ga", np.r_[np.arange(8), np.arange(8)] + 100),
    )  # fmt: skip
    images = tmp / "images.h5"
    write_images_file(images, stim, {"source": "test"})
    protocols = resolve_protocols(list(PRESETS), {})
    cache_file = tmp / "truth_features.h5"
    truth_features(str(images), feature_plan(protocols.values()), str(cache_file))
    rows = np.arange(1, 8)
    rng = np.random.default_rng(0)
    recon = np.clip(test[rows].astype(int) + rng.integers(-40, 40, test[rows].shape), 0, 255).astype(np.uint8)
    return {"tmp": tmp, "images": images, "cache": cache_file, "protocols": protocols, "rows": rows, "recon": recon}


def _inputs(d):
    stim = read_images_file(d["images"], splits=("train", "test", "gallery"))
    gallery = {"images": stim.gallery.images, "category": stim.gallery.category,
               "true_category": stim.test.category[d["rows"]]}  # fmt: skip
    return stim, stim.test.images[d["rows"]], gallery


def test_the_plan_names_the_shipped_networks_features_only(dataset):
    plan = feature_plan(dataset["protocols"].values())
    assert ["truth", "efficientnet-lite0", 0, "logits"] in plan  # MinD-Vis semantic n-way
    assert any(p[0] == "gallery" for p in plan)  # paper 002's class centroids
    assert all(p[1] == "efficientnet-lite0" for p in plan)  # nothing read from weights_dir


def test_one_job_with_the_cache_equals_each_protocol_alone_from_scratch(dataset):
    stim, truth, gallery = _inputs(dataset)
    cache = {**load_truth_features(str(dataset["cache"]), stim.test.names, len(stim.gallery)),
             "rows": dataset["rows"]}  # fmt: skip
    together = evaluate_protocols(dataset["recon"], truth, dataset["protocols"], seed=3, gallery=gallery,
                                  n_boot=50, truth_cache=cache)  # fmt: skip
    assert set(together) == set(PRESETS)
    for name, protocol in dataset["protocols"].items():
        alone = evaluate_protocol(dataset["recon"], truth, protocol, seed=3, gallery=gallery, n_boot=50)
        a, b = json.loads(json.dumps(alone)), json.loads(json.dumps(together[name]))
        assert a["metrics"].keys() == b["metrics"].keys() and a["metrics"], name
        for key in a["metrics"]:  # same features up to float rounding of a batch of 8 vs 7 images
            np.testing.assert_allclose(np.array(b["metrics"][key]["per_image"], float),
                                       np.array(a["metrics"][key]["per_image"], float), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}:{key}")  # fmt: skip
        assert a["unavailable"] == b["unavailable"]


def test_the_cache_is_used_not_recomputed(dataset, monkeypatch):
    """With every truth/gallery feature cached, the network only ever sees reconstructions (for the
    metrics that read cached features: semantic n-way, class centroids, feature correlation)."""
    from fmrirecon.features import networks

    stim, truth, gallery = _inputs(dataset)
    cache = {**load_truth_features(str(dataset["cache"]), stim.test.names, len(stim.gallery)),
             "rows": dataset["rows"]}  # fmt: skip
    seen = []
    original = networks.FeatureNet.features

    def spy(self, images, layers, **kw):
        seen.append(np.asarray(images))
        return original(self, images, layers, **kw)

    monkeypatch.setattr(networks.FeatureNet, "features", spy)
    # the metrics that read cached features (perceptual maps are computed per job by design)
    protocols = {k: {**p, "metrics": [m for m in p["metrics"] if spec_features(m) and m.get("network", "efficientnet-lite0")
                                      == "efficientnet-lite0"]}
                 for k, p in dataset["protocols"].items()}  # fmt: skip
    protocols = {k: p for k, p in protocols.items() if p["metrics"]}
    assert {"mindvis_nway", "gaziv2022", "mindeye_offline"} <= set(protocols)
    evaluate_protocols(dataset["recon"], truth, protocols, seed=3, gallery=gallery, n_boot=20, truth_cache=cache)
    assert seen and all(np.array_equal(x, dataset["recon"]) for x in seen), [x.shape for x in seen]
    # and without the cache the same call does read the truth and the gallery (the spy can fail)
    seen.clear()
    evaluate_protocols(dataset["recon"], truth, protocols, seed=3, gallery=gallery, n_boot=20)
    assert any(np.array_equal(x, truth) for x in seen) and any(len(x) == len(gallery["images"]) for x in seen)


def test_a_cache_of_other_images_is_refused(dataset):
    stim, _, _ = _inputs(dataset)
    with pytest.raises(InputError, match="truth_features.h5: features of other images"):
        load_truth_features(str(dataset["cache"]), stim.test.names[::-1], len(stim.gallery))


def test_split_metrics_writes_one_protocols_file(dataset, tmp_path):
    combined = tmp_path / "metrics.json"
    combined.write_text(json.dumps({"context": {"method": "m"}, "protocols": {"p": {"metrics": {"x": {"value": 1}}}}}))
    split_metrics(str(combined), "p", str(tmp_path / "metrics-p.json"))
    assert json.loads((tmp_path / "metrics-p.json").read_text()) == {
        "metrics": {"x": {"value": 1}}, "context": {"method": "m", "protocol": "p"}}
    with pytest.raises(InputError, match="no result for protocol 'q'"):
        split_metrics(str(combined), "q", str(tmp_path / "metrics-q.json"))
    assert not (tmp_path / "metrics-q.json").exists()


def test_simulated_data_semantic_metrics_use_the_datasets_own_classifier(tmp_path):
    """The substitute classifier is trained on training + gallery images only; the oracle's semantic
    top-1 then sits far above its shuffled control, and the settings name the substitution."""
    from fmrirecon.evaluate.truth_cache import DATASET_CLASSIFIER, substitute_classifier

    base = _images(8, 32, 21)  # one prototype per category; every image is a noisy exemplar of one
    rng = np.random.default_rng(1)
    jitter = [np.clip(base.astype(int) + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    test, cats = jitter[3], np.arange(8) + 100
    stim = StimulusSet(train=_split(jitter[0], "tr", cats), test=_split(test, "te", cats),
                       gallery=_split(np.concatenate(jitter[1:3]), "ga", np.r_[cats, cats]))  # fmt: skip
    images = tmp_path / "images.h5"
    write_images_file(images, stim, {"source": "test"})
    protocols = {"sem": {"name": "sem", "metrics": [
        {"name": "semantic_nway_topk", "key": "top1", "n_way": 5, "top_k": 1, "mode": "sampled", "trials": 200}]}}
    plan = feature_plan(protocols.values())
    truth_features(str(images), plan, str(tmp_path / "tf.h5"), dataset_classifier=True)
    loaded = load_truth_features(str(tmp_path / "tf.h5"), stim.test.names, 16)
    assert loaded["classifier"]["coef"].shape[0] == 8
    cache = {**loaded, "rows": np.arange(8)}
    subst = substitute_classifier(protocols)
    res = evaluate_protocols(test, test, subst, seed=0, n_boot=100, truth_cache=cache)["sem"]
    m, ctrl = res["metrics"]["top1"], res["controls"]["shuffled_truth"]["metrics"]["top1"]
    assert m["settings"]["classifier"] == DATASET_CLASSIFIER and "never on test images" in m["settings"]["substitution"]
    assert m["settings"]["distinct_true_classes"] == 8 and m["chance"] == pytest.approx(0.2)
    assert m["value"] > 0.9 and m["value"] - ctrl["value"] > 0.3  # 8 rows: the control is noisy
    # the same oracle with the ImageNet classifier: labels collapse, the score is not informative
    plain = evaluate_protocols(test, test, protocols, seed=0, n_boot=100)["sem"]["metrics"]["top1"]
    assert plain["settings"]["distinct_true_classes"] < 8


def test_kept_pixel_rows_and_embeddings_equal_the_direct_metrics(dataset, monkeypatch):
    """PixCorr and the perceptual distance keep each side's centred rows / embeddings for the
    protocols and the control: the values equal pixcorr / perceptual_distance on the permuted
    images, and equal a run that keeps nothing (a budget of 0 bytes, as for NSD-sized inputs)."""
    from fmrirecon.evaluate import metrics as M
    from fmrirecon.evaluate import protocol_metrics as PM
    from fmrirecon.evaluate.protocol_context import Context
    from fmrirecon.evaluate.protocol_spec import derangement
    from fmrirecon.evaluate.ssim import prepare_images

    _, truth, _ = _inputs(dataset)
    recon = np.stack([dataset["recon"], dataset["recon"][::-1]], axis=1)  # two samples
    perm = derangement(len(truth), 1)
    pix = {"name": "pixcorr", "resolution": 48, "grey": False}
    perc = {"name": "perceptual_distance", "network": "efficientnet-lite0", "resolution": 0}

    def scores(budget):
        monkeypatch.setattr(PM, "CACHE_BYTES", budget)
        ctx = Context(recon, truth, None, None, None, seed=0)
        out = {}
        for s in (0, 1, 0):  # back to sample 0: its kept rows were replaced by sample 1's
            for p, control in ((np.arange(len(truth)), False), (perm, True)):
                for spec in (pix, perc):
                    value = PM.run_metric(ctx, spec, s, p, control)[0][""][0]
                    out.setdefault((spec["name"], s, control), []).append(value)
        return out, ctx

    kept, ctx = scores(PM.CACHE_BYTES)
    assert any(k[0] == "centred" for k in ctx.matrices) and any(k[0] == "perceptual" for k in ctx.matrices)
    recon_kept = {k[2] for k in ctx.matrices if k[:2] in (("centred", "recon"), ("perceptual", "recon"))}
    assert recon_kept == {0}  # one sample's at a time: sample 0's replaced sample 1's, which had replaced it
    probes = []
    embed_one = PM.M.perceptual_embedding
    monkeypatch.setattr(PM.M, "perceptual_embedding", lambda *a: probes.append(1) or embed_one(*a))
    none, ctx0 = scores(0)
    assert not any(k[0] == "centred" for k in ctx0.matrices)
    # the perceptual embeddings did not fit: the refusal is kept (None), so the size probe (one
    # chunk) ran once for the truth and once per visit of a sample (0, 1, 0), not at each of the
    # 6 calls on each side (12); the chunk-by-chunk scoring embeds both sides at every call
    refused = [k for k in ctx0.matrices if k[0] == "perceptual"]
    assert refused and all(ctx0.matrices[k] is None for k in refused)
    chunks = -(-len(truth) // 32)
    assert len(probes) == (1 + 3) + 6 * 2 * chunks
    for key, runs in kept.items():
        for v in runs:
            np.testing.assert_array_equal(v, runs[0])
        for v in none[key]:  # chunk by chunk: the control's truth images sit in other batches
            np.testing.assert_allclose(v, runs[0], rtol=1e-6)
    net = ctx.net("efficientnet-lite0")
    layers = list(PM.PERCEPTUAL_LAYERS["efficientnet-lite0"])
    for s in (0, 1):
        x, y = prepare_images(recon[:, s], resolution=48), prepare_images(truth, resolution=48)
        for p, control in ((np.arange(len(truth)), False), (perm, True)):
            np.testing.assert_array_equal(kept[("pixcorr", s, control)][0], M.pixcorr(x, y[torch.as_tensor(p)]))
            fx = net.features(recon[:, s], layers, resolution=None)
            fy = net.features(truth[p], layers, resolution=None)
            direct = M.perceptual_distance([fx[k] for k in layers], [fy[k] for k in layers])
            np.testing.assert_allclose(kept[("perceptual_distance", s, control)][0], direct, rtol=1e-6)
