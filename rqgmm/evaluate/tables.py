"""Statistics and formatting for the report of ``rqgmm evaluate`` (``report.py``).

Cells show the mean over seeds, with the sample standard deviation (ddof=1)
when more than one seed has a value. Holm's correction of the verdict's
comparisons is here; their intervals are in ``intervals.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


#: Tokenizers first in plots, in this order; the rest alphabetically.
FIRST_TOKENIZERS = ("rqgmm", "rqkmeans")
DASH = "–"
MINUS = "−"

# ----------------------------------------------------------------------------- statistics


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of ``m`` p-values: adjusted p-values and each test's significance level.

    The tests are taken by increasing p; the i-th (0-based) is tested at
    ``alpha / (m - i)`` while every earlier one was rejected; from the first
    that is not rejected on, every later test keeps that step's level. An
    interval drawn at a test's level excludes 0 exactly when Holm rejects it
    (for intervals dual to the p-values), so the intervals and the words agree.

    Parameters
    ----------
    p_values : sequence of float (m,)
    alpha : float, the family-wise error rate

    Returns
    -------
    adjusted : ndarray (m,) ``max_{j <= i} min(1, (m - j) p_(j))`` in the original order
    levels : ndarray (m,) the alpha each test is judged (and its interval drawn) at
    """
    p = np.asarray(p_values, dtype=np.float64)
    m, order = len(p), np.argsort(p, kind="stable")
    adjusted, levels = np.empty(m), np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    stopped = None
    for i, j in enumerate(order):
        if stopped is None and p[j] > alpha / (m - i):
            stopped = alpha / (m - i)
        levels[j] = alpha / (m - i) if stopped is None else stopped
    return adjusted, levels


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


def signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", MINUS)


def fmt_difference(diff: dict | None, digits: int = 4) -> str:
    """"+0.0012 [−0.0003, +0.0027]" (mean [CI]); "+0.0012 (n=1)" without an interval."""
    if diff is None or diff["mean"] is None:
        return DASH
    mean = signed(diff["mean"], digits)
    if diff["low"] is None:
        return f"{mean} (n={diff['n']})"
    return f"{mean} [{signed(diff['low'], digits)}, {signed(diff['high'], digits)}]"


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


def setting_label(levels: int, codebook_size: int) -> str:
    """The human-readable name of an ID setting, ``"2x128"``: written from the numbers, never parsed back."""
    return f"{levels}x{codebook_size}"


def _size_key(record: dict) -> tuple[int, int] | None:
    """(levels, largest codebook size) from a tokenizer record's own fields; None when it lacks them."""
    levels, sizes = record.get("levels"), record.get("codebook_size")
    if not isinstance(levels, int) or not sizes:
        return None
    return levels, max(sizes) if isinstance(sizes, list) else sizes


def settings_in(records: Iterable[dict]) -> list:
    """The distinct ``setting`` labels of ``records``, by the levels, then the codebook size, their records
    hold; a label whose records hold neither after those (alphabetically), None last."""
    keys: dict = {}
    for record in records:
        size = _size_key(record)
        known = keys.setdefault(record.get("setting"), size)
        if size is not None and (known is None or size < known):
            keys[record.get("setting")] = size

    def order(setting) -> tuple:
        if setting is None:
            return (2, ())
        return (0, keys[setting]) if keys[setting] else (1, (str(setting),))

    return sorted(keys, key=order)


def select(records: Iterable[dict], **where) -> list[dict]:
    """The records whose keys equal every value in ``where``."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]
