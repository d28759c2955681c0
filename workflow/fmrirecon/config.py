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
                if "default" not in sub:
                    continue
                if name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
                elif _merges_default(validator, sub, instance[name]):
                    # a user's `train: {epochs: 3}` keeps the stage's own schedule, lr, ...
                    instance[name] = _deep_merge(sub["default"], instance[name])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _merges_default(validator, sub: dict, value) -> bool:
    """Whether a user's value is deep-merged over the property's default instead of replacing it.

    True for a non-empty mapping default of a *record* (a fixed set of keys, e.g. a stage's
    ``train:`` block, ``simulation.voxels``): every key the user leaves out keeps the stage's own
    default, not the generic one of the shared ``optim`` definition. A *map* (free keys such as
    ``simulation.subjects`` or ``methods``) is replaced: merging would add entries nobody asked for.
    """
    default = sub["default"]
    if not (isinstance(default, dict) and default and isinstance(value, dict)):
        return False
    target = sub
    if "$ref" in sub:
        target = validator._resolver.lookup(sub["$ref"]).contents
    return "properties" in target and target.get("additionalProperties", True) is False


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


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise InputError(
                    f"config error in {self.name}: line {key_node.start_mark.line + 1}: key {key!r} is given "
                    f"twice (first on line {seen[key] + 1}); YAML would silently keep only the last"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def check_config_files(paths) -> None:
    """Fail with one line on a config file with a duplicated key or a YAML syntax error."""
    for path in paths:
        try:
            with open(path) as fh:
                yaml.load(fh, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise InputError(f"config error in {path}: {where}{getattr(exc, 'problem', None) or exc}") from None


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The parsed schema with every family plugin's settings blocks merged into its top-level
    properties (a fresh copy; parsed once per process, the DAG asks many times)."""
    return copy.deepcopy(_parsed_schema(str(path)))


@functools.lru_cache(maxsize=4)
def _parsed_schema(path: str) -> dict:
    from .methods import SETTINGS_SCHEMAS

    with open(path) as fh:
        schema = yaml.safe_load(fh)
    for plugin_schema in SETTINGS_SCHEMAS:
        with open(plugin_schema) as fh:
            blocks = yaml.safe_load(fh)["properties"]
        clash = sorted(set(blocks) & set(schema["properties"]))
        if clash:
            raise RuntimeError(f"{plugin_schema}: config block(s) {clash} are defined twice")
        schema["properties"].update(blocks)
    return schema


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
    from .data.pools import check_pools

    check_pools(config)  # before the methods: a method may name a pool
    sim = config["simulation"]
    from .data.simulation import check_simulated, design_of, nsd_design, simulated_rois
    from .data.simulation.images import N_CATEGORY_KINDS

    n_cat = sim["n_train_categories"] + sim["n_test_categories"] + sim["n_extra_categories"]
    if design_of(sim) == nsd_design.NAME:
        n_cat = sim[design_of(sim)]["n_categories"]  # the design's own block
    if n_cat > N_CATEGORY_KINDS:
        raise InputError(
            f"config error at simulation: {n_cat} categories in total (train + test + extra), "
            f"the simulator has {N_CATEGORY_KINDS}"
        )
    from .evaluate.presets import resolve_protocols  # torch-free

    evaluation = config.get("evaluation", {})
    resolve_protocols(evaluation.get("protocols", []), evaluation.get("presets", {}))
    protocols = set(evaluation.get("protocols", []))
    from .methods import FAMILIES, RESERVED_FOLDERS

    for name, spec in config.get("methods", {}).items():
        if name in RESERVED_FOLDERS:
            raise InputError(
                f"config error at methods.{name}: a method may not be named like a stage folder "
                f"{sorted(RESERVED_FOLDERS)}"
            )
        if spec["family"] not in FAMILIES:
            raise InputError(
                f"config error at methods.{name}.family: {spec['family']!r} is not one of {sorted(FAMILIES)}"
            )
        extra = [p for p in spec.get("protocols", []) if p not in protocols]
        if extra:
            raise InputError(
                f"config error at methods.{name}.protocols: {extra} not in evaluation.protocols "
                f"({sorted(protocols)})"
            )
    for name, settings in resolve_methods(config).items():
        FAMILIES[config["methods"][name]["family"]].check(name, settings, config)
    from .data.readers import READERS

    sim_subjects = set(sim.get("subjects", {}))
    for i, ds in enumerate(config["datasets"]):
        key = "read_as" if ds["format"] == "simulated" else "format"
        if ds[key] not in READERS:
            known = sorted(READERS) + ([] if key == "read_as" else ["simulated"])
            raise InputError(f"config error at datasets[{i}].{key}: {ds[key]!r} is not one of {known}")
        if ds["format"] == "simulated":
            missing = [s for s in ds["subjects"] if s not in sim_subjects]
            if missing:
                raise InputError(
                    f"config error at datasets[{i}].subjects: simulated subject(s) {missing} "
                    f"have no entry in simulation.subjects (defined: {sorted(sim_subjects)})"
                )
            check_simulated(ds, sim, f"datasets[{i}]")
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
        READERS[ds[key]].check(ds, f"datasets[{i}]")
        if ds["format"] != "simulated":
            _check_file_rois(ds, f"datasets[{i}]", READERS[ds[key]], config.get("rois", {}))
        else:  # what the simulator writes for this reader; config unions add to it
            known = simulated_rois(ds, sim, READERS[ds[key]].rois) | set(config.get("rois", {}))
            unknown = [r for r in ds["rois"] if r not in known]
            if unknown:
                raise InputError(f"config error at datasets[{i}].rois: {unknown} not simulated (the simulated "
                                 f"{ds[key]} files have {sorted(known)})")  # fmt: skip
    # names a method may be restricted to (it may run nowhere in a layered config, but a name that
    # is known nowhere is a typo that would drop the method silently)
    known_rois = {r for d in config["datasets"] for r in d["rois"]} | set(config.get("rois", {}))
    known_rois |= {r for d in config["datasets"] for r in READERS[d["read_as" if d["format"] == "simulated" else "format"]].rois}
    known_subjects = {s for d in config["datasets"] for s in d["subjects"]} | set(sim.get("subjects", {}))
    for name, spec in config.get("methods", {}).items():
        for key, known in (("rois", known_rois), ("subjects", known_subjects)):
            missing = [x for x in spec.get(key, []) if x not in known]
            if missing:  # a typo would silently drop the method from the DAG
                raise InputError(f"config error at methods.{name}.{key}: {missing} is not a known {key[:-1]} "
                                 f"(datasets, `rois:` unions and the formats' rosters know {sorted(known)})")  # fmt: skip


def _check_file_rois(ds: dict, where: str, reader, unions: dict) -> None:
    """Each ROI of a real dataset is a column of its files or a config union of their columns (the
    files' headers are read here, so a typo fails the dry run, not a job an hour later)."""
    for subject in ds["subjects"]:
        found = reader.file_rois(ds, ds["path"], subject)
        if found is None:
            continue
        source, names = found
        for roi in ds["rois"]:
            parts = unions.get(roi, [])
            if roi in names or (parts and all(p in names for p in parts)):
                continue
            why = f"; its union {parts} lacks {[p for p in parts if p not in names]}" if parts else ""
            raise InputError(f"config error at {where}.rois: ROI {roi!r} is neither in {source} "
                             f"(ROIs there: {sorted(names)}) nor a config `rois:` union of them{why}")  # fmt: skip


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_settings(config: dict, method: str, schema: dict | None = None) -> dict:
    """The settings a method runs with: its family's top-level block + its overrides.

    ``methods.<m>.overrides`` is deep-merged over ``config[<settings block>]``; the result is
    validated (with defaults) against the block's schema, so an ablation cannot misspell a key.
    Families without a block (the baselines) return their method entry unchanged.

    Raises:
        InputError: one line naming ``methods.<m>.overrides`` and the offending key.
    """
    from .methods import get_family

    spec = config["methods"][method]
    block = get_family(spec["family"]).settings_block
    schema = _parsed_schema(str(SCHEMA_PATH)) if schema is None else schema  # read-only here
    block_schema = schema["properties"].get(block) if block else None
    if block_schema is None:
        if spec.get("overrides"):
            raise InputError(
                f"config error at methods.{method}.overrides: family {spec['family']} has no settings "
                "block to override"
            )
        return spec
    merged = _deep_merge(config.get(block, {}), spec.get("overrides", {}))
    validator = _validator_with_defaults()({**block_schema, "$defs": schema.get("$defs", {})})
    errors = sorted(validator.iter_errors(merged), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        message = _explain(jsonschema.exceptions.best_match(errors))
        message = message.replace("config error at ", "", 1)
        where, _, rest = message.partition(": ")
        where = "" if where == "<top level>" else f".{where}"
        raise InputError(f"config error at methods.{method}.overrides{where}: {rest}")
    return merged


def resolve_methods(config: dict) -> dict[str, dict]:
    """Every method's merged settings, built once (the Snakefile keeps the result)."""
    return {m: method_settings(config, m) for m in config.get("methods", {})}


def config_hash(*parts) -> str:
    """A short stable hash of JSON-serialisable config parts (for provenance attributes)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: ``training`` keys that describe the machine, not the experiment. Jobs read them from the config
#: when they run (never as rule params), so setting them per machine or cluster never reruns a
#: finished job; ``precision`` changes GPU numbers and is a rule param.
MACHINE_TRAINING_KEYS = ("device", "gpus", "checkpoint_every_steps", "checkpoint_every_minutes", "checkpoint_dir")


def job_training(config: dict, precision: str = "bf16") -> dict:
    """The ``training`` settings a job runs with: the machine keys from ``config`` + ``precision``."""
    training = config.get("training", {})
    return {**{k: training[k] for k in MACHINE_TRAINING_KEYS if k in training}, "precision": precision}


def checkpoint_folder(config: dict, rule: str, wildcards) -> str:
    """A training job's checkpoint folder: ``<training.checkpoint_dir>/<rule>/<wildcard>-<value>/…``,
    outside the rule's outputs, so a failed or preempted job keeps it for the retry."""
    root = config.get("training", {}).get("checkpoint_dir", "results/checkpoints")
    return str(Path(root, rule, *(f"{k}-{v}" for k, v in wildcards.items())))


def dataset_entry(config: dict, name: str) -> dict:
    for ds in config["datasets"]:
        if ds["name"] == name:
            return ds
    raise InputError(f"config error: no dataset named {name!r} in datasets")


def main(argv: list[str] | None = None) -> int:
    """``python -m fmrirecon.config FILE...``: the one-line file:line message for a YAML syntax
    error or a duplicated key in config files (Snakemake's own loader, which reads
    ``--configfile`` before the Snakefile runs, names neither file nor line)."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m fmrirecon.config CONFIG.yaml [...]", file=sys.stderr)
        return 2
    try:
        check_config_files(paths)
    except (InputError, OSError) as exc:
        print(f"fmrirecon ERROR {exc}", file=sys.stderr)
        return 1
    print(f"{len(paths)} config file(s) parse: no syntax error, no duplicated key")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
