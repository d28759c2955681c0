"""Assemble the simulated GOD-like dataset and write it in GOD's published layouts.

Output folder (``results/<dataset>/raw``)::

    Subject<s>.h5                BData: VoxelData, DataType, Run, Block, stimulus_id,
                                 category_index, image_index, voxel_x/y/z, ROI_V1 … ROI_VC
    Subject<s>_unlabeled.h5      BData of fMRI without stimuli (HCP-like pretraining pool)
    imageID_training.csv         GOD image lists (sorted by synset, then file name as a string)
    imageID_test.csv
    images/{training,test,unpaired,gallery}/<name>.png   (gallery: n<synset>_<k>, per category)
    sub-<s>_roi-labels.nii.gz    NIfTI label volume, labels listed in roi_labels.tsv
    roi_labels.tsv
    sbj_<s>.npz, images_<size>.npz   the SelfSuperReconst / MinD-Vis twin (optional)
    truth.h5                     simulation truth: foreground masks, noise-free signals, noise ceilings
    <reader>/                    the same experiment in other published layouts (:mod:`.god_layouts`)

The same configuration and seed give byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import torch
from PIL import Image

from ...features.efficientnet import embed
from ..atomic import atomic_path, save_npz_deterministic
from ..bdata import BDataBuilder
from . import images as sim_images
from . import nsd_design
from .god_layouts import LAYOUTS, SimStimuli, SimSubject
from . import voxels as sim_voxels

log = logging.getLogger(__name__)

D_SEMANTIC, D_CATEGORY = 64, 16
VOXEL_MM = 3.0
COMPOSITES = {
    "LVC": ("V1", "V2", "V3"),
    "HVC": ("LOC", "FFA", "PPA"),
    "VC": sim_voxels.ROI_ORDER,
}


def _synset(category: int) -> int:
    return 2_000_000 + 37_117 * category


def _seed_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _subject_key(subject: str) -> int:
    return int.from_bytes(subject.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def simulate_dataset(cfg: dict, seed: int, subjects: list[str], outdir: str | Path) -> None:
    """Generate images and fMRI for ``subjects`` from ``cfg`` (the ``simulation:`` block); the NSD
    design (``design: nsd``) is :func:`.nsd_design.simulate_nsd`."""
    if cfg.get("design") == nsd_design.NAME:
        return nsd_design.simulate_nsd(cfg, seed, subjects, outdir)
    torch.manual_seed(seed)
    n_tr, n_te, n_ex = cfg["n_train_categories"], cfg["n_test_categories"], cfg["n_extra_categories"]
    size = cfg["image_size"]
    categories = sim_images.category_table(n_tr + n_te + n_ex, seed)
    rng = _seed_for(seed, 1)

    # --- stimulus design: names, ids, categories ---------------------------------------------
    per_cat = cfg["images_per_category"]
    train_cat = np.repeat(np.arange(n_tr), per_cat)
    train_num = np.concatenate([rng.choice(np.arange(1, 99999), per_cat, replace=False) for _ in range(n_tr)])
    train_names = np.array([f"n{_synset(c):08d}_{k}" for c, k in zip(train_cat, train_num)])
    order = np.lexsort((train_names, train_cat))  # GOD: by synset, then file name as a string
    train_cat, train_num, train_names = train_cat[order], train_num[order], train_names[order]
    test_cat = np.arange(n_tr, n_tr + n_te)
    test_num = rng.integers(1, 99999, n_te)
    test_names = np.array([f"n{_synset(c):08d}_{k}" for c, k in zip(test_cat, test_num)])
    pool_cats = np.concatenate([np.arange(n_tr), np.arange(n_tr + n_te, n_tr + n_te + n_ex)])
    unpaired_cat = rng.choice(pool_cats, cfg["n_unpaired_images"])
    hidden_cat = rng.choice(pool_cats, cfg["n_unlabeled_fmri"])
    unpaired_names = np.array([f"unpaired_{k:05d}" for k in range(len(unpaired_cat))])
    gallery_cat = np.repeat(np.arange(len(categories)), cfg["gallery_per_category"])
    gallery_names = np.array([f"n{_synset(c):08d}_{900000 + k}" for k, c in enumerate(gallery_cat)])

    all_cat = np.concatenate([train_cat, test_cat, unpaired_cat, hidden_cat, gallery_cat])
    image_seeds = _seed_for(seed, 2).integers(0, 2**31, len(all_cat))
    log.info("drawing %d images at %d px", len(all_cat), size)
    imgs, fg = sim_images.draw_images(categories, all_cat, size, image_seeds)
    bounds = np.cumsum([0, len(train_cat), n_te, len(unpaired_cat), len(hidden_cat), len(gallery_cat)])
    splits = ["train", "test", "unpaired", "hidden", "gallery"]
    part = {k: slice(bounds[i], bounds[i + 1]) for i, k in enumerate(splits)}

    # --- shared stimulus features ----------------------------------------------------------------
    n_fmri = bounds[4]  # the gallery is never shown: no features needed
    log.info("EfficientNet-Lite0 features of %d images", n_fmri)
    pooled = embed(imgs[:n_fmri], size=96, outputs=("pooled",))["pooled"].astype(np.float64)
    mu = pooled[part["train"]].mean(0)
    _, _, vt = np.linalg.svd(pooled[part["train"]] - mu, full_matrices=False)
    semantic = (pooled - mu) @ vt[: min(D_SEMANTIC, len(vt) - 1)].T
    semantic /= semantic[part["train"]].std(0)
    cat_embedding = _seed_for(seed, 3).normal(size=(len(categories), D_CATEGORY))[all_cat[:n_fmri]]
    maps = sim_voxels.feature_maps(imgs[:n_fmri])

    with atomic_path(outdir) as tmp:
        tmp.mkdir(parents=True)
        _write_images(tmp, imgs, part, train_names, test_names, unpaired_names, gallery_names)
        _write_image_lists(tmp, train_names, test_names)
        stimuli = SimStimuli(
            imgs[part["train"]], train_names, train_cat, imgs[part["test"]], test_names, test_cat,
            tuple(sim_images.describe(c) for c in categories),
        )  # fmt: skip
        for name in cfg.get("layouts", ()):  # other published layouts of the same experiment, as read
            (tmp / name).mkdir()
            LAYOUTS[name].write_stimuli(tmp / name, stimuli)
        truth = h5py.File(tmp / "truth.h5", "w", track_order=False)
        _write_truth_images(truth, fg, part, categories, all_cat, train_names, test_names, unpaired_names)
        label_ids = {name: i + 1 for i, name in enumerate(sim_voxels.roi_order(cfg["voxels"]))}
        (tmp / "roi_labels.tsv").write_text(
            "index\tname\n" + "".join(f"{i}\t{n}\n" for n, i in label_ids.items())
        )
        for subject in subjects:
            sub_cfg = cfg["subjects"][subject]
            model = sim_voxels.build_voxel_model(
                cfg["voxels"], sub_cfg["noise_sd"], semantic.shape[1], D_CATEGORY,
                seed=int(_seed_for(seed, 4, _subject_key(subject)).integers(2**31)),
            )  # fmt: skip
            drive = sim_voxels.noise_free_drive(model, maps, semantic, cat_embedding)
            signal = sim_voxels.standardise(drive, drive[part["train"]])
            _simulate_subject(
                tmp, subject, cfg, model, signal, part, train_cat, test_cat, train_names,
                test_names, label_ids, truth, _seed_for(seed, 5, _subject_key(subject)),
            )  # fmt: skip
        truth.close()
        if cfg["write_npz_twin"]:
            save_npz_deterministic(
                tmp / f"images_{size}.npz",
                train_images=imgs[part["train"]],
                test_images=imgs[part["test"]],
            )


def _write_images(tmp: Path, imgs, part, train_names, test_names, unpaired_names, gallery_names) -> None:
    for split, folder, names in (
        ("train", "training", train_names),
        ("test", "test", test_names),
        ("unpaired", "unpaired", unpaired_names),
        ("gallery", "gallery", gallery_names),
    ):
        d = tmp / "images" / folder
        d.mkdir(parents=True)
        for name, img in zip(names, imgs[part[split]]):
            Image.fromarray(img).save(d / f"{name}.png", optimize=False)


def _write_image_lists(tmp: Path, train_names, test_names) -> None:
    for fname, names in (("imageID_training.csv", train_names), ("imageID_test.csv", test_names)):
        rows = []
        for name in names:
            syn, num = name[1:].split("_")
            rows.append(f'{int(syn) + int(num) / 1e6:.6f},"{name}.JPEG"\n')
        (tmp / fname).write_text("".join(rows))


def _write_truth_images(truth, fg, part, categories, all_cat, train_names, test_names, unpaired_names):
    for split, names in (("train", train_names), ("test", test_names), ("unpaired", unpaired_names)):
        g = truth.create_group(f"images/{split}")
        g.create_dataset("foreground", data=fg[part[split]], compression="gzip", track_times=False)
        g.create_dataset("names", data=names.astype("S"), track_times=False)
        g.create_dataset("category", data=all_cat[part[split]], track_times=False)
    c = truth.create_group("categories")
    c.create_dataset("shape", data=np.array([k.shape for k in categories], "S"), track_times=False)
    c.create_dataset("hue", data=np.array([k.hue for k in categories]), track_times=False)
    c.create_dataset("pattern", data=np.array([k.pattern for k in categories], "S"), track_times=False)


def _runs(n_items: int, per_run: int) -> np.ndarray:
    """Run number (0-based) of each position when ``n_items`` trials are cut into runs."""
    return np.arange(n_items) // per_run


def _simulate_subject(
    tmp, subject, cfg, model, signal, part, train_cat, test_cat, train_names, test_names,
    label_ids, truth, rng,
):  # fmt: skip
    per_run = cfg["trials_per_run"]
    n_train, n_test = len(train_names), len(test_names)
    # design: (datatype, image row in its list, run) per sample, runs numbered across data types
    blocks = []
    perm = rng.permutation(n_train)
    blocks.append((np.full(n_train, 1), perm, _runs(n_train, per_run)))
    test_order = np.concatenate([rng.permutation(n_test) for _ in range(cfg["test_repeats"])])
    test_runs = np.repeat(np.arange(cfg["test_repeats"]), n_test) * -(-n_test // per_run)
    test_runs += np.tile(_runs(n_test, per_run), cfg["test_repeats"])
    blocks.append((np.full(len(test_order), 2), test_order, test_runs))
    if cfg["imagery_repeats"]:
        im_order = np.concatenate([rng.permutation(n_test) for _ in range(cfg["imagery_repeats"])])
        blocks.append((np.full(len(im_order), 3), im_order, _runs(len(im_order), per_run)))
    datatype, image_row, run = [], [], []
    next_run = 1
    for dt, rows, runs in blocks:
        datatype.append(dt)
        image_row.append(rows)
        run.append(runs + next_run)
        next_run += int(runs.max()) + 1
    datatype, image_row, run = map(np.concatenate, (datatype, image_row, run))

    sig_train, sig_test = signal[part["train"]], signal[part["test"]]
    clean = np.empty((len(datatype), signal.shape[1]))
    is_train = datatype == 1
    clean[is_train] = sig_train[image_row[is_train]]
    clean[~is_train] = sig_test[image_row[~is_train]]
    if cfg["imagery_repeats"]:
        # imagery: weak early-area and moderate higher-area reinstatement of the test image
        weight = np.where(np.isin(model.roi, sim_voxels.HIGHER + sim_voxels.OPTIONAL), 0.5, 0.15)
        clean[datatype == 3] *= weight
    raw = _measure(clean, run, model, cfg, rng)

    hidden = signal[part["hidden"]]
    hidden_run = _runs(len(hidden), per_run) + next_run
    raw_hidden = _measure(hidden, hidden_run, model, cfg, rng)

    # GOD columns
    train_syn = np.array([int(n[1:].split("_")[0]) for n in train_names])
    test_syn = np.array([int(n[1:].split("_")[0]) for n in test_names])
    train_id = np.array([int(n[1:].split("_")[0]) + int(n.split("_")[1]) / 1e6 for n in train_names])
    test_id = np.array([int(n[1:].split("_")[0]) + int(n.split("_")[1]) / 1e6 for n in test_names])
    cat_index_train = np.searchsorted(np.unique(train_syn), train_syn) + 1
    stim_id = np.empty(len(datatype))
    stim_id[is_train] = train_id[image_row[is_train]]
    stim_id[~is_train] = test_id[image_row[~is_train]]
    stim_id[datatype == 3] = test_syn[image_row[datatype == 3]]
    cat_index = image_row + 1
    cat_index[is_train] = cat_index_train[image_row[is_train]]
    block = np.concatenate([np.arange(np.sum(run == r)) + 1 for r in np.unique(run)])

    xyz = _voxel_mm(model)
    bd = BDataBuilder()
    bd.add("VoxelData", raw, "1 = VoxelData")
    bd.add("DataType", datatype.astype(float), "1 = training; 2 = test; 3 = imagery")
    bd.add("Run", run.astype(float), "Run number")
    bd.add("Block", block.astype(float), "Block number within run")
    bd.add("stimulus_id", stim_id, "Stimulus ID (category ID for imagery)")
    bd.add("category_index", cat_index.astype(float), "Category index (1-based)")
    bd.add("image_index", (image_row + 1).astype(float), "Image index (1-based, image list order)")
    _add_voxel_metadata(bd, model, xyz)
    bd.save(tmp / f"Subject{subject}.h5")

    ub = BDataBuilder()
    ub.add("VoxelData", raw_hidden, "1 = VoxelData")
    ub.add("Run", hidden_run.astype(float), "Run number")
    _add_voxel_metadata(ub, model, xyz)
    ub.save(tmp / f"Subject{subject}_unlabeled.h5")

    _write_label_volume(tmp / f"sub-{subject}_roi-labels.nii.gz", model, label_ids)
    sim = SimSubject(subject, raw, datatype, image_row, run, model.roi, xyz, cfg["test_repeats"], per_run,
                     train_names, test_names)  # fmt: skip
    for name in cfg.get("layouts", ()):
        LAYOUTS[name].write_subject(tmp / name, sim)

    # noise ceiling of the test averages (per-trial noise only): r_max = sqrt(1 / (1 + s² / R))
    ceiling = np.sqrt(1.0 / (1.0 + model.noise_sd**2 / cfg["test_repeats"]))
    g = truth.create_group(f"sub-{subject}")
    for key, val in (
        ("signal_train", sig_train.astype(np.float32)),
        ("signal_test", sig_test.astype(np.float32)),
        ("noise_sd", model.noise_sd),
        ("noise_ceiling", ceiling),
        ("roi", model.roi.astype("S")),
        ("prf_xy", model.prf_xy),
        ("prf_sigma", model.prf_sigma),
    ):
        g.create_dataset(key, data=val, track_times=False)

    if cfg["write_npz_twin"]:
        _write_npz_twin(tmp, subject, raw, datatype, run, image_row, model, ceiling)


def _measure(clean, run, model, cfg, rng) -> np.ndarray:
    """Noisy raw measurements: signal + noise + per-run offset and drift, baseline and gain."""
    n, v = clean.shape
    noise = rng.standard_normal((n, v)) * model.noise_sd
    y = clean + noise
    for r in np.unique(run):
        idx = np.flatnonzero(run == r)
        t = np.linspace(-0.5, 0.5, len(idx))[:, None]
        offset = rng.normal(0, cfg["drift_sd"], v)
        slope = rng.normal(0, cfg["drift_sd"], v)
        y[idx] += offset + slope * t
    return np.round(model.baseline + model.gain * y, 3)


def _voxel_mm(model) -> np.ndarray:
    origin = -VOXEL_MM * (np.asarray(model.volume_shape) - 1) / 2.0
    return model.ijk * VOXEL_MM + origin


def _affine(model) -> np.ndarray:
    aff = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    aff[:3, 3] = -VOXEL_MM * (np.asarray(model.volume_shape) - 1) / 2.0
    return aff


def _add_voxel_metadata(bd, model, xyz) -> None:
    for axis, key in enumerate(("voxel_x", "voxel_y", "voxel_z")):
        bd.add_metadata(key, xyz[:, axis], f"Voxel {key[-1]} coordinate (mm)", where="VoxelData")
    for name in sim_voxels.roi_order({r: 1 for r in model.roi}):  # + OPA/RSC where simulated
        bd.add_metadata(f"ROI_{name}", (model.roi == name).astype(float), f"1 = ROI {name}", where="VoxelData")
    for name, parts in COMPOSITES.items():
        flag = np.isin(model.roi, parts).astype(float)
        bd.add_metadata(f"ROI_{name}", flag, f"1 = ROI {name}", where="VoxelData")


def _write_label_volume(path: Path, model, label_ids) -> None:
    vol = np.zeros(model.volume_shape, np.int16)
    vol[tuple(model.ijk.T)] = [label_ids[r] for r in model.roi]
    img = nib.Nifti1Image(vol, _affine(model))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def _write_npz_twin(tmp, subject, raw, datatype, run, image_row, model, ceiling) -> None:
    z = raw.astype(np.float64).copy()
    for r in np.unique(run):  # SelfSuperReconst: per-run z-scoring, per voxel
        idx = run == r
        z[idx] = (z[idx] - z[idx].mean(0)) / z[idx].std(0)
    tr, te = datatype == 1, datatype == 2
    order = np.argsort(image_row[te], kind="stable")
    test_single = z[te][order]
    test_labels = image_row[te][order]
    n_test = int(test_labels.max()) + 1
    test_avg = np.stack([test_single[test_labels == i].mean(0) for i in range(n_test)])
    within = np.mean([test_single[test_labels == i].var(0) for i in range(n_test)], axis=0)
    snr = test_avg.var(0) / within
    rois = {name: model.roi == name for name in sim_voxels.roi_order({r: 1 for r in model.roi})}
    rois.update({name: np.isin(model.roi, parts) for name, parts in COMPOSITES.items()})
    save_npz_deterministic(
        tmp / f"sbj_{subject}.npz",
        arr_0=z[tr].astype(np.float32), arr_1=test_single.astype(np.float32),
        arr_2=test_avg.astype(np.float32), arr_3=image_row[tr], arr_4=test_labels,
        arr_5=ceiling.astype(np.float32), arr_6=snr.astype(np.float32), **rois,
    )  # fmt: skip
