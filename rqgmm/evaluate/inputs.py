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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqgmm.ctr.encoding import as_arrow
from rqgmm.ctr.log import EncodedLog, ItemTable, LogColumns, LogEncoder, taken
from rqgmm.data.splits import cut_points, random_order, time_order
from rqgmm.runtime.device import resolve_device
from rqgmm.retrieval.sequences import check_sequences
from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once
from rqgmm.evaluate.config import EvaluateConfig

logger = logging.getLogger(__name__)

#: Rows per record batch read from the interactions.
BATCH_ROWS = 1 << 20
#: Items per record batch read from an embedding column (65,536 x 768 float32: 200 MB at most).
ITEM_BATCH_ROWS = 1 << 16


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
    order : ndarray (N,) int64, or None
        The rows in split order (by time, user, item; or a seeded shuffle); the
        split consumes it (None afterwards, with ``interactions`` the ordered log).
    sample : str or None
        The user sample and its size (``--sample-users``), None when every user is kept.
    rows : int
        N, kept after :meth:`release_rows`.
    """

    interactions: EncodedLog | None
    items: pd.DataFrame
    vectors: dict[str, np.ndarray]
    timed: bool
    order: np.ndarray | None
    sample: str | None = None
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.interactions)

    def release_rows(self) -> None:
        """Drop the int table (``interactions`` is None afterwards): for a task whose last reader of it is done."""
        self.interactions = self.order = None

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
        check_named_once(self.columns, self.columns, path)

    @property
    def columns(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    @property
    def schema(self) -> pa.Schema:
        return self.file.schema_arrow

    def __len__(self) -> int:
        return self.file.metadata.num_rows

    def batches(self, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Record batches of ``rows`` rows, from a reader of their own: without pre-buffering, and closed at the
        end (a reader kept open holds the column chunks it has read, growing with the file)."""
        try:
            with pq.ParquetFile(self.path, pre_buffer=False) as reader:
                yield from reader.iter_batches(batch_size=rows, columns=columns)
            pa.default_memory_pool().release_unused()  # the reader's freed pages, back to the system
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise _unreadable(self.path, self.what, exc) from None

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        try:
            return self.file.read(columns=columns).to_pandas()
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

    @property
    def schema(self) -> pa.Schema:
        return next(self.batches(self.columns)).schema if len(self.frame) else pa.schema([])

    def __len__(self) -> int:
        return len(self.frame)

    def batches(self, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        for start in range(0, len(self.frame), rows):
            part = self.frame.iloc[start:start + rows]
            yield pa.RecordBatch.from_arrays([_column(part[c], c) for c in columns], names=columns)

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.frame if columns is None else self.frame[columns]


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


def _check_users(users: pa.Array, column: str) -> None:
    """No row without a user: the rows of null users would be taken for one user's (one history, one split)."""
    if users.null_count:
        raise InputError(f"user column {column!r} has missing values; fill or drop those rows")


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _time_values(times: pa.Array, column: str, parsed: list[str]) -> pa.Array:
    """One batch of the time column as numbers or timestamps; strings are parsed as numbers, else as ISO 8601 dates.

    ``parsed`` holds the reading chosen on the first batch of strings (``"numbers"`` or ``"dates"``) so every
    batch is read the same way; strings that neither reading takes, and any other type, are InputErrors.
    """
    if pa.types.is_dictionary(times.type):
        times = times.cast(times.type.value_type)
    kind = times.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind) or pa.types.is_null(kind):
        return times
    if not _is_text(kind):
        raise InputError(f"time column {column!r} cannot be ordered (it holds {kind}); use numbers or timestamps")
    values = pd.Series(times.to_numpy(zero_copy_only=False))
    for reading in ([parsed[0]] if parsed else ["numbers", "dates"]):
        try:
            out = (pd.to_numeric(values) if reading == "numbers" else pd.to_datetime(values, format="ISO8601", utc=True))
        except (ValueError, TypeError, OverflowError):
            continue
        if not parsed:
            parsed.append(reading)
        return pa.array(out, from_pandas=True)
    example = next((v for v in values if v is not None), None)
    raise InputError(f"time column {column!r} holds strings that are neither numbers nor ISO 8601 dates (e.g. "
                     f"{example!r}); store numbers or timestamps")


def _missing_times(times: pa.Array) -> int:
    """Nulls, and NaN in a float time column."""
    nan = pc.sum(pc.is_nan(times)).as_py() or 0 if pa.types.is_floating(times.type) else 0
    return times.null_count + nan


