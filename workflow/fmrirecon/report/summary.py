"""The report's first page: what each paper claimed and published, and what this run found.

Rule ``report_summary`` reads the reproduction cards (:mod:`.cards`) and writes

- ``results/report/summary.rst``: the workflow's description, then per paper the tally of its
  claims' verdicts (✓ held, ✗ reversed and significant, ~ not significant, – not run) and of its
  published numbers with ours beside them. The Snakefile's ``report:`` directive uses it as the
  report's landing text once it exists (before, ``workflow/report/workflow.rst``);
- ``results/report/metadata.yaml``: the verdict counts as numbers, for
  ``snakemake --report … --report-metadata results/report/metadata.yaml``; Snakemake opens the
  report on its landing page only when metadata is given (else on the rule graph), and renders
  only numbers there correctly (its metadata strings come out as docutils parts).

Nothing here recomputes a number: every value is a card's, so the first page and the cards agree.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from ..data.atomic import atomic_path
from .cards import VERDICTS as CARD_VERDICTS

#: card ``status`` of a claim (:data:`.cards.VERDICTS`) -> (mark, words)
VERDICTS = dict(zip(CARD_VERDICTS, (("✓", "held"), ("✗", "reversed (significant)"), ("~", "not significant"),
                                    ("–", "not run"))))  # fmt: skip


def _verdict(status: str) -> str:
    """A card's claim status -> a key of :data:`VERDICTS`."""
    return status if status in VERDICTS else "not run"


def _card_rows(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def summarise(cards: list[str], intro: str) -> tuple[str, dict]:
    """(rst text, metadata) from the card CSVs (one per paper, named by its id), after ``intro``.

    The page stays short on purpose: Snakemake's report centres its landing page vertically, so
    a page taller than the browser window loses its top. Per paper one line: the tally of its
    claims' verdicts and how many published numbers have ours beside them; the claims themselves,
    their tests and every number are in the card it links to."""
    counts = {key: 0 for key in VERDICTS}
    out = [intro.rstrip(), "", "Reproduction cards", "------------------", "",
           ("Per paper: its claimed orderings tested on our per-image scores (✓ held, ✗ reversed and "
            "significant, ~ not significant, – not run) and its published numbers with ours beside them, "
            "from **simulated** or real data as each card says."), ""]  # fmt: skip
    for path in sorted(cards):
        paper = Path(path).stem
        rows = _card_rows(path)
        verdicts = [_verdict(r["status"]) for r in rows if r["kind"] == "claim"]
        for v in verdicts:
            counts[v] += 1
        ours = [r for r in rows if r["kind"] == "result" and r["status"] == "ours"]
        datasets = sorted({r["ours_dataset"] for r in rows if r["status"] == "ours" or r["kind"] == "claim"} - {""})
        tally = "claims " + " · ".join(f"{VERDICTS[k][0]} {verdicts.count(k)}" for k in VERDICTS) if verdicts else "no claims"
        out.append(f"- **{paper}** (`{Path(path).name}`_): {tally}; {len(ours)} of {sum(r['kind'] == 'result' for r in rows)} "
                   f"published numbers with ours beside them" + (f" ({', '.join(datasets)})" if datasets else ""))  # fmt: skip
    text = "\n".join(out) + "\n"
    # the report renders this text through Jinja: keep card text literal
    text = "{% raw %}\n" + text + "{% endraw %}\n"
    metadata = {"claims " + " ".join(m for m, _ in VERDICTS.values()) + " (all cards)": [counts[k] for k in VERDICTS]}
    return text, metadata


def write_summary(cards: list[str], intro: str, rst: str, metadata: str) -> None:
    text, meta = summarise(cards, intro)
    with atomic_path(rst) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    with atomic_path(metadata) as tmp:
        Path(tmp).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True), encoding="utf-8")
