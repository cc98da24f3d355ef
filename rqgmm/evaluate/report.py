"""``report.md`` and PNG plots of ``rqgmm evaluate`` records.

The report opens with the verdict (:mod:`.verdict`: the comparisons a user acts
on, Holm-corrected, in words, with the serving costs) and the warnings
(:mod:`.caveats`), then the settings and the tables. AUC cells are the mean over
seeds (± the sample std with more than one seed); the difference tables give
each comparison's uncorrected 95% interval and its kind (bootstrap over test
users, or Student-t across seeds). The plots show the differences against
``none`` and ``embedding`` with their corrected intervals and a zero line.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path


from rqgmm.evaluate.stages import stage_words
from rqgmm.files.atomic import atomic_output
from rqgmm.ctr.models import BACKBONES
from rqgmm.evaluate import plots
from rqgmm.evaluate.grid import json_default
from rqgmm.evaluate.caveats import caveats
from rqgmm.evaluate.retrieval_report import plot_retrieval, retrieval_section, retrieval_verdict
from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.tables import (DASH, fmt_difference, fmt_levels, fmt_mean_std, markdown_table, ordered, select,
                                   settings_in)
from rqgmm.evaluate.verdict import COLUMNS, OVERALL, interval_note, recommendation, verdict_lines
from rqgmm.evaluate.id_checks import diagnostics_section

logger = logging.getLogger(__name__)

BASELINES = ("none", "embedding")
FIRST_BACKBONES = tuple(BACKBONES)


def metric(record: dict, column: str, key: str = "auc") -> float | None:
    """AUC (or LogLoss) of one CTR record over all test rows or one popularity slice."""
    return record.get(key) if column == OVERALL else record["slices"][column].get(key)


def labels_in_order(recs: Sequence[dict]) -> list[str]:
    """Variant labels: none, embedding, then the ID variants alphabetically."""
    return ordered((r["label"] for r in recs), BASELINES)


# ----------------------------------------------------------------------------- sections


def tokenizer_section(records: list[dict]) -> list[str]:
    recs = select(records, kind="tokenizer")
    if not recs:
        return []
    rows = []
    for method in ordered(r["tokenizer"] for r in recs):
        for modality in ordered(r["modality"] for r in select(recs, tokenizer=method)):
            group = select(recs, tokenizer=method, modality=modality)
            rows.append([method, modality, fmt_mean_std([r["rmse"] for r in group]),
                         fmt_levels([r["utilization"] for r in group], 3),
                         fmt_mean_std([r["collision_rate"] for r in group]),
                         fmt_mean_std([r["shared_items"] for r in group], 3),
                         fmt_mean_std([r["fit_seconds"] for r in group], 1)])
    header = ["tokenizer", "fitted on", "RMSE", "utilization per level", "collision rate",
              "items sharing their full ID", "fit s"]
    return ["## Tokenizers (fitted on the item embeddings only)", "", markdown_table(header, rows), ""]


def shape_section(records: list[dict]) -> list[str]:
    """In a sweep (several shapes), one table per shape: each tokenizer's fit, its serving cost, and the AUC of
    its IDs variants on all rows and cold items (first regime, mean ± std over backbones and seeds)."""
    tokens = select(records, kind="tokenizer")
    settings = [s for s in settings_in(tokens) if s is not None]
    if len(settings) < 2:
        return []
    ctr = select(records, kind="ctr")
    regime = ordered((r["regime"] for r in ctr), ("side fields", "content only"))[:1]
    ctr = select(ctr, regime=regime[0]) if regime else []
    variants = [v for v in ("ids", "ids+embedding") if select(ctr, variant=v)]
    lines = [f"## ID shapes ({regime[0] if regime else 'no CTR runs'}; AUC mean ± std over backbones and seeds)", ""]
    header = ["tokenizer", "RMSE", "utilization per level", "collision rate", "items sharing their full ID",
              "bytes per item", *(f"AUC {v} {c}" for v in variants for c in (OVERALL, "cold"))]
    for setting in settings:
        rows = []
        for name in ordered(r["tokenizer"] for r in select(tokens, setting=setting)):
            group, runs = select(tokens, tokenizer=name), select(ctr, tokenizer=name)
            cost = select(runs, variant="ids")[:1]
            rows.append([name, fmt_mean_std([r["rmse"] for r in group]),
                         fmt_levels([r["utilization"] for r in group], 3),
                         fmt_mean_std([r["collision_rate"] for r in group]),
                         fmt_mean_std([r["shared_items"] for r in group], 3),
                         f"{cost[0]['bytes_per_item']:,}" if cost else DASH,
                         *(fmt_mean_std([metric(r, c) for r in select(runs, variant=v)])
                           for v in variants for c in (OVERALL, "cold"))])
        lines += [f"### Shape {setting}", "", markdown_table(header, rows), ""]
    return lines


def _auc_table(recs: list[dict]) -> str:
    rows = [[label, *(fmt_mean_std([metric(r, c) for r in select(recs, label=label)]) for c in COLUMNS)]
            for label in labels_in_order(recs)]
    return markdown_table(["variant", *(f"AUC {c}" for c in COLUMNS)], rows)


def _uncorrected(comp: dict | None) -> str:
    if comp is None:
        return DASH
    return fmt_difference(dict(mean=comp["mean"], low=comp["low95"], high=comp["high95"], n=comp["seeds"]))


def _difference_table(comps: list[dict]) -> str | None:
    """One row per comparison, one column per slice: the difference and its uncorrected 95% interval."""
    rows = []
    for label, baseline in dict.fromkeys((c["label"], c["baseline"]) for c in comps):
        pair = select(comps, label=label, baseline=baseline)
        rows.append([f"{label} − {baseline}",
                     *(_uncorrected(next(iter(select(pair, column=c)), None)) for c in COLUMNS)])
    return markdown_table(["comparison", *COLUMNS], rows) if rows else None


def _slice_sizes(recs: list[dict]) -> str:
    first = recs[0]
    return ", ".join(f"{c} {first['slices'][c]['n']}" for c in SLICES) + f" of {first['n_test']} test rows"


KIND_WORDS = {"bootstrap": "bootstrap over test users", "seeds+users": "bootstrap over test users plus the spread "
              "across seeds", "t": "Student-t across seeds", "none": "one value, no interval"}


def ctr_section(records: list[dict]) -> list[str]:
    recs, comps = select(records, kind="ctr"), select(records, kind="comparison")
    lines = []
    for regime in ordered((r["regime"] for r in recs), ("side fields", "content only")):
        in_regime = select(recs, regime=regime)
        lines += [f"## CTR, regime: {regime}", "", f"Test rows per slice: {_slice_sizes(in_regime)}.", ""]
        for backbone in ordered((r["backbone"] for r in in_regime), FIRST_BACKBONES):
            group = select(in_regime, backbone=backbone)
            lines += [f"### {backbone}", "", _auc_table(group), ""]
            pairs = select(comps, regime=regime, backbone=backbone)
            diff = _difference_table(pairs)
            if diff:
                kinds = ", ".join(KIND_WORDS[k] for k in ordered(c["interval"] for c in pairs))
                lines += [f"AUC differences, mean [95% interval, not corrected for multiple comparisons; {kinds}]:",
                          "", diff, ""]
    return lines


def cost_section(records: list[dict]) -> list[str]:
    recs = select(records, kind="ctr")
    if not recs:  # a retrieval-only report has no CTR variants to cost
        return []
    rows = []
    for label in labels_in_order(recs):
        first = select(recs, label=label)[0]
        rows.append([label, f"{first['content_parameters']:,}", f"{first['bytes_per_item']:,}"])
    header = ["variant", "content parameters (model)", "content bytes per item (serving)"]
    return ["## Costs of the content part", "", markdown_table(header, rows), ""]


def variant_costs(records: list[dict]) -> dict[str, dict]:
    """Each CTR variant label's serving cost: ``bytes_per_item`` and ``content_parameters`` (first record)."""
    return {r["label"]: dict(bytes_per_item=r["bytes_per_item"], content_parameters=r["content_parameters"])
            for r in reversed(select(records, kind="ctr"))}


