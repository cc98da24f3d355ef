"""PNG plots of ``rqgmm evaluate``'s report: codebook utilization, EM history, and the CTR differences
from each baseline (drawn from the verdict's comparison records by ``report.py``).

Each ``plot_*`` function writes one PNG per group it finds in the records and
returns the paths; a kind of record that is absent gives no plot and no error.
Figures use the non-interactive "Agg" backend and are closed after saving.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rqgmm.evaluate.tables import FIRST_TOKENIZERS, mean_std, ordered, select, setting_label, settings_in  # noqa: E402

logger = logging.getLogger(__name__)

PREFERRED_HISTORY_SETTING = setting_label(2, 128)
#: Utilization at or above this counts as a full level.
FULL = 0.999
DPI = 120


def _safe(name: object) -> str:
    """A file-name-safe version of a dataset, split or setting name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def _save(fig: plt.Figure, out_dir: Path, stem: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    logger.debug("wrote %s", path)
    return path


def _mean_err(values: Sequence) -> tuple[float, float]:
    """Mean and std (0 when one value) for a bar; NaN mean when no value."""
    mean, std = mean_std(values)
    return (np.nan if mean is None else mean), (0.0 if std is None else std)


def _datasets(records: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r.get("dataset") for r in records if r.get("dataset") is not None))


def _grouped_bars(ax: plt.Axes, groups: list[str], series: dict[str, tuple[list, list]]) -> None:
    """Bars of every series side by side within each group; series maps label → (means, errors)."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for i, (label, (means, errs)) in enumerate(series.items()):
        spread = any(e > 0 for e in errs)  # one seed: no zero-width bars that look like exactness
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=errs if spread else None, capsize=3,
               label=label)
    ax.set_xticks(x, groups, rotation=20 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")


# ----------------------------------------------------------------------------- utilization


def _level_values(recs: list[dict], key: str, level: int) -> list:
    """Level ``level`` of the per-level list ``key``, from the records that reach that level."""
    return [r[key][level] for r in recs if len(r.get(key) or []) > level]


def _utilization_figure(recs: list[dict], title: str) -> plt.Figure:
    toks = ordered((r.get("tokenizer") for r in recs), FIRST_TOKENIZERS)
    depth = max(len(r.get("utilization") or []) for r in recs)
    series = {}
    for level in range(depth):
        stats = [_mean_err(_level_values(select(recs, tokenizer=t), "utilization", level)) for t in toks]
        series[f"level {level + 1}"] = ([s[0] for s in stats], [s[1] for s in stats])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(toks) + 2), 3.8))
    _grouped_bars(ax, toks, series)
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("codebook utilization (codes used / K)")
    ax.set_title(title)
    ax.legend(ncol=max(depth, 1), loc="upper center", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_utilization(records: Sequence[dict], out_dir: Path) -> list[Path]:
    """Per dataset × setting: grouped bars of utilization per level for each tokenizer (std over seeds);
    none when every level is full."""
    recs = [r for r in select(records, kind="tokenizer") if r.get("utilization")]
    if all(u >= FULL for r in recs for u in r["utilization"]):
        return []  # every level of every tokenizer uses all its codes: a flat plot says nothing
    paths = []
    for dataset in _datasets(recs):
        in_data = select(recs, dataset=dataset)
        for setting in settings_in(in_data):
            fig = _utilization_figure(select(in_data, setting=setting), f"{dataset}: codebook utilization, {setting}")
            paths.append(_save(fig, out_dir, f"utilization_{_safe(dataset)}_{_safe(setting)}"))
    return paths


# ----------------------------------------------------------------------------- EM history


def _history_record(recs: list[dict]) -> dict | None:
    """The first seed's RQ-GMM record at the preferred setting, or the first setting present."""
    recs = [r for r in recs if any(len(h) for h in (r.get("history") or []))]
    if not recs:
        return None
    settings = settings_in(recs)
    setting = PREFERRED_HISTORY_SETTING if PREFERRED_HISTORY_SETTING in settings else settings[0]
    return min(select(recs, setting=setting), key=lambda r: (r.get("seed") is None, r.get("seed") or 0))


def _history_figure(history: list[list[float]]) -> plt.Figure:
    """One panel per level, each on its own y scale: levels differ by far more than EM's gains."""
    fig, axes = plt.subplots(1, len(history), figsize=(3.6 * len(history) + 0.6, 3.6), squeeze=False)
    for level, (ax, values) in enumerate(zip(axes[0], history)):
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, color=f"C{level}")
        ax.set_title(f"level {level + 1}")
        ax.set_xlabel("EM iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean log-likelihood per item")
    return fig


def plot_em_history(records: Sequence[dict], out_dir: Path) -> list[Path]:
    """Per dataset: RQ-GMM EM mean log-likelihood against iteration, one line per level."""
    recs = select(records, kind="tokenizer", tokenizer="rqgmm")
    paths = []
    for dataset in _datasets(recs):
        record = _history_record(select(recs, dataset=dataset))
        if record is None:
            continue
        fig = _history_figure(record["history"])
        fig.suptitle(f"{dataset}: RQ-GMM EM, {record.get('setting')}, seed {record.get('seed')}")
        fig.tight_layout()
        paths.append(_save(fig, out_dir, f"em_history_{_safe(dataset)}"))
    return paths


# ----------------------------------------------------------------------------- CTR differences

#: The y axis spans at least ± this much AUC: a gap of 0.002 must not fill the panel.
MIN_HALF_SPAN = 0.01


def difference_figure(comps: list[dict], columns: list[str], backbones: list[str], baselines: Sequence[str],
                      title: str) -> plt.Figure:
    """One panel per backbone × baseline: each variant's AUC difference per slice, its Holm-corrected interval
    (a point without bars when there is none), a zero line; one y scale for all panels, symmetric about 0."""
    panels = [(b, base) for b in backbones for base in baselines if select(comps, backbone=b, baseline=base)]
    ncols = len({base for _, base in panels})
    nrows = -(-len(panels) // max(ncols, 1))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 2.8 * nrows + 0.6), squeeze=False, sharey=True)
    bounds = [abs(v) for c in comps for v in (c["mean"], c["low"], c["high"]) if v is not None]
    half = max([MIN_HALF_SPAN, *bounds]) * 1.1
    x = np.arange(len(columns))
    colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(c["label"] for c in comps))}
    for ax, (backbone, baseline) in zip(axes.flat, panels):
        group = select(comps, backbone=backbone, baseline=baseline)
        labels = list(dict.fromkeys(c["label"] for c in group))
        for i, label in enumerate(labels):
            found = {c["column"]: c for c in select(group, label=label)}
            shift = (i - (len(labels) - 1) / 2) * 0.8 / max(len(labels), 1)
            xs = [x[j] + shift for j, col in enumerate(columns) if col in found]
            cs = [found[col] for col in columns if col in found]
            means = np.array([c["mean"] for c in cs])
            errs = np.array([[c["mean"] - c["low"], c["high"] - c["mean"]] if c["low"] is not None else [np.nan] * 2
                             for c in cs]).T.reshape(2, -1)
            ax.errorbar(xs, means, yerr=np.nan_to_num(errs), fmt="o", capsize=3, color=colors[label], label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylim(-half, half)
        ax.set_xticks(x, columns)
        ax.set_title(f"{backbone}: variant − {baseline}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="best")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("AUC difference")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig
