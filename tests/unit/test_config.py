"""Config validation: defaults, clear errors with the key path, documentation of every key."""

import copy
from pathlib import Path
import re

import pytest
import yaml

from fmrirecon.config import config_hash, load_schema, validate_config
from fmrirecon.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _default():
    with open(REPO / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_and_smoke_configs_validate():
    cfg = validate_config(_default())
    assert cfg["datasets"][0]["roi_source"] == "metadata"  # filled from the schema
    with open(REPO / "config" / "smoke.yaml") as fh:
        validate_config(yaml.safe_load(fh))


def test_empty_config_gets_every_default():
    cfg = validate_config({})
    assert cfg["seed"] == 0 and cfg["simulation"]["test_repeats"] == 35
    assert cfg["datasets"][0]["format"] == "simulated"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(sed=1), r"config error at <top level>: unknown key 'sed'"),
        (lambda c: c["datasets"][0].update(formt="x"), r"datasets\[0\]: unknown key 'formt'"),
        (lambda c: c["datasets"][0].update(format="bold6000"), r"datasets\[0\]\.format: 'bold6000' is not one of"),
        (lambda c: c.update(seed="zero"), r"seed: expected integer"),
        (lambda c: c["simulation"].update(test_repeats=0), r"simulation\.test_repeats"),
        (lambda c: c["datasets"][0].pop("rois"), r"datasets\[0\]: 'rois' is a required"),
        (lambda c: c["datasets"][0].update(subjects=["9"]), r"simulated subject\(s\) \['9'\]"),
        (lambda c: c["datasets"].append(dict(c["datasets"][0])), r"duplicate dataset name"),
        (lambda c: c["simulation"].update(n_extra_categories=500), r"simulation: .* categories in total"),
        (lambda c: c["datasets"][0].update(read_as="god_npz", roi_source="nifti"), r"datasets\[0\]\.roi_source"),
        (lambda c: c["methods"].update(bad={"family": "ridge", "alpha": 3}), r"methods\.bad: unknown key 'alpha'"),
        (lambda c: c["datasets"][0].update(methods=["nope"]), r"datasets\[0\]\.methods: \[.nope.\] not defined"),
        (lambda c: c["methods"].update(x={"family": "ssl", "overrides": {"losses": {"DF": 0}}}),
         r"methods\.x\.overrides\.losses: unknown key 'DF'"),
        (lambda c: c["methods"].update(x={"family": "ridge", "overrides": {"a": 1}}),
         r"methods\.x\.overrides: family ridge has no settings block"),
        (lambda c: c["methods"]["ssl"].update(protocols=["nope"]), r"methods\.ssl\.protocols: \['nope'\] not in evaluation"),
        (lambda c: c["evaluation"].update(protocols=["fang2021"]), r"evaluation\.protocols: unknown protocol\(s\) \['fang2021'\]"),
        (lambda c: c["methods"].update(ssl={"family": "nope"}), r"methods\.ssl\.family: 'nope' is not one of"),
        (lambda c: c["methods"].update(encoder={"family": "ridge"}), r"methods\.encoder: a method may not be named"),
        (lambda c: c["methods"]["ssl"].update(rois=["VCC"]), r"methods\.ssl\.rois: \['VCC'\] is not a known roi"),
        (lambda c: c["methods"]["ridge"].update(target_size=7), r"methods\.ridge\.target_size: 7 does not divide"),
        (lambda c: c["evaluation"].update(protocols=["x/../y"]), r"evaluation\.protocols\[0\]"),
        (lambda c: c["datasets"].append({"name": "god", "format": "god_bdata", "path": "x", "subjects": ["1"],
                                         "rois": ["VC"], "unlabeled_fmri": "pool/{0}.h5"}),
         r"datasets\[1\]\.unlabeled_fmri: 'pool/\{0\}\.h5' must be a file pattern"),
        (
            lambda c: c["datasets"].append({"name": "god", "format": "god_bdata", "subjects": ["1"], "rois": ["VC"]}),
            r"datasets\[1\]\.path: format god_bdata needs",
        ),
    ],
)
def test_config_errors_name_the_key(mutate, expected):
    cfg = copy.deepcopy(_default())
    mutate(cfg)
    with pytest.raises(InputError, match=expected) as info:
        validate_config(cfg)
    assert "\n" not in str(info.value)