def cost_line(records: list[dict]) -> str:
    """The serving cost of each variant in one line: content bytes per item and model parameters."""
    recs = select(records, kind="ctr")
    costs = [f"{label} {first['bytes_per_item']:,} B/item, {first['content_parameters']:,} parameters"
             for label in labels_in_order(recs) for first in select(recs, label=label)[:1]]
    return "Serving cost of the content part: " + "; ".join(costs) + "."


def verdict_section(records: list[dict], heading: str = "## Verdict") -> list[str]:
    """The verdict in words (Holm-corrected intervals), the serving costs, and the warnings to read first."""
    comps, lines = select(records, kind="comparison"), [heading, ""]
    if comps:
        lines += [f"**{recommendation(comps, variant_costs(records))}**", "", interval_note(comps), ""]
        for line in verdict_lines(comps):
            lines += [f"- {line.strip()}"] if line.startswith("  ") else ["", f"### {line.rstrip(':')}", ""]
        lines.append("")
    if select(records, kind="ctr"):
        lines += [cost_line(records), ""]
    retrieval = retrieval_verdict(records)
    if retrieval:
        lines += ["### Generative retrieval", "", retrieval[0], "", *(f"- {line}" for line in retrieval[1:]), ""]
    warned = caveats(records)
    if warned:
        lines += ["### Warnings (read before acting on the verdict)", "", *(f"- {w}" for w in warned), ""]
    return lines


