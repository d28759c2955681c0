"""benchmarks/bench_default.py's summary: benchmark files read per rule and job, and the floor
(job CPU over the cores, all jobs and the stages the methods share) computed from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_default", REPO / "benchmarks" / "bench_default.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path: Path, s: float, cpu: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:00\t100\t0\t0\t0\t0\t0\t0\t{cpu}\n")


def test_floor_splits_shared_stages_from_method_chains(tmp_path):
    b = tmp_path / "benchmarks"
    _bench(b / "simulate_dataset" / "simgod.tsv", 150, 120)  # shared
    _bench(b / "pretrain_encoder" / "simgod" / "sub-1_roi-VC.tsv", 200, 180)  # shared by ssl and loopencdec
    _bench(b / "train_decoder" / "simgod" / "sub-1_roi-VC_ssl.tsv", 130, 120)  # a method's
    _bench(b / "train_latent_regressor" / "simgod" / "sub-1_roi-VC_z-2685bc25a913.tsv", 60, 60)  # a method's
    _bench(b / "split_metrics" / "simgod" / "sub-1_roi-VC_ssl_gaziv2022.tsv", 2, 99)  # in-process: wall, not CPU
    _bench(b / "summarise_latentreg.tsv", 1, 1)  # a rule without wildcards: shared
    rows = bench.read_benchmarks(tmp_path)
    assert {r["rule"] for r in rows} == {"simulate_dataset", "pretrain_encoder", "train_decoder",
                                         "train_latent_regressor", "split_metrics", "summarise_latentreg"}  # fmt: skip
    assert next(r for r in rows if r["rule"] == "split_metrics")["cpu_time"] == 2
    (line,) = bench.floor(rows, cores=2)
    # all jobs but split_metrics: 120 + 180 + 120 + 60 + 1 = 481 CPU-s; shared: 120 + 180 + 1 = 301
    assert f"{481 / 60 / 2:.1f} min" in line and f"{301 / 60:.1f} CPU-min = {301 / 60 / 2:.1f} min" in line
    text = bench.report(rows, None, None, cores=2)
    assert text.startswith("6 jobs") and "floor on 2 cores" in text and "train_decoder" in text
    assert "make run total" in bench.report(rows, 600.0, 9.0)


@pytest.mark.parametrize("job, shared", [("simgod/sub-2_roi-HVC", True), ("simgod/sub-2_roi-HVC_oracle", False),
                                         ("simgod_0b24942ba783", True), ("simgod/sub-1_roi-VC_loopencdec-nofa", False)])  # fmt: skip
def test_per_method_jobs_are_named_by_subject_roi_and_method(job, shared):
    assert (bench.PER_METHOD.search(job) is None) == shared
