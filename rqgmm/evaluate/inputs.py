"""The inputs of ``rqgmm evaluate``, read and checked before any training.

The interactions are read in pyarrow record batches and encoded as they come
(:class:`~rqgmm.ctr.log.LogEncoder`: int32 codes, never a Python string per
row), so a log is held once, as ints. Everything a user can get wrong (a
missing column, labels that are not 0/1, an item without an embedding, a time
column that cannot be ordered, a bag column that holds no lists) is an
:class:`~rqgmm.errors.InputError` raised here, so a refused run has trained
nothing and written nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..ctr.encoding import as_arrow
from ..ctr.log import EncodedLog, ItemTable, LogColumns, LogEncoder
from ..errors import InputError
from .config import EvaluateConfig

logger = logging.getLogger(__name__)

#: Rows per record batch read from the interactions.
BATCH_ROWS = 1 << 20


@dataclass
class EvaluationData:
    """Checked interaction rows and items.

    Attributes
    ----------
    interactions : EncodedLog, N rows
        The log, encoded once (dictionary codes; ordered and given training
        vocabularies by the split).
    items : DataFrame, M rows, one per item
    vectors : dict of str → ndarray (M, D_c) float32
        Each embedding column, rows aligned with ``items``.
    timed : bool
        Whether the split is by time (else random).
    """

    interactions: EncodedLog
    items: pd.DataFrame
    vectors: dict[str, np.ndarray]
    timed: bool

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.index.to_numpy()


class ParquetTable:
    """A parquet file opened for reading in record batches (nothing read until asked).

    Parameters
    ----------
    path : str
    what : str
        What the file is, for messages ("interactions").
    """

    def __init__(self, path: str, what: str) -> None:
        self.path, self.what = path, what
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise _unreadable(path, what, exc) from None

    @property
    def columns(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    def __len__(self) -> int:
        return self.file.metadata.num_rows

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.file.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise _unreadable(self.path, self.what, exc) from None

    def to_pandas(self) -> pd.DataFrame:
        try:
            return self.file.read().to_pandas()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise _unreadable(self.path, self.what, exc) from None


def _unreadable(path: str, what: str, exc: Exception) -> InputError:
    return InputError(f"cannot read {what} {path} as parquet ({str(exc).splitlines()[0]}); pass a parquet file")


def read_table(path: str, what: str) -> ParquetTable:
    """A parquet file, opened (its schema read) for reading in record batches; unreadable files are InputErrors."""
    return ParquetTable(path, what)


class FrameTable:
    """An in-memory DataFrame with the reading interface of :class:`ParquetTable`."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def __len__(self) -> int:
        return len(self.frame)

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        for start in range(0, len(self.frame), BATCH_ROWS):
            part = self.frame.iloc[start:start + BATCH_ROWS]
            yield pa.RecordBatch.from_arrays([_column(part[c], c) for c in columns], names=columns)

    def to_pandas(self) -> pd.DataFrame:
        return self.frame


def _column(values: pd.Series, name: str) -> pa.Array:
    try:
        return as_arrow(values, name)
    except InputError:
        kinds = sorted({type(v).__name__ for v in values})
        raise InputError(f"column {name!r} cannot be read as one type (it holds {kinds}); give it one type") from None


def _require(columns: list[str], wanted, flag: str, where: str) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(f"{where} has no column {missing[0]!r} ({flag}); its columns are {columns}")


def _check_labels(labels: pa.Array, column: str) -> None:
    values = labels.to_numpy(zero_copy_only=False)
    if labels.null_count or not np.isin(values, (0, 1)).all():
        shown = pd.unique(values)[:5].tolist()
        raise InputError(f"label column {column!r} must hold 0 or 1 only, got values {shown}; binarise it first")


def _check_time(times: pa.Array, column: str) -> int:
    """The missing values of one batch of the time column; an unorderable type is an InputError."""
    kind = times.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    orderable = (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)
                 or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind))
    if not orderable:
        raise InputError(f"time column {column!r} cannot be ordered (it holds {kind}); use numbers or timestamps")
    return times.null_count


def _check_bag(frame: pd.DataFrame, column: str) -> None:
    listlike = frame[column].map(lambda v: v is None or isinstance(v, (list, tuple, np.ndarray)))
    if not listlike.all():
        raise InputError(f"bag column {column!r} must hold a list per row, got {frame[column][~listlike].iloc[0]!r}; "
                         "pass it with --categorical, or store lists")


