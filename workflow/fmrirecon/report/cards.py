"""Reproduction cards: each paper's published results beside ours, and its claims tested.

The published numbers are data (``published.yaml`` next to this module; its header documents the
keys). :func:`validate_published` checks them against our presets and methods;
:func:`reproduction_card` builds one paper's card from ``results/metrics.csv`` and the per-method
metrics JSONs (``results/<dataset>/sub-<s>/roi-<roi>/<method>/metrics-<protocol>.json``):

* one ``result`` row per published number: the paper's value, ours on the same protocol / metric /
  method (mean over our subjects on the row's ROI, one row per our dataset of the paper's kind, the
  dataset named with ``(simulated)`` or ``(real)``), our CI, and the substitutions behind ours;
* one ``claim`` row per ordering: our two means over the paired per-image scores, the paired
  Wilcoxon p (:func:`fmrirecon.evaluate.stats.paired_wilcoxon`) and a verdict
  (:data:`VERDICTS`); a claim whose methods or ROIs this run lacks says ``not run``, never hidden.

Torch-free (the Snakefile imports it at parse time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..data.atomic import atomic_path
from ..errors import InputError
from ..evaluate.stats import paired_wilcoxon

PUBLISHED = Path(__file__).with_name("published.yaml")

#: The published datasets the papers report on, and our readers whose data count as each (a
#: simulated dataset by its ``read_as``); every reader declares its ``published_dataset``.
PAPER_DATASETS = ("GOD", "NSD", "Algonauts 2023", "BOLD5000", "THINGS-fMRI", "vim-1")


def _dataset_readers() -> dict[str, tuple[str, ...]]:
    from ..data.readers import READERS

    return {d: tuple(n for n, r in sorted(READERS.items()) if r.published_dataset == d) for d in PAPER_DATASETS}


DATASET_READERS = _dataset_readers()

#: value range of each ``unit`` of a published row (inclusive).
UNITS = {
    "fraction": (0.0, 1.0),
    "rank": (1.0, math.inf),
    "correlation": (-1.0, 1.0),
    "distance": (0.0, 2.0),
    "mse": (0.0, math.inf),
}

ROW_KEYS = ("table", "dataset", "subject", "roi", "protocol", "metric", "method", "value")
CLAIM_KEYS = ("claim", "better", "worse", "protocol", "metric")
PAPER_KEYS = ("title", "citation", "source", "rows", "claims", "missing")

#: p below which a claim's ordering counts as significant.
ALPHA = 0.05
VERDICTS = ("✓", "✗", "not significant", "not run")

#: The card's columns, in order (README "The HTML report").
COLUMNS = [
    "kind", "table", "claim", "paper_dataset", "paper_subject", "roi", "protocol", "metric", "method",
    "paper_value", "ours_dataset", "ours_subjects", "ours_value", "ours_ci_low", "ours_ci_high",
    "ours_by_subject", "chance", "better", "worse", "better_mean", "worse_mean", "n_pairs", "p_value",
    "status", "substitutions", "note",
]  # fmt: skip

#: Method settings that change what a number means, listed in the substitutions column.
_SETTING_KEYS = ("size", "image_size", "target_size", "epochs", "samples", "steps")


# -- the published data ------------------------------------------------------------------------
def load_published(path: str | Path = PUBLISHED) -> dict:
    """``{paper id: {title, citation, source, rows, claims, missing}}`` from ``published.yaml``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("papers"), dict) or not data["papers"]:
        raise InputError(f"{path}: expected a mapping `papers` of paper id -> card data")
    return data["papers"]


def metric_keys(spec: dict) -> list[str]:
    """The result keys one preset metric produces (torch-free since DEFAULT_NETWORK lives in
    :mod:`fmrirecon.features`)."""
    from ..evaluate.protocol_spec import derived_keys

    return derived_keys(spec)


def protocol_metrics(protocols: dict[str, dict]) -> dict[str, set[str]]:
    """``{protocol: its metric keys}`` for protocol specs (e.g. ``DEFAULT_PROTOCOLS``)."""
    return {name: {k for spec in p["metrics"] for k in metric_keys(spec)} for name, p in protocols.items()}


