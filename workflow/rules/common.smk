# Helpers shared by the rules: wildcard constraints from the config, input functions, targets.
# Dataset formats and method families are plugins: this file reaches them only through the reader
# registry (fmrirecon.data.readers) and the family registry (fmrirecon.methods).
import re

from fmrirecon.config import config_hash, resolve_methods
from fmrirecon.data.pools import pool_source
from fmrirecon.data.readers import get_reader
from fmrirecon.data.simulation import (
    design_settings,
    simulation_for,
    generated_dataset,
    truth_per_voxel,
)
from fmrirecon.evaluate.presets import resolve_protocols
from fmrirecon.evaluate.truth_cache import feature_plan
from fmrirecon.evaluate.split import split_metrics
from fmrirecon.methods import PLUGINS, get_family

DATASETS = {d["name"]: d for d in config["datasets"]}
SIMULATED = [n for n, d in DATASETS.items() if d["format"] == "simulated"]
#: simulated datasets whose truth.h5 has per-voxel arrays in the reader's rows and voxels (oracle, ceilings)
VOXEL_TRUTH = [
    n for n in SIMULATED if truth_per_voxel(DATASETS[n], config["simulation"])
]
#: the `simulation:` block as the chosen design reads it (other designs' keys left out)
SIMULATION = design_settings(config["simulation"])
METHODS = config["methods"]
#: Every method's merged settings (family block + overrides), built once at parse time.
METHOD_SETTINGS = resolve_methods(config)
FAMILY = {m: get_family(spec["family"]) for m, spec in METHODS.items()}
PROTOCOLS = config["evaluation"]["protocols"]
#: unlabeled pretraining pools (results/pools/<pool>/pool.h5), built when a method uses one
POOLS = config["pools"]
SIMULATED_POOLS = [n for n, p in POOLS.items() if p["format"] == "simulated"]
PROTOCOL_SPECS = resolve_protocols(PROTOCOLS, config["evaluation"]["presets"])
#: (network, resolution, layer) of the ground-truth features every protocol shares (rule truth_features)
TRUTH_FEATURE_PLAN = feature_plan(PROTOCOL_SPECS.values())


def _alternatives(values):
    """A wildcard constraint matching exactly these names (regex-escaped)."""
    return "|".join(sorted({re.escape(str(v)) for v in values})) or "(?!x)x"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    method=_alternatives(METHODS),
    protocol=_alternatives(PROTOCOLS),
    subject=_alternatives(s for d in DATASETS.values() for s in d["subjects"]),
    roi=_alternatives(r for d in DATASETS.values() for r in d["rois"]),
    pool=_alternatives(POOLS),


# -- datasets: everything format-specific comes from the dataset's reader ----------------------
def raw_root(name):
    """Folder of the dataset's published files (generated for simulated data)."""
    ds = DATASETS[name]
    return f"results/{name}/raw" if ds["format"] == "simulated" else ds["path"]


def reader_view(name):
    """(reader, dataset entry as the reader reads it; its ``path`` is the folder the reader reads,
    e.g. ``raw/algonauts2023`` for the Algonauts twin of a simulated NSD)."""
    ds = DATASETS[name]
    if ds["format"] == "simulated":
        ds = generated_dataset(ds, raw_root(name), config["simulation"])
    return get_reader(ds["format"]), ds


def get_truth_file(wildcards):
    """The simulation truth (true foreground, noise-free signals); empty for real data."""
    if wildcards.dataset in SIMULATED:
        return f"results/{wildcards.dataset}/raw/truth.h5"
    return ""


def get_image_inputs(wildcards):
    """Files prepare_images reads: the generated folder, or the files the reader names."""
    name = wildcards.dataset
    if name in SIMULATED:
        return [raw_root(name)]
    reader, ds = reader_view(name)
    extra = [ds[k] for k in ("unpaired_images", "gallery_images") if ds[k]]
    return reader.image_inputs(ds, raw_root(name)) + extra


#: Dataset keys that shape the DAG, not how a reader reads images (kept out of prepare_images'
#: params, so e.g. adding a subject does not rerun it), except ``subjects`` for a reader whose
#: stimulus set depends on them (``Reader.stimuli_need_subjects``).
DAG_KEYS = ("name", "subjects", "rois", "methods", "normalization")


def get_image_source(wildcards):
    reader, ds = reader_view(wildcards.dataset)
    keep = ("subjects",) if reader.stimuli_need_subjects else ()
    strip = [k for k in DAG_KEYS if k not in keep]
    return {
        "reader": reader.name,
        "root": ds.get("path") or raw_root(wildcards.dataset),
        "dataset": {k: v for k, v in ds.items() if k not in strip},
        "gallery_images": ds["gallery_images"],
        "truth": get_truth_file(wildcards),
    }


def get_subject_source(wildcards):
    reader, ds = reader_view(wildcards.dataset)
    files = reader.subject_inputs(
        ds, ds.get("path") or raw_root(wildcards.dataset), wildcards.subject
    )
    options = ds.get("options") or {}
    truth = get_truth_file(wildcards) if wildcards.dataset in VOXEL_TRUTH else ""
    return {"reader": reader.name, "files": files, "options": options, "truth": truth}


