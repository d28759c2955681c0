# Helpers shared by the rules: wildcard constraints from the config, input functions, targets.
from fmrirecon.baselines import BASELINE_FAMILIES
from fmrirecon.config import (
    cad_stage_settings,
    config_hash,
    dataset_entry,
    method_settings,
)
from fmrirecon.evaluate.presets import resolve_protocols

DATASETS = {d["name"]: d for d in config["datasets"]}
SIMULATED = [n for n, d in DATASETS.items() if d["format"] == "simulated"]


def _alternatives(values):
    return "|".join(sorted({str(v) for v in values})) or "(?!x)x"


METHODS = config["methods"]
BASELINES = [m for m, s in METHODS.items() if s["family"] in BASELINE_FAMILIES]
PROTOCOLS = config["evaluation"]["protocols"]


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    method=_alternatives(METHODS),
    protocol=_alternatives(PROTOCOLS),
    subject=_alternatives(s for d in DATASETS.values() for s in d["subjects"]),
    roi=_alternatives(r for d in DATASETS.values() for r in d["rois"]),


def get_dataset(wildcards):
    return dataset_entry(config, wildcards.dataset)


def get_raw_root(wildcards):
    """Folder of the dataset's published files (generated for simulated data)."""
    ds = get_dataset(wildcards)
    if ds["format"] == "simulated":
        return f"results/{ds['name']}/raw"
    return ds["path"]


def get_reader(wildcards):
    ds = get_dataset(wildcards)
    return ds["read_as"] if ds["format"] == "simulated" else ds["format"]


def get_images_npz(wildcards):
    ds = get_dataset(wildcards)
    if ds["format"] == "simulated":
        return f"images_{config['simulation']['image_size']}.npz"
    return ds["images_npz"]


def get_image_inputs(wildcards):
    """Files prepare_images reads: the generated folder, or the real dataset's image files."""
    ds = get_dataset(wildcards)
    root = get_raw_root(wildcards)
    if ds["format"] == "simulated":
        return [root]
    extra = [ds[k] for k in ("unpaired_images", "gallery_images") if ds[k]]
    if ds["format"] == "god_npz":
        return [f"{root}/{ds['images_npz']}"] + extra
    lists = [f"{root}/imageID_training.csv", f"{root}/imageID_test.csv"]
    return lists + [f"{root}/images/training", f"{root}/images/test"] + extra


def get_image_source(wildcards):
    ds = get_dataset(wildcards)
    root = get_raw_root(wildcards)
    unpaired, gallery = ds["unpaired_images"], ds["gallery_images"]
    if ds["format"] == "simulated":
        unpaired = unpaired or f"{root}/images/unpaired"
        gallery = gallery or f"{root}/images/gallery"
    return {
        "reader": get_reader(wildcards),
        "root": root,
        "images_npz": get_images_npz(wildcards),
        "unpaired_images": unpaired,
        "gallery_images": gallery,
        "truth": f"{root}/truth.h5" if ds["format"] == "simulated" else "",
    }


def get_subject_file(wildcards):
    root = get_raw_root(wildcards)
    if get_reader(wildcards) == "god_npz":
        return f"{root}/sbj_{wildcards.subject}.npz"
    return f"{root}/Subject{wildcards.subject}.h5"


def get_mask_inputs(wildcards):
    ds = get_dataset(wildcards)
    inputs = {"images": f"results/{wildcards.dataset}/images.h5"}
    if ds["format"] == "simulated":
        inputs["source"] = get_raw_root(wildcards)
        return inputs
    inputs["source"] = get_subject_file(wildcards)
    src = get_subject_source(wildcards)
    if src["unlabeled_file"]:
        inputs["unlabeled"] = src["unlabeled_file"]
    if ds["roi_source"] == "nifti":
        inputs["roi_labels"] = src["roi_labels"]
        inputs["roi_table"] = src["roi_table"]
    return inputs


def get_subject_source(wildcards):
    ds = get_dataset(wildcards)
    root = get_raw_root(wildcards)
    unlabeled = ""
    if ds["format"] == "simulated":
        unlabeled = f"{root}/Subject{wildcards.subject}_unlabeled.h5"
    elif ds["unlabeled_fmri"]:
        unlabeled = ds["unlabeled_fmri"].format(subject=wildcards.subject)
    return {
        "reader": get_reader(wildcards),
        "subject_file": get_subject_file(wildcards),
        "unlabeled_file": unlabeled,
        "roi_labels": f"{root}/sub-{wildcards.subject}_roi-labels.nii.gz",
        "roi_table": f"{root}/roi_labels.tsv",
        "truth": f"{root}/truth.h5" if ds["format"] == "simulated" else "",
    }


def get_normalization(wildcards):
    return get_dataset(wildcards)["normalization"]


