"""Unlabeled pretraining pools (``results/pools/<name>/pool.h5``) and CAD's bridge to them.

MinD-Vis' preparation (10-TR windows, wrap-padding to the patch grid, one scalar z-score per
subject) is checked against independent numpy computations; the HCP npz reader's bad inputs
fail with one line naming the file and leave no ``pool.h5``; the bridge from a subject's voxels to
a pool-pretrained grid pads or truncates as CAD's ``phase2_finetune_cross.py`` does (``np.pad``
with ``mode='wrap'``); a pool pretraining killed mid-run and rerun equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from fmrirecon.config import method_settings, validate_config
from fmrirecon.data.pools import build_pool, pool_source, read_pool
from fmrirecon.data.pools.prepare import (
    prepare_subject,
    scalar_zscore,
    window_average,
    wrap_pad,
)
from fmrirecon.errors import InputError

REPO = Path(__file__).resolve().parents[2]
AREAS = ("V1", "V2", "V3", "V4")


# -- preparation --------------------------------------------------------------------------------
def _mindvis_reference(v: np.ndarray, window: int, patch: int) -> np.ndarray:
    """MinD-Vis' process_voxel_ts written out independently (array_split means, np.pad wrap to
    the next multiple, np.mean / np.std over the whole array)."""
    windows = np.array_split(v, len(v) // window, axis=0)
    avg = np.stack([w.mean(axis=0) for w in windows])
    extra = (patch - avg.shape[1] % patch) % patch
    padded = np.pad(avg, ((0, 0), (0, extra)), mode="wrap")
    return (padded - np.mean(padded)) / np.std(padded)


def test_window_average_means_each_run_of_trs():
    v = np.arange(60, dtype=float).reshape(20, 3)  # 20 TRs, 3 voxels
    out = window_average(v, 10)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], [np.mean(range(0, 30, 3)) + k for k in range(3)])
    np.testing.assert_allclose(out[1], [np.mean(range(30, 60, 3)) + k for k in range(3)])
    with pytest.raises(ValueError, match="21 TRs are not a multiple of the 10-TR window"):
        window_average(np.zeros((21, 3)), 10)


def test_wrap_pad_repeats_the_first_voxels_up_to_the_patch_grid():
    x = np.arange(2 * 37, dtype=float).reshape(2, 37)
    out = wrap_pad(x, 16)
    assert out.shape == (2, 48)
    np.testing.assert_array_equal(out[:, :37], x)
    np.testing.assert_array_equal(out[:, 37:], x[:, :11])
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (0, 11)), mode="wrap"))
    assert wrap_pad(x[:, :32], 16).shape == (2, 32)  # already a multiple: no extra patch
    np.testing.assert_array_equal(wrap_pad(x[:, :5], 16), np.pad(x[:, :5], ((0, 0), (0, 11)), mode="wrap"))


def test_scalar_zscore_is_one_mean_and_sd_for_the_whole_array():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (5, 7)) * np.arange(1, 8)  # voxels on very different scales
    z = scalar_zscore(x)
    np.testing.assert_allclose(z, (x - x.mean()) / x.std())
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
    assert np.ptp(z.std(axis=0)) > 0.5  # not per voxel


def test_prepare_subject_equals_mindvis_process_voxel_ts():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(1200, 203)) + np.linspace(0, 3, 203)
    out = prepare_subject(v, 10, 16)
    assert out.shape == (120, 208) and out.dtype == np.float32
    np.testing.assert_allclose(out, _mindvis_reference(v, 10, 16), rtol=1e-5, atol=1e-5)


# -- the HCP npz reader and pool.h5 -------------------------------------------------------------
def _write_npz(root: Path, subject: str, trs: int = 40, voxels=(20, 12, 9, 5), seed: int = 0, **replace):
    rng = np.random.default_rng(seed)
    arrays = {a: rng.normal(size=(trs, n)).astype(np.float32) for a, n in zip(AREAS, voxels)}
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = root / "npz" / subject / "HCP_visual_voxel.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path, arrays


def _spec(**over) -> dict:
    spec = {"format": "hcp_npz", "path": "", "subjects": [], "rois": list(AREAS), "window_trs": 10,
            "patch_size": 16, "simulation": {}}  # fmt: skip
    spec.update(over)
    return spec


def test_pool_h5_holds_every_subject_prepared_and_its_provenance(tmp_path):
    arrays = {}
    for k, s in enumerate(("100307", "100408")):
        arrays[s] = _write_npz(tmp_path, s, seed=k)[1]
    source = pool_source("hcp", _spec(path=str(tmp_path)))
    assert source["subjects"] == ["100307", "100408"]  # found in npz/, sorted
    out = tmp_path / "pool.h5"
    build_pool(source, str(out), "abc")
    x, attrs = read_pool(out)
    assert x.shape == (2 * 4, 48)  # 40 TRs / 10 -> 4 samples each; 46 voxels -> 48
    for k, s in enumerate(("100307", "100408")):
        v = np.concatenate([arrays[s][a] for a in AREAS], axis=1).astype(np.float64)
        np.testing.assert_allclose(x[4 * k : 4 * k + 4], _mindvis_reference(v, 10, 16), rtol=1e-5, atol=1e-5)
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["subject_index"][()], [0, 0, 0, 0, 1, 1, 1, 1])
        np.testing.assert_array_equal(h5["window"][()], [0, 1, 2, 3, 0, 1, 2, 3])
    assert attrs["n_voxels"] == 46 and attrs["n_voxels_padded"] == 48 and attrs["patch_size"] == 16
    assert attrs["window_trs"] == 10 and attrs["trs_per_subject"] == 40 and attrs["samples_per_subject"] == 4
    assert json.loads(attrs["voxels_per_roi"]) == {"V1": 20, "V2": 12, "V3": 9, "V4": 5}
    assert json.loads(attrs["subjects"]) == ["100307", "100408"] and len(json.loads(attrs["sources"])) == 2
    assert attrs["config_hash"] == "abc" and "wrap" in attrs["padding"] and "scalar" in attrs["normalization"]


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_key", r"100307/HCP_visual_voxel\.npz: no key 'V3' \(expected keys V1, V2, V3, V4"),
        ("trs", r"100307/HCP_visual_voxel\.npz: 45 TRs are not a multiple of window_trs 10"),
        ("unpatchable", r"100307/HCP_visual_voxel\.npz: 10 voxels in V1\+V2\+V3\+V4 cannot be patched"),
        ("other_space", r"100408/HCP_visual_voxel\.npz: 40 TRs x .* but .*100307/HCP_visual_voxel\.npz has"),
        ("pickled", r"100307/HCP_visual_voxel\.npz: not a numeric npz file"),
        ("one_d", r"100307/HCP_visual_voxel\.npz: key 'V2' has shape \(40,\)"),
    ],
)
def test_bad_pool_files_fail_with_one_line_naming_the_file_and_write_nothing(tmp_path, case, match):
    if case == "missing_key":
        _write_npz(tmp_path, "100307", V3=None)
    elif case == "trs":
        _write_npz(tmp_path, "100307", trs=45)
    elif case == "unpatchable":
        _write_npz(tmp_path, "100307", voxels=(4, 3, 2, 1))
    elif case == "other_space":
        _write_npz(tmp_path, "100307")
        _write_npz(tmp_path, "100408", voxels=(21, 12, 9, 5))
    elif case == "pickled":
        path = _write_npz(tmp_path, "100307")[0]
        np.savez(path, V1=np.array([{"a": 1}], dtype=object), V2=np.zeros((40, 2)), V3=np.zeros((40, 2)),
                 V4=np.zeros((40, 2)))  # fmt: skip
    elif case == "one_d":
        _write_npz(tmp_path, "100307", V2=np.zeros(40, np.float32))
    out = tmp_path / "results" / "pool.h5"
    with pytest.raises(InputError, match=match) as err:
        build_pool(pool_source("hcp", _spec(path=str(tmp_path))), str(out))
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(out.parent.glob("*"))  # no partial output


# -- the config ---------------------------------------------------------------------------------
def _config(**cad_fmri) -> dict:
    return {
        "methods": {"cad": {"family": "cad"}},
        "cad": {"fmri_mae": {"patch_size": 16, **cad_fmri}},
        "pools": {"sim": {"format": "simulated", "subjects": ["900001"], "simulation": {"trs": 100}}},
    }


@pytest.mark.parametrize(
    "change, match",
    [
        ({"cad": {"fmri_mae": {"pool": "hcp"}}}, r"methods\.cad \(cad\.fmri_mae\.pool\): 'hcp' is not an entry of pools"),
        ({"cad": {"fmri_mae": {"pool": "sim", "patch_size": 64}}}, r"patch_size 64 != pools\.sim\.patch_size 16"),
        ({"cad": {"use_test_fmri_in_pretraining": True}}, r"use_test_fmri_in_pretraining needs the per-subject"),
        ({"pools": {"sim": {"subjects": []}}}, r"pools\.sim\.subjects: a simulated pool needs its subject labels"),
        ({"pools": {"sim": {"simulation": {"trs": 105}}}}, r"pools\.sim\.simulation\.trs: 105 TRs are not a multiple"),
        ({"pools": {"real": {"format": "hcp_npz"}}}, r"pools\.real\.path: format hcp_npz needs the pool's folder"),
        ({"pools": {"real": {"format": "hcp_npz", "path": "/nonexistent"}}}, r"pools\.real\.path: no /nonexistent/npz/<subject>/HCP_visual_voxel\.npz"),
        ({"datasets": [{"name": "pools", "format": "simulated", "subjects": ["1"], "rois": ["VC"]}]}, r"datasets\[0\]\.name: 'pools' is reserved"),
    ],
)  # fmt: skip
def test_pool_config_errors_are_one_line(change, match):
    from snakemake.utils import update_config

    cfg = _config(pool="sim")
    update_config(cfg, change)
    with pytest.raises(InputError, match=match) as err:
        validate_config(cfg)
    assert "\n" not in str(err.value)


def test_no_pool_keeps_the_phase1_key_and_a_pool_moves_phase1_to_the_pool():
    from fmrirecon.methods.cad.dag import CadDag
    from fmrirecon.methods.cad.settings import stage_keys, stage_settings

    plain = validate_config(_config())
    empty = validate_config(_config(pool=""))
    pooled = validate_config(_config(pool="sim"))
    s_plain, s_empty, s_pool = (method_settings(c, "cad") for c in (plain, empty, pooled))
    assert "pool" not in s_plain["fmri_mae"]  # no default: existing configs' parameters stay as they were
    assert stage_settings(s_plain, "fmri_mae") == stage_settings(s_empty, "fmri_mae")
    assert stage_keys(s_plain, 0) == stage_keys(s_empty, 0)
    assert stage_keys(s_pool, 0)["fmri_mae"] != stage_keys(s_plain, 0)["fmri_mae"]
    assert stage_keys(s_pool, 0)["image_mae"] == stage_keys(s_plain, 0)["image_mae"]
    units = [("d", "1", "VC", "cad"), ("d", "2", "VC", "cad")]
    key = stage_keys(s_pool, 0)["fmri_mae"]
    dag = CadDag(units, pooled["methods"], {"cad": s_pool}, 0)
    wc = type("W", (), {"dataset": "d", "subject": "1", "roi": "VC", "method": "cad"})
    assert dag.fmri_mae(wc) == f"results/pools/sim/models/cad-fmri_mae-{key}.safetensors"
    summaries = [p for p in dag.train_summaries() if "fmri_mae" in p]
    assert summaries == [f"results/pools/sim/models/cad-fmri_mae-{key}.train.json"]  # once, not per subject
    plain_dag = CadDag(units, plain["methods"], {"cad": s_plain}, 0)
    assert plain_dag.fmri_mae(wc).startswith("results/d/sub-1/roi-VC/models/cad-fmri_mae-")


# -- the bridge ---------------------------------------------------------------------------------
def _cad_bridge(x: np.ndarray, n: int, patch: int) -> np.ndarray:
    """vis_dec_neurips phase2_finetune_cross.py, independently: the subject's vector wrap-padded
    to its patch grid, then np.pad(..., 'wrap') up to n or cut to the first n."""
    extra = (patch - x.shape[1] % patch) % patch
    x = np.pad(x, ((0, 0), (0, extra)), mode="wrap")
    if x.shape[1] < n:
        return np.pad(x, ((0, 0), (0, n - x.shape[1])), mode="wrap")
    return x[:, :n]


@pytest.mark.parametrize("n_subject, n_pool", [(37, 48), (37, 160), (100, 48), (48, 48), (5, 64)])
def test_bridge_pads_or_truncates_like_cad(n_subject, n_pool):
    import torch
    from fmrirecon.methods.cad.mae import bridge_voxels

    x = np.random.default_rng(n_subject).normal(size=(3, n_subject)).astype(np.float32)
    ref = _cad_bridge(x, n_pool, 16)
    out = bridge_voxels(x, n_pool, 16)
    assert out.shape == (3, n_pool)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(bridge_voxels(torch.from_numpy(x), n_pool, 16).numpy(), ref)
    if n_subject >= n_pool:
        np.testing.assert_array_equal(out, x[:, :n_pool])  # truncation keeps the first voxels
    else:
        np.testing.assert_array_equal(out[:, :n_subject], x)  # padding keeps every voxel first


def test_subject_fmri_bridges_only_after_a_pool_pretraining():
    from fmrirecon.methods.cad.mae import fmri_tensor, pool_fields, subject_fmri

    x = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    own = {"n_voxels": 30, "patch_size": 16}
    assert subject_fmri(x, own).equal(fmri_tensor(x)) and pool_fields(own, 30) == {}
    pooled = {"n_voxels": 64, "patch_size": 16, "pool": "sim", "pool_voxels": 60, "bridge": "wrap_pad_or_truncate"}
    out = subject_fmri(x, pooled)
    np.testing.assert_allclose(out.numpy(), _cad_bridge(fmri_tensor(x).numpy(), 64, 16))
    assert pool_fields(pooled, 30) == {"pool": "sim", "pool_voxels": 60, "bridge": "wrap_pad_or_truncate",
                                       "subject_voxels": 30}  # fmt: skip


# -- the simulated pool -------------------------------------------------------------------------
def test_simulated_pool_is_hcp_like_in_its_own_space_and_reproducible(tmp_path):
    from fmrirecon.data.pools import hcp_npz
    from fmrirecon.data.simulation.hcp_pool import simulate_pool

    sim = {"trs": 200, "noise_sd": 1.0, "voxels": {"V1": 33, "V2": 21, "V3": 17, "V4": 9}}
    subjects = ["900001", "900002"]
    for run in ("a", "b"):
        simulate_pool("sim", sim, subjects, list(AREAS), 5, str(tmp_path / run))
    for s in subjects:
        a = (tmp_path / "a" / "npz" / s / "HCP_visual_voxel.npz").read_bytes()
        assert a == (tmp_path / "b" / "npz" / s / "HCP_visual_voxel.npz").read_bytes()  # byte-identical
        x, counts = hcp_npz.read_subject(tmp_path / "a" / "npz" / s / "HCP_visual_voxel.npz")
        assert counts == sim["voxels"] and x.shape == (200, 80)
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)  # z-scored over time per voxel
        np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
        lag1 = np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(x.shape[1])])
        assert lag1 > 0.2  # slow resting-state fluctuations, not white noise
    x1 = hcp_npz.read_subject(tmp_path / "a" / "npz" / "900001" / "HCP_visual_voxel.npz")[0]
    x2 = hcp_npz.read_subject(tmp_path / "a" / "npz" / "900002" / "HCP_visual_voxel.npz")[0]
    assert not np.allclose(x1, x2)  # own subjects


# -- pretraining on a pool: patches, resume -----------------------------------------------------
@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    for k, s in enumerate(("900001", "900002", "900003")):
        _write_npz(root, s, trs=80, voxels=(15, 9, 5, 2), seed=k)
    out = root / "pool.h5"
    build_pool(pool_source("sim", _spec(path=str(root))), str(out))
    return out


def test_a_pool_the_model_cannot_patch_fails_naming_the_pool(pool_file, tmp_path):
    from fmrirecon.methods.cad.mae import pretrain_fmri_mae_pool

    settings = copy.deepcopy(validate_config({})["cad"])
    settings["fmri_mae"].update(patch_size=0, epochs=1, batch_size=8)  # tiny's patch 64 vs the pool's 16
    with pytest.raises(InputError, match=r"pool\.h5: 32 voxels \(padded to patches of 16\) cannot be patched by "
                                         r"the fMRI MAE's 64") as err:  # fmt: skip
        pretrain_fmri_mae_pool(str(pool_file), settings, {"device": "cpu"}, str(tmp_path / "ck"), 0,
                               str(tmp_path / "m.safetensors"), str(tmp_path / "l.tsv"))  # fmt: skip
    assert "\n" not in str(err.value) and not (tmp_path / "m.safetensors").exists()


JOB = """
import sys
from types import SimpleNamespace
from fmrirecon.methods.cad.mae import pretrain_fmri_mae_pool
from fmrirecon.runner import run_step
from fmrirecon.config import validate_config

