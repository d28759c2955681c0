"""The default's key figures from ``results/metrics.csv``: one row per method, for one subject and ROI.

Per method: pairwise-SSIM 2-way, perceptual 2-way and semantic top-1, each as
``value / shuffled-id control``, the oracle's value in the header, and the method's share of the
oracle's margin above chance, ``(value - chance) / (oracle - chance)``. A method that its protocols
do not score on a column's first metric is shown on the next one (marked ``*`` and named below the
table): CAD's presets (MinD-Vis, MindEye) have no Fang-2020 pairwise SSIM and no Gaziv perceptual
2-way.

    python benchmarks/key_figures.py results/metrics.csv
    python benchmarks/key_figures.py after/metrics.csv --before before/metrics.csv --subject 1 --roi VC

With ``--before`` each cell shows ``before -> after`` of the method's value.
"""

from __future__ import annotations

import argparse
import csv
import math

#: column title -> candidate (protocol, metric), first found wins.
COLUMNS = {
    "pairwise SSIM 2-way": [("fang2020_pairwise_ssim", "pairwise_ssim_2way"), ("mindvis_nway", "pairwise_ssim")],
    "perceptual 2-way": [("gaziv2022", "perceptual_2way"), ("mindeye_offline", "effnet_block4_2way")],
    "semantic top-1": [("mindvis_nway", "semantic_50way_top1"), ("gaziv2022", "centroid_top1")],
}  # fmt: skip
ORACLE = "oracle"


def read(path: str, subject: str, roi: str) -> dict:
    """(method, protocol, metric, control) -> row, for one subject and ROI."""
    out = {}
    with open(path) as fh:
        for r in csv.DictReader(fh):
            if r["subject"] == subject and r["roi"] == roi:
                # the floor and ceiling reconstructions are rows of their own kind ("mean_image", "oracle")
                control = "none" if r["control"] in ("oracle", "mean_image") else r["control"]
                out[(r["method"], r["protocol"], r["metric"], control)] = r
    return out


def pick(rows: dict, method: str, candidates: list) -> tuple | None:
    for i, (protocol, metric) in enumerate(candidates):
        if (method, protocol, metric, "none") in rows:
            return protocol, metric, i > 0
    return None


def cell(rows: dict, method: str, protocol: str, metric: str) -> tuple[float, float, float]:
    """value, shuffled control (nan when none), chance."""
    r = rows[(method, protocol, metric, "none")]
    c = rows.get((method, protocol, metric, "shuffled_ids"))
    return float(r["value"]), float(c["value"]) if c else math.nan, float(r["chance"])


def table(rows: dict, before: dict | None) -> str:
    methods = sorted({k[0] for k in rows}, key=lambda m: (m != ORACLE, m))
    head = ["method"]
    for title, cands in COLUMNS.items():
        o = pick(rows, ORACLE, cands)
        ref = f" (oracle {cell(rows, ORACLE, o[0], o[1])[0]:.3f})" if o else ""
        head += [f"{title}{ref}", "share of oracle margin"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    used = set()
    for m in methods:
        parts = [m]
        for title, cands in COLUMNS.items():
            p = pick(rows, m, cands)
            if p is None:
                parts += ["–", "–"]
                continue
            protocol, metric, fallback = p
            used.add((title, protocol, metric, fallback))
            v, ctrl, chance = cell(rows, m, protocol, metric)
            text = f"{v:.3f} / {ctrl:.3f}" if not math.isnan(ctrl) else f"{v:.3f}"
            if before is not None and (m, protocol, metric, "none") in before:
                text = f"{float(before[(m, protocol, metric, 'none')]['value']):.3f} → " + text
            parts.append(text + ("*" if fallback else ""))
            o = pick(rows, ORACLE, [(protocol, metric)])
            if o is None:
                parts.append("–")
            else:
                ov, _, ochance = cell(rows, ORACLE, protocol, metric)
                parts.append(f"{(v - chance) / (ov - ochance):.0%}" if ov != ochance else "–")
        lines.append("| " + " | ".join(parts) + " |")
    notes = sorted(f"{t}: {p}/{mt}" + (" (*)" if fb else "") for t, p, mt, fb in used)
    return "\n".join(lines + ["", "metrics used: " + "; ".join(notes)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics")
    ap.add_argument("--before", help="an earlier metrics.csv to show beside")
    ap.add_argument("--subject", default="1")
    ap.add_argument("--roi", default="VC")
    args = ap.parse_args()
    rows = read(args.metrics, args.subject, args.roi)
    before = read(args.before, args.subject, args.roi) if args.before else None
    print(f"subject {args.subject}, {args.roi}: value / shuffled-id control")
    print(table(rows, before))


if __name__ == "__main__":
    main()
