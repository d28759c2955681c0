"""The bad-input matrix: broken configs, data files, weights, checkpoints and caches, each of which
must be rejected at parse time or by the failing job with one line naming the file or key, leave
no partial output and write nothing outside its working folder.

Shared by ``tests/unit/test_bad_inputs.py`` (every case in CI) and
``benchmarks/bad_input_matrix.py`` (prints the table the README shows). A case is a function of a
:class:`Context` that must raise :class:`~fmrirecon.errors.InputError`; ``expect`` is a fragment
of the message (the file or key it must name); ``output`` (optional) is a path the failing step
would have written and must not exist afterwards.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    name: str
    where: str  # "parse" (config validation, before any job) or the rule that fails
    expect: str
    run: object
    output: str = ""


CASES: list[Case] = []


def case(name: str, where: str, expect: str, output: str = ""):
    def register(fn):
        CASES.append(Case(name, where, expect, fn, output))
        return fn

    return register


class Context:
    """A scratch folder with the smoke config, and (built on first use) a tiny simulated dataset:
    ``raw`` (GOD layout) and its ``images.h5``; each case works on copies."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        with open(REPO / "config" / "smoke.yaml") as fh:
            self.smoke = yaml.safe_load(fh)
        self._raw = None

    def config(self) -> dict:
        """The default config with the smoke overlay, as Snakemake merges them (not yet validated)."""
        from snakemake.utils import update_config

        with open(REPO / "config" / "config.yaml") as fh:
            cfg = yaml.safe_load(fh)
        update_config(cfg, copy.deepcopy(self.smoke))
        return cfg

    def dataset(self) -> tuple[Path, Path]:
        """(raw folder, images.h5) of a tiny simulated dataset, made once per context."""
        if self._raw is None:
            from fmrirecon.config import validate_config
            from fmrirecon.data.simulation.dataset import simulate_dataset
            from fmrirecon.data.steps import prepare_images

            cfg = validate_config(self.config())
            raw = self.tmp / "dataset" / "raw"
            simulate_dataset(cfg["simulation"], cfg["seed"], ["1"], raw)
            images = self.tmp / "dataset" / "images.h5"
            source = {"reader": "god_bdata", "root": str(raw), "truth": str(raw / "truth.h5"),
                      "dataset": {"unpaired_images": str(raw / "images" / "unpaired")}}  # fmt: skip
            prepare_images(source, cfg["image_size"], str(images), "bad-inputs")
            self._raw = (raw, images)
        return self._raw

    def copy_raw(self, name: str) -> Path:
        raw, _ = self.dataset()
        dst = self.tmp / name / "raw"
        shutil.copytree(raw, dst)
        return dst

    def mask(self, raw: Path, roi: str = "VC", name: str = "out") -> None:
        """Rule mask_roi on subject 1 of ``raw`` into ``<tmp>/<name>/data.h5``."""
        from fmrirecon.data.steps import mask_roi

        _, images = self.dataset()
        files = {"subject": str(raw / "Subject1.h5")}
        source = {"reader": "god_bdata", "files": files, "truth": str(raw / "truth.h5")}
        comps = {"VC": ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA"]}
        mask_roi(source, str(images), "1", roi, comps, "run", "metadata", str(self.tmp / name / "data.h5"), "x", "h")


def _validate(ctx: Context, mutate) -> None:
    from fmrirecon.config import validate_config

    cfg = ctx.config()
    mutate(cfg)
    validate_config(cfg)


def _config_case(name: str, expect: str, mutate) -> None:
    case(name, "parse", expect)(lambda ctx: _validate(ctx, mutate))


# -- configuration: rejected at parse time, before any job runs ---------------------------------
_config_case("unknown top-level key", "unknown key 'sed'", lambda c: c.update(sed=1))
_config_case("misspelt dataset key", "datasets[0]: unknown key 'formt'", lambda c: c["datasets"][0].update(formt="x"))
_config_case("unknown dataset format", "datasets[0].format: 'nsdx'", lambda c: c["datasets"][0].update(format="nsdx"))
_config_case("seed of the wrong type", "seed: expected integer", lambda c: c.update(seed="zero"))
_config_case("unknown method family", "methods.x.family: 'nope'", lambda c: c["methods"].update(x={"family": "nope"}))
_config_case("misspelt ablation override", "methods.x.overrides.losses: unknown key 'DF'",
             lambda c: c["methods"].update(x={"family": "ssl", "overrides": {"losses": {"DF": 0}}}))
_config_case("typo in a method's rois", "methods.ssl.rois: ['VCC'] is not a known roi", lambda c: c["methods"]["ssl"].update(rois=["VCC"]))
_config_case("typo in a method's subjects", "methods.cad.subjects: ['11'] is not a known subject",
             lambda c: c["methods"]["cad"].update(subjects=["11"]))
_config_case("method named like a stage folder", "methods.encoder: a method may not be named",
             lambda c: c["methods"].update(encoder={"family": "ridge"}))
_config_case("ridge grid that does not tile the image", "methods.ridge.target_size: 7 does not divide",
             lambda c: c["methods"]["ridge"].update(target_size=7))
_config_case("protocol name with a path", "evaluation.protocols[0]",
             lambda c: c["evaluation"].update(protocols=["x/../../y"]))
_config_case("preset name that is a regex", "evaluation.presets",
             lambda c: c["evaluation"].update(presets={"a.*": {"metrics": []}}))
_config_case("method protocol not evaluated", "methods.ssl.protocols: ['report003']",
             lambda c: (c["evaluation"].update(protocols=["fang2020_pairwise_ssim", "gaziv2022", "mindvis_nway",
                                                          "mindeye_offline"]),
                        c["methods"]["ssl"].update(protocols=["report003"])))  # fmt: skip
_config_case("duplicate dataset names", "duplicate dataset name(s) ['simgod']",
             lambda c: c["datasets"].append(copy.deepcopy(c["datasets"][0])))
_config_case("real dataset without a folder", "datasets[3].path: format god_bdata needs",
             lambda c: c["datasets"].append({"name": "god", "format": "god_bdata", "subjects": ["1"], "rois": ["VC"]}))
_config_case("unlabeled pool pattern without {subject}", "datasets[3].unlabeled_fmri",
             lambda c: c["datasets"].append({"name": "god", "format": "god_bdata", "path": "x", "subjects": ["1"],
                                             "rois": ["VC"], "unlabeled_fmri": "pool/{0}.h5"}))  # fmt: skip
_config_case("npz twin with NIfTI ROIs", "datasets[0].roi_source",
             lambda c: c["datasets"][0].update(read_as="god_npz", roi_source="nifti"))
_config_case("simulated dataset with an ROI it does not simulate", "datasets[0].rois: ['MT'] not simulated",
             lambda c: c["datasets"][0].update(rois=["VC", "MT"]))
_config_case("simulated subject without noise level", "simulated subject(s) ['9']",
             lambda c: c["datasets"][0].update(subjects=["9"]))


@case("config file with a key given twice", "parse", "key 'ridge' is given twice")
def _dup(ctx):
    from fmrirecon.config import check_config_files

    p = ctx.tmp / "dup.yaml"
    p.write_text("methods:\n  ridge: {family: ridge}\n  ridge: {family: mean_image}\n")
    check_config_files([p])


@case("config file with a YAML syntax error", "parse", "bad.yaml: line")
def _bad_yaml(ctx):
    from fmrirecon.config import check_config_files

    p = ctx.tmp / "bad.yaml"
    p.write_text("seed: [1\n")
    check_config_files([p])


def _real_dataset_rois(ctx, fmt: str, rois: list[str]) -> None:
    from fmrirecon.config import validate_config

    raw, _ = ctx.dataset()
    cfg = ctx.config()
    cfg["datasets"].append({"name": "god", "format": fmt, "path": str(raw), "subjects": ["1"], "rois": rois})
    validate_config(cfg)


@case("real BData dataset with an ROI its files lack", "parse", "datasets[3].rois: ROI 'MT' is neither in")
def _real_roi(ctx):
    _real_dataset_rois(ctx, "god_bdata", ["VC", "MT"])


@case("real npz dataset with an ROI its files lack", "parse", "sbj_1.npz (ROIs there:")
def _real_npz_roi(ctx):
    _real_dataset_rois(ctx, "god_npz", ["V1", "V9"])


# -- data files: rejected by the job that reads them ----------------------------------------------
@case("subject file missing", "mask_roi", "Subject1.h5", output="missing/data.h5")
def _missing(ctx):
    raw = ctx.copy_raw("missing")
    (raw / "Subject1.h5").unlink()
    ctx.mask(raw, name="missing")


@case("subject file truncated", "mask_roi", "Subject1.h5", output="truncated/data.h5")
def _truncated(ctx):
    raw = ctx.copy_raw("truncated")
    data = (raw / "Subject1.h5").read_bytes()
    (raw / "Subject1.h5").write_bytes(data[: len(data) // 3])
    ctx.mask(raw, name="truncated")


def _edit_bdata(ctx, name: str, edit) -> Path:
    from fmrirecon.data.bdata import BDataFile

    raw = ctx.copy_raw(name)
    bd = BDataFile.open(raw / "Subject1.h5")
    with h5py.File(raw / "Subject1.h5", "r+") as f:
        edit(f, bd)
    return raw


@case("NaN in the voxels of the ROI", "mask_roi", "NaN/Inf values", output="nan/data.h5")
def _nan(ctx):
    def edit(f, bd):
        data = f["dataset"][()]
        data[3, np.flatnonzero(bd.column_mask("ROI_V1"))[2]] = np.nan
        f["dataset"][...] = data

    ctx.mask(_edit_bdata(ctx, "nan", edit), name="nan")


@case("stimulus id without an image", "mask_roi", "has no image in the training image list", output="noimage/data.h5")
def _noimage(ctx):
    def edit(f, bd):
        data = f["dataset"][()]
        data[0, np.flatnonzero(bd.column_mask("stimulus_id"))[0]] = 1234567.000001
        f["dataset"][...] = data

    ctx.mask(_edit_bdata(ctx, "noimage", edit), name="noimage")


@case("no test samples (no DataType 2)", "mask_roi", "no test samples (DataType 2)", output="notest/data.h5")
def _notest(ctx):
    def edit(f, bd):
        data = f["dataset"][()]
        col = np.flatnonzero(bd.column_mask("DataType"))[0]
        data[data[:, col] == 2, col] = 1
        f["dataset"][...] = data

    ctx.mask(_edit_bdata(ctx, "notest", edit), name="notest")


@case("ROI that the file does not have", "mask_roi", "ROI 'MT' not found", output="nomt/data.h5")
def _nomt(ctx):
    raw, _ = ctx.dataset()
    ctx.mask(raw, roi="MT", name="nomt")


@case("images.h5 that is not HDF5", "any stage reading images.h5", "images.h5")
def _images_corrupt(ctx):
    from fmrirecon.data.prepared import read_images_file

    p = ctx.tmp / "corrupt" / "images.h5"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"not hdf5")
    read_images_file(p)


@case("recon.h5 with float images", "evaluate_reconstructions", "/images must be uint8")
def _recon_float(ctx):
    from fmrirecon.data.prepared import read_recon_file

    p = ctx.tmp / "recon.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((2, 4, 4, 3), np.float32)
        f["image_index"] = np.arange(2)
        f["image_ids"] = np.array([b"a", b"b"])
    read_recon_file(p)


@case("recon.h5 without image ids", "evaluate_reconstructions", "expected dataset /image_ids")
def _recon_ids(ctx):
    from fmrirecon.data.prepared import read_recon_file

    p = ctx.tmp / "recon_noids.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((2, 4, 4, 3), np.uint8)
        f["image_index"] = np.arange(2)
    read_recon_file(p)


@case("subject npz with a missing array", "mask_roi", "sbj_1.npz")
def _npz(ctx):
    from fmrirecon.data.readers import READERS
    from fmrirecon.data.prepared import read_images_file

    raw, images = ctx.dataset()
    with np.load(raw / "sbj_1.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "arr_1"}
    bad = ctx.tmp / "npz" / "sbj_1.npz"
    bad.parent.mkdir(parents=True, exist_ok=True)
    np.savez(bad, **arrays)
    READERS["god_npz"].read_subject({"subject": str(bad)}, read_images_file(images, with_images=False))


# -- weights and model files ------------------------------------------------------------------------
@case("feature-net weights file corrupt", "evaluate_reconstructions", "alexnet.pth: not a readable alexnet weights")
def _alexnet(ctx):
    from fmrirecon.features.networks import load_network

    wdir = ctx.tmp / "weights"
    wdir.mkdir(exist_ok=True)
    (wdir / "alexnet.pth").write_bytes(b"\x80\x04garbage")
    load_network("alexnet", wdir)


@case("model weights file corrupt", "any stage reading a model", "not a readable fmrirecon model file")
def _model(ctx):
    from fmrirecon.train.files import read_hparams

    p = ctx.tmp / "encoder.safetensors"
    p.write_bytes(b"{}" * 10)
    read_hparams(str(p))


@case("model weights file missing", "any stage reading a model", "model weights file not found")
def _model_missing(ctx):
    from fmrirecon.train.files import read_hparams

    read_hparams(str(ctx.tmp / "nope.safetensors"))


@case("backbone weights absent (vgg19)", "pretrain_encoder", "vgg19.pth")
def _vgg(ctx):
    from fmrirecon.models.backbone import Backbone

    Backbone("vgg19", 32, str(ctx.tmp / "empty-weights"))


# -- checkpoints and caches: a planted file does nothing ------------------------------------------
class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {PLANTED_MARKER}",))


PLANTED_MARKER = "fmrirecon-planted-checkpoint-ran"


@case("planted pickle as checkpoint.pt", "training job (ignored, fresh start)", "ignored: never unpickled")
def _planted(ctx):
    from fmrirecon.errors import InputError
    from fmrirecon.train.checkpoint import CHECKPOINT_NAME, load_checkpoint

    folder = ctx.tmp / "ckpt"
    folder.mkdir(exist_ok=True)
    with open(folder / CHECKPOINT_NAME, "wb") as fh:
        pickle.dump({"fingerprint": "x", "evil": _Planted()}, fh)
    cwd = os.getcwd()
    os.chdir(ctx.tmp)
    try:
        state = load_checkpoint(folder, "x")
    finally:
        os.chdir(cwd)
    if state is None and not (ctx.tmp / PLANTED_MARKER).exists():
        raise InputError(f"{folder / CHECKPOINT_NAME}: ignored: never unpickled, training starts fresh")
    raise AssertionError("a planted checkpoint was loaded")
