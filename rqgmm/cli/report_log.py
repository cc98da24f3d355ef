"""``report EMB CODES --interactions LOG``: the click log read and checked, joined to the codes, and the
diagnostics that need no training (:mod:`rqgmm.ids.diagnostics`) computed and shown as a table.

The log is one row per impression: a user, an item, a 0/1 label and, when the column exists, a time that
orders each user's rows (else the file's order). Rows whose item is not in the codes table are left out
(with a warning when they are half the log or more); a log none of whose items are in the codes is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once
from rqgmm.files.itemjoin import positions
from rqgmm.ids.diagnostics import diagnostics

logger = logging.getLogger("rqgmm")

#: The log's default column names (evaluate's).
DEFAULT_COLUMNS = dict(user="user_id", item="item_id", label="label", time="timestamp")
#: Under this share of the log's rows on items of the codes, a warning says the diagnostics count those only.
FEW_MATCHED = 0.5


@dataclass(frozen=True)
class ClickLog:
    """A checked click log of M rows, in time order (or the file's): ``users`` (M,), ``items`` (M,) ids as the
    codes table holds them (integers or strings), ``clicked`` (M,) bool."""

    path: str
    users: np.ndarray
    items: np.ndarray
    clicked: np.ndarray


def read_click_log(path: str, user: str | None, item: str, label: str | None, time: str | None) -> ClickLog:
    """The log at ``path`` with its columns (None: the default name; an absent default time means no order)."""
    columns = dict(user=user or DEFAULT_COLUMNS["user"], item=item, label=label or DEFAULT_COLUMNS["label"])
    names = _schema_names(path)
    for flag, column in columns.items():
        _need_column(path, names, column, flag)
    time_column = time or DEFAULT_COLUMNS["time"]
    if time is not None:
        _need_column(path, names, time_column, "time")
    ordered = time_column in names
    try:
        table = pq.read_table(path, columns=[*columns.values(), *([time_column] if ordered else [])])
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    if ordered:
        order = pc.sort_indices(_time(table.column(time_column), path, time_column)).to_numpy()
        table = table.take(pa.array(order))  # a stable sort: rows of one time keep the file's order
    return ClickLog(path, _ids(table.column(columns["user"]), path, columns["user"], "--user"),
                    _ids(table.column(columns["item"]), path, columns["item"], "--item"),
                    _labels(table.column(columns["label"]), path, columns["label"]))


def _schema_names(path: str) -> list[str]:
    if not Path(path).is_file():
        raise InputError(f"--interactions {path} does not exist; pass a parquet log with one row per interaction")
    try:
        return pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: str, exc: Exception) -> InputError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"--interactions {path} is not a readable parquet file ({first}); pass a parquet log")


def _need_column(path: str, names: list[str], column: str, flag: str) -> None:
    check_named_once(names, [column], f"--interactions {path}")
    if column not in names:
        raise InputError(f"--interactions {path} has no column {column!r} (columns: {', '.join(names)}); "
                         f"name the {flag} column with --{flag}")


def _plain(column: pa.ChunkedArray) -> pa.Array:
    col = column.combine_chunks()
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _ids(column: pa.ChunkedArray, path: str, name: str, flag: str) -> np.ndarray:
    """User or item ids (M,) as numpy: int64 (or uint64) or strings; nulls refused."""
    col = _plain(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"--interactions {path}: column {name!r} has type {col.type}; ids must be integers or "
                         f"strings (name another column with {flag})")
    if col.null_count:
        raise InputError(f"--interactions {path}: column {name!r} has {col.null_count} null values; drop or fill "
                         "those rows")
    values = col.to_numpy(zero_copy_only=False)
    return values.astype(np.int64) if pa.types.is_signed_integer(col.type) else values


def _labels(column: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    """The labels (M,) as bool; every value must be 0 or 1 (or a bool), none null."""
    col = _plain(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        raise InputError(f"--interactions {path}: label column {name!r} has type {col.type}; labels must be 0/1 "
                         "numbers (name another column with --label)")
    if col.null_count:
        raise InputError(f"--interactions {path}: label column {name!r} has {col.null_count} null values; "
                         "labels must be 0 or 1")
    values = col.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise InputError(f"--interactions {path}: label column {name!r} holds {int(bad.sum())} values other than "
                         f"0 and 1 (first: {values[bad][0]:g}); labels must be 0 or 1")
    return values == 1.0


def _time(column: pa.ChunkedArray, path: str, name: str) -> pa.Array:
    """The time column as numbers or timestamps (ISO-8601 strings parsed); nulls and other text refused."""
    col = _plain(column)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col = pc.cast(col, pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InputError(f"--interactions {path}: time column {name!r} holds text that is not an ISO-8601 "
                             "time; pass numbers or timestamps (or name another column with --time)") from None
    elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_temporal(col.type)):
        raise InputError(f"--interactions {path}: time column {name!r} has type {col.type}; pass numbers or "
                         "timestamps (or name another column with --time)")
    if col.null_count:
        raise InputError(f"--interactions {path}: time column {name!r} has {col.null_count} null values; drop or "
                         "fill those rows")
    return col


@dataclass(frozen=True)
class MatchedLog:
    """The rows of a :class:`ClickLog` whose item has codes: ``rows`` (R,) rows of the codes table, ``users``
    (R,), ``clicked`` (R,) bool, in the log's order; ``total`` the log's rows."""

    path: str
    rows: np.ndarray
    users: np.ndarray
    clicked: np.ndarray
    total: int


def match_log(log: ClickLog, code_ids: np.ndarray | None, n_codes: int) -> MatchedLog:
    """The log's rows on items of the codes table (items ``code_ids`` (N,), None: row numbers 0..n_codes-1);
    refused when no row is."""
    ids = np.arange(n_codes) if code_ids is None else code_ids
    found, rows = positions(log.items, ids)
    if not found.any():
        raise InputError(f"--interactions {log.path}: none of its {len(found)} rows names an item of the codes "
                         f"(first item: {log.items[0] if len(log.items) else 'none, the log is empty'}); pass the "
                         "log of this catalogue, or name its item column with --item")
    return MatchedLog(log.path, rows[found], log.users[found], log.clicked[found], len(found))


def log_diagnostics(log: MatchedLog, codes: np.ndarray) -> dict:
    """The diagnostics of ``codes`` (N, L) on the matched rows (a warning when they are under half the log)."""
    matched = len(log.rows)
    if matched < FEW_MATCHED * log.total:
        logger.warning("only %d of the %d rows (%.1f%%) of --interactions %s name an item of the codes; the "
                       "diagnostics count those only", matched, log.total, 100 * matched / log.total, log.path)
    result = diagnostics(codes, log.rows, log.users, log.clicked)
    return dict(log=str(log.path), rows=log.total, rows_matched=matched, items=int(len(np.unique(log.rows))),
                **result)


def diagnostics_lines(d: dict) -> list[str]:
    """The diagnostics as a table a person reads: one row per level."""
    head = (f"diagnostics against {d['log']}: {d['rows_matched']:,} of {d['rows']:,} rows on {d['items']:,} items "
            f"of the codes, {d['pairs']:,} consecutive positive pairs; 'at random' = the same IDs dealt to the "
            "items at random")
    lines = [head, f"{'level':>5}  {'pairs sharing':>13}  {'at random':>9}  {'lift':>6}  {'click-rate R²':>13}  "
                   f"{'R² at random':>12}"]
    for c, r in zip(d["coherence"], d["r2"]):
        lines.append(f"{c['level']:>5}  {_num(c['observed'], 4):>13}  {_num(c['expected'], 4):>9}  "
                     f"{_num(c['lift'], 2):>6}  {_num(r['r2'], 4):>13}  {_num(r['expected'], 4):>12}")
    return lines


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
