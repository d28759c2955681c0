"""The workflow used as a Snakemake module from the user's own folder (README "Using fmrirecon as a
module"): a user Snakefile with `module fmrirecon: snakefile: ...  config: config` and `use rule *
from fmrirecon`, as `snakedeploy deploy-workflow` writes it, and the user's config in the user's
`config/config.yaml`. The user's config is layered over the workflow's `config/config.yaml` as
`--configfile` is; outputs go to the user's folder; the fmrirecon package resolves.

Twice: with this checkout's Snakefile as a local path, and as `github(..., tag=...)`. The network is
not needed for the second: Snakemake keeps a github module as a bare clone in its source cache, so
the test puts a clone of this working tree, tagged with the package version, where Snakemake looks
for it (under ``$XDG_CACHE_HOME``) and nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from fmrirecon.config import validate_config
from fmrirecon.data.prepared import read_subject_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
DATA = "results/simgod/sub-1/roi-VC/data.h5"
TARGET = "results/simgod/sub-1/roi-VC/ridge/recon.h5"  # simulate_dataset, prepare_images, mask_roi, ridge

pytestmark = pytest.mark.workflow

USER_SNAKEFILE = """\
import json
import sys


configfile: "config/config.yaml"


module fmrirecon:
    snakefile:
        {snakefile}
    config:
        config


use rule * from fmrirecon


# what the test checks: the module's config as it resolved it, and where its package came from
with open("module_view.json", "w") as fh:
    json.dump(
        {{
            "merged": fmrirecon.config,
            "user": config,
            "repo_dir": fmrirecon.REPO_DIR,
            "package": sys.modules["fmrirecon"].__file__,
        }},
        fh,
    )
"""


def user_config() -> dict:
    """The smoke config on one dataset and ROI. `rois` is left out, and `methods` names fewer
    entries than config/config.yaml: both must come from the workflow's default."""
    with open(REPO / "config" / "smoke.yaml") as fh:
        cfg = yaml.safe_load(fh)
    cfg["datasets"] = [dict(cfg["datasets"][0], rois=["VC"])]
    del cfg["rois"]
    return cfg


def expected_config(user: dict) -> dict:
    """`snakemake --configfile user.yaml` from the repository: default, then the user's, then the
    schema's defaults."""
    with open(REPO / "config" / "config.yaml") as fh:
        cfg = yaml.safe_load(fh)
    update_config(cfg, copy.deepcopy(user))
    return json.loads(json.dumps(validate_config(cfg)))


def make_user_folder(folder: Path, snakefile: str) -> dict:
    (folder / "config").mkdir(parents=True)
    user = user_config()
    with open(folder / "config" / "config.yaml", "w") as fh:
        yaml.safe_dump(user, fh, sort_keys=False)
    (folder / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=snakefile))
    return user


def snakemake(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # the user's call: in the user's folder, no --snakefile, no --directory
    cmd = [SNAKEMAKE, *args, "--cores", "2", "--max-threads", "1"]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def check_module_run(folder: Path, user: dict, env: dict | None = None) -> dict:
    # (a) the whole DAG plans, under the workflow's own rule names
    plan = snakemake(folder, "-n", env=env).stdout
    for rule in ("simulate_dataset", "mask_roi", "reconstruct_baseline", "train_decoder", "aggregate_metrics", "all"):
        assert f"\n{rule} " in plan, f"rule {rule} not planned:\n{plan[-3000:]}"
    view = json.loads((folder / "module_view.json").read_text())
    assert view["merged"] == expected_config(user)  # layered exactly as --configfile layers
    assert view["merged"]["image_size"] == 32  # the user's value wins
    assert "cad-noimgloss" in view["merged"]["methods"]  # config/config.yaml's entries stay
    assert view["user"] == json.loads(json.dumps(user))  # the user's own config is left as it was
    # (b) a real run of one small target writes into the user's folder
    snakemake(folder, TARGET, env=env)
    for path in (DATA, TARGET, "results/logs/mask_roi/simgod/sub-1_roi-VC.log"):
        assert (folder / path).is_file(), path
    d = read_subject_file(folder / DATA)
    assert d["train/fmri"].shape[1] == d.attrs["n_voxels"] > 0
    return view


def test_module_from_a_local_path(tmp_path):
    folder = tmp_path / "analysis"
    user = make_user_folder(folder, json.dumps(str(REPO / "Snakefile")))
    view = check_module_run(folder, user)
    assert Path(view["repo_dir"]) == REPO


def test_module_from_github_at_a_tag(tmp_path):
    with open(REPO / "pyproject.toml", "rb") as fh:
        tag = "v" + tomllib.load(fh)["project"]["version"]
    # this working tree (tracked and untracked files, not ignored ones) as a repository with the tag
    src = tmp_path / "src"
    src.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout  # fmt: skip
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():  # a file deleted but not yet committed is skipped
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO / name).read_bytes())
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"], ["tag", tag]):
        subprocess.run([*git, *args], cwd=src, check=True, capture_output=True)
    # where Snakemake keeps its bare clone of github.com/<owner>/<repo>
    cache = tmp_path / "cache"
    clone = cache / "snakemake" / "snakemake" / "source-cache" / "snakemake-git-cache" / "github.com" / "someone"
    clone.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(clone / "fmrirecon")], check=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))

    folder = tmp_path / "analysis"
    user = make_user_folder(folder, f'github("someone/fmrirecon", path="Snakefile", tag="{tag}")')
    view = check_module_run(folder, user, env=env)
    # the package came from the module's own files at the tag, not from this checkout
    checkout = Path(view["repo_dir"])
    assert checkout.is_relative_to(cache) and checkout.name == tag
    assert Path(view["package"]) == checkout / "workflow" / "fmrirecon" / "__init__.py"