out, ckpt, pool = sys.argv[1:4]
settings = validate_config({})["cad"]
settings["fmri_mae"].update(patch_size=16, epochs=3, batch_size=8, pool="sim")
training = {"device": "cpu", "checkpoint_every_steps": 3, "checkpoint_every_minutes": 10}
smk = SimpleNamespace(log=[out + "/job.log"], threads=1)
run_step(smk, pretrain_fmri_mae_pool, pool=pool, settings=settings, training=training, checkpoint_dir=ckpt,
         seed=3, model=out + "/mae.safetensors", loss_log=out + "/losses.tsv")
"""


def _run(out: Path, ckpt: Path, pool: Path, env=None):
    out.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", JOB, str(out), str(ckpt), str(pool)], env=environ,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def test_pool_pretraining_killed_and_resumed_equals_uninterrupted(tmp_path, pool_file):
    from fmrirecon.train.files import read_hparams
    from safetensors.torch import load_file

    kill = {"FMRIRECON_KILL_AT_STEP": "5", "FMRIRECON_TEST_HOOKS": "1"}
    ref = _run(tmp_path / "ref", tmp_path / "ref-ckpt", pool_file)
    assert ref.returncode == 0, ref.stderr
    killed = _run(tmp_path / "run", tmp_path / "ckpt", pool_file, kill)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "mae.safetensors").exists()
    rerun = _run(tmp_path / "run", tmp_path / "ckpt", pool_file, kill)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from step 3" in (tmp_path / "run" / "job.log").read_text()
    a, b = load_file(tmp_path / "ref" / "mae.safetensors"), load_file(tmp_path / "run" / "mae.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    hp = read_hparams(str(tmp_path / "run" / "mae.safetensors"))
    _, attrs = read_pool(pool_file)
    assert hp["n_voxels"] == 32 and hp["pool_voxels"] == 31 and hp["pool"] == attrs["pool"] == "sim"
    assert hp["n_samples"] == 3 * 8 and hp["bridge"] == "wrap_pad_or_truncate"