def _check_roles(config: EvaluateConfig, timed: bool) -> None:
    """Each column plays one role: user, item, label, time, a declared field or an embedding."""
    roles = [(config.user, "--user"), (config.item, "--item"), (config.label, "--label"),
             *([(config.time, "--time")] if timed else []),
             *((c, f"--{flag}") for flag in ("categorical", "bag", "numeric", "embedding") for c in getattr(config, flag))]
    seen: dict[str, str] = {}
    for column, flag in roles:
        if column in seen:
            twice = f"twice in {flag}" if seen[column] == flag else f"as {seen[column]} and as {flag}"
            raise InputError(f"column {column!r} is given {twice}; give each column one role")
        seen[column] = flag


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _check_field_types(schema: pa.Schema, items: pd.DataFrame, config: EvaluateConfig) -> None:
    """Declared fields against their role: a categorical holds no lists, a bag lists, a numeric column numbers."""
    for column in config.categorical:
        held = (_is_list(schema.field(column).type) if column in schema.names
                else items[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any())
        if held:
            raise InputError(f"column {column!r} (--categorical) holds lists; declare it --bag")
    for column in config.numeric:
        kind = schema.field(column).type if column in schema.names else pa.array(items[column], from_pandas=True).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind) or pa.types.is_null(kind)):
            raise InputError(f"numeric column {column!r} holds {kind} values; pass numbers (or declare it "
                             "--categorical)")


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
    if (widths == 0).all():
        raise InputError(f"embedding column {column!r} holds empty vectors only; embed the items first "
                         "(`rqgmm embed`) or pass the column that holds the vectors")
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


def _numeric_lists(kind: pa.DataType) -> bool:
    return _is_list(kind) and (pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type))


def item_vectors(table, column: str, keys: pd.Index) -> np.ndarray:
    """One embedding column of the items ``table`` as (M, D) float32, read batch by batch (the lists never held
    whole); the checks and messages of :func:`_vectors`, which reads any other type of column."""
    if not isinstance(table, ParquetTable) or not _numeric_lists(table.schema.field(column).type):
        return _vectors(table.to_pandas([column]).set_axis(keys), column)
    matrix, widths, missing, start, finite = None, set(), [], 0, True
    for batch in table.batches([column], rows=ITEM_BATCH_ROWS):
        lists = _chunk(batch, column)
        lengths = pc.list_value_length(lists).fill_null(-1).to_numpy(zero_copy_only=False)
        missing += (np.flatnonzero(lengths < 0) + start).tolist()
        widths.update(np.unique(lengths[lengths >= 0]).tolist())
        if not missing and len(widths) == 1 and widths != {0}:
            matrix = np.empty((len(keys), *widths), np.float32) if matrix is None else matrix
            rows = matrix[start:start + len(lists)]
            rows[:] = lists.flatten().to_numpy(zero_copy_only=False).reshape(rows.shape)
            finite = finite and bool(np.isfinite(rows).all())
        start += len(lists)
    _check_vector_shape(column, keys, missing, widths)
    if not finite:
        raise InputError(f"embedding column {column!r} has NaN or Inf values; drop or impute those items")
    return matrix


def _check_vector_shape(column: str, keys: pd.Index, missing: list[int], widths: set[int]) -> None:
    """The messages of :func:`_vectors` for missing vectors, empty vectors only, and several widths."""
    if missing:
        raise InputError(f"{len(missing)} item(s) have no {column!r} embedding (first: {keys[missing[0]]!r}); "
                         "give every item a vector")
    if widths <= {0}:
        raise InputError(f"embedding column {column!r} holds empty vectors only; embed the items first "
                         "(`rqgmm embed`) or pass the column that holds the vectors")
    if len(widths) != 1:
        raise InputError(f"embedding column {column!r} has vectors of widths {sorted(widths)[:5]}; "
                         "give every item a vector of one width")


def _labels_held(labels: np.ndarray, order: np.ndarray, rows: slice) -> list[int]:
    """The distinct labels (0/1) of ``labels[order[rows]]``, gathered by :func:`rqgmm.ctr.log.taken` (an int32
    order widened a chunk at a time, never for the whole log) and counted in place: no sort, and no int64
    copy of the part (``np.bincount`` of int8 labels makes one, 8 bytes a row)."""
    values = taken(labels, order[rows])
    ones = np.count_nonzero(values)
    return [label for label, present in ((0, ones < len(values)), (1, ones > 0)) if present]