def get_mask_inputs(wildcards):
    inputs = {"images": f"results/{wildcards.dataset}/images.h5"}
    if wildcards.dataset in SIMULATED:  # the generated folder holds the reader's files
        inputs["source"] = raw_root(wildcards.dataset)
    else:
        inputs.update(get_subject_source(wildcards)["files"])
    return inputs


def get_dataset_setting(key):
    def setting(wildcards):
        return DATASETS[wildcards.dataset][key]

    return setting


def get_data_hash(wildcards):
    """Provenance hash of everything in the config that shapes a dataset's prepared files (not
    which subjects, ROIs or methods the DAG asks for: adding one reruns nothing that exists).
    """
    ds = {
        k: v
        for k, v in DATASETS[wildcards.dataset].items()
        if k not in ("subjects", "rois", "methods")
    }
    sim = SIMULATION if ds["format"] == "simulated" else None
    return config_hash(ds, config["rois"], config["image_size"], config["seed"], sim)


# -- pretraining pools: their own subjects and voxel space (fmrirecon.data.pools) ---------------
def get_pool_source(wildcards):
    """What rule prepare_pool reads and how it prepares it (files, areas, windows, patch size)."""
    return pool_source(wildcards.pool, POOLS[wildcards.pool])


def get_pool_inputs(wildcards):
    """The generated folder of a simulated pool, else the pool's subject files."""
    if wildcards.pool in SIMULATED_POOLS:
        return [f"results/pools/{wildcards.pool}/raw"]
    return get_pool_source(wildcards)["files"]


def get_pool_hash(wildcards):
    """Provenance hash of the pool's entry (and the seed, for a simulated pool)."""
    seed = config["seed"] if wildcards.pool in SIMULATED_POOLS else None
    return config_hash(POOLS[wildcards.pool], seed)


def get_pool_simulation(wildcards):
    spec = POOLS[wildcards.pool]
    return {
        "simulation": spec["simulation"],
        "subjects": spec["subjects"],
        "rois": spec["rois"],
    }


# -- methods: everything family-specific comes from the family registry ----------------------
def method_applies(method, dataset, roi, subject):
    """Whether ``method`` runs on this dataset × subject × ROI."""
    spec = METHODS[method]
    if spec["subjects"] and subject not in spec["subjects"]:
        return False
    if FAMILY[method].needs_truth and dataset not in VOXEL_TRUTH:
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


def methods_of(plugin):
    """The methods whose family belongs to ``plugin``."""
    return [m for m in METHODS if FAMILY[m].plugin == plugin]


def method_protocols(method):
    """The method's protocols, else its family's defaults, else every protocol (all within
    evaluation.protocols)."""
    own = METHODS[method]["protocols"] or FAMILY[method].default_protocols
    return [p for p in PROTOCOLS if p in own] if own else PROTOCOLS


def get_simulation_settings(wildcards):
    """The simulation settings of one simulated dataset (plus the layout its reader reads)."""
    return simulation_for(DATASETS[wildcards.dataset], SIMULATION)


def get_method_settings(wildcards):
    return METHOD_SETTINGS[wildcards.method]


def is_simulated(wildcards):
    return DATASETS[wildcards.dataset]["format"] == "simulated"


def get_method_protocol_specs(wildcards):
    """{protocol name: spec} of every protocol the method is scored with."""
    return {p: PROTOCOL_SPECS[p] for p in method_protocols(wildcards.method)}


def get_family_name(wildcards):
    return METHODS[wildcards.method]["family"]


# -- resources -----------------------------------------------------------------------------------
def get_runtime(base_minutes):
    """A resources callable: ``base_minutes`` × attempt, so a retry gets more time."""

    def runtime(wildcards, attempt):
        return base_minutes * attempt

    return runtime


def get_mem_mb(base_mb):
    def mem_mb(wildcards, attempt):
        return base_mb * attempt

    return mem_mb


def gpu_resource():
    """The `gpu` resource of every training or sampling rule, from the config (0 on CPU-only)."""
    return config["training"]["gpus"]


PRECISION = config["training"]["precision"]


# -- what each family's rules file hands the generic rules -------------------------------------
#: plugin -> {"loss_logs", "train_summaries", "report_inputs", "targets"}: callables returning
#: paths, set once by that plugin's rules file through register_rules().
RULE_HOOKS = {}


def register_rules(
    plugin, *, loss_logs, train_summaries, report_inputs=None, targets=None
):
    """Called once by ``workflow/rules/<plugin>.smk``: its per-epoch loss logs and training
    summaries (the report's training section), extra report inputs (name -> paths) and targets.
    """
    if plugin not in PLUGINS or plugin in RULE_HOOKS:
        raise WorkflowError(
            f"rules of family plugin {plugin!r} registered twice or not in {PLUGINS}"
        )
    RULE_HOOKS[plugin] = {
        "loss_logs": loss_logs,
        "train_summaries": train_summaries,
        "report_inputs": report_inputs or (lambda: {}),
        "targets": targets or (lambda: []),
    }


