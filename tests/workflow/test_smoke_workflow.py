"""The DAG through Snakemake itself: the smoke config end to end with the report, a GOD dataset
written by bdpy (not by us), bad input and config errors, lint."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import bdpy
import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from fmrirecon.data.prepared import read_images_file, read_subject_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True):
    # as `make run` on 2 cores: one thread per job, two jobs at once
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--max-threads", "1"]  # fmt: skip
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]  # last: --configfile takes several values
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    snakemake(work, configfile=REPO / "config" / "smoke.yaml")
    return work


def test_smoke_dag_produces_every_prepared_file(smoke_run):
    with open(REPO / "config" / "smoke.yaml") as fh:
        cfg = yaml.safe_load(fh)
    for ds in cfg["datasets"]:
        images = read_images_file(smoke_run / "results" / ds["name"] / "images.h5")
        assert images.train.images.dtype == np.uint8 and images.train.images.shape[1:] == (32, 32, 3)
        assert images.train.foreground is not None  # simulated truth travels with the images
        # the report's data card: one row per subject × ROI, agreeing with the prepared files
        with open(smoke_run / "results" / "report" / "data_cards" / f"{ds['name']}.csv", newline="") as fh:
            card = {(r["subject"], r["roi"]): r for r in csv.DictReader(fh)}
        assert sorted(card) == sorted((s, roi) for s in ds["subjects"] for roi in ds["rois"])
        for s in ds["subjects"]:
            for roi in ds["rois"]:
                d = read_subject_file(smoke_run / "results" / ds["name"] / f"sub-{s}" / f"roi-{roi}" / "data.h5")
                assert d["train/fmri"].shape[1] == d.attrs["n_voxels"] > 0
                assert d.attrs["dataset"] == ds["name"] and d.attrs["roi"] == roi
                row = card[(s, roi)]
                assert (row["dataset"], row["format"]) == (ds["name"], ds.get("read_as", "god_bdata"))
                assert int(row["n_voxels"]) == d.attrs["n_voxels"] and int(row["train_samples"]) == len(d["train/fmri"])
                assert int(row["test_images"]) == len(images.test) and int(row["test_trials"]) == len(d["test/fmri_trials"])
                assert int(row["images_train"]) == len(images.train) and int(row["test_repeats_min"]) >= 1
    # the reference reader opens the generated files
    bd = bdpy.BData(str(smoke_run / "results" / "simgod" / "raw" / "Subject1.h5"))
    assert bd.select("ROI_VC").shape[1] == 192
    # every rule wrote its log
    assert any((smoke_run / "results" / "logs" / "mask_roi").rglob("*.log"))


def test_metrics_table_has_every_method_protocol_and_the_documented_columns(smoke_run):
    with open(smoke_run / "results" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["dataset", "subject", "roi", "method", "protocol", "metric", "control",
                             "value", "ci_low", "ci_high", "chance", "n", "transductive"]  # fmt: skip
    # paper 002 trains on the unpaired test fMRI (D-E term); the others never see test fMRI
    assert {r["transductive"] for r in rows if r["method"] == "ssl"} == {"1"}
    assert {r["transductive"] for r in rows if r["method"] in ("ridge", "loopencdec", "cad")} == {"0"}
    simgod = [r for r in rows if r["dataset"] == "simgod"]
    protocols = {"fang2020_pairwise_ssim", "mindvis_nway", "gaziv2022", "mindeye_offline", "report003", "report004"}
    for method in ("ridge", "mean-image", "oracle"):
        assert {r["protocol"] for r in simgod if r["method"] == method} == protocols
    assert {r["control"] for r in simgod} == {"none", "shuffled_ids", "mean_image", "oracle", "oracle_latent"}
    assert {r["method"] for r in rows if r["dataset"] == "simnpz"} == {"ridge"}  # datasets[].methods
    for r in simgod:
        if r["value"] not in ("", "None"):
            assert float(r["ci_low"]) <= float(r["value"]) + 1e-9 <= float(r["ci_high"]) + 2e-9
            assert int(r["n"]) == 10
    # networks without local weights are named as unavailable, never silently replaced
    with open(smoke_run / "results" / "unavailable_metrics.csv", newline="") as fh:
        missing = list(csv.DictReader(fh))
    assert any("alexnet" in (r["metric"] + r["reason"]).lower() for r in missing)
    # paired comparisons between methods on the same images
    with open(smoke_run / "results" / "method_comparisons.csv", newline="") as fh:
        pairs = list(csv.DictReader(fh))
    assert {(r["method_a"], r["method_b"]) for r in pairs if r["dataset"] == "simgod" and r["roi"] == "VC"} >= {
        ("mean-image", "ridge"), ("oracle", "ridge")}  # fmt: skip
    # the metrics JSON carries the exact settings
    js = json.loads((smoke_run / "results/simgod/sub-1/roi-VC/ridge/metrics-mindeye_offline.json").read_text())
    assert js["context"]["protocol"] == "mindeye_offline"
    for m in js["metrics"].values():
        assert m["settings"] and len(m["per_image"]) == 10


def test_decoder_beats_its_shuffled_control_and_the_floor(smoke_run):
    """Low noise, VC: the reference decoder's pixel correlation exceeds its shuffled control."""
    with open(smoke_run / "results" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "simgod" and r["roi"] == "VC"
                and r["protocol"] == "report003" and r["metric"] == "pcc"]  # fmt: skip
    get = lambda method, control: float(next(r["value"] for r in rows if r["method"] == method and r["control"] == control))  # noqa: E731
    assert get("ridge", "none") > get("ridge", "shuffled_ids") + 0.1
    assert get("oracle", "oracle") > get("mean-image", "mean_image")


