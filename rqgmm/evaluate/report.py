"""``report.md`` and PNG plots of ``rqgmm evaluate`` records.

Cells are the mean over seeds (± the sample std with more than one seed);
differences are paired by seed with a Student-t 95% interval (``tables.paired_difference``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path


from ..atomic import atomic_output
from ..ctr.models import BACKBONES
from . import plots
from .grid import json_default
from .retrieval_report import plot_retrieval, retrieval_section
from .slices import SLICES
from .tables import fmt_difference, fmt_levels, fmt_mean_std, markdown_table, ordered, paired_difference, select

logger = logging.getLogger(__name__)

OVERALL = "all"
COLUMNS = (OVERALL, *SLICES)
BASELINES = ("none", "embedding")
FIRST_BACKBONES = tuple(BACKBONES)


def metric(record: dict, column: str, key: str = "auc") -> float | None:
    """AUC (or LogLoss) of one CTR record over all test rows or one popularity slice."""
    return record.get(key) if column == OVERALL else record["slices"][column].get(key)


def _by_seed(recs: Sequence[dict], column: str) -> dict[int, float]:
    return {r["seed"]: metric(r, column) for r in recs if metric(r, column) is not None}


def paired(a: Sequence[dict], b: Sequence[dict], column: str) -> dict | None:
    """Mean of the per-seed differences a − b in AUC with its 95% interval; None without common seeds."""
    left, right = _by_seed(a, column), _by_seed(b, column)
    seeds = sorted(set(left) & set(right))
    return paired_difference([left[s] for s in seeds], [right[s] for s in seeds]) if seeds else None


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


def _auc_table(recs: list[dict]) -> str:
    rows = [[label, *(fmt_mean_std([metric(r, c) for r in select(recs, label=label)]) for c in COLUMNS)]
            for label in labels_in_order(recs)]
    return markdown_table(["variant", *(f"AUC {c}" for c in COLUMNS)], rows)


def _difference_table(recs: list[dict]) -> str | None:
    rows = []
    for baseline in BASELINES:
        base = select(recs, label=baseline)
        for label in labels_in_order(recs):
            if base and label not in BASELINES[: BASELINES.index(baseline) + 1]:
                rows.append([f"{label} − {baseline}",
                             *(fmt_difference(paired(select(recs, label=label), base, c)) for c in COLUMNS)])
    return markdown_table(["comparison", *COLUMNS], rows) if rows else None


def _slice_sizes(recs: list[dict]) -> str:
    first = recs[0]
    return ", ".join(f"{c} {first['slices'][c]['n']}" for c in SLICES) + f" of {first['n_test']} test rows"


def ctr_section(records: list[dict]) -> list[str]:
    recs = select(records, kind="ctr")
    lines = []
    for regime in ordered((r["regime"] for r in recs), ("side fields", "content only")):
        in_regime = select(recs, regime=regime)
        lines += [f"## CTR, regime: {regime}", "", f"Test rows per slice: {_slice_sizes(in_regime)}.", ""]
        for backbone in ordered((r["backbone"] for r in in_regime), FIRST_BACKBONES):
            group = select(in_regime, backbone=backbone)
            lines += [f"### {backbone}", "", _auc_table(group), ""]
            diff = _difference_table(group)
            if diff:
                lines += ["AUC differences, paired by seed, mean [95% Student-t interval]:", "", diff, ""]
    return lines


def cost_section(records: list[dict]) -> list[str]:
    recs = select(records, kind="ctr")
    rows = []
    for label in labels_in_order(recs):
        first = select(recs, label=label)[0]
        rows.append([label, f"{first['content_parameters']:,}", f"{first['bytes_per_item']:,}"])
    header = ["variant", "content parameters (model)", "content bytes per item (serving)"]
    return ["## Costs of the content part", "", markdown_table(header, rows), ""]


def header_section(meta: dict) -> list[str]:
    lines = [f"# rqgmm evaluate report: {meta.get('dataset', '')}".rstrip(": "), "",
             f"- command: `{meta['command']}`"]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("command", "dataset")]
    return lines + [""]


def render_report(records: list[dict], meta: dict) -> str:
    """report.md of one or more datasets' records."""
    lines = header_section(meta)
    for dataset in ordered(r["dataset"] for r in records):
        in_data = select(records, dataset=dataset)
        lines += [f"# {dataset}", ""] if len(meta.get("datasets", [])) > 1 else []
        lines += tokenizer_section(in_data) + ctr_section(in_data) + cost_section(in_data)
        lines += retrieval_section(in_data)
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


# ----------------------------------------------------------------------------- plots


def _bar_figure(recs: list[dict], groups: list[str], key_of, title: str):
    series = {}
    for label in labels_in_order(recs):
        stats = [plots._mean_err([v for v in key_of(select(recs, label=label), g) if v is not None]) for g in groups]
        series[label] = ([s[0] for s in stats], [s[1] for s in stats])
    fig, ax = plots.plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2.5), 4.0))
    plots._grouped_bars(ax, groups, series)
    plots._zoomed_ylim(ax, series)
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_ctr(records: list[dict], out_dir: Path) -> list[Path]:
    """Per dataset × regime: AUC by backbone, and AUC by popularity slice (first backbone)."""
    recs, paths = select(records, kind="ctr"), []
    for dataset in ordered(r["dataset"] for r in recs):
        for regime in ordered(r["regime"] for r in select(recs, dataset=dataset)):
            group = select(recs, dataset=dataset, regime=regime)
            backbones = ordered((r["backbone"] for r in group), FIRST_BACKBONES)
            fig = _bar_figure(group, backbones, lambda rs, b: [r["auc"] for r in select(rs, backbone=b)],
                              f"{dataset}, {regime}: AUC by backbone (y zoomed)")
            paths.append(plots._save(fig, out_dir, f"auc_{plots._safe(dataset)}_{plots._safe(regime)}"))
            first = select(group, backbone=backbones[0])
            fig = _bar_figure(first, list(COLUMNS), lambda rs, c: [metric(r, c) for r in rs],
                              f"{dataset}, {regime}, {backbones[0]}: AUC by popularity slice (y zoomed)")
            paths.append(plots._save(fig, out_dir, f"slices_{plots._safe(dataset)}_{plots._safe(regime)}"))
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