def _check_split_labels(labels: np.ndarray, order: np.ndarray, timed: bool) -> None:
    """Each part of the 80/10/10 split (labels (N,) in ``order`` (N,)) holds clicks and non-clicks (AUC needs
    both)."""
    first, second = cut_points(len(order))
    where = {"train": "first 80%", "valid": "next 10%", "test": "last 10%"}
    order_word = "by time" if timed else "after a seeded shuffle"
    for part, rows in zip(where, (slice(0, first), slice(first, second), slice(second, len(order)))):
        held = _labels_held(labels, order, rows)
        if len(held) < 2:
            raise InputError(f"the {part} rows ({where[part]} {order_word}) hold only label {int(held[0])}; AUC "
                             "needs clicks and non-clicks in each part: pass a log with both labels in that part")


def _index_items(items: pd.DataFrame, column: str) -> pd.DataFrame:
    missing = int(items[column].isna().sum())
    if missing:
        raise InputError(f"the items table has {missing} row(s) without an {column!r} value; give every item an id "
                         "or drop those rows")
    if items[column].duplicated().any():
        dup = items[column][items[column].duplicated()].unique()[:5].tolist()
        raise InputError(f"the items table has duplicate {column!r} values {dup}; keep one row per item")
    return items.set_index(items[column].astype(str), drop=False)


def _log_columns(rows: list[str], config: EvaluateConfig, timed: bool) -> LogColumns:
    """Each declared field where it lives: on the rows if the interactions have it, else on the items."""
    on_rows = lambda names: tuple(c for c in names if c in rows)  # noqa: E731
    on_items = lambda names: tuple(c for c in names if c not in rows)  # noqa: E731
    return LogColumns(config.user, config.item, config.label, config.time if timed else None,
                      on_rows(config.categorical), on_rows(config.bag), on_rows(config.numeric),
                      on_items(config.categorical), on_items(config.bag), on_items(config.numeric))


