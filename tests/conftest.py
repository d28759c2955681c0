"""Shared fixtures: a tiny simulated dataset generated once per test session."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    """config/smoke.yaml with every default filled in."""
    from fmrirecon.config import validate_config

    with open(REPO / "config" / "smoke.yaml") as fh:
        return validate_config(yaml.safe_load(fh))


@pytest.fixture(scope="session")
def tiny_sim(smoke_config) -> dict:
    """The smoke config's simulation block (a copy tests may change)."""
    return copy.deepcopy(smoke_config["simulation"])


@pytest.fixture(scope="session")
def sim_raw(tmp_path_factory, smoke_config) -> Path:
    """A simulated dataset folder in GOD layout, subjects 1 and 2."""
    from fmrirecon.data.simulation.dataset import simulate_dataset

    out = tmp_path_factory.mktemp("sim") / "raw"
    simulate_dataset(smoke_config["simulation"], smoke_config["seed"], ["1", "2"], out)
    return out


@pytest.fixture(scope="session")
def sim_images(tmp_path_factory, sim_raw, smoke_config) -> Path:
    """images.h5 prepared from ``sim_raw``."""
    from fmrirecon.data.steps import prepare_images

    out = tmp_path_factory.mktemp("prep") / "images.h5"
    source = {
        "reader": "god_bdata", "root": str(sim_raw),
        "dataset": {"unpaired_images": str(sim_raw / "images" / "unpaired")}, "truth": str(sim_raw / "truth.h5"),
    }  # fmt: skip
    prepare_images(source, smoke_config["image_size"], str(out), "test")
    return out
