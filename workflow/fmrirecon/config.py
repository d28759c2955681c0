"""Configuration: schema validation with defaults, clear one-line errors, and a stable hash.

``validate_config`` is the first thing the Snakefile runs. It fills every default from
``workflow/schemas/config.schema.yaml`` and fails on an unknown key or a wrong type with the key's
path, e.g. ``config error at datasets[0]: unknown key 'formt' (allowed: format, name, ...)``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

from .errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def _validator_with_defaults():
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _format_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _explain(error: jsonschema.ValidationError) -> str:
    where = _format_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"config error at {where}: unknown key {', '.join(map(repr, extra))}{hint}"
    if error.validator == "enum":
        return f"config error at {where}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "type":
        return (
            f"config error at {where}: expected {error.validator_value}, "
            f"got {type(error.instance).__name__} {error.instance!r}"
        )
    if error.validator == "required":
        return f"config error at {where}: {error.message}"
    return f"config error at {where}: {error.message}"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The parsed schema (a fresh copy; parsed once per process, the DAG asks many times)."""
    return copy.deepcopy(_parsed_schema(str(path)))


@functools.lru_cache(maxsize=4)
def _parsed_schema(path: str) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults in place, validate, check cross-references; return the config.

    Raises:
        InputError: one line naming the offending key path.
    """
    schema = load_schema() if schema is None else schema
    validator = _validator_with_defaults()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise InputError(_explain(jsonschema.exceptions.best_match(errors)))
    _check_cross_references(config)
    return config


def _check_cross_references(config: dict) -> None:
    names = [d["name"] for d in config["datasets"]]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"config error at datasets: duplicate dataset name(s) {duplicated}")
    sim = config["simulation"]
    from .data.simulation.images import N_CATEGORY_KINDS

    n_cat = sim["n_train_categories"] + sim["n_test_categories"] + sim["n_extra_categories"]
    if n_cat > N_CATEGORY_KINDS:
        raise InputError(
            f"config error at simulation: {n_cat} categories in total (train + test + extra), "
            f"the simulator has {N_CATEGORY_KINDS}"
        )
    from .evaluate.presets import resolve_protocols  # torch-free

    evaluation = config.get("evaluation", {})
    resolve_protocols(evaluation.get("protocols", []), evaluation.get("presets", {}))
    protocols = set(evaluation.get("protocols", []))
    for name, spec in config.get("methods", {}).items():
        extra = [p for p in spec.get("protocols", []) if p not in protocols]
        if extra:
            raise InputError(
                f"config error at methods.{name}.protocols: {extra} not in evaluation.protocols "
                f"({sorted(protocols)})"
            )
        method_settings(config, name)
    sim_subjects = set(sim.get("subjects", {}))
    for i, ds in enumerate(config["datasets"]):
        if ds["format"] == "simulated":
            missing = [s for s in ds["subjects"] if s not in sim_subjects]
            if missing:
                raise InputError(
                    f"config error at datasets[{i}].subjects: simulated subject(s) {missing} "
                    f"have no entry in simulation.subjects (defined: {sorted(sim_subjects)})"
                )
        elif not ds.get("path"):
            raise InputError(
                f"config error at datasets[{i}].path: format {ds['format']} needs the folder of the "
                "real dataset (e.g. resources/god)"
            )
        unknown = [m for m in ds.get("methods", []) if m not in config.get("methods", {})]
        if unknown:
            raise InputError(
                f"config error at datasets[{i}].methods: {unknown} not defined under methods "
                f"(defined: {sorted(config.get('methods', {}))})"
            )
        reader = ds["read_as"] if ds["format"] == "simulated" else ds["format"]
        if reader == "god_npz" and ds.get("roi_source") == "nifti":
            raise InputError(
                f"config error at datasets[{i}].roi_source: the npz layout has no voxel coordinates, "
                "so ROIs come from its own masks (roi_source: metadata)"
            )
        if reader == "god_npz" and ds.get("unlabeled_fmri"):
            raise InputError(
                f"config error at datasets[{i}].unlabeled_fmri: only supported with format god_bdata"
            )


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_settings(config: dict, method: str, schema: dict | None = None) -> dict:
    """The settings a trained method runs with: its family's top-level block + its overrides.

    ``methods.<m>.overrides`` is deep-merged over ``config[<family>]``; the result is validated
    (with defaults) against the family block's schema, so an ablation cannot misspell a key.
    Families without a block (the baselines) return their method entry unchanged.

    Raises:
        InputError: one line naming ``methods.<m>.overrides`` and the offending key.
    """
    spec = config["methods"][method]
    family = spec["family"]
    schema = _parsed_schema(str(SCHEMA_PATH)) if schema is None else schema  # read-only here
    block_schema = schema["properties"].get(family)
    if block_schema is None:
        if spec.get("overrides"):
            raise InputError(
                f"config error at methods.{method}.overrides: family {family} has no settings "
                "block to override"
            )
        return spec
    merged = _deep_merge(config.get(family, {}), spec.get("overrides", {}))
    validator = _validator_with_defaults()({**block_schema, "$defs": schema.get("$defs", {})})
    errors = sorted(validator.iter_errors(merged), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        message = _explain(jsonschema.exceptions.best_match(errors))
        message = message.replace("config error at ", "", 1)
        where, _, rest = message.partition(": ")
        where = "" if where == "<top level>" else f".{where}"
        raise InputError(f"config error at methods.{method}.overrides{where}: {rest}")
    return merged


#: What each CAD stage reads of a method's ``cad`` settings: its rule's params (and, for the shared
#: stages, the hash in its file name) hold only these, so changing a later stage's settings neither
#: renames nor reruns an earlier one.
CAD_STAGE_KEYS = {
    "fmri_mae": ("size", "fmri_mae", "use_test_fmri_in_pretraining"),
    "image_mae": ("size", "image_size", "image_mae"),
    "cross_modal": ("image_size", "cross_modal"),
    "autoencoder": ("size", "image_size", "first_stage", "autoencoder"),
    "ldm": ("size", "image_size", "ldm_pretrain"),
    "fmri_ldm": ("size", "ldm"),
    "sampling": ("size", "image_size", "sampling"),
}


def cad_stage_settings(settings: dict, stage: str) -> dict:
    """The part of ``settings`` (one method's merged ``cad`` block) that ``stage`` uses."""
    out = {k: settings[k] for k in CAD_STAGE_KEYS[stage]}
    if stage == "image_mae":  # phase 2 uses the image MAE's decoder, so it is built at that depth
        out["cross_modal"] = {"decoder_depth": settings["cross_modal"]["decoder_depth"]}
    if stage == "cross_modal":  # phase 2 sparsifies the fMRI as phase 1 did
        out["fmri_mae"] = {"sparsify": settings["fmri_mae"]["sparsify"]}
    if stage == "ldm":  # the UNet is built with the fMRI condition's widths
        out["ldm"] = {k: settings["ldm"][k] for k in ("cross_attention_dim", "pooled_dim")}
    return out


def config_hash(*parts) -> str:
    """A short stable hash of JSON-serialisable config parts (for provenance attributes)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_entry(config: dict, name: str) -> dict:
    for ds in config["datasets"]:
        if ds["name"] == name:
            return ds
    raise InputError(f"config error: no dataset named {name!r} in datasets")
