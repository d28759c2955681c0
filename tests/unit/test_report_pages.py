"""The report's first page (summary of the reproduction cards), its per-protocol metrics figures and
per-family training figures: what they show, checked on small hand-made inputs."""

from __future__ import annotations

import csv

import yaml
from fmrirecon.report.cards import COLUMNS
from fmrirecon.report.figures import _metric_rows, plot_metrics, plot_training_curves, training_stage
from fmrirecon.report.summary import write_summary


def _card(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})


def _claim(text, status, **kw):
    return {"kind": "claim", "claim": text, "status": status, "better": "a", "worse": "b", "better_mean": 0.7,
            "worse_mean": 0.5, "p_value": 0.01, "ours_dataset": "simgod (simulated)", **kw}  # fmt: skip


def _result(method, value, table="Table 1"):
    return {"kind": "result", "table": table, "method": method, "roi": "VC", "metric": "pixcorr",
            "paper_value": 0.3, "paper_dataset": "NSD", "ours_value": value, "ours_ci_low": value - 0.1,
            "ours_ci_high": value + 0.1, "ours_dataset": "simnsd (simulated)", "status": "ours"}  # fmt: skip


def test_summary_counts_every_verdict_and_links_the_cards(tmp_path):
    _card(tmp_path / "000_x.csv", [
        _claim("A > B (Fig. 1: 2 > 1)", "✓"),
        _claim("A > C", "✗", p_value=0.002),
        _claim("A > D", "not significant", p_value=0.4),
        _claim("LVC > HVC", "not run", ours_dataset=""),
        _result("a", 0.25), _result("a", 0.25, table="Fig. 3"), _result("b", 0.2),
        {"kind": "result", "status": "not run: no BOLD5000 dataset in this run", "method": "c"},
    ])  # fmt: skip
    _card(tmp_path / "001_y.csv", [_claim("E > F", "✓")] + [_result(f"m{k}", 0.1 * k) for k in range(3)])
    _card(tmp_path / "002_z.csv", [{"kind": "result", "status": "not run: the paper's method, not implemented here"}])
    rst, meta = tmp_path / "summary.rst", tmp_path / "metadata.yaml"
    cards = [str(tmp_path / f) for f in ("002_z.csv", "001_y.csv", "000_x.csv")]
    write_summary(cards, "Intro text.", str(rst), str(meta))
    text = rst.read_text()
    assert yaml.safe_load(meta.read_text()) == {"claims ✓ ✗ ~ – (all cards)": [2, 1, 1, 1]}
    assert text.startswith("{% raw %}\nIntro text.") and text.rstrip().endswith("{% endraw %}")
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines == [
        "- **000_x** (`000_x.csv`_): claims ✓ 1 · ✗ 1 · ~ 1 · – 1; 3 of 4 published numbers with ours beside them "
        "(simgod (simulated), simnsd (simulated))",
        "- **001_y** (`001_y.csv`_): claims ✓ 1 · ✗ 0 · ~ 0 · – 0; 3 of 3 published numbers with ours beside them "
        "(simgod (simulated), simnsd (simulated))",
        "- **002_z** (`002_z.csv`_): no claims; 0 of 1 published numbers with ours beside them",
    ]  # fmt: skip
    assert len(text.splitlines()) < 25  # the landing page must fit a window (Snakemake centres it)


def test_metric_rows_take_each_datasets_first_subject_and_group_controls():
    rows = [
        {"dataset": "d1", "subject": "2", "roi": "VC", "method": "ridge", "protocol": "p", "metric": "m",
         "control": "none", "value": "0.5"},
        {"dataset": "d1", "subject": "1", "roi": "VC", "method": "ridge", "protocol": "p", "metric": "m",
         "control": "none", "value": "0.4"},
        {"dataset": "d1", "subject": "1", "roi": "VC", "method": "ridge", "protocol": "p", "metric": "m",
         "control": "shuffled_ids", "value": "0.1"},
        {"dataset": "d2", "subject": "3", "roi": "V1", "method": "oracle", "protocol": "p", "metric": "m",
         "control": "oracle", "value": "0.9"},
        {"dataset": "d2", "subject": "3", "roi": "V1", "method": "oracle", "protocol": "p", "metric": "other",
         "control": "oracle", "value": "0.8"},
    ]  # fmt: skip
    panel, shown = _metric_rows(rows, "p", "m")
    assert shown == "d1 sub-1, d2 sub-3"
    assert [k for k, _ in panel] == [("d1", "VC", "ridge"), ("d2", "V1", "oracle")]
    assert {c: r["value"] for c, r in panel[0][1].items()} == {"none": "0.4", "shuffled_ids": "0.1"}
    assert set(panel[1][1]) == {"oracle"}


def test_plot_metrics_draws_one_protocol(tmp_path):
    table = tmp_path / "metrics.csv"
    cols = ["dataset", "subject", "roi", "method", "protocol", "metric", "control", "value", "ci_low", "ci_high", "chance"]
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for proto in ("p1", "p2"):
            for method, control, v in (("ridge", "none", 0.4), ("ridge", "shuffled_ids", 0.1), ("mean-image", "mean_image", 0.0)):
                w.writerow(dict(zip(cols, ["d", "1", "VC", method, proto, "pixcorr", control, v, v - 0.1, v + 0.1, 0.0])))
    plot_metrics(str(table), "p1", str(tmp_path / "p1.png"))
    plot_metrics(str(table), "absent", str(tmp_path / "none.png"))
    assert (tmp_path / "p1.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "none.png").exists()


def test_training_stage_names_and_one_figure(tmp_path):
    assert training_stage("results/d/sub-1/roi-VC/ssl/losses.tsv") == ("ssl", "d sub-1 VC")
    assert training_stage("results/d/sub-1/roi-VC/cad/cad-ldm.losses.tsv") == ("cad: cad-ldm", "d sub-1 VC")
    assert training_stage("results/d/sub-1/roi-VC/models/cad-fmri_mae-fb24c6f376db.losses.tsv") == (
        "shared: cad-fmri_mae", "d sub-1 VC")  # fmt: skip
    assert training_stage("/w/results/d/models/cad-ldm-dda68d3149be.losses.tsv") == ("shared: cad-ldm", "d")
    assert training_stage("results/pools/hcp/models/cad-fmri_mae-0123456789ab.losses.tsv") == (
        "shared: cad-fmri_mae", "pool hcp")  # fmt: skip
    logs = []
    for s in ("1", "2"):
        log = tmp_path / "results" / "d" / f"sub-{s}" / "roi-VC" / "ssl" / "losses.tsv"
        log.parent.mkdir(parents=True)
        log.write_text("epoch\tstep\tlr\tD\tloss\twall_s\n1\t4\t0.1\t0.9\t2.0\t1\n2\t8\t0.1\t0.8\t1.5\t2\n")
        logs.append(str(log))
    plot_training_curves(logs, str(tmp_path / "encdec.png"), "encdec")
    assert (tmp_path / "encdec.png").read_bytes()[:4] == b"\x89PNG"