def get_roi_source(wildcards):
    return get_dataset(wildcards)["roi_source"]


def get_dataset_subjects(wildcards):
    return list(get_dataset(wildcards)["subjects"])


def get_data_hash(wildcards):
    """Provenance hash of everything in the config that shapes a dataset's prepared files."""
    ds = get_dataset(wildcards)
    sim = config["simulation"] if ds["format"] == "simulated" else None
    return config_hash(ds, config["rois"], config["image_size"], config["seed"], sim)


def get_runtime(base_minutes):
    """A resources callable: ``base_minutes`` × attempt, so a retry gets more time."""

    def runtime(wildcards, attempt):
        return base_minutes * attempt

    return runtime


def get_mem_mb(base_mb):
    def mem_mb(wildcards, attempt):
        return base_mb * attempt

    return mem_mb


PROTOCOL_SPECS = resolve_protocols(PROTOCOLS, config["evaluation"]["presets"])


def method_applies(method, dataset, roi, subject):
    """Whether ``method`` runs on this dataset × subject × ROI (oracles need simulated truth)."""
    spec = METHODS[method]
    if spec["subjects"] and subject not in spec["subjects"]:
        return False
    if spec["family"] == "oracle_ridge" and DATASETS[dataset]["format"] != "simulated":
        return False
    if DATASETS[dataset]["methods"] and method not in DATASETS[dataset]["methods"]:
        return False
    return not spec["rois"] or roi in spec["rois"]


def recon_units():
    """Every (dataset, subject, roi, method) that gets a reconstruction."""
    return [
        (name, s, r, m)
        for name, d in DATASETS.items()
        for s in d["subjects"]
        for r in d["rois"]
        for m in METHODS
        if method_applies(m, name, r, s)
    ]


def get_method(wildcards):
    return METHODS[wildcards.method]


def get_truth_file(wildcards):
    if DATASETS[wildcards.dataset]["format"] == "simulated":
        return f"results/{wildcards.dataset}/raw/truth.h5"
    return ""


def get_protocol(wildcards):
    return PROTOCOL_SPECS[wildcards.protocol]


def method_protocols(method):
    return METHODS[method]["protocols"] or PROTOCOLS


def metrics_targets():
    return [
        f"results/{d}/sub-{s}/roi-{r}/{m}/metrics-{p}.json"
        for d, s, r, m in recon_units()
        for p in method_protocols(m)
    ]


def methods_of(*families):
    return [m for m, s in METHODS.items() if s["family"] in families]


def get_method_settings(wildcards):
    """A trained method's merged settings (family block + the method's overrides)."""
    return method_settings(config, wildcards.method)


TRAINING = config["training"]


# Each family's .smk appends a callable returning its loss-log paths (per-epoch TSV written by
# fmrirecon.train.loop.write_loss_log); the report plots every one of them.
TRAINING_LOGS = []


def training_log_targets():
    return sorted({p for fn in TRAINING_LOGS for p in fn()})


def checkpoint_dir(rule_name, *parts):
    """This job's checkpoint folder: outside its outputs, so a failed/preempted job keeps it."""
    return os.path.join(TRAINING["checkpoint_dir"], rule_name, *parts)


def gpu_resource():
    """The `gpu` resource of every training or sampling step, from the config (0 on CPU-only)."""
    return TRAINING["gpus"]


def grid_targets():
    return [
        f"results/report/grids/{name}_sub-{s}_roi-{r}.png"
        for name, d in DATASETS.items()
        for s in d["subjects"]
        for r in d["rois"]
    ]


def get_grid_inputs(wildcards):
    return {
        "images": f"results/{wildcards.dataset}/images.h5",
        "recons": [
            f"results/{wildcards.dataset}/sub-{wildcards.subject}/roi-{wildcards.roi}/{m}/recon.h5"
            for m in METHODS
            if method_applies(m, wildcards.dataset, wildcards.roi, wildcards.subject)
        ],
    }


def prepared_targets():
    return [
        f"results/{name}/sub-{s}/roi-{r}/data.h5"
        for name, d in DATASETS.items()
        for s in d["subjects"]
        for r in d["rois"]
    ]


def get_all_targets():
    return (
        prepared_targets()
        + [
            "results/metrics.csv",
            "results/method_comparisons.csv",
            "results/unavailable_metrics.csv",
        ]
        + grid_targets()
        + ["results/report/metrics.png"]
        + encdec_targets()
        + label_map_targets()
        + training_targets()
    )


def training_targets():
    """The report's training section, whenever some target trains a network."""
    if not training_log_targets():
        return []
    return ["results/report/training_curves.png", "results/training_summary.csv"]


def label_map_targets():
    return sorted(
        {
            f"results/report/label_maps/{d}.png"
            for d, s, r, m in recon_units()
            if METHODS[m]["family"] == "loopencdec"
        }
    )