def _bad_value(row: dict) -> str | None:
    unit = row.get("unit", "fraction")
    if unit not in UNITS:
        return f"unknown unit {unit!r} (allowed: {sorted(UNITS)})"
    value = row["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"value {value!r} is not a finite number"
    lo, hi = UNITS[unit]
    if not lo <= value <= hi:
        return f"value {value} outside [{lo}, {hi}] of unit {unit!r} (percentages go in as fractions)"
    return None


def validate_published(papers: dict, *, protocols: dict[str, dict], methods) -> list[str]:
    """Every problem of the published data, one line each (empty when it is sound).

    ``protocols``: our protocol specs by name; ``methods``: our method names. A row's ``protocol``
    (unless null), its ``metric`` (unless ``paper_metric``) and its ``method`` (unless
    ``paper_method``) must be ours; a runnable claim's methods (``compare: method``) or method
    (``compare: roi``) must be ours, as must its protocol and metric."""
    known = protocol_metrics(protocols)
    methods = set(methods)
    errors = []

    def check_ours(where, protocol, metric, paper_metric=False):
        if protocol is None:
            if not paper_metric:
                errors.append(f"{where}: protocol null needs paper_metric: true")
            return
        if protocol not in known:
            errors.append(f"{where}: protocol {protocol!r} is not one of our presets {sorted(known)}")
        elif not paper_metric and metric not in known[protocol]:
            errors.append(f"{where}: metric {metric!r} not in preset {protocol} ({sorted(known[protocol])})")

    for pid, paper in papers.items():
        if not isinstance(paper, dict):
            errors.append(f"{pid}: expected a mapping")
            continue
        errors += [f"{pid}: missing key {k!r}" for k in PAPER_KEYS if k not in paper]
        for i, row in enumerate(paper.get("rows") or []):
            where = f"{pid}.rows[{i}]"
            absent = [k for k in ROW_KEYS if k not in row]
            if absent:
                errors.append(f"{where}: missing key(s) {absent}")
                continue
            if row["dataset"] not in DATASET_READERS:
                errors.append(f"{where}: dataset {row['dataset']!r} not in {sorted(DATASET_READERS)}")
            bad = _bad_value(row)
            if bad:
                errors.append(f"{where}: {bad}")
            check_ours(where, row["protocol"], row["metric"], bool(row.get("paper_metric")))
            if not row.get("paper_method") and row["method"] not in methods:
                errors.append(f"{where}: method {row['method']!r} is not ours (set paper_method: true)")
        for i, claim in enumerate(paper.get("claims") or []):
            where = f"{pid}.claims[{i}]"
            absent = [k for k in CLAIM_KEYS if k not in claim]
            compare = claim.get("compare", "method")
            if compare not in ("method", "roi"):
                errors.append(f"{where}: compare must be method or roi, got {compare!r}")
                continue
            absent += [k for k in (("roi",) if compare == "method" else ("method",)) if k not in claim]
            if absent:
                errors.append(f"{where}: missing key(s) {absent}")
                continue
            if claim.get("runnable", True) is False:
                if not claim.get("reason"):
                    errors.append(f"{where}: runnable: false needs a reason")
                continue
            check_ours(where, claim["protocol"], claim["metric"])
            ours = (claim["better"], claim["worse"]) if compare == "method" else (claim["method"],)
            errors += [f"{where}: method {m!r} is not ours" for m in ours if m not in methods]
        if not isinstance(paper.get("missing", []), list):
            errors.append(f"{pid}: missing must be a list")
    return errors


def paper_uses(paper: dict) -> set[tuple[str, str]]:
    """The (method, protocol) pairs of ours a paper's card reads: its rows' and runnable claims'."""
    uses = set()
    for row in paper.get("rows") or []:
        if row.get("protocol") and not row.get("paper_method") and not row.get("paper_metric"):
            uses.add((row["method"], row["protocol"]))
    for claim in paper.get("claims") or []:
        if claim.get("runnable", True) is False or not claim.get("protocol"):
            continue
        ms = (claim["method"],) if claim.get("compare") == "roi" else (claim["better"], claim["worse"])
        uses |= {(m, claim["protocol"]) for m in ms}
    return uses


# -- our results -------------------------------------------------------------------------------
def dataset_label(name: str, info: dict) -> str:
    return f"{name} ({'simulated' if info.get('simulated') else 'real'})"


def settings_summary(settings: dict, prefix: str = "") -> list[str]:
    """``key value`` of the method settings that change what a number means (sizes, epochs,
    samples), dotted paths for nested blocks."""
    out = []
    for key, value in settings.items():
        if isinstance(value, dict):
            out += settings_summary(value, f"{prefix}{key}.")
        elif key in _SETTING_KEYS and value not in ("", None, 0):
            out.append(f"{prefix}{key} {value}")
    return out


def load_results(paths) -> dict[tuple, dict]:
    """``{(dataset, subject, roi, method, protocol): metrics JSON}`` keyed by each file's context."""
    out = {}
    for path in paths:
        try:
            res = json.loads(Path(path).read_text())
            ctx = res["context"]
            key = tuple(str(ctx[k]) for k in ("dataset", "subject", "roi", "method", "protocol"))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a metrics JSON with a context ({type(exc).__name__}: {exc})") from None
        out[key] = res
    return out


def _fmt(x) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"


def _substitutions(results: list[dict], metric: str, extra: list[str]) -> str:
    parts = []
    for res in results:
        st = (res.get("metrics", {}).get(metric) or {}).get("settings", {})
        for key in ("substitution", "choice"):
            if st.get(key):
                parts.append(str(st[key]))
        if st.get("network"):
            parts.append(f"network {st['network']}")
        if st.get("resolution") not in (None, 0, ""):
            parts.append(f"resolution {st['resolution']} px")
        if st.get("samples"):
            parts.append(f"samples: {st['samples']}")
        if res.get("context", {}).get("transductive") == 2:
            parts.append("transductive: the checkpoint was chosen on the test set")
        elif res.get("context", {}).get("transductive"):
            parts.append("transductive: training saw the test fMRI")
    return "; ".join(dict.fromkeys(parts + extra))


def _ours_rows(row: dict, table: pd.DataFrame, results: dict, datasets: dict, extra: list[str]) -> list[dict]:
    """Ours beside one published row: one dict per our dataset of the paper's kind with results."""
    kinds = DATASET_READERS.get(row["dataset"], ())
    mine = [d for d, info in datasets.items() if info.get("reader") in kinds]
    if not mine:
        return [{"status": f"not run: no {row['dataset']} dataset in this run"}]
    out = []
    for d in mine:
        sel = table[
            (table["dataset"] == d) & (table["roi"] == str(row["roi"])) & (table["method"] == row["method"])
            & (table["protocol"] == row["protocol"]) & (table["metric"] == row["metric"])
            & (table["control"] != "shuffled_ids")
        ].sort_values("subject")  # fmt: skip
        sel = sel[pd.to_numeric(sel["value"], errors="coerce").notna()]
        if sel.empty:
            continue
        values = pd.to_numeric(sel["value"], errors="coerce")
        lows = pd.to_numeric(sel["ci_low"], errors="coerce")
        highs = pd.to_numeric(sel["ci_high"], errors="coerce")
        subjects = [str(s) for s in sel["subject"]]
        jsons = [results[k] for s in subjects if (k := (d, s, str(row["roi"]), row["method"], row["protocol"])) in results]
        out.append({
            "ours_dataset": dataset_label(d, datasets[d]),
            "ours_subjects": ", ".join(subjects),
            "ours_value": float(values.mean()),
            "ours_ci_low": float(lows.mean()) if lows.notna().any() else None,
            "ours_ci_high": float(highs.mean()) if highs.notna().any() else None,
            "ours_by_subject": "; ".join(
                f"{s}: {_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]" for s, v, lo, hi in zip(subjects, values, lows, highs)
            ),
            "chance": float(pd.to_numeric(sel["chance"], errors="coerce").mean())
            if pd.to_numeric(sel["chance"], errors="coerce").notna().any() else None,
            "status": "ours",
            "substitutions": _substitutions(jsons, row["metric"], extra),
        })  # fmt: skip
    if not out:
        where = ", ".join(dataset_label(d, datasets[d]) for d in mine)
        return [{"status": f"not run: {row['method']} on ROI {row['roi']} with {row['protocol']} "
                           f"{row['metric']} is not in this run ({where})"}]  # fmt: skip
    return out


def _per_image(res: dict | None, metric: str):
    m = (res or {}).get("metrics", {}).get(metric)
    if not m or m.get("per_image") is None:
        return None, None
    return np.asarray([np.nan if v is None else v for v in m["per_image"]], dtype=np.float64), m.get("higher_is_better")


def evaluate_claim(claim: dict, results: dict, datasets: dict) -> list[dict]:
    """The claim tested on each of our datasets where both sides ran: per-image scores paired by
    test-image position (the JSONs of one dataset score the same test images in the same order),
    pooled over the subjects that have both sides; one ``not run`` dict when no dataset has both."""
    compare = claim.get("compare", "method")
    base = {"better": claim["better"], "worse": claim["worse"]}
    if claim.get("runnable", True) is False:
        return [{**base, "status": "not run", "note": claim.get("reason", "")}]
    protocol, metric = claim["protocol"], claim["metric"]

    def keys(d, s):
        if compare == "roi":
            return ((d, s, str(claim["better"]), claim["method"], protocol),
                    (d, s, str(claim["worse"]), claim["method"], protocol))  # fmt: skip
        return ((d, s, str(claim["roi"]), claim["better"], protocol),
                (d, s, str(claim["roi"]), claim["worse"], protocol))  # fmt: skip

    subjects = sorted({(k[0], k[1]) for k in results})
    out = []
    for d, info in datasets.items():
        xb, xw, used, higher = [], [], [], None
        for dd, s in subjects:
            if dd != d:
                continue
            kb, kw = keys(d, s)
            (b, hb), (w, _) = _per_image(results.get(kb), metric), _per_image(results.get(kw), metric)
            if b is None or w is None or b.shape != w.shape:
                continue
            xb.append(b)
            xw.append(w)
            used.append(s)
            higher = hb if higher is None else higher
        if not used:
            continue
        b, w = np.concatenate(xb), np.concatenate(xw)
        test = paired_wilcoxon(b, w)
        higher = True if higher is None else bool(higher)
        diff = float(np.nanmean(b - w)) * (1 if higher else -1)
        p = test["p_value"]
        if test["n"] == 0:
            verdict = "not run"
        elif p < ALPHA and diff > 0:
            verdict = "✓"
        elif p < ALPHA and diff < 0:
            verdict = "✗"
        else:
            verdict = "not significant"
        out.append({
            **base,
            "ours_dataset": dataset_label(d, info),
            "ours_subjects": ", ".join(used),
            "better_mean": float(np.nanmean(b)),
            "worse_mean": float(np.nanmean(w)),
            "n_pairs": int(test["n"]),
            "p_value": float(p),
            "status": verdict,
            "note": f"paired Wilcoxon signed-rank ({test.get('method', 'all-zero differences')}) on "
            f"per-image scores pooled over subjects {', '.join(used)}, paired by test-image position; "
            f"{'higher' if higher else 'lower'} is better",
        })  # fmt: skip
    if not out:
        if compare == "roi":
            what = f"{claim['method']} on ROIs {claim['better']} and {claim['worse']}"
        else:
            what = f"{claim['better']} and {claim['worse']} on ROI {claim['roi']}"
        out.append({**base, "status": "not run",
                    "note": f"{what} with {protocol} {metric}: not both in this run"})  # fmt: skip
    return out


def reproduction_card(
    paper: dict, table: pd.DataFrame, results: dict, datasets: dict, *,
    method_settings: dict | None = None, image_size: int | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One paper's card (:data:`COLUMNS`): its result rows, then its claims.

    ``table``: ``results/metrics.csv``; ``results``: :func:`load_results`; ``datasets``: our
    dataset name -> ``{"reader", "simulated"}``; ``method_settings``: method -> its resolved
    settings (sizes and epochs go into the substitutions column); ``image_size``: the config's."""
    table = table.astype({"dataset": str, "subject": str, "roi": str, "method": str, "protocol": str,
                          "metric": str, "control": str})  # fmt: skip
    method_settings = method_settings or {}
    rows = []
    for row in paper.get("rows") or []:
        common = {
            "kind": "result", "table": row["table"], "paper_dataset": row["dataset"],
            "paper_subject": str(row["subject"]), "roi": str(row["roi"]), "protocol": row["protocol"] or "",
            "metric": row["metric"], "method": row["method"], "paper_value": row["value"],
            "note": row.get("note", ""),
        }  # fmt: skip
        if row.get("paper_metric") or row["protocol"] is None:
            ours = [{"status": "not run: the paper's metric, not in our presets"}]
        elif row.get("paper_method"):
            ours = [{"status": "not run: the paper's method, not implemented here"}]
        else:
            extra = ([f"images {image_size} px"] if image_size else []) + settings_summary(
                method_settings.get(row["method"], {})
            )
            ours = _ours_rows(row, table, results, datasets, extra)
        rows += [{**common, **o} for o in ours]
    for claim in paper.get("claims") or []:
        common = {
            "kind": "claim", "claim": claim["claim"], "protocol": claim.get("protocol") or "",
            "metric": claim["metric"],
            "roi": str(claim["roi"]) if claim.get("compare", "method") == "method" else f"{claim['better']} vs {claim['worse']}",
            "method": claim["method"] if claim.get("compare") == "roi" else f"{claim['better']} vs {claim['worse']}",
        }  # fmt: skip
        rows += [{**common, **o} for o in evaluate_claim(claim, results, datasets)]
    card = pd.DataFrame(rows, columns=COLUMNS)
    card["n_pairs"] = card["n_pairs"].astype("Int64")  # blank, not 20.0, beside result rows
    return card


def write_reproduction_card(
    paper_id: str, *, table: str, metrics: list[str], datasets: dict, output: str,
    method_settings: dict | None = None, image_size: int | None = None, published: str | None = None,
) -> None:  # fmt: skip
    """Rule ``reproduction_cards``: ``results/report/cards/<paper>.csv``."""
    papers = load_published(published or PUBLISHED)
    if paper_id not in papers:
        raise InputError(f"paper {paper_id!r} not in {published or PUBLISHED} ({sorted(papers)})")
    try:
        frame = pd.read_csv(table, dtype={"subject": str, "roi": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{table}: not a readable metrics table ({exc})") from None
    card = reproduction_card(
        papers[paper_id], frame, load_results(metrics), datasets,
        method_settings=method_settings, image_size=image_size,
    )  # fmt: skip
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        card.to_csv(tmp, index=False)