def header_section(meta: dict) -> list[str]:
    lines = ["## Settings", ""]
    lines += [f"- {key}: {stage_words(value) if key == 'stages' else value}" for key, value in meta.items()
              if key not in ("command", "dataset")]
    return lines + [""]


def render_report(records: list[dict], meta: dict) -> str:
    """report.md of one or more datasets' records: the verdicts first, then the settings and the tables."""
    datasets = ordered(r["dataset"] for r in records)
    several = len(meta.get("datasets", [])) > 1
    lines = [f"# rqgmm evaluate report: {meta.get('dataset', '')}".rstrip(": "), "", f"- command: `{meta['command']}`",
             ""]
    for dataset in datasets:
        lines += verdict_section(select(records, dataset=dataset), f"## Verdict: {dataset}" if several else "## Verdict")
    lines += header_section(meta)
    for dataset in datasets:
        in_data = select(records, dataset=dataset)
        lines += [f"# {dataset}", ""] if several else []
        lines += tokenizer_section(in_data) + shape_section(in_data) + diagnostics_section(in_data)
        lines += ctr_section(in_data) + cost_section(in_data)
        lines += retrieval_section(in_data)
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


# ----------------------------------------------------------------------------- plots


def plot_ctr(records: list[dict], out_dir: Path) -> list[Path]:
    """Per dataset × regime: each variant's AUC difference from ``none`` and from ``embedding`` per slice."""
    comps, paths = select(records, kind="comparison"), []
    for dataset in ordered(r["dataset"] for r in comps):
        for regime in ordered(r["regime"] for r in select(comps, dataset=dataset)):
            group = [c for c in select(comps, dataset=dataset, regime=regime) if c["baseline"] in BASELINES]
            if not group:  # e.g. --variants ids: only head-to-head comparisons, no baseline to draw against
                continue
            fig = plots.difference_figure(
                group, list(COLUMNS), ordered((c["backbone"] for c in group), FIRST_BACKBONES), BASELINES,
                f"{dataset}, {regime}: AUC difference from each baseline (Holm-corrected intervals)")
            paths.append(plots._save(fig, out_dir, f"differences_{plots._safe(dataset)}_{plots._safe(regime)}"))
    return paths


def render_outputs(directory: Path, records: list[dict], meta: dict) -> list[Path]:
    """Write results.json, report.md and the PNG plots into ``directory``; the paths written."""
    (directory / "results.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1,
                                                       default=json_default) + "\n")
    (directory / "report.md").write_text(render_report(records, meta))
    pngs = plots.plot_utilization(records, directory) + plots.plot_em_history(records, directory)
    pngs += plot_retrieval(records, directory)
    return [directory / "results.json", directory / "report.md", *map(Path, pngs + plot_ctr(records, directory))]


def write_outputs(out: Path, records: list[dict], meta: dict) -> list[Path]:
    """Write results.json, report.md and the PNG plots into ``out`` atomically (never over a foreign directory)."""
    with atomic_output(out, directory=True, marker="results.json") as tmp:
        written = render_outputs(tmp, records, meta)
    return [out / p.name for p in written]


def write_into(out: Path, records: list[dict], meta: dict) -> list[Path]:
    """Write results.json, report.md and the PNG plots into the directory ``out``, each file atomically and
    results.json last; every other file there (the finished runs of :mod:`.grid`) stays as it is."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".report.tmp-", dir=out) as tmp:
        written = render_outputs(Path(tmp), records, meta)
        for path in sorted(written, key=lambda p: p.name == "results.json"):
            with atomic_output(out / path.name) as dest:
                shutil.copyfile(path, dest)
    return [out / p.name for p in written]


