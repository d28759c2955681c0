"""Method families as plugins, and the one registry the DAG, the config checks, the evaluation
and the report read.

A family plugin is:

1. a package ``fmrirecon/methods/<plugin>/`` whose ``__init__`` (torch-free: the Snakefile
   imports it at parse time) declares ``FAMILIES`` — one :class:`Family` per value of
   ``methods.<m>.family`` it implements — and, when it has settings, ``SCHEMA`` (the path of a
   YAML file with the JSON-schema of its top-level config blocks and their defaults) and
   ``FOLDERS`` (the folders its shared stages write beside the method folders); its stage
   functions (one per rule) live in submodules;
2. ``workflow/rules/<plugin>.smk`` with its rules (the Snakefile includes every registered
   plugin's rules file); their input and params functions live in a torch-free ``dag.py`` of the
   plugin, and one ``register_rules(...)`` call (``common.smk``) hands the report the plugin's
   loss logs, training summaries and extra inputs;
3. its name in :data:`PLUGINS` below.

No family name is spelled anywhere else: ``common.smk``, the schema, the evaluation and the report
ask this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from ..errors import InputError

#: The family plugins, in the order their rules files are included.
PLUGINS = ("baselines", "encdec", "cad", "pix2pix", "latentreg")


@dataclass(frozen=True)
class Family:
    """One value of ``methods.<m>.family``.

    Attributes:
        name: the family name a config uses.
        plugin: the package under ``fmrirecon/methods`` (and ``workflow/rules/<plugin>.smk``).
        reconstruct_rule: the rule that writes the method's ``recon.h5``.
        settings_block: the top-level config block its methods take their settings from (merged
            with ``methods.<m>.overrides``); empty when the method entry itself is the settings.
        stages: every rule of the family, in DAG order.
        gpu_stages: the rules that train or sample on a GPU (``resources: gpu``).
        default_protocols: protocols when ``methods.<m>.protocols`` is empty (empty = every
            protocol of ``evaluation.protocols``); always restricted to ``evaluation.protocols``.
        control: the ``control`` label of its rows in ``results/metrics.csv`` (``none`` for a method).
        needs_truth: runs only on simulated datasets (the simulation truth is an input).
        ablation_group: the report charts its methods side by side as ablations of the family.
        check: ``(method, settings, config) -> None`` raising ``InputError`` (one line with the
            key path) for settings that would only fail once a job runs.
    """

    name: str
    plugin: str
    reconstruct_rule: str
    settings_block: str = ""
    stages: tuple[str, ...] = ()
    gpu_stages: tuple[str, ...] = ()
    default_protocols: tuple[str, ...] = ()
    control: str = "none"
    needs_truth: bool = False
    ablation_group: bool = False
    check: Callable[[str, dict, dict], None] = lambda method, settings, config: None


def _load() -> tuple[dict[str, Family], list[Path], set[str]]:
    families, schemas, folders = {}, [], set()
    for plugin in PLUGINS:
        module = importlib.import_module(f"{__name__}.{plugin}")
        for fam in module.FAMILIES:
            if fam.name in families:
                raise RuntimeError(f"family {fam.name!r} registered twice ({plugin}, {families[fam.name].plugin})")
            families[fam.name] = fam
        if getattr(module, "SCHEMA", None):
            schemas.append(Path(module.SCHEMA))
        folders |= set(getattr(module, "FOLDERS", ()))
    return families, schemas, folders


#: Every family by its config name; the plugins' settings schemas; the folders their stages write
#: next to the method folders of a unit (``results/<d>/sub-<s>/roi-<r>/<folder>``), which no
#: method may be named like.
FAMILIES, SETTINGS_SCHEMAS, RESERVED_FOLDERS = _load()


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(f"unknown method family {name!r} (known: {sorted(FAMILIES)})") from None


def rules_files() -> list[str]:
    """``workflow/rules/<plugin>.smk`` of every plugin, relative to the repository root."""
    return [f"workflow/rules/{plugin}.smk" for plugin in PLUGINS]