def _walk(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", key, sub
        yield from _walk(sub, f"{path}{key}.")
        if "items" in sub:
            yield from _walk(sub["items"], f"{path}{key}[].")
        if isinstance(sub.get("additionalProperties"), dict):
            yield from _walk(sub["additionalProperties"], f"{path}{key}.*.")


def test_every_schema_key_has_description_and_is_documented():
    schema = load_schema()
    readme = (REPO / "config" / "README.md").read_text()
    documented = set(re.findall(r"`([A-Za-z0-9_]+)`", readme))
    defs = [(f"$defs.{name}", name, sub) for name, sub in schema.get("$defs", {}).items()]
    for name, sub in schema.get("$defs", {}).items():
        defs += list(_walk(sub, f"$defs.{name}."))
    for path, key, sub in list(_walk(schema)) + defs:
        assert sub.get("description"), f"schema key {path} has no description"
        assert key in documented, f"config/README.md does not document `{key}` ({path})"
    top_defaults = {k for k, v in schema["properties"].items() if "default" in v}
    assert top_defaults == set(schema["properties"]), "every top-level key needs a default"


def test_config_hash_is_stable_and_sensitive():
    a = config_hash({"x": 1, "y": [1, 2]})
    assert a == config_hash({"y": [1, 2], "x": 1})
    assert a != config_hash({"x": 2, "y": [1, 2]})


def test_cad_stage_settings_hold_only_what_each_stage_reads():
    """A CAD rule's params (and a shared stage's file-name hash) change only with the settings that
    stage reads, so tuning the fMRI-conditioned LDM does not retrain phase 1, phase 2 or the LDM."""
    from fmrirecon.config import method_settings
    from fmrirecon.methods.cad.settings import stage_settings as cad_stage_settings

    cfg = validate_config(_default())
    before = method_settings(cfg, "cad")
    after = copy.deepcopy(before)
    after["ldm"]["epochs"] += 1
    after["sampling"]["steps"] += 1
    upstream = ("fmri_mae", "image_mae", "cross_modal", "autoencoder", "ldm")
    for stage in upstream:
        assert cad_stage_settings(before, stage) == cad_stage_settings(after, stage), stage
    for stage in ("fmri_ldm", "sampling"):
        assert cad_stage_settings(before, stage) != cad_stage_settings(after, stage), stage
    after["fmri_mae"]["sparsify"] = 0.3  # phase 1 and phase 2 both read it
    changed = {s for s in upstream if cad_stage_settings(before, s) != cad_stage_settings(after, s)}
    assert changed == {"fmri_mae", "cross_modal"}


def test_config_files_with_a_duplicated_key_or_bad_yaml_fail_with_the_file_and_line(tmp_path):
    from fmrirecon.config import check_config_files

    dup = tmp_path / "dup.yaml"
    dup.write_text("methods:\n  ridge: {family: ridge}\n  ridge: {family: mean_image}\n")
    with pytest.raises(InputError, match=r"dup\.yaml: line 3: key 'ridge' is given twice \(first on line 2\)"):
        check_config_files([dup])
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(InputError, match=r"bad\.yaml: line \d+, column \d+"):
        check_config_files([bad])
    check_config_files([REPO / "config" / "config.yaml", REPO / "config" / "smoke.yaml"])


def test_a_partial_train_block_keeps_the_stages_own_defaults():
    """Setting one key of a stage's ``train:`` must not swap its schedule for the generic one."""
    from fmrirecon.config import load_schema, resolve_methods

    stage = load_schema()["properties"]["attention_decoder"]["properties"]["train"]["default"]
    cfg = validate_config({"attention_decoder": {"train": {"epochs": 3}}, "loopencdec": {"train": {"lr": 0.01}}})
    got = cfg["attention_decoder"]["train"]
    assert got["epochs"] == 3 and got["schedule"] == "sgdr" == stage["schedule"]
    assert got["cycles"] == stage["cycles"] and got["warmup_fraction"] == stage["warmup_fraction"] > 0
    assert got["batch_size"] == stage["batch_size"] == 32 and got["lr_min"] == stage["lr_min"] > 0
    # the same through a method's overrides (merged over the block, then validated)
    cfg["methods"] = {"l": {"family": "loopencdec", "overrides": {"train": {"epochs": 1}}}}
    settings = resolve_methods(cfg)["l"]["train"]
    assert settings["epochs"] == 1 and settings["lr"] == 0.01 and settings["schedule"] == "sgdr"
    # the shipped config trains every stage with the schedule its schema (and the README) documents
    shipped = validate_config(_default())
    for block in ("attention_decoder", "loopencdec", "ssl", "encoder"):
        own = load_schema()["properties"][block]["properties"]["train"]["default"]
        assert {k: shipped[block]["train"][k] for k in ("schedule", "cycles", "warmup_fraction", "lr_min")
                if k in own} == {k: own[k] for k in ("schedule", "cycles", "warmup_fraction", "lr_min") if k in own}


def test_maps_are_replaced_records_merged():
    """Free-key maps (simulated subjects) are replaced by the user's; fixed-key records merged."""
    cfg = validate_config({"simulation": {"subjects": {"7": {"noise_sd": 0.3}}, "voxels": {"V1": 5}},
                           "datasets": [{"name": "s", "format": "simulated", "subjects": ["7"], "rois": ["V1"]}]})  # fmt: skip
    assert cfg["simulation"]["subjects"] == {"7": {"noise_sd": 0.3}}
    assert cfg["simulation"]["voxels"]["V1"] == 5 and cfg["simulation"]["voxels"]["V2"] == 850


def test_config_checker_cli_names_file_and_line(tmp_path, capsys):
    """Snakemake reads --configfile before our code runs and names neither file nor line on a YAML
    syntax error; `python -m fmrirecon.config FILE` does."""
    from fmrirecon.config import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\nmethods: {}\n")
    assert main([str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fmrirecon ERROR config error in") and "bad.yaml: line 2, column 8" in err and "\n" not in err
    assert main([str(REPO / "config" / "smoke.yaml"), str(REPO / "config" / "config.yaml")]) == 0
    assert main([str(tmp_path / "missing.yaml")]) == 1 and "missing.yaml" in capsys.readouterr().err
