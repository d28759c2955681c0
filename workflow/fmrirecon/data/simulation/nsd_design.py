"""The simulator's NSD design (``simulation.design: nsd``): a tiny Natural Scenes Dataset.

Every subject sees its own images (``images_per_subject``, each one to three times) and a shared
test set (``n_shared_images``, each ``shared_repeats`` times) that every subject sees, in one
``masterordering`` common to all subjects (as in NSD), cut into ``sessions`` of
``trials_per_session`` trials and ``runs_per_session`` runs. Images are scenes of the procedural
generator of :mod:`.images`: a main object (category drawn uniformly; its mask is the
foreground) and up to ``max_distractors`` smaller objects partly behind it, with true boxes and
template captions ("a red striped star above a small blue disc") in COCO's annotation format.
fMRI comes from the voxel models of :mod:`.voxels`: retinotopic V1–V4 and semantic LOC/FFA/PPA, one model per subject, with per-trial
noise and per-session offsets and drifts (the per-session z-scoring NSD uses removes them).

Written with :func:`.nsd_layout.write_nsd_tree` in NSD's published layout (results/<dataset>/raw)::

    nsddata/experiments/nsd/nsd_expdesign.mat, nsd_stim_info_merged.csv
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5                      imgBrick (N, S, S, 3) uint8
    nsddata_betas/ppdata/subjAA/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz
                                                                      int16 % signal change × 300
    nsddata_betas/.../ncsnr.nii.gz                                    1 / noise sd per voxel
    nsddata/ppdata/subjAA/func1pt8mm/roi/{nsdgeneral,prf-visualrois,floc-faces,floc-places,streams}.nii.gz
    nsddata/freesurfer/{subjAA,fsaverage}/label/<atlas>.mgz.ctab, nsddata/ppdata/subjAA/behav/responses.tsv
    nsddata_stimuli/stimuli/nsd/annotations/{captions,instances}_train2017.json    COCO format, cocoId = nsdId
    algonauts2023/subjAA/..., algonauts2023/image_infos/     the Algonauts-2023 twin (``write_algonauts``)
    truth.h5                                                          as for the GOD design (below)

ROI volumes (:data:`ATLAS_OF`): -1 outside the simulated voxels, 0 for simulated voxels an atlas
does not label; V1–V3 → ``prf-visualrois`` ventral/dorsal by the pRF's visual field (ventral =
upper field), V4 → hV4; FFA → ``floc-faces`` FFA-1/FFA-2 (posterior/anterior half), PPA →
``floc-places`` PPA; ``streams``: V1–V3 early, V4 midventral, LOC lateral, FFA/PPA ventral;
``nsdgeneral`` = every simulated voxel. Subject labels are NSD subject numbers (``1`` → subj01).

``truth.h5`` follows the reader, not the generator: ``images/{train,test}`` (names ``nsdNNNNN``,
foreground, category) in nsdId order, and per subject ``signal_train`` (every non-shared image)
and ``signal_test`` (the shared images), noise ceiling, ROI and pRFs with voxels in the reader's
order (volume order, x fastest), which is what the oracle and the masking index with. This holds
while the reader reads every session and atlas written, which :func:`reader_view` arranges.

The same configuration and seed give byte-identical files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from ...errors import InputError
from ..atomic import atomic_path
from ..readers import algonauts2023 as algonauts_reader
from ..readers import nsd as nsd_reader
from . import nsd_layout

log = logging.getLogger(__name__)

#: The design's name in ``simulation.design``: the format it writes.
NAME = nsd_reader.READER.name
#: simulated ROI -> {atlas: label name}; label numbers are NSD's (nsd_reader.PRIMARY order)
ATLAS_OF = {
    "V1": {"prf-visualrois": ("V1v", "V1d"), "streams": "early"},
    "V2": {"prf-visualrois": ("V2v", "V2d"), "streams": "early"},
    "V3": {"prf-visualrois": ("V3v", "V3d"), "streams": "early"},
    "V4": {"prf-visualrois": "hV4", "streams": "midventral"},
    "LOC": {"streams": "lateral"},
    "FFA": {"floc-faces": ("FFA-1", "FFA-2"), "streams": "ventral"},
    "PPA": {"floc-places": "PPA", "streams": "ventral"},
}
ATLASES = ("nsdgeneral", "prf-visualrois", "floc-faces", "floc-places", "streams")
VOXEL_MM = 1.8
SESSION_DRIFT = 0.5  # per-session offset/drift sd relative to drift_sd


def tables() -> dict[str, dict[int, str]]:
    """atlas -> {label: name}, the ``.mgz.ctab`` of every atlas written (NSD's full tables)."""
    return {a: dict(enumerate(nsd_reader.PRIMARY[a], 1)) for a in ATLASES}


def roi_names(read_as: str = NAME) -> set[str]:
    """The config ROI names the ``read_as`` reader finds in the simulated tree."""
    if read_as == ALGONAUTS:
        return set(algonauts_reader.roi_definitions(algonauts_mappings()))
    return set(nsd_reader.roi_names(tables())[0])


def algonauts_mappings() -> dict[str, dict[int, str]]:
    """atlas -> {label: name} of the Algonauts twin's ``mapping_<atlas>.npy`` (no nsdgeneral: the
    challenge publishes only the other atlases)."""
    return {a: {0: "Unknown", **tables()[a]} for a in ATLASES if a != "nsdgeneral"}


#: reader options the simulator sets itself (every session and atlas written, so truth.h5 matches)
FIXED_OPTIONS = ("sessions", "atlases", "betas_format")


def check(cfg: dict, dataset: dict, where: str, where_dataset: str) -> str | None:
    """A one-line problem with ``simulation.nsd`` (at ``where``) or the simulated dataset entry, or None."""
    if dataset["read_as"] == ALGONAUTS and not cfg[NAME]["write_algonauts"]:
        return (f"config error at {where}.nsd.write_algonauts: {where_dataset} reads the Algonauts-2023 twin "
                f"(read_as: {ALGONAUTS}), which write_algonauts: false does not write")  # fmt: skip
    fixed = [k for k in FIXED_OPTIONS if k in (dataset.get("options") or {})]
    if fixed and dataset["read_as"] == NAME:
        return (f"config error at {where_dataset}.options: {fixed} are set by the simulator (every session and "
                f"atlas it writes, so that the truth file matches the reader's rows and voxels)")  # fmt: skip
    subjects = dataset["subjects"]
    c = cfg[NAME]
    n_trials = c["sessions"] * c["trials_per_session"]
    shared = c["n_shared_images"] * c["shared_repeats"]
    own = c["images_per_subject"]
    if not own <= n_trials - shared <= 3 * own:
        return (f"config error at {where}.nsd: {c['sessions']} sessions × {c['trials_per_session']} trials = "
                f"{n_trials}, minus {shared} shared-image trials, must give each of the {own} images per subject "
                f"one to three trials ({own}..{3 * own} trials)")  # fmt: skip
    if c["runs_per_session"] > c["trials_per_session"]:
        return f"config error at {where}.nsd.runs_per_session: more runs than trials_per_session"
    for s in subjects:
        try:
            nsd_reader.subject_number(s)
        except InputError:
            return f"config error at {where}.subjects: {s!r} is not an NSD subject number (1, 2, ...)"
    return None


def reader_view(dataset: dict, raw: str, simulation: dict) -> dict:
    """The dataset entry as its reader reads the generated tree. ``read_as: nsd``: every session
    and atlas written (so that voxels and rows match truth.h5), the dataset's own options on top.
    ``read_as: algonauts2023``: the challenge twin under ``raw/algonauts2023`` with the entry's own
    options (split group: every simulated subject, so the test set is the shared images)."""
    if dataset["read_as"] == ALGONAUTS:
        return {**dataset, "format": ALGONAUTS, "path": f"{raw}/{ALGONAUTS}", "unlabeled_fmri": ""}
    c = simulation[NAME]
    options = {"sessions": f"1-{c['sessions']}", "atlases": list(ATLASES), "betas_format": "nifti",
               "coco_annotations": ANNOTATIONS, **(dataset.get("options") or {})}  # fmt: skip
    return {**dataset, "format": NAME, "path": raw, "options": options, "unlabeled_fmri": ""}


# -- design --------------------------------------------------------------------------------------


def _seed_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _subject_key(subject: str) -> int:
    return int.from_bytes(subject.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def make_design(c: dict, n_subjects: int, rng: np.random.Generator) -> dict:
    """NSD's design arrays for ``n_subjects`` (rows of subjectim), 1-based as published.

    Returns ``subjectim`` (n_subjects, n_shared + own), ``masterordering`` (n_trials,),
    ``sharedix`` (n_shared,) and ``n_images`` (imgBrick rows).
    """
    n_shared, own = c["n_shared_images"], c["images_per_subject"]
    n_images = n_shared + n_subjects * own
    ids = rng.permutation(n_images)  # nsdIds (0-based) in order of use
    shared = np.sort(ids[:n_shared])
    subjectim = np.stack([np.r_[shared, ids[n_shared + k * own : n_shared + (k + 1) * own]] for k in range(n_subjects)])
    n_trials = c["sessions"] * c["trials_per_session"]
    reps = np.ones(own, np.int64)  # each own image once, then extra showings up to three
    extra = n_trials - n_shared * c["shared_repeats"] - own
    reps += np.bincount(rng.choice(np.repeat(np.arange(own), 2), extra, replace=False), minlength=own)
    columns = np.r_[np.repeat(np.arange(n_shared), c["shared_repeats"]), np.repeat(n_shared + np.arange(own), reps)]
    order = rng.permutation(columns) + 1
    return {"subjectim": subjectim + 1, "masterordering": order, "sharedix": shared + 1, "n_images": n_images}


def _labels(model, atlas: str) -> np.ndarray:
    """(X, Y, Z) int16 label volume of ``atlas`` for a voxel model: -1 / 0 / k (module docstring)."""
    index = {name: k for k, name in tables()[atlas].items()}
    vol = np.full(model.volume_shape, -1, np.int16)
    values = np.zeros(len(model.roi), np.int16)
    for roi, where in ATLAS_OF.items():
        sel = model.roi == roi
        name = "nsdgeneral" if atlas == "nsdgeneral" else where.get(atlas)
        if name is None or not sel.any():
            continue
        if isinstance(name, str):
            values[sel] = index[name]
        elif atlas == "prf-visualrois":  # ventral = upper visual field (image y < 0)
            values[sel] = np.where(model.prf_xy[sel, 1] < 0, index[name[0]], index[name[1]])
        else:  # posterior / anterior half (voxel slots run posterior → anterior along y, then z)
            slot = model.ijk[sel, 1] * model.volume_shape[2] + model.ijk[sel, 2]
            rank = np.argsort(np.argsort(slot, kind="stable"), kind="stable")
            values[sel] = np.where(rank < sel.sum() // 2, index[name[0]], index[name[1]])
    vol[tuple(model.ijk.T)] = values
    return vol


def _affine(shape) -> np.ndarray:
    aff = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    aff[:3, 3] = -VOXEL_MM * (np.asarray(shape) - 1) / 2.0
    return aff


#: COCO-2017 annotation files, where nsd_access looks for them (``cocoId`` = nsdId here)
ANNOTATIONS = "nsddata_stimuli/stimuli/nsd/annotations"


def write_coco_annotations(folder: Path, scenes, categories, size: int) -> None:
    """``captions_train2017.json`` and ``instances_train2017.json`` in COCO's format: per image its
    template captions, and per object its category and true box ``[x, y, w, h]`` (visible pixels)."""
    from .images import describe

    folder.mkdir(parents=True, exist_ok=True)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": size, "height": size} for i in range(len(scenes))]
    captions, instances = [], []
    for i, sc in enumerate(scenes):
        captions += [{"id": len(captions) + k + 1, "image_id": i, "caption": t} for k, t in enumerate(sc.captions)]
        for label, box in zip(sc.labels, sc.boxes.tolist()):
            if box[2] and box[3]:  # a distractor hidden entirely has no box
                instances.append({"id": len(instances) + 1, "image_id": i, "category_id": label + 1, "bbox": box,
                                  "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    cats = [{"id": k + 1, "name": describe(cat), "supercategory": cat.shape} for k, cat in enumerate(categories)]
    for name, payload in (("captions", {"images": images, "annotations": captions}),
                          ("instances", {"images": images, "annotations": instances, "categories": cats})):  # fmt: skip
        (folder / f"{name}_train2017.json").write_text(json.dumps(payload, sort_keys=True))


#: the Algonauts-2023 twin of the same experiment (``nsd.write_algonauts``), under the raw folder
ALGONAUTS = algonauts_reader.READER.name


def _algonauts_subject(model, psc, seen, trials_per_session, imgs, objects, n_categories):
    """One subject as the challenge published it: betas (as stored, int16 / 300) z-scored per
    voxel within each session, averaged over each image's trials, rows sorted by nsdId; voxels =
    vertices, left hemisphere (x below the midline gap) then right, in the reader's order; labels
    CSV = the categories of each scene's objects."""
    from .algonauts_layout import AlgonautsSubject

    x = np.round(psc * 300.0) / 300.0
    for start in range(0, len(x), trials_per_session):
        block = x[start : start + trials_per_session]
        x[start : start + trials_per_session] = (block - block.mean(0)) / block.std(0)
    ids, inverse = np.unique(seen, return_inverse=True)
    sums = np.zeros((len(ids), x.shape[1]))
    np.add.at(sums, inverse, x)
    avg = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    order = np.argsort(np.ravel_multi_index(tuple(model.ijk.T), model.volume_shape, order="F"))
    left = model.ijk[order, 0] < (model.volume_shape[0] - 2) // 2
    hemis = (order[left], order[~left])
    labels = {a: tuple(_labels(model, a)[tuple(model.ijk[h].T)] for h in hemis) for a in ATLASES if a != "nsdgeneral"}
    hot = np.zeros((len(ids), n_categories))
    for row, i in enumerate(ids.tolist()):
        hot[row, list(objects[i])] = 1.0
    return AlgonautsSubject(nsd_ids=ids.tolist(), images=imgs[ids], lh_fmri=avg[:, hemis[0]], rh_fmri=avg[:, hemis[1]],
                            roi_labels=labels, labels=(ids.tolist(), ["train2017"] * len(ids), hot))  # fmt: skip


# -- the simulator -------------------------------------------------------------------------------


def simulate_nsd(cfg: dict, seed: int, subjects: list[str], outdir: str | Path) -> None:
    """Generate images and fMRI for ``subjects`` from ``cfg`` (``simulation:``, design nsd)."""
    import torch

    from ...features.efficientnet import embed
    from . import images as sim_images
    from . import voxels as sim_voxels
    from .dataset import D_CATEGORY, D_SEMANTIC

    torch.manual_seed(seed)
    c = cfg[NAME]
    numbers = {s: nsd_reader.subject_number(s) for s in subjects}
    n_rows = max(numbers.values())
    design = make_design(c, len(subjects), _seed_for(seed, 11))
    # subjectim rows are subject numbers; a row of an unsimulated number repeats the first subject's
    rows = np.repeat(design["subjectim"][:1], n_rows, axis=0)
    for k, s in enumerate(subjects):
        rows[numbers[s] - 1] = design["subjectim"][k]
    subjectim, order, sharedix, n_images = rows, design["masterordering"], design["sharedix"], design["n_images"]
    shared = sharedix - 1
    train_ids = np.setdiff1d(np.arange(n_images), shared)

    size = cfg["image_size"]
    categories = sim_images.category_table(c["n_categories"], seed)
    label_rng = _seed_for(seed, 12)
    labels = label_rng.integers(0, len(categories), n_images)
    n_distractors = label_rng.integers(0, c["max_distractors"] + 1, n_images)
    objects = [[int(m), *label_rng.integers(0, len(categories), k).tolist()] for m, k in zip(labels, n_distractors)]
    log.info("drawing %d scenes at %d px", n_images, size)
    scenes = [sim_images.draw_scene(categories, o, size, int(k))
              for o, k in zip(objects, _seed_for(seed, 13).integers(0, 2**31, n_images))]  # fmt: skip
    imgs = np.stack([sc.image for sc in scenes])
    fg = np.stack([sc.foreground for sc in scenes])

    log.info("EfficientNet-Lite0 features of %d images", n_images)
    pooled = embed(imgs, size=96, outputs=("pooled",))["pooled"].astype(np.float64)
    mu = pooled[train_ids].mean(0)
    _, _, vt = np.linalg.svd(pooled[train_ids] - mu, full_matrices=False)
    semantic = (pooled - mu) @ vt[: min(D_SEMANTIC, len(vt) - 1)].T
    semantic /= semantic[train_ids].std(0)
    cat_embedding = _seed_for(seed, 14).normal(size=(len(categories), D_CATEGORY))[labels]
    maps = sim_voxels.feature_maps(imgs)

    T = c["trials_per_session"]
    betas, rois, ncsnr, affines, algonauts = {}, {}, {}, {}, {}
    with atomic_path(outdir) as tmp:
        tmp.mkdir(parents=True)
        truth = h5py.File(tmp / "truth.h5", "w", track_order=False)
        for split, ids in (("train", train_ids), ("test", shared)):
            g = truth.create_group(f"images/{split}")
            g.create_dataset("foreground", data=fg[ids], compression="gzip", track_times=False)
            g.create_dataset("names", data=np.array([f"nsd{i:05d}" for i in ids.tolist()], "S"), track_times=False)
            g.create_dataset("stimulus_id", data=ids.astype(np.float64), track_times=False)
            g.create_dataset("category", data=labels[ids], track_times=False)
        for s in subjects:
            n = numbers[s]
            model = sim_voxels.build_voxel_model(
                cfg["voxels"], cfg["subjects"][s]["noise_sd"], semantic.shape[1], D_CATEGORY,
                seed=int(_seed_for(seed, 4, _subject_key(s)).integers(2**31)),
            )  # fmt: skip
            drive = sim_voxels.noise_free_drive(model, maps, semantic, cat_embedding)
            own = subjectim[n - 1, len(shared) :] - 1
            signal = sim_voxels.standardise(drive, drive[own])
            rng = _seed_for(seed, 5, _subject_key(s))
            seen = subjectim[n - 1, order - 1] - 1  # nsdId of every trial
            y = signal[seen] + rng.standard_normal((len(seen), len(model.roi))) * model.noise_sd
            for start in range(0, len(seen), T):  # per-session offset and linear drift
                t = np.linspace(-0.5, 0.5, T)[:, None]
                drift = cfg["drift_sd"] * SESSION_DRIFT
                y[start : start + T] += rng.normal(0, drift, len(model.roi)) + rng.normal(0, drift, len(model.roi)) * t
            baseline, gain = rng.uniform(0.5, 3.0, len(model.roi)), rng.uniform(0.5, 1.5, len(model.roi))
            psc = baseline + gain * y  # % signal change
            vol = np.zeros((len(seen), *model.volume_shape), np.float32)
            vol[(slice(None), *model.ijk.T)] = psc
            betas[n] = vol
            if c["write_algonauts"]:
                algonauts[s] = _algonauts_subject(model, psc, seen, T, imgs, [scenes[i].labels for i in range(n_images)],
                                                  len(categories))  # fmt: skip
            rois[n] = {a: _labels(model, a) for a in ATLASES}
            nc = np.zeros(model.volume_shape, np.float32)
            nc[tuple(model.ijk.T)] = 1.0 / model.noise_sd
            ncsnr[n], affines[n] = nc, _affine(model.volume_shape)

            # truth, voxels in the reader's order (volume order, x fastest)
            vox = np.argsort(np.ravel_multi_index(tuple(model.ijk.T), model.volume_shape, order="F"))
            ceiling = np.sqrt(1.0 / (1.0 + model.noise_sd[vox] ** 2 / c["shared_repeats"]))
            g = truth.create_group(f"sub-{s}")
            for key, val in (
                ("signal_train", signal[train_ids][:, vox].astype(np.float32)),
                ("signal_test", signal[shared][:, vox].astype(np.float32)),
                ("noise_sd", model.noise_sd[vox]),
                ("noise_ceiling", ceiling),
                ("roi", model.roi[vox].astype("S")),
                ("prf_xy", model.prf_xy[vox]),
                ("prf_sigma", model.prf_sigma[vox]),
            ):
                g.create_dataset(key, data=val, track_times=False)
        truth.close()
        nsd_layout.write_nsd_tree(
            tmp, images=imgs, subjectim=subjectim, masterordering=order, sharedix=sharedix,
            trials_per_session=T, betas=betas, rois=rois, roi_names=tables(), affines=affines,
            runs_per_session=c["runs_per_session"], ncsnr=ncsnr,
        )  # fmt: skip
        write_coco_annotations(tmp / ANNOTATIONS, scenes, categories, size)
        if algonauts:
            from .algonauts_layout import write_algonauts_tree

            write_algonauts_tree(tmp / ALGONAUTS, {f"subj{numbers[s]:02d}": a for s, a in algonauts.items()},
                                 algonauts_mappings(),
                                 category_names=[sim_images.describe(k) for k in categories])  # fmt: skip
    log.info("wrote a simulated NSD tree: %d subjects, %d images (%d shared), %d trials each",
             len(subjects), n_images, len(shared), len(order))  # fmt: skip


__all__ = ["ATLASES", "NAME", "check", "make_design", "reader_view", "roi_names", "simulate_nsd", "tables"]
