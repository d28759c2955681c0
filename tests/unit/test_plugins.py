"""The plugin contracts: every method family and dataset format is registered once, in one place,
and the generic code never names one."""

import re
from pathlib import Path

import pytest

from fmrirecon.data.readers import READERS, get_reader
from fmrirecon.errors import InputError
from fmrirecon.methods import FAMILIES, PLUGINS, get_family, rules_files

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "workflow" / "fmrirecon"


def _rules_in(path: Path) -> set[str]:
    return set(re.findall(r"^rule (\w+):", path.read_text(), flags=re.M))


def test_every_family_has_its_folder_rules_file_and_declared_rules():
    assert set(rules_files()) == {f"workflow/rules/{p}.smk" for p in PLUGINS}
    for fam in FAMILIES.values():
        assert fam.plugin in PLUGINS and (PKG / "methods" / fam.plugin / "__init__.py").exists()
        rules = _rules_in(REPO / "workflow" / "rules" / f"{fam.plugin}.smk")
        assert fam.reconstruct_rule in fam.stages and set(fam.stages) <= rules, fam.name
        assert set(fam.gpu_stages) <= set(fam.stages), fam.name
        for rule in fam.stages:  # every rule has an adapter script of its own name
            assert (REPO / "workflow" / "scripts" / f"{rule}.py").exists(), rule
    with pytest.raises(InputError, match="unknown method family 'nope'"):
        get_family("nope")


def test_rule_names_are_unique_across_rules_files():
    seen: dict[str, str] = {}
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule in _rules_in(path):
            assert rule not in seen, f"rule {rule} in {path.name} and {seen.get(rule)}"
            seen[rule] = path.name


def test_generic_code_never_names_a_family_or_format():
    """Family and format names live in their plugin folders, rules files, the config and docs only."""
    names = set(FAMILIES) | set(PLUGINS) | set(READERS)
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(sorted(map(re.escape, names))))
    generic = [p for p in PKG.rglob("*.py") if "methods" not in p.parts and "readers" not in p.parts]
    generic += [REPO / "workflow" / "rules" / f"{n}.smk" for n in ("common", "data", "evaluate", "report")]
    generic.append(REPO / "Snakefile")
    offenders = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in generic for m in pattern.finditer(p.read_text())]
    assert offenders == []


def test_every_reader_declares_its_files_under_the_dataset_folder():
    for name, reader in READERS.items():
        assert reader.name == name and reader.rois and get_reader(name) is reader
        ds = {"images_npz": "images_256.npz", "unlabeled_fmri": "", "roi_source": "metadata", "options": {}}
        # a reader whose file list depends on the tree may name the dataset folder itself until it exists
        assert all(p == "root" or p.startswith("root/") for p in reader.image_inputs(ds, "root"))
        files = reader.subject_inputs(ds, "root", "3")
        assert files["subject"].startswith("root/") and "3" in files["subject"]
    with pytest.raises(InputError, match="unknown dataset format 'bold6000'"):
        get_reader("bold6000")


def test_family_defaults_match_the_config_schema_blocks():
    from fmrirecon.config import load_schema, validate_config

    schema = load_schema()
    for fam in FAMILIES.values():
        if fam.settings_block:
            assert fam.settings_block in schema["properties"], fam.name
    cfg = validate_config({})
    assert set(cfg) >= {f.settings_block for f in FAMILIES.values() if f.settings_block}
    from fmrirecon.evaluate.presets import DEFAULT_PROTOCOLS

    for fam in FAMILIES.values():  # default protocols name built-in presets
        assert set(fam.default_protocols) <= set(DEFAULT_PROTOCOLS), fam.name
