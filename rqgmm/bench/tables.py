"""Markdown tables of benchmark records: the text of ``report.md``.

A record is a plain dict with a ``kind`` of "tokenizer", "ctr" or "sweep" (see
``study.py``). Every number in the report comes from the records; cells show
the mean over seeds, with the sample standard deviation (ddof=1) when more
than one seed has a value. Paired differences subtract per seed first and put
a Student-t interval on the mean of those differences.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

FIRST_VARIANTS = ("none", "embedding", "rqgmm", "rqkmeans")
FIRST_BACKBONES = ("fnn", "deepfm", "dcnv2")
FIRST_SPLITS = ("time", "random")
NOT_SEMANTIC_IDS = ("none", "embedding")
COMPARISONS = (("rqgmm", "rqkmeans"), ("rqgmm", "embedding"))
PURITY_KEYS = ("level1", "prefix2", "random")
DASH = "–"
MINUS = "−"

# header, record key, digits, one value per level
TOKENIZER_COLUMNS = (
    ("RMSE", "rmse", 4, False),
    ("rel. MSE", "relative_mse", 4, False),
    ("utilization", "utilization", 3, True),
    ("prefix util.", "prefix_utilization", 3, True),
    ("collision", "collision_rate", 4, False),
    ("ICR", "icr", 3, False),
    ("perplexity", "perplexity", 1, True),
)

Variant = tuple[str, "str | None"]


# ----------------------------------------------------------------------------- statistics


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of the per-seed differences a − b with a Student-t confidence interval.

    Parameters
    ----------
    a, b : sequences of float, same length, aligned by seed
    confidence : float in (0, 1), two-sided coverage of the interval

    Returns
    -------
    dict with ``mean`` (None when empty), ``low`` and ``high`` (None when
    fewer than two pairs) and ``n`` (the number of pairs).
    """
    if len(a) != len(b):
        raise ValueError(
            f"paired_difference expects sequences of equal length (one value per seed), got {len(a)} and {len(b)}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return dict(mean=None, low=None, high=None, n=0)
    mean = float(diff.mean())
    if n < 2:
        return dict(mean=mean, low=None, high=None, n=n)
    half = stats.t.ppf(0.5 + confidence / 2.0, n - 1) * diff.std(ddof=1) / math.sqrt(n)
    return dict(mean=mean, low=float(mean - half), high=float(mean + half), n=n)


def _values(values: Iterable) -> list[float]:
    """The finite-or-infinite floats among ``values``; None and NaN are dropped."""
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def mean_std(values: Iterable) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the values present; std None for one value."""
    vals = _values(values)
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


# ----------------------------------------------------------------------------- formatting


def fmt_mean_std(values: Iterable, digits: int = 4) -> str:
    """"0.7123 ± 0.0011" over seeds; "0.7123" for one value; a dash for none."""
    mean, std = mean_std(values)
    if mean is None:
        return DASH
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_levels(lists: Iterable, digits: int) -> str:
    """Per-level mean ± std joined by " / " ("0.95 / 0.88"); lists hold one value per level."""
    lists = [lst for lst in lists if lst]
    if not lists:
        return DASH
    depth = max(len(lst) for lst in lists)
    return " / ".join(fmt_mean_std([lst[i] for lst in lists if i < len(lst)], digits) for i in range(depth))


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", MINUS)


def fmt_difference(diff: dict | None, digits: int = 4) -> str:
    """"+0.0012 [−0.0003, +0.0027]" (mean [CI]); "+0.0012 (n=1)" without an interval."""
    if diff is None or diff["mean"] is None:
        return DASH
    mean = _signed(diff["mean"], digits)
    if diff["low"] is None:
        return f"{mean} (n={diff['n']})"
    return f"{mean} [{_signed(diff['low'], digits)}, {_signed(diff['high'], digits)}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table, first column left-aligned and the rest right-aligned."""
    align = [":---"] + ["---:"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


# ----------------------------------------------------------------------------- ordering and selection


def ordered(names: Iterable, first: Sequence[str] = ()) -> list[str]:
    """Distinct non-None names: those in ``first`` in that order, then the rest alphabetically."""
    present = {n for n in names if n is not None}
    return [n for n in first if n in present] + sorted(present - set(first))


def setting_key(setting: str | None) -> tuple:
    """Sort key for settings like "2x128": by levels, then codebook size; None last."""
    if setting is None:
        return (2, 0, 0, "")
    try:
        levels, size = (int(p) for p in str(setting).split("x"))
    except ValueError:
        return (1, 0, 0, str(setting))
    return (0, levels, size, "")


def select(records: Iterable[dict], **where) -> list[dict]:
    """The records whose keys equal every value in ``where``."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def variant_of(record: dict) -> Variant:
    """(tokenizer, setting): one row of a CTR table."""
    return record.get("tokenizer"), record.get("setting")


def variant_label(variant: Variant) -> str:
    """"rqgmm (2x128)", or the bare name for variants without a setting."""
    tokenizer, setting = variant
    return str(tokenizer) if setting is None else f"{tokenizer} ({setting})"


def variants(records: Sequence[dict]) -> list[Variant]:
    """Distinct variants in report order: none, embedding, rqgmm, rqkmeans, then alphabetical."""
    order = ordered((r.get("tokenizer") for r in records), FIRST_VARIANTS)
    keys = {variant_of(r) for r in records if r.get("tokenizer") is not None}
    return sorted(keys, key=lambda v: (order.index(v[0]), setting_key(v[1])))


def first_codebook_size(record: dict) -> int | None:
    """K of the first level (the sweep's x axis)."""
    size = record.get("codebook_size")
    if isinstance(size, (list, tuple)):
        return int(size[0]) if size else None
    return None if size is None else int(size)


# ----------------------------------------------------------------------------- tokenizer section


def _tokenizer_row(recs: list[dict]) -> list[str]:
    cells = [(fmt_levels if per_level else fmt_mean_std)([r.get(key) for r in recs], digits)
             for _, key, digits, per_level in TOKENIZER_COLUMNS]
    purity = [r.get("purity") or {} for r in recs]
    cells.append(" / ".join(fmt_mean_std((p.get(k) for p in purity), 3) for k in PURITY_KEYS))
    cells.append(fmt_mean_std((r.get("fit_seconds") for r in recs), 1))
    return cells


def _capacity_notes(recs: list[dict], tokenizers: list[str]) -> list[str]:
    notes = []
    for tok in tokenizers:
        for note in dict.fromkeys(r.get("capacity_note") for r in select(recs, tokenizer=tok)):
            if note:
                notes.append(f"- {tok}: {note}")
    return notes


def tokenizer_section(records: list[dict]) -> list[str]:
    """One table per setting: rows tokenizer, columns the tokenizer metrics and purity."""
    recs = select(records, kind="tokenizer")
    if not recs:
        return []
    header = ["tokenizer"] + [c[0] for c in TOKENIZER_COLUMNS] + ["purity L1 / P2 / random", "fit s"]
    out = ["### Tokenizers", "",
           "Per-level columns read level 1 / level 2 / …; purity is the share of item pairs with a genre in common "
           "among pairs sharing the level-1 code / sharing the 2-level prefix / random pairs.", ""]
    for setting in sorted({r.get("setting") for r in recs}, key=setting_key):
        in_setting = select(recs, setting=setting)
        toks = ordered((r.get("tokenizer") for r in in_setting), FIRST_VARIANTS)
        rows = [[tok] + _tokenizer_row(select(in_setting, tokenizer=tok)) for tok in toks]
        out += [f"#### Setting {setting}", "", markdown_table(header, rows), ""]
        notes = _capacity_notes(in_setting, toks)
        out += (["Capacity notes:", "", *notes, ""] if notes else [])
    return out


# ----------------------------------------------------------------------------- CTR section


def _ctr_table(recs: list[dict], backbones: list[str], columns: Sequence[tuple[str, str, int]]) -> str:
    header = ["variant"] + [f"{b} {title}" for b in backbones for title, _, _ in columns]
    rows = []
    for v in variants(recs):
        in_variant = [r for r in recs if variant_of(r) == v]
        rows.append([variant_label(v)] + [
            fmt_mean_std((r.get(key) for r in select(in_variant, backbone=b)), digits)
            for b in backbones for _, key, digits in columns
        ])
    return markdown_table(header, rows)


def _count_range(recs: list[dict], key: str) -> str:
    counts = sorted({int(r[key]) for r in recs if r.get(key) is not None})
    if not counts:
        return DASH
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _cold_block(recs: list[dict], backbones: list[str]) -> list[str]:
    sizes = f"n_cold = {_count_range(recs, 'n_cold')} of n_test = {_count_range(recs, 'n_test')} test rows"
    if not _values(r.get("cold_auc") for r in recs):
        return [f"Cold items (no training interaction; {sizes}): no AUC (too few rows or a single class).", ""]
    return [f"Cold items (no training interaction; {sizes}):", "",
            _ctr_table(recs, backbones, [("AUC (cold)", "cold_auc", 4)]), ""]


def ctr_section(records: list[dict], backbone_order: Sequence[str] = FIRST_BACKBONES) -> list[str]:
    """Per split: AUC and LogLoss by variant and backbone, the cold slice, paired differences, verdicts."""
    recs = select(records, kind="ctr")
    out = []
    for split in ordered((r.get("split") for r in recs), FIRST_SPLITS):
        in_split = select(recs, split=split)
        backbones = ordered((r.get("backbone") for r in in_split), backbone_order)
        out += [f"### CTR, {split} split", "",
                _ctr_table(in_split, backbones, [("AUC", "auc", 4), ("LogLoss", "logloss", 4)]), ""]
        out += _cold_block(in_split, backbones)
        out += _differences_block(in_split, backbones)
        out += _verdict_block(in_split, split, backbones)
    return out


# ----------------------------------------------------------------------------- paired differences


def _by_seed(recs: Iterable[dict], key: str) -> dict:
    """seed → value of ``key``, for the records where it is present."""
    return {r.get("seed"): float(r[key]) for r in recs if _values([r.get(key)])}


def paired_by_seed(a_recs: Iterable[dict], b_recs: Iterable[dict], key: str, confidence: float = 0.95) -> dict | None:
    """paired_difference of ``key`` over the seeds where both record sets have a value; None if none."""
    a, b = _by_seed(a_recs, key), _by_seed(b_recs, key)
    seeds = sorted(a.keys() & b.keys(), key=str)
    if not seeds:
        return None
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds], confidence)


def _match(present: list[Variant], tokenizer: str, setting: str | None) -> Variant | None:
    """The variant of ``tokenizer`` at the same setting, or its setting-less variant."""
    for v in present:
        if v[0] == tokenizer and (v[1] == setting or v[1] is None):
            return v
    return None


def comparison_pairs(present: list[Variant]) -> list[tuple[Variant, Variant]]:
    """(a, b) pairs of :data:`COMPARISONS` whose two variants both ran; absent ones are skipped."""
    pairs = []
    for a_tok, b_tok in COMPARISONS:
        for a in (v for v in present if v[0] == a_tok):
            b = _match(present, b_tok, a[1])
            if b is not None:
                pairs.append((a, b))
    return pairs


def _differences_block(recs: list[dict], backbones: list[str]) -> list[str]:
    pairs = comparison_pairs(variants(recs))
    if not pairs:
        return []
    rows = []
    for a, b in pairs:
        a_recs = [r for r in recs if variant_of(r) == a]
        b_recs = [r for r in recs if variant_of(r) == b]
        for slice_name, key in (("all", "auc"), ("cold", "cold_auc")):
            rows.append([f"{variant_label(a)} {MINUS} {variant_label(b)}, {slice_name}"] + [
                fmt_difference(paired_by_seed(select(a_recs, backbone=bb), select(b_recs, backbone=bb), key))
                for bb in backbones
            ])
    return ["AUC paired differences, mean over seeds [95% Student-t CI of the per-seed differences]:", "",
            markdown_table(["comparison, test rows"] + backbones, rows), ""]


# ----------------------------------------------------------------------------- verdict


def _best_semantic(recs: list[dict]) -> tuple[Variant, float] | None:
    means = {}
    for v in variants(recs):
        if v[0] not in NOT_SEMANTIC_IDS:
            mean = mean_std(r.get("auc") for r in recs if variant_of(r) == v)[0]
            if mean is not None:
                means[v] = mean
    if not means:
        return None
    best = max(means, key=means.get)
    return best, means[best]


def beats_none_line(recs: list[dict], split: str, backbone: str) -> str | None:
    """A sentence: does the best semantic-ID variant (by mean AUC) beat ``none``? None if not decidable."""
    recs = select(recs, split=split, backbone=backbone)
    none_recs = select(recs, tokenizer="none")
    none_mean = mean_std(r.get("auc") for r in none_recs)[0]
    best = _best_semantic(recs)
    if best is None or none_mean is None:
        return None
    variant, mean = best
    diff = paired_by_seed([r for r in recs if variant_of(r) == variant], none_recs, "auc")
    verdict = "beats" if mean > none_mean else "does not beat"
    line = (f"- {split} split, {backbone}: the best semantic-ID variant, {variant_label(variant)} (AUC {mean:.4f}), "
            f"{verdict} `none` (AUC {none_mean:.4f}); paired difference {fmt_difference(diff)}.")
    if diff is not None and diff["low"] is not None and diff["low"] <= 0.0 <= diff["high"]:
        line += " The 95% CI includes 0: the gap is within seed-to-seed noise."
    return line


def _verdict_block(recs: list[dict], split: str, backbones: list[str]) -> list[str]:
    lines = [line for b in backbones if (line := beats_none_line(recs, split, b)) is not None]
    return (["Semantic IDs versus no content (`none`), by mean AUC:", "", *lines, ""]) if lines else []


# ----------------------------------------------------------------------------- sweep section


def sweep_section(records: list[dict]) -> list[str]:
    """Codebook-size sweep: K rows × tokenizer columns, one table for RMSE and one for AUC."""
    recs = [r for r in select(records, kind="sweep") if first_codebook_size(r) is not None]
    if not recs:
        return []
    sizes = sorted({first_codebook_size(r) for r in recs})
    toks = ordered((r.get("tokenizer") for r in recs), FIRST_VARIANTS)
    context = ", ".join(
        f"{name} {'/'.join(str(v) for v in ordered(r.get(key) for r in recs))}"
        for name, key in (("split", "split"), ("backbone", "backbone"), ("levels", "levels"))
        if any(r.get(key) is not None for r in recs)
    )
    out = [f"### Codebook-size sweep ({context})" if context else "### Codebook-size sweep", ""]
    for title, key in (("RMSE", "rmse"), ("AUC", "auc")):
        rows = [[str(k)] + [fmt_mean_std((r.get(key) for r in recs if r.get("tokenizer") == t
                                          and first_codebook_size(r) == k), 4) for t in toks]
                for k in sizes]
        out += [f"{title}:", "", markdown_table(["K"] + toks, rows), ""]
    return out


# ----------------------------------------------------------------------------- report


def _fmt_meta_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def header_section(meta: dict) -> list[str]:
    """Title and the run's provenance from ``meta``; unknown keys are listed as they are."""
    labels = dict(command="command", datasets="datasets", seeds="seeds", embedder="embedder",
                  backbones="backbones", tokenizers="tokenizers", split_rule="split rule")
    out = ["# rqgmm benchmark report", ""]
    for key, label in labels.items():
        if meta.get(key) is not None:
            value = _fmt_meta_value(meta[key])
            out.append(f"- {label}: `{value}`" if key == "command" else f"- {label}: {value}")
    if meta.get("elapsed_seconds") is not None:
        out.append(f"- elapsed: {float(meta['elapsed_seconds']):.0f} s")
    if "quick" in meta:
        out.append("- mode: quick (reduced run; numbers are indicative only)" if meta["quick"] else "- mode: full")
    out += [f"- {k}: {_fmt_meta_value(v)}" for k, v in meta.items()
            if k not in labels and k not in ("elapsed_seconds", "quick")]
    out += ["- cells: mean over seeds ± sample standard deviation (ddof=1) when more than one seed has a value; "
            f"{DASH} = not applicable or no value", ""]
    return out


def dataset_order(records: Sequence[dict], meta: dict) -> list[str]:
    """Datasets named in ``meta`` first (in its order), then any others in the records."""
    seen = list(meta.get("datasets") or [])
    return list(dict.fromkeys(seen + [r.get("dataset") for r in records if r.get("dataset") is not None]))


def render_report(records: list[dict], meta: dict) -> str:
    """The whole ``report.md``: provenance, then per dataset tokenizers, CTR and the sweep.

    Parameters
    ----------
    records : list of dict, benchmark records of kind "tokenizer", "ctr" or "sweep"
    meta : dict, run provenance (command, datasets, seeds, embedder, split_rule,
        elapsed_seconds, quick, ...); every key is optional

    Returns
    -------
    str, markdown ending with a newline.
    """
    out = header_section(meta)
    backbone_order = tuple(meta.get("backbones") or FIRST_BACKBONES)
    for dataset in dataset_order(records, meta):
        recs = select(records, dataset=dataset)
        body = tokenizer_section(recs) + ctr_section(recs, backbone_order) + sweep_section(recs)
        out += [f"## {dataset}", ""] + (body or ["No records for this dataset.", ""])
    if not records:
        out += ["No records.", ""]
    logger.debug("report: %d records, %d lines", len(records), len(out))
    return "\n".join(out).rstrip("\n") + "\n"