def _vectors(items: pd.DataFrame, column: str) -> np.ndarray:
    """One embedding column as (M, D) float32; every item needs a finite vector of one width."""
    values = items[column]
    missing = values.map(lambda v: v is None or (np.ndim(v) == 0))
    if missing.any():
        raise InputError(f"{int(missing.sum())} item(s) have no {column!r} embedding (first: "
                         f"{items.index[missing.to_numpy()][0]!r}); give every item a vector")
    widths = values.map(len)
    if widths.nunique() != 1:
        raise InputError(f"embedding column {column!r} has vectors of widths {sorted(widths.unique())[:5]}; "
                         "give every item a vector of one width")
    try:
        matrix = np.stack(values.to_numpy()).astype(np.float32)
    except (TypeError, ValueError):
        raise InputError(f"embedding column {column!r} must hold lists of numbers") from None
    if not np.isfinite(matrix).all():
        raise InputError(f"embedding column {column!r} has NaN or Inf values; drop or impute those items")
    return matrix


def _index_items(items: pd.DataFrame, column: str) -> pd.DataFrame:
    if items[column].isna().any() or items[column].duplicated().any():
        dup = items[column][items[column].duplicated()].unique()[:5].tolist()
        raise InputError(f"the items table has duplicate or missing {column!r} values {dup}; keep one row per item")
    return items.set_index(items[column].astype(str), drop=False)


def _log_columns(rows: list[str], config: EvaluateConfig, timed: bool) -> LogColumns:
    """Each declared field where it lives: on the rows if the interactions have it, else on the items."""
    on_rows = lambda names: tuple(c for c in names if c in rows)  # noqa: E731
    on_items = lambda names: tuple(c for c in names if c not in rows)  # noqa: E731
    return LogColumns(config.user, config.item, config.label, config.time if timed else None,
                      on_rows(config.categorical), on_rows(config.bag), on_rows(config.numeric),
                      on_items(config.categorical), on_items(config.bag), on_items(config.numeric))


def encode_log(table, columns: LogColumns, items: ItemTable) -> EncodedLog:
    """Read the log batch by batch, checking labels and times, into an EncodedLog."""
    encoder, missing_times = LogEncoder(columns, len(table)), 0
    for batch in table.batches(columns.read):
        _check_labels(_chunk(batch, columns.label), columns.label)
        if columns.time:
            missing_times += _check_time(_chunk(batch, columns.time), columns.time)
        if not missing_times:
            encoder.add(batch)
    if missing_times:
        raise InputError(f"time column {columns.time!r} has {missing_times} missing values; fill or drop them")
    return encoder.finish(items)


def _chunk(batch, name: str) -> pa.Array:
    column = batch.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def check_inputs(interactions, items, config: EvaluateConfig,
                 names: tuple[str, str] = ("the interactions", "the items table")) -> EvaluationData:
    """Check every declared column and value, and encode the log; returns the data ready to split.

    Parameters
    ----------
    interactions, items : DataFrame, or a :class:`ParquetTable` from :func:`read_table`
        The log is read in record batches; the item table whole.

    Raises
    ------
    InputError
        With one line that names the column, what was wrong and how to fix it.
    """
    rows_name, items_name = names
    log = interactions if isinstance(interactions, ParquetTable) else FrameTable(interactions)
    items = items.to_pandas() if isinstance(items, ParquetTable) else items
    rows, item_columns = log.columns, list(items.columns)
    _require(rows, [config.user, config.item], "--user/--item", rows_name)
    _require(rows, [config.label], "--label", rows_name)
    _require(item_columns, [config.item], "--item", items_name)
    _require(item_columns, config.embedding, "--embedding", items_name)
    for flag in ("categorical", "bag", "numeric"):
        for column in getattr(config, flag):
            if column not in rows and column not in item_columns:
                raise InputError(f"column {column!r} (--{flag}) is in neither {rows_name} nor {items_name}; "
                                 f"their columns are {rows} and {item_columns}")
    timed = config.time in rows
    if not timed and config.time_given:
        raise InputError(f"{rows_name} has no column {config.time!r} (--time); its columns are {rows}")
    for column in config.bag:
        if column not in rows:
            _check_bag(items, column)
    items = _index_items(items, config.item)
    columns = _log_columns(rows, config, timed)
    encoded = encode_log(log, columns, ItemTable.encode(items, config.item, columns))
    if encoded.unknown_items:
        count, first = encoded.unknown_items
        raise InputError(f"{count} interaction row(s) have an item without an embedding in {items_name} "
                         f"(first: {first!r}); add those items")
    vectors = {column: _vectors(items, column) for column in config.embedding}
    if len(encoded) < 10:
        raise InputError(f"{rows_name} has {len(encoded)} rows; an 80/10/10 split needs at least 10")
    if not timed:
        logger.info("no %r column: splitting at random (seed 0)", config.time)
    logger.info("encoded %d rows (%.1f MB of ints)", len(encoded), encoded.nbytes / 1e6)
    return EvaluationData(encoded, items, vectors, timed)
