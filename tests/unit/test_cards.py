"""Reproduction cards (fmrirecon.report.cards): the published data in published.yaml is sound and
names only our presets, metrics and methods; a card built from tiny synthetic metrics files gives
the values and verdicts worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fmrirecon.errors import InputError
from fmrirecon.evaluate.presets import DEFAULT_PROTOCOLS
from fmrirecon.report.cards import (
    COLUMNS,
    DATASET_READERS,
    PUBLISHED,
    ROW_KEYS,
    UNITS,
    load_published,
    metric_keys,
    paper_uses,
    protocol_metrics,
    validate_published,
    write_reproduction_card,
)

REPO = Path(__file__).resolve().parents[2]
OUR_METHODS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["methods"]


# -- published.yaml --------------------------------------------------------------------------
def test_published_yaml_parses_and_validates():
    papers = load_published()
    assert {"000_foreground_attention", "001_cad", "002_gaziv2022", "003_nonlinear_latent", "004_pix2pix_nsd"} <= set(papers)
    assert validate_published(papers, protocols=DEFAULT_PROTOCOLS, methods=OUR_METHODS) == []


def test_every_row_complete_and_in_range():
    known = protocol_metrics(DEFAULT_PROTOCOLS)
    for pid, paper in load_published().items():
        assert paper["citation"] and paper["rows"], pid
        assert isinstance(paper["missing"], list), pid
        for row in paper["rows"]:
            assert all(k in row for k in ROW_KEYS), (pid, row)
            lo, hi = UNITS[row.get("unit", "fraction")]
            assert lo <= row["value"] <= hi, (pid, row)
            assert row["dataset"] in DATASET_READERS
            if not row.get("paper_metric"):
                assert row["metric"] in known[row["protocol"]], (pid, row)
            if not row.get("paper_method"):
                assert row["method"] in OUR_METHODS, (pid, row)


def test_headline_numbers_are_the_papers():
    """A few numbers checked against the paper texts (README of /work/shared/papers)."""
    papers = load_published()
    by = {(r["method"], r["roi"]): r["value"] for r in papers["000_foreground_attention"]["rows"]}
    assert by[("loopencdec", "VC")] == 0.689 and by[("loopencdec-nofa", "VC")] == 0.667
    assert by[("loopencdec-noloop", "VC")] == 0.650 and by[("loopencdec-nofa-noloop", "VC")] == 0.625
    assert by[("loopencdec", "LVC")] == 0.647 and by[("loopencdec", "HVC")] == 0.557
    cad = [r for r in papers["001_cad"]["rows"] if r["dataset"] == "BOLD5000"]
    assert [r["value"] for r in cad] == [0.25, 0.1869, 0.1614, 0.1898]
    claims = {(c["better"], c["worse"]) for p in papers.values() for c in p["claims"]}
    assert {("loopencdec", "loopencdec-nofa"), ("LVC", "HVC"), ("ssl", "ssl-supervised"), ("cad", "cad-noimgloss")} <= claims


def test_metric_keys_match_protocol_spec():
    from fmrirecon.evaluate.protocol_spec import derived_keys

    for spec in (s for p in DEFAULT_PROTOCOLS.values() for s in p["metrics"]):
        assert metric_keys(spec) == derived_keys(spec)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metric": "pairwise_ssim_3way"}, "not in preset"),
        ({"protocol": "gaziv2023"}, "not one of our presets"),
        ({"method": "loopencdec-typo"}, "is not ours"),
        ({"value": 68.9}, "outside [0.0, 1.0]"),
        ({"dataset": "GOD2"}, "dataset"),
    ],
)
def test_validation_catches(change, message):
    paper = load_published()["000_foreground_attention"]
    bad = {**paper, "rows": [{**paper["rows"][0], **change}]}
    errors = validate_published({"x": bad}, protocols=DEFAULT_PROTOCOLS, methods=OUR_METHODS)
    assert any(message in e for e in errors), errors


def test_unrunnable_claim_needs_reason():
    paper = load_published()["004_pix2pix_nsd"]
    claim = {k: v for k, v in paper["claims"][0].items() if k != "reason"}
    errors = validate_published({"x": {**paper, "claims": [claim]}}, protocols=DEFAULT_PROTOCOLS, methods=OUR_METHODS)
    assert any("needs a reason" in e for e in errors)


# -- a card from synthetic files --------------------------------------------------------------
TEN_UP = [0.01 * (i + 1) for i in range(10)]  # distinct positive differences 0.01 ... 0.10


def _json(root: Path, d, s, roi, method, protocol, metrics: dict) -> str:
    path = root / d / f"sub-{s}" / f"roi-{roi}" / method / f"metrics-{protocol}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "context": {"dataset": d, "subject": s, "roi": roi, "method": method, "protocol": protocol, "transductive": 0},
        "metrics": {
            k: {"value": sum(v) / len(v), "per_image": v, "higher_is_better": hib,
                "settings": {"substitution": "stand-in net", "resolution": 112}}
            for k, (v, hib) in metrics.items()
        },
    }))  # fmt: skip
    return str(path)


PUBLISHED_TEST = {
    "papers": {
        "t": {
            "title": "T", "citation": "T et al.", "source": "-", "missing": [],
            "rows": [
                {"table": "Table 1", "dataset": "GOD", "subject": "3", "roi": "VC", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "method": "loopencdec", "value": 0.689},
                {"table": "Table 1", "dataset": "GOD", "subject": "3", "roi": "VC", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "method": "Other et al.", "paper_method": True, "value": 0.5},
                {"table": "Table 2", "dataset": "BOLD5000", "subject": "CSI1", "roi": "VC", "protocol": "mindvis_nway",
                 "metric": "semantic_50way_top1", "method": "cad", "value": 0.25},
                {"table": "Table 3", "dataset": "GOD", "subject": "3", "roi": "HVC", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "method": "loopencdec-nofa", "value": 0.6},
            ],
            "claims": [
                {"claim": "up", "better": "loopencdec", "worse": "loopencdec-nofa", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "roi": "VC"},
                {"claim": "down", "better": "loopencdec-nofa", "worse": "loopencdec", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "roi": "VC"},
                {"claim": "mixed", "better": "loopencdec-noloop", "worse": "loopencdec-nofa", "protocol": "fang2020_pairwise_ssim",
                 "metric": "pairwise_ssim_2way", "roi": "VC"},
                {"claim": "absent", "better": "loopencdec", "worse": "loopencdec-nofa-noloop",
                 "protocol": "fang2020_pairwise_ssim", "metric": "pairwise_ssim_2way", "roi": "VC"},
                {"claim": "rois", "compare": "roi", "method": "loopencdec", "better": "LVC", "worse": "HVC",
                 "protocol": "fang2020_pairwise_ssim", "metric": "pairwise_ssim_2way"},
                {"claim": "rank", "better": "ssl", "worse": "ssl-supervised", "protocol": "gaziv2022",
                 "metric": "centroid_rank", "roi": "VC"},
                {"claim": "later", "better": "X", "worse": "Y", "protocol": None, "metric": "acc", "roi": "VC",
                 "runnable": False, "reason": "not implemented"},
            ],
        }
    }
}  # fmt: skip


def test_card_values_and_verdicts(tmp_path):
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump(PUBLISHED_TEST, allow_unicode=True))
    papers = load_published(published)
    assert validate_published(papers, protocols=DEFAULT_PROTOCOLS, methods=OUR_METHODS) == []
    p, m = "fang2020_pairwise_ssim", "pairwise_ssim_2way"
    base = [0.5] * 10
    up = [b + d for b, d in zip(base, TEN_UP)]
    mixed = [b + d * (1 if i % 2 == 0 else -1) for i, (b, d) in enumerate(zip(base, TEN_UP))]
    paths = []
    for s in ("1", "2"):
        paths.append(_json(tmp_path, "simgod", s, "VC", "loopencdec", p, {m: (up, True)}))
        paths.append(_json(tmp_path, "simgod", s, "VC", "loopencdec-nofa", p, {m: (base, True)}))
    # subject 1 only: loopencdec-noloop (mixed), and the two ROIs of loopencdec
    paths.append(_json(tmp_path, "simgod", "1", "VC", "loopencdec-noloop", p, {m: (mixed, True)}))
    paths.append(_json(tmp_path, "simgod", "1", "LVC", "loopencdec", p, {m: (up, True)}))
    paths.append(_json(tmp_path, "simgod", "1", "HVC", "loopencdec", p, {m: (base, True)}))
    # centroid rank: lower is better, ssl lower on every image
    ranks_sup = [100.0 + 10 * i for i in range(10)]
    ranks_ssl = [r - 100 * d for r, d in zip(ranks_sup, TEN_UP)]
    paths.append(_json(tmp_path, "simgod", "1", "VC", "ssl", "gaziv2022", {"centroid_rank": (ranks_ssl, False)}))
    paths.append(_json(tmp_path, "simgod", "1", "VC", "ssl-supervised", "gaziv2022", {"centroid_rank": (ranks_sup, False)}))
    table = pd.DataFrame([
        {"dataset": "simgod", "subject": "1", "roi": "VC", "method": "loopencdec", "protocol": p, "metric": m,
         "control": "none", "value": 0.60, "ci_low": 0.55, "ci_high": 0.65, "chance": 0.5, "n": 10, "transductive": 0},
        {"dataset": "simgod", "subject": "2", "roi": "VC", "method": "loopencdec", "protocol": p, "metric": m,
         "control": "none", "value": 0.70, "ci_low": 0.65, "ci_high": 0.75, "chance": 0.5, "n": 10, "transductive": 0},
        {"dataset": "simgod", "subject": "1", "roi": "VC", "method": "loopencdec", "protocol": p, "metric": m,
         "control": "shuffled_ids", "value": 0.50, "ci_low": 0.4, "ci_high": 0.6, "chance": 0.5, "n": 10, "transductive": 0},
    ])  # fmt: skip
    table.to_csv(tmp_path / "metrics.csv", index=False)
    out = tmp_path / "cards" / "t.csv"
    datasets = {"simgod": {"reader": "god_bdata", "simulated": True}, "simnsd": {"reader": "nsd", "simulated": True}}
    write_reproduction_card(
        "t", table=str(tmp_path / "metrics.csv"), metrics=paths, datasets=datasets, output=str(out),
        method_settings={"loopencdec": {"train": {"epochs": 3, "lr": 0.1}, "size": "tiny"}}, image_size=64,
        published=str(published),
    )  # fmt: skip
    card = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(card.columns) == COLUMNS
    res = card[card["kind"] == "result"].reset_index(drop=True)
    # ours: mean of the two subjects' own rows (the shuffled control left out), CI bounds averaged
    assert res.loc[0, "ours_dataset"] == "simgod (simulated)"
    assert float(res.loc[0, "ours_value"]) == pytest.approx(0.65)
    assert float(res.loc[0, "ours_ci_low"]) == pytest.approx(0.60)
    assert float(res.loc[0, "ours_ci_high"]) == pytest.approx(0.70)
    assert res.loc[0, "ours_subjects"] == "1, 2" and res.loc[0, "status"] == "ours"
    assert "stand-in net" in res.loc[0, "substitutions"] and "images 64 px" in res.loc[0, "substitutions"]
    assert "train.epochs 3" in res.loc[0, "substitutions"] and "size tiny" in res.loc[0, "substitutions"]
    assert "lr" not in res.loc[0, "substitutions"]
    assert res.loc[1, "status"].startswith("not run: the paper's method")
    assert res.loc[2, "status"] == "not run: no BOLD5000 dataset in this run"
    assert res.loc[3, "status"].startswith("not run: loopencdec-nofa on ROI HVC")
    claims = card[card["kind"] == "claim"].set_index("claim")
    # "up": 20 pairs (two subjects), every difference > 0, ties among |d| -> normal approximation,
    # p far below 0.05; means 0.555 vs 0.5
    assert claims.loc["up", "status"] == "✓"
    assert int(claims.loc["up", "n_pairs"]) == 20
    assert float(claims.loc["up", "better_mean"]) == pytest.approx(0.555)
    assert float(claims.loc["up", "worse_mean"]) == pytest.approx(0.5)
    assert float(claims.loc["up", "p_value"]) < 0.001
    # "down": the same pairs the other way round: the worse side significantly higher
    assert claims.loc["down", "status"] == "✗"
    # "mixed": d = +.01 -.02 +.03 ... -.10: W+ = 1+3+5+7+9 = 25, W- = 30 of 55, exact p = 0.846
    assert claims.loc["mixed", "status"] == "not significant"
    assert int(claims.loc["mixed", "n_pairs"]) == 10
    assert float(claims.loc["mixed", "p_value"]) == pytest.approx(0.845703125)
    assert claims.loc["absent", "status"] == "not run"
    assert "not both in this run" in claims.loc["absent", "note"]
    # LVC vs HVC of one method, subject 1: ten distinct positive differences, exact p = 2 / 2**10
    assert claims.loc["rois", "status"] == "✓"
    assert float(claims.loc["rois", "p_value"]) == pytest.approx(2 / 1024)
    assert claims.loc["rois", "roi"] == "LVC vs HVC"
    # ranks: lower is better and ssl is lower everywhere -> ✓ (not ✗)
    assert claims.loc["rank", "status"] == "✓"
    assert "lower is better" in claims.loc["rank", "note"]
    assert claims.loc["later", "status"] == "not run" and claims.loc["later", "note"] == "not implemented"


def test_paper_uses_and_bad_paper(tmp_path):
    papers = load_published()
    uses = paper_uses(papers["000_foreground_attention"])
    assert ("loopencdec-nofa-noloop", "fang2020_pairwise_ssim") in uses
    assert all(m in OUR_METHODS for m, _ in uses)
    assert paper_uses(papers["004_pix2pix_nsd"]) == {("pix2pix", "report004")}
    (tmp_path / "m.csv").write_text("dataset\n")
    with pytest.raises(InputError, match="not in"):
        write_reproduction_card("nope", table=str(tmp_path / "m.csv"), metrics=[], datasets={}, output=str(tmp_path / "o.csv"))
    assert PUBLISHED.name == "published.yaml"