def _hooked(kind):
    missing = [p for p in PLUGINS if p not in RULE_HOOKS]
    if missing:
        raise WorkflowError(
            f"family plugin(s) {missing} have no rules registered (include their .smk)"
        )
    return [RULE_HOOKS[p][kind]() for p in PLUGINS]


def training_log_targets():
    return sorted({p for paths in _hooked("loss_logs") for p in paths})


def train_summary_targets():
    return sorted({p for paths in _hooked("train_summaries") for p in paths})


def get_family_loss_logs(wildcards):
    return sorted(set(RULE_HOOKS[wildcards.family]["loss_logs"]()))


def get_training_report_inputs(wildcards):
    inputs = {"summaries": train_summary_targets()}
    for extra in _hooked("report_inputs"):
        for key, paths in extra.items():
            inputs[key] = sorted(set(inputs.get(key, [])) | set(paths))
    return inputs


# -- targets ---------------------------------------------------------------------------------
def metrics_targets():
    return [
        f"results/{d}/sub-{s}/roi-{r}/{m}/metrics-{p}.json"
        for d, s, r, m in recon_units()
        for p in method_protocols(m)
    ]


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


def data_card_targets():
    return [f"results/report/data_cards/{name}.csv" for name in DATASETS]


def get_data_card_inputs(wildcards):
    """images.h5 and every configured subject × ROI data.h5 of the dataset."""
    ds = DATASETS[wildcards.dataset]
    return {
        "images": f"results/{wildcards.dataset}/images.h5",
        "subjects": [
            f"results/{wildcards.dataset}/sub-{s}/roi-{r}/data.h5"
            for s in ds["subjects"]
            for r in ds["rois"]
        ],
    }


def _published_papers():
    from fmrirecon.report.cards import load_published

    return load_published()


#: paper id -> its published results and claims (workflow/fmrirecon/report/published.yaml)
PUBLISHED_PAPERS = _published_papers()


def reproduction_card_targets():
    return [f"results/report/cards/{paper}.csv" for paper in PUBLISHED_PAPERS]


def get_reproduction_card_inputs(wildcards):
    """results/metrics.csv and the metrics JSONs of the (method, protocol) pairs the card reads."""
    from fmrirecon.report.cards import paper_uses

    uses = paper_uses(PUBLISHED_PAPERS[wildcards.paper])
    return {
        "table": "results/metrics.csv",
        "metrics": [
            f"results/{d}/sub-{s}/roi-{r}/{m}/metrics-{p}.json"
            for d, s, r, m in recon_units()
            for p in method_protocols(m)
            if (m, p) in uses
        ],
    }


def get_card_datasets():
    """Our datasets as the cards match them to a paper's: reader (``read_as`` if simulated)."""
    return {
        name: {
            "reader": d["read_as"] if d["format"] == "simulated" else d["format"],
            "simulated": d["format"] == "simulated",
        }
        for name, d in DATASETS.items()
    }


def get_card_method_settings():
    return {m: METHOD_SETTINGS[m] for m in METHODS}


def get_data_card_format(wildcards):
    """The reader that read the dataset: ``read_as`` for simulated data, else ``format``."""
    ds = DATASETS[wildcards.dataset]
    return ds["read_as"] if ds["format"] == "simulated" else ds["format"]


def prepared_targets():
    return [
        f"results/{name}/sub-{s}/roi-{r}/data.h5"
        for name, d in DATASETS.items()
        for s in d["subjects"]
        for r in d["rois"]
    ]


def ablation_groups():
    """Method groups for the ablation/ROI charts: family -> its methods (the one named like the
    family first), for the families the registry marks as ablation groups."""
    groups = {}
    for m in METHODS:
        if FAMILY[m].ablation_group:
            groups.setdefault(METHODS[m]["family"], []).append(m)
    return {
        f: sorted(ms, key=lambda m: (m != f, ms.index(m))) for f, ms in groups.items()
    }


def metrics_figure_targets():
    """One metrics figure per protocol that some reconstruction is scored with."""
    used = {p for *_, m in recon_units() for p in method_protocols(m)}
    return [f"results/report/metrics/{p}.png" for p in PROTOCOLS if p in used]


def ablation_targets():
    trained = {m for *_, m in recon_units()}
    if not any(m in trained for ms in ablation_groups().values() for m in ms):
        return []
    return ["results/report/method_groups.png"]


def training_targets():
    """The report's training section, whenever some target trains a network."""
    if not training_log_targets():
        return []
    curves = [
        f"results/report/training/{p}.png"
        for p in PLUGINS
        if RULE_HOOKS[p]["loss_logs"]()
    ]
    return curves + ["results/training_summary.csv"]


def get_all_targets():
    return (
        prepared_targets()
        + [
            "results/metrics.csv",
            "results/method_comparisons.csv",
            "results/unavailable_metrics.csv",
        ]
        + grid_targets()
        + data_card_targets()
        + reproduction_card_targets()
        + (["results/report/summary.rst"] if reproduction_card_targets() else [])
        + metrics_figure_targets()
        + ablation_targets()
        + sorted({p for paths in _hooked("targets") for p in paths})
        + training_targets()
    )