def test_trained_methods_of_papers_002_and_000_reach_metrics_and_report(smoke_run):
    """Encoder → attention decoder → decoders → recon → metrics, for every method and ablation."""
    with open(smoke_run / "results" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "simgod"]
    methods = ("ssl", "ssl-supervised", "loopencdec", "loopencdec-nofa", "loopencdec-noloop", "loopencdec-nofa-noloop")
    for method in methods:
        got = {(r["protocol"], r["control"]) for r in rows if r["method"] == method}
        assert got == {(p, c) for p in ("fang2020_pairwise_ssim", "gaziv2022") for c in ("none", "shuffled_ids")}, method
    unit = smoke_run / "results" / "simgod" / "sub-1" / "roi-VC"
    assert (unit / "encoder" / "voxel_accuracy.tsv").exists() and (unit / "attention" / "summary.json").exists()
    for method in methods:
        log = (unit / method / "losses.tsv").read_text().splitlines()
        assert log[0].startswith("epoch\tstep\tlr") and len(log) == 3  # two epochs in the smoke config
    # the overrides reach the networks: -nofa decodes without F-attention, the full method with it
    hp = {m: json.loads((unit / m / "decoder.json").read_text()) for m in ("loopencdec", "loopencdec-nofa")}
    assert (hp["loopencdec"]["lambda"], hp["loopencdec"]["mu"]) == (0.7, 0.3)
    assert (hp["loopencdec-nofa"]["lambda"], hp["loopencdec-nofa"]["mu"]) == (0.0, 1.0)
    assert not list((smoke_run / "results" / "checkpoints").rglob("checkpoint.pt"))  # removed when done
    assert not list((smoke_run / "results" / "checkpoints").rglob("*"))  # no empty folders left either
    # every training stage reports what it trained with, how fast, and its peak memory
    stats = json.loads((unit / "encoder" / "encoder.train.json").read_text())
    assert stats["steps"] == stats["total_steps"] > 0 and stats["steps_per_s"] > 0 and stats["peak_memory_mib"] > 0
    assert stats["device"] == "cpu" and stats["precision"] == "fp32" and stats["settings"]["epochs"] == 2
    assert stats["stage_settings"]["max_shift"] == 0  # the smoke config's encoder block, resolved
    cad_stats = json.loads((unit / "cad" / "cad-ldm.train.json").read_text())
    assert cad_stats["settings"]["optimizer"] == "adamw" and cad_stats["world_size"] == 1
    with open(smoke_run / "results" / "training_summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["stage"] for r in summary} >= {"encoder", "attention_decoder", "label_maps", "ssl/decoder", "cad/cad-ldm"}
    assert {r["quantity"] for r in summary} >= {"steps per s", "peak memory mib"}
    for name in ("training/encdec.png", "training/cad.png", "method_groups.png"):  # one figure per family
        assert (smoke_run / "results" / "report" / name).stat().st_size > 10_000
    assert not (smoke_run / "results" / "report" / "training" / "baselines.png").exists()  # trains nothing
    assert (smoke_run / "results" / "report" / "label_maps" / "simgod.png").exists()


def test_paper_004_classifier_and_pix2pix_reach_metrics_and_report(smoke_run):
    """Classifier (four runs and the label-prior floor) and pix2pix (GAN losses, recon, report004)."""
    unit = smoke_run / "results" / "simgod" / "sub-1" / "roi-VC"
    m = json.loads((unit / "classifier" / "metrics.json").read_text())
    assert m["label_source"] == "simulation truth (attributes)" and m["layout"]["layout"] == "single"
    assert set(m["results"]) == {f"{v}-{c}" for v in ("filtered", "unfiltered")
                                 for c in ("none", "shuffled_labels", "label_prior", "ridge_reference")}  # fmt: skip
    for run in m["results"].values():
        for metric in ("keras_accuracy", "top1_in_set", "mAP"):
            r = run[metric]
            assert r["ci_low"] <= r["value"] + 1e-9 <= r["ci_high"] + 2e-9, (run["variant"], run["control"], metric)
    # the smoke box filter (200 px² of 32-px images) zeroes labels of some images, and each model is scored on its own set
    assert m["results"]["filtered-label_prior"]["labels"]["zeroed_by_box_filter"] > 0
    assert m["labels_per_image"]["filtered"] < m["labels_per_image"]["unfiltered"] == 3.0
    log = (unit / "classifier" / "classifier.losses.tsv").read_text().splitlines()
    assert log[0].split("\t")[2:] == [f"{v}-{c}/loss" for v in ("unfiltered", "filtered")
                                       for c in ("none", "shuffled_labels")]  # fmt: skip
    gan = (unit / "pix2pix" / "pix2pix.losses.tsv").read_text().splitlines()
    assert {"discriminator/loss", "generator/adv", "generator/l1"} <= set(gan[0].split("\t")) and len(gan) == 3
    with open(smoke_run / "results" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] == "pix2pix"]
    assert {(r["protocol"], r["metric"], r["control"]) for r in rows} == {
        ("report004", k, c) for k in ("pixcorr", "ssim") for c in ("none", "shuffled_ids")}  # fmt: skip
    with open(smoke_run / "results" / "report" / "classifier" / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 8 * 3
    assert {r["control"] for r in table} == {"none", "shuffled_labels", "label_prior", "ridge_reference"}
    for name in ("classifier/simgod_sub-1_roi-VC.png", "training/pix2pix.png"):
        assert (smoke_run / "results" / "report" / name).stat().st_size > 10_000


def test_paper_003_latent_regressors_reach_table3_metrics_and_report(smoke_run):
    """Captions -> MiniLM tokens -> text LDM (on CAD's shared first stage) -> regressors with
    validation early stopping -> img2img samples -> report003; Table 3 with its controls."""
    res = smoke_run / "results" / "simgod"
    unit = res / "sub-1" / "roi-VC"
    with h5py.File(res / "models" / "latentreg-text-minilm.h5", "r") as f:
        assert f["train/tokens"].shape[1:] == (15, 384) and "simulation truth" in f.attrs["caption_source"]
        assert json.loads(f["test/captions"].asstr()[0])[0].startswith("a ")
    (ldm,) = list((res / "models").glob("latentreg-ldm-*[0-9a-f]"))
    (ae,) = [p for p in (res / "models").glob("cad-autoencoder-*") if p.is_dir()]  # one first stage, shared with CAD
    assert json.loads((ldm / "vae" / "config.json").read_text()) == json.loads((ae / "vae" / "config.json").read_text())
    assert "Stable Diffusion" in json.loads((ldm / "text.json").read_text())["generator"]
    for method, regressors in (("latentreg", ("gcn", "cnn")), ("latentreg-ridge", ("ridge", "ridge")),
                               ("latentreg-oracle", ("oracle", "oracle"))):  # fmt: skip
        with h5py.File(unit / method / "recon.h5", "r") as f:
            assert f["images"].shape == (10, 2, 32, 32, 3)  # two samples per pattern in the smoke config
            assert (f.attrs["z_regressor"], f.attrs["c_regressor"]) == regressors
            assert f.attrs["strength"] == 0.8 and "MiniLM" in f.attrs["substitutions"]
    # one job per regressor branch: the c branch (CNN) is shared by latentreg, -cnn and -vae
    summaries = [json.loads(p.read_text()) for p in (unit / "latents").glob("*.train.json")]
    assert sorted((s["branch"]["branch"], s["branch"]["regressor"]) for s in summaries) == [
        ("c", "cnn"), ("c", "ridge"), ("z", "cnn"), ("z", "gcn"), ("z", "ridge"), ("z", "vae")]  # fmt: skip
    gcn = next(s["branch"] for s in summaries if s["branch"]["regressor"] == "gcn")
    assert gcn["selection"].startswith("early stopping and checkpoint choice on a validation split")
    assert 1 <= gcn["best_epoch"] <= gcn["epochs_run"] <= 3 and len(gcn["graph_edges"]) == 3
    headers = [p.read_text().splitlines()[0].split("\t") for p in (unit / "latents").glob("*.losses.tsv")]
    assert sum({"epoch", "loss", "val_mse"} <= set(h) for h in headers) == 4  # the four networks; ridge has none
    with open(smoke_run / "results" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"].startswith("latentreg")]
    assert {r["control"] for r in rows if r["method"] == "latentreg-oracle"} == {"oracle_latent", "shuffled_ids"}
    assert {r["protocol"] for r in rows} == {"report003"} and {r["transductive"] for r in rows} == {"0"}
    with open(smoke_run / "results" / "report" / "latentreg" / "table3.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {(r["latent"], r["regressor"], r["scored"]) for r in table} == {
        (latent, kind, s) for latent, kinds in (("z", ("gcn", "cnn", "vae", "ridge")), ("c", ("cnn", "ridge")))
        for kind in kinds for s in ("predicted", "shuffled_pairs", "training_mean")}  # fmt: skip
    assert {r["methods"] for r in table if r["latent"] == "c" and r["regressor"] == "cnn"} == {
        "latentreg latentreg-cnn latentreg-vae"}  # fmt: skip
    for r in table:
        assert float(r["ci_low"]) <= float(r["mse"]) <= float(r["ci_high"]) and int(r["n"]) == 10
    assert (smoke_run / "results" / "report" / "training" / "latentreg.png").stat().st_size > 10_000


def test_report_renders_with_images_and_tables(smoke_run):
    snakemake(smoke_run, "--report", "report.html", "--report-metadata", "results/report/metadata.yaml",
              configfile=REPO / "config" / "smoke.yaml")  # fmt: skip
    html = (smoke_run / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for name in ("metrics.csv", "method_comparisons.csv", "unavailable_metrics.csv", "mindeye_offline.png",
                 "gaziv2022.png", "simgod_sub-1_roi-VC.png", "encdec.png", "training_summary.csv",
                 "method_groups.png", "simgod.csv", "simnii.csv", "000_foreground_attention.csv", "summary.csv",
                 "pix2pix.png", "table3.csv"):  # fmt: skip
        assert name in html, name
    assert "data:image/png;base64" in html or "image/png" in html
    # it opens on the summary of the cards (the landing page needs metadata), sections in reading order
    summary = (smoke_run / "results" / "report" / "summary.rst").read_text()
    assert "- **000_foreground_attention** (`000_foreground_attention.csv`_): claims ✓" in summary
    assert "000_foreground_attention</strong>" in html and "(all cards)" in html
    assert html.index("1. Reproduction cards") < html.index("2. Metrics") < html.index("3. Reconstructions")


def test_rerun_has_nothing_to_do_and_dry_run_shows_dag(smoke_run):
    proc = snakemake(smoke_run, "-n", configfile=REPO / "config" / "smoke.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_default_config_dry_run_lists_the_data_rules(tmp_path):
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    for rule in ("simulate_dataset", "prepare_images", "mask_roi", "reconstruct_baseline",
                 "truth_features", "evaluate_reconstructions", "split_metrics", "aggregate_metrics",
                 "plot_reconstructions", "plot_metrics", "data_card"):  # fmt: skip
        assert rule in out


def test_method_subjects_restrict_its_jobs(tmp_path):
    """`methods.<m>.subjects`: the default runs the CAD ablation on subject 1 only."""
    proc = snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    assert "results/simgod/sub-1/roi-VC/cad-noimgloss/recon.h5" in out
    assert "results/simgod/sub-2/roi-VC/cad/recon.h5" in out
    assert "sub-2/roi-VC/cad-noimgloss" not in out


def _write_god_like(root: Path, rng) -> None:
    """A GOD SubjectN.h5 in the older column order (labels before voxels), written by bdpy,
    with JPEG images of assorted sizes and the published image lists."""
    n_cat, per_cat, n_test, reps, n_vox = 6, 3, 4, 3, 40
    train_names, test_names = [], []
    for c in range(n_cat):
        for i in rng.choice(np.arange(10, 900), per_cat, replace=False):
            train_names.append(f"n0{1000000 + c * 7:07d}_{i}")
    train_names.sort(key=lambda n: (n.split("_")[0], n))
    for c in range(n_test):
        test_names.append(f"n0{3000000 + c * 11:07d}_{rng.integers(10, 900)}")
    sid = lambda n: int(n[1:].split("_")[0]) + int(n.split("_")[1]) / 1e6  # noqa: E731
    for fname, names in (("imageID_training.csv", train_names), ("imageID_test.csv", test_names)):
        (root / fname).write_text("".join(f'{sid(n):.6f},"{n}.JPEG"\n' for n in names))
    for folder, names in (("training", train_names), ("test", test_names)):
        (root / "images" / folder).mkdir(parents=True)
        for n in names:
            w, h = rng.integers(40, 90, 2)
            arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "images" / folder / f"{n}.JPEG", format="JPEG")
    order = rng.permutation(len(train_names))
    labels = np.r_[[sid(train_names[i]) for i in order], np.tile([sid(n) for n in test_names], reps)]
    dtype = np.r_[np.ones(len(order)), np.full(n_test * reps, 2)]
    run = np.r_[np.arange(len(order)) // 6 + 1, np.repeat(np.arange(reps), n_test) + 1]  # run numbers reused
    bd = bdpy.BData()
    bd.add(dtype[:, None], "DataType")
    bd.add(run[:, None], "Run")
    bd.add(labels[:, None], "stimulus_id")
    bd.add(rng.normal(100, 10, (len(labels), n_vox)), "VoxelData")
    roi = np.repeat(["V1", "V2", "V3", "V4", "LOC"], 8)
    for name in ("V1", "V2", "V3", "V4", "LOC"):
        bd.add_metadata(f"ROI_{name}", (roi == name).astype(float), f"1 = ROI {name}", where="VoxelData")
    bd.add_metadata("ROI_LVC", np.isin(roi, ["V1", "V2", "V3"]).astype(float), "1 = ROI LVC", where="VoxelData")
    bd.add_metadata("ROI_VC", np.ones(n_vox), "1 = ROI VC", where="VoxelData")
    for axis in "xyz":
        bd.add_metadata(f"voxel_{axis}", rng.normal(0, 20, n_vox), f"voxel {axis}", where="VoxelData")
    bd.save(str(root / "Subject1.h5"))


def _god_targets() -> list[str]:
    return [f"results/god/sub-1/roi-{r}/data.h5" for r in ("VC", "LVC", "V1")]


def _god_config(tmp_path: Path, root: Path, **extra) -> Path:
    cfg = {
        "image_size": 32,
        "datasets": [{"name": "god", "format": "god_bdata", "path": str(root), "subjects": ["1"], "rois": ["VC", "LVC", "V1"], **extra}],
    }  # fmt: skip
    path = tmp_path / "god.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_god_files_written_by_bdpy_go_through_reader_and_mask_roi(tmp_path):
    root = tmp_path / "god"
    root.mkdir()
    _write_god_like(root, np.random.default_rng(0))
    work = tmp_path / "work"
    snakemake(work, *_god_targets(), configfile=_god_config(tmp_path, root))
    d = read_subject_file(work / "results/god/sub-1/roi-LVC/data.h5")
    assert d["train/fmri"].shape == (18, 24) and d["test/fmri"].shape == (4, 24)
    assert len(np.unique(d["train/run"])) + len(np.unique(d["test/trial_run"])) == 6  # runs renumbered
    v1 = read_subject_file(work / "results/god/sub-1/roi-V1/data.h5")
    assert v1["train/fmri"].shape[1] == 8
    images = read_images_file(work / "results/god/images.h5")
    assert images.train.images.shape == (18, 32, 32, 3) and images.test.images.shape == (4, 32, 32, 3)


def test_corrupt_subject_file_fails_with_one_line_and_no_output(tmp_path):
    root = tmp_path / "god"
    root.mkdir()
    _write_god_like(root, np.random.default_rng(1))
    (root / "Subject1.h5").write_bytes(b"not an HDF5 file at all" * 100)
    work = tmp_path / "work"
    proc = snakemake(work, "results/god/sub-1/roi-VC/data.h5", configfile=_god_config(tmp_path, root), check=False)
    assert proc.returncode != 0
    log = (work / "results/logs/mask_roi/god/sub-1_roi-VC.log").read_text()
    errors = [ln for ln in log.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "Subject1.h5" in errors[0]
    assert not (work / "results/god/sub-1/roi-VC/data.h5").exists()
    assert not list((work / "results/god").rglob("*.partial"))


def test_missing_roi_through_the_dag(tmp_path):
    root = tmp_path / "god"
    root.mkdir()
    _write_god_like(root, np.random.default_rng(2))
    cfg = _god_config(tmp_path, root)
    text = yaml.safe_load(cfg.read_text())
    text["datasets"][0]["rois"] = ["FFA"]
    cfg.write_text(yaml.safe_dump(text))
    work = tmp_path / "work"
    proc = snakemake(work, "results/god/sub-1/roi-FFA/data.h5", configfile=cfg, check=False)
    assert proc.returncode != 0
    # caught at parse time from the file's header, before any job runs
    assert "config error at datasets[0].rois: ROI 'FFA' is neither in" in proc.stdout + proc.stderr
    assert not (work / "results/logs/mask_roi").exists()


def test_config_error_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"datasets": [{"name": "x", "format": "simulated", "subjects": ["1"], "rois": ["VC"], "normalisation": "run"}]}))
    proc = snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert proc.returncode != 0
    assert "config error at datasets[0]: unknown key 'normalisation'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_and_format():
    lint = subprocess.run([SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile")], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations" in lint.stdout + lint.stderr or (lint.stdout + lint.stderr).strip() == "", lint.stdout
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    if not shutil.which(snakefmt):
        pytest.skip("snakefmt is not installed")
    fmt = subprocess.run([snakefmt, "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
