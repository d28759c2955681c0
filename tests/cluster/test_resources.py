"""The resources every rule of the smoke DAG declares (dry run, no SLURM needed): GPU rules take
`gpu` from the config, CPU rules take none, and profiles/cpu-only.yaml (training.gpus: 0) makes every job a CPU job."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("slurm_cluster_test", HERE / "test_slurm_cluster.py")
cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster)

pytestmark = pytest.mark.workflow


def declared(tmp_path: Path, *overlays: Path) -> dict[str, dict]:
    cmd = [cluster.SNAKEMAKE, "-n", "--snakefile", str(cluster.REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(cluster.REPO / "config" / "smoke.yaml"), *map(str, overlays)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return cluster._declared_resources(proc.stdout + proc.stderr)


def is_training_or_sampling(rule: str) -> bool:
    from fmrirecon.methods import FAMILIES

    gpu_rules = {r for fam in FAMILIES.values() for r in fam.gpu_stages}
    assert gpu_rules >= {"pretrain_encoder", "train_decoder", "train_ldm", "reconstruct_cad"}
    return rule in gpu_rules


def test_gpu_only_on_rules_that_train_or_sample(tmp_path):
    rules = declared(tmp_path)
    assert any(is_training_or_sampling(r) for r in rules)
    for rule, res in rules.items():
        if is_training_or_sampling(rule):
            assert res.get("gpu") == "1", f"{rule} trains or samples but declares gpu={res.get('gpu')}"
            assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, rule
        else:
            assert "gpu" not in res or res["gpu"] == "0", f"{rule} is a CPU rule but declares gpu={res['gpu']}"
    for rule in cluster.CPU_RULES & set(rules):
        assert "gpu" not in rules[rule], rule


def test_cpu_only_run_requests_no_gpu(tmp_path):
    rules = declared(tmp_path, cluster.REPO / "profiles" / "cpu-only.yaml")
    assert rules
    assert all(res.get("gpu", "0") == "0" for res in rules.values()), rules