def sampled_users(users: pa.Array, fraction: float) -> np.ndarray:
    """Which rows (N,) to keep: those whose user's id hashes (a fixed hash of the value) below ``fraction``.

    Each distinct id of the batch is hashed once (``pandas.util.hash_array``, independent of the process),
    so the same ids keep the same rows in every run and every batch.
    """
    users = users.dictionary_decode() if pa.types.is_dictionary(users.type) else users
    encoded = pc.dictionary_encode(users, null_encoding="encode")
    hashes = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False))
    hashes = pd.util.hash_array(hashes ^ np.uint64(0x9E3779B97F4A7C15))  # mixed again: an integer 0 hashes to 0
    keep = (hashes >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 < fraction
    return keep[encoded.indices.to_numpy(zero_copy_only=False)]


def _sampled_rows(table, user: str, fraction: float) -> int:
    """Rows of the log that the user sample keeps (a pass over the user column only)."""
    return sum(int(sampled_users(_chunk(batch, user), fraction).sum()) for batch in table.batches([user]))


#: The evaluation's host-memory peak against its int table, with room to spare (about 2x was measured).
PEAK_PER_TABLE = 3.0


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where there is none."""
    try:
        with open("/proc/meminfo") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_fits(rows: int, columns: LogColumns, sample: float) -> None:
    """Refuse, before reading, a log whose int table (times :data:`PEAK_PER_TABLE`) exceeds the free memory."""
    per_row = 9 + 4 * (len(columns.categorical) + len(columns.bag)) + 8 * (len(columns.numeric) + bool(columns.time))
    need, free = PEAK_PER_TABLE * rows * per_row, available_bytes()
    if free is None or need <= free:
        return
    fraction = float(f"{sample * free / need:.1g}")
    raise InputError(f"the log needs about {_size(need)} of host memory ({rows:,} rows at {per_row} bytes "
                     f"as ints, {PEAK_PER_TABLE:g}x at the peak) and {_size(free)} is free; pass "
                     f"--sample-users {fraction:g} or less, or use a host with more memory")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def encode_log(table, columns: LogColumns, items: ItemTable, sample: float = 1.0) -> tuple[EncodedLog, str | None]:
    """Read the log batch by batch, checking labels and times, into an EncodedLog; time strings are parsed
    (the reading chosen, "numbers" or "dates", is returned: None when the times are no strings). With
    ``sample`` < 1, only the rows of the users that :func:`sampled_users` keeps are encoded."""
    rows = len(table) if sample >= 1 else _sampled_rows(table, columns.user, sample)
    check_fits(rows, columns, sample)
    encoder, missing_times, parsed = LogEncoder(columns, rows), 0, []
    for batch in table.batches(columns.read):
        _check_labels(_chunk(batch, columns.label), columns.label)
        _check_users(_chunk(batch, columns.user), columns.user)
        if columns.time:
            times = _time_values(_chunk(batch, columns.time), columns.time, parsed)
            missing_times += _missing_times(times)
            batch = batch.set_column(batch.schema.get_field_index(columns.time), columns.time, times)
        if sample < 1:
            batch = batch.filter(pa.array(sampled_users(_chunk(batch, columns.user), sample)))
        if not missing_times:
            encoder.add(batch)
        pa.default_memory_pool().release_unused()  # hand the batch's buffers back: Arrow's allocator keeps them
    if missing_times:
        raise InputError(f"time column {columns.time!r} has {missing_times} missing values; fill or drop them")
    encoded = encoder.finish(items)
    pa.default_memory_pool().release_unused()
    return encoded, (parsed or [None])[0]


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
    item_table = items if isinstance(items, ParquetTable) else FrameTable(items)
    rows, item_columns = log.columns, item_table.columns
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
    _check_roles(config, timed)
    resolve_device(config.device, what="--device")
    items = item_table.to_pandas([c for c in item_columns if c not in config.embedding])  # vectors: read below
    _check_field_types(log.schema, items, config)
    for column in config.bag:
        if column not in rows:
            _check_bag(items, column)
    items = _index_items(items, config.item)
    columns = _log_columns(rows, config, timed)
    vectors = {column: item_vectors(item_table, column, items.index) for column in config.embedding}
    encoded, time_strings = encode_log(log, columns, ItemTable.encode(items, config.item, columns),
                                       config.sample_users)
    if encoded.unknown_items:
        count, first = encoded.unknown_items
        raise InputError(f"{count} interaction row(s) have an item without an embedding in {items_name} "
                         f"(first: {first!r}); add those items")
    sample = _sample_line(encoded, config, len(log))
    order = _sampled_split_order(encoded, config, timed, rows_name, sample)
    if sample:
        logger.info("%s", sample)
    if not timed:
        logger.info("no %r column: splitting at random (seed 0)", config.time)
    if time_strings:  # logged once every check has passed: a refusal prints one line
        logger.info("time column %r holds strings: read as %s, not sorted as text", config.time,
                    "numbers" if time_strings == "numbers" else "ISO 8601 dates")
    logger.info("encoded %d rows (%.1f MB of ints)", len(encoded), encoded.nbytes / 1e6)
    return EvaluationData(encoded, items, vectors, timed, order, sample)


def _sample_line(encoded: EncodedLog, config: EvaluateConfig, read: int) -> str | None:
    """The user sample and what it kept, in one line (None without ``--sample-users``)."""
    if config.sample_users >= 1:
        return None
    users = encoded.sizes[config.user] - 1
    return (f"users sampled by a hash of {config.user!r}, fraction {config.sample_users:g}: {users:,} users, "
            f"{len(encoded):,} of {read:,} rows")


def _sampled_split_order(encoded: EncodedLog, config: EvaluateConfig, timed: bool, rows_name: str,
                         sample: str | None) -> np.ndarray:
    """:func:`_split_order`; a refusal after a user sample names the fraction and what it left."""
    try:
        return _split_order(encoded, config, timed, rows_name)
    except InputError as exc:
        raise (InputError(f"--sample-users {config.sample_users:g} left {sample.split(': ', 1)[1]}: {exc}")
               if sample else exc) from None


def _split_order(encoded: EncodedLog, config: EvaluateConfig, timed: bool, rows_name: str) -> np.ndarray:
    """The rows in split order, once the log has rows enough and (for CTR) both labels in every part."""
    if len(encoded) < 10:
        raise InputError(f"{rows_name} has {len(encoded)} rows; an 80/10/10 split needs at least 10")
    order = time_order(encoded.sort_keys()) if timed else random_order(len(encoded), seed=0)
    if config.task != "retrieval":  # the CTR task's AUC needs both labels in every part; retrieval does not
        _check_split_labels(encoded[config.label], order, timed)
    if config.task != "ctr":  # the retrieval sequences' refusals, before the first log line
        check_sequences(encoded.codes[config.user], encoded.labels, config.sequence, config.label)
    return order
