"""The codes table: schema, validation, offsets, flattening, tokens and its files.

A codes table holds the semantic ID of N items: codes (N, L) int64, code ``z_l``
of level ``l`` in ``[0, K_l)``, optionally with item ids, the suffix that makes
every full ID distinct (``--unique``), and what made it: the method, the
per-level (effective) codebook sizes ``K_l`` and the model's fingerprint.

Three layouts of the same table, chosen with ``format``:

- ``codes``: columns ``item_id, c1..cL[, suffix]`` holding ``z_l``.
- ``flat``: columns ``item_id, t1..tL[, suffix]`` holding ``z_l + offset_l``, one
  shared vocabulary of ``Σ K_l`` ids for a CTR embedding table
  (``offset_l = Σ_{t<l} K_t``). The suffix column is not offset. The columns are
  named ``t`` so that a reader unaware of the layout cannot take them for codes.
- ``tokens``: columns ``item_id, tokens`` with one string per item,
  ``<a_3><b_9><c_1>``, for generative recommenders. Level ``l`` is named by
  :func:`level_name` (``a`` .. ``z``, then ``aa``, ``ab``, ... past 26 levels,
  as spreadsheet columns). A suffix is one more token named like the next level
  (``<d_2>`` after three levels), as TIGER appends its disambiguation code; the
  metadata's ``suffix_range`` says that the last token is the suffix.

``.parquet`` files carry the schema metadata key ``rqgmm``: JSON with
``version``, ``format``, ``method``, ``levels``, ``codebook_sizes``,
``fingerprint``, ``offsets`` and ``vocab_size`` (flat), and ``suffix_range``
``[min, max]`` (with a suffix). ``.npy`` files hold the plain codes (N, L) int64
only. A parquet written before the metadata existed (``item_id, c1..cL[,
suffix]``, no metadata) reads as the ``codes`` layout with nothing else known.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.files.formats import item_id_column, read_npy, read_parquet
from rqgmm.ids.names import FORMATS

METADATA_KEY = b"rqgmm"
METADATA_VERSION = 1
_TOKEN = re.compile(r"<([a-z]+)_(0|[1-9][0-9]{0,17})>")
_EXAMPLE = "<a_3><b_9><c_1>"


# ----------------------------------------------------------------------------- schema


def code_columns(levels: int) -> list[str]:
    """Column names of the codes layout: ``c1 .. cL``."""
    return [f"c{level + 1}" for level in range(levels)]


def flat_columns(levels: int) -> list[str]:
    """Column names of the flat layout: ``t1 .. tL``."""
    return [f"t{level + 1}" for level in range(levels)]


def level_name(level: int) -> str:
    """Token name of level ``level`` (0-based): ``a`` .. ``z``, then ``aa``, ``ab``, ... (bijective base 26)."""
    name = ""
    level += 1
    while level > 0:
        level, rest = divmod(level - 1, 26)
        name = chr(ord("a") + rest) + name
    return name


# ------------------------------------------------------------------------- validation


def as_codes(codes, *, levels: int | None = None, codebook_sizes: list[int] | None = None) -> torch.Tensor:
    """Validate an integer code table and return it as an int64 tensor.

    Parameters
    ----------
    codes : array-like or torch.Tensor, shape (N, L)
        Integer codes; a tensor stays on its device.
    levels : int, optional
        The model's L: at most this many columns.
    codebook_sizes : list of int, optional
        K_l per level: column l must lie in ``[0, K_l)``.

    Returns
    -------
    torch.Tensor, shape (N, L), int64.

    Raises
    ------
    InputError
        On a non-2-D or non-integer table, too many levels, or codes out of range.
    """
    if not isinstance(codes, torch.Tensor):
        array = np.asarray(codes)  # not copied when it can be wrapped: a 10^8-row table is 1.6 GB per copy
        codes = torch.from_numpy(array if array.flags.writeable else array.copy())
    if codes.ndim != 2:
        raise InputError(f"codes must be 2-D (N items x L levels), got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise InputError(f"codes must be integers, got {codes.dtype}; pass the int64 table from encode")
    codes = codes.to(torch.int64)
    if levels is not None and codes.shape[1] > levels:
        raise InputError(f"codes have {codes.shape[1]} levels but the model has {levels}")
    if codebook_sizes is not None and codes.numel():
        for level in range(codes.shape[1]):
            col = codes[:, level]
            if int(col.min()) < 0 or int(col.max()) >= codebook_sizes[level]:
                raise InputError(
                    f"codes at level {level + 1} must lie in [0, {codebook_sizes[level]}), "
                    f"got values in [{int(col.min())}, {int(col.max())}]"
                )
    return codes


def _check_sizes(codebook_sizes, levels: int) -> list[int]:
    sizes = list(codebook_sizes)
    if len(sizes) != levels or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                                   for k in sizes):
        raise InputError(f"codebook_sizes must be {levels} positive integers (one per level), got {sizes}")
    return [int(k) for k in sizes]


def _check_suffix(suffix, n_items: int) -> np.ndarray:
    suffix = np.asarray(suffix)
    if suffix.shape != (n_items,) or not np.issubdtype(suffix.dtype, np.integer):
        raise InputError(f"suffix must be {n_items} integers (one per item), "
                         f"got {suffix.dtype} of shape {suffix.shape}")
    if n_items and int(suffix.min()) < 0:
        raise InputError(f"suffix values must be >= 0, got {int(suffix.min())}; make it with rqgmm.ids.suffix.unique_suffix")
    return suffix.astype(np.int64)


# ------------------------------------------------------------------------------ table


@dataclass
class CodesTable:
    """A validated codes table and what made it.

    Attributes
    ----------
    codes : ndarray, shape (N, L), int64
    item_ids : ndarray, shape (N,), or None
        Integers or strings; None writes row numbers 0..N-1 to parquet.
    codebook_sizes : list of int (L,), or None
        Effective K_l per level; when given every code lies in ``[0, K_l)``.
    method : str or None
        The tokenizer method (``rqgmm``, ``rqkmeans``, ...).
    suffix : ndarray, shape (N,), int64, or None
        Makes every (codes, suffix) distinct; see :func:`rqgmm.ids.suffix.unique_suffix`.
    fingerprint : str or None
        :func:`rqgmm.files.formats.fingerprint` of the model that made the codes.
    """

    codes: np.ndarray
    item_ids: np.ndarray | None = None
    codebook_sizes: list[int] | None = None
    method: str | None = None
    suffix: np.ndarray | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        codes = as_codes(self.codes)
        if codes.numel() and int(codes.min()) < 0:
            level = int((codes < 0).any(0).nonzero()[0, 0]) + 1
            raise InputError(f"the table holds negative codes (min {int(codes.min())}, first at level {level}); "
                             "codes are >= 0: pass a codes table written by `rqgmm encode`")
        if self.codebook_sizes is not None:
            self.codebook_sizes = _check_sizes(self.codebook_sizes, codes.shape[1])
            as_codes(codes, codebook_sizes=self.codebook_sizes)
        self.codes = codes.numpy()
        if self.item_ids is not None and len(self.item_ids) != len(self.codes):
            raise InputError(f"{len(self.item_ids)} item ids for {len(self.codes)} rows of codes; give one id per row")
        if self.suffix is not None:
            self.suffix = _check_suffix(self.suffix, len(self.codes))

    @property
    def levels(self) -> int:
        """Number of code levels L."""
        return self.codes.shape[1]

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def suffix_range(self) -> list[int] | None:
        """``[min, max]`` of the suffix; None without a suffix or rows."""
        if self.suffix is None or len(self.suffix) == 0:
            return None
        return [int(self.suffix.min()), int(self.suffix.max())]

    def flat(self) -> np.ndarray:
        """Codes (N, L) offset into one shared vocabulary of ``Σ K_l`` ids (:func:`flatten_codes`)."""
        return flatten_codes(self.codes, self._sizes_for("the flat layout"))

    def tokens(self) -> np.ndarray:
        """One token string per item (N,), e.g. ``<a_3><b_9><c_1>``, the suffix as a last token."""
        return format_tokens(self.codes, self.suffix)

    def frame(self):
        """The codes layout as a pandas DataFrame: ``item_id`` (row numbers when None), ``c1..cL``[, ``suffix``]."""
        import pandas as pd  # only the CTR side needs pandas: not loaded with the tokenizers

        return pd.DataFrame(_columns(self, "codes"))

    def metadata(self, format: str = "codes") -> dict:
        """The JSON object stored under the parquet schema key ``rqgmm`` for ``format``."""
        meta = {"version": METADATA_VERSION, "format": _check_format(format), "method": self.method,
                "levels": self.levels, "codebook_sizes": self.codebook_sizes, "fingerprint": self.fingerprint}
        if format == "flat":
            sizes = self._sizes_for("the flat layout")
            meta.update(offsets=level_offsets(sizes).tolist(), vocab_size=sum(sizes))
        if self.suffix_range is not None:
            meta["suffix_range"] = self.suffix_range
        return meta

    def _sizes_for(self, what: str) -> list[int]:
        if self.codebook_sizes is None:
            raise InputError(f"{what} needs the codebook sizes; give the table codebook_sizes (one K per level)")
        return self.codebook_sizes


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise InputError(f"unknown codes format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


# ------------------------------------------------------------------- offsets and flat


def level_offsets(codebook_sizes: list[int]) -> np.ndarray:
    """Offset (L,) int64 of each level in one shared vocabulary of ``Σ K_l`` ids."""
    return np.concatenate([[0], np.cumsum(codebook_sizes)[:-1]]).astype(np.int64)


def flatten_codes(codes: np.ndarray, codebook_sizes: list[int]) -> np.ndarray:
    """Codes (N, l), l <= L, shifted into one vocabulary: id = code + offset of its level."""
    return np.asarray(codes, dtype=np.int64) + level_offsets(codebook_sizes)[: np.shape(codes)[1]]


def unflatten_codes(flat: np.ndarray, codebook_sizes: list[int]) -> np.ndarray:
    """Inverse of :func:`flatten_codes`: flat ids (N, L) back to codes (N, L).

    Raises
    ------
    InputError
        If a column's ids lie outside its level's range ``[offset_l, offset_l + K_l)``.
    """
    flat = np.asarray(flat, dtype=np.int64)
    offsets = level_offsets(codebook_sizes)
    for level in range(flat.shape[1]):
        col = flat[:, level]
        low, high = int(offsets[level]), int(offsets[level] + codebook_sizes[level])
        if len(col) and (int(col.min()) < low or int(col.max()) >= high):
            raise InputError(f"flat ids of level {level + 1} must lie in [{low}, {high}), "
                             f"got values in [{int(col.min())}, {int(col.max())}]")
    return flat - offsets[: flat.shape[1]]


# ----------------------------------------------------------------------------- tokens


def format_tokens(codes: np.ndarray, suffix: np.ndarray | None = None) -> np.ndarray:
    """Token strings (N,) of codes (N, L): ``<a_3><b_9><c_1>``, plus ``<d_s>`` for a suffix s."""
    columns = list(np.asarray(codes, dtype=np.int64).T)
    if suffix is not None:
        columns.append(np.asarray(suffix, dtype=np.int64))
    if not columns:
        return np.array([""] * len(codes), dtype=object)
    parts = [[f"<{level_name(level)}_{value}>" for value in col.tolist()] for level, col in enumerate(columns)]
    return np.array(["".join(row) for row in zip(*parts)], dtype=object)


def parse_tokens(strings, levels: int | None = None) -> np.ndarray:
    """Parse token strings back to integers (N, T): T tokens a, b, c, ... per string, in order.

    Parameters
    ----------
    strings : sequence of str, length N
    levels : int, optional
        The number of tokens T each string must hold; default: that of the first.

    Raises
    ------
    InputError
        Naming the first row that is not a token string, has its tokens out of
        order, or holds another number of tokens.
    """
    strings = list(strings)
    if levels is None:
        levels = len(_TOKEN.findall(strings[0])) if strings and isinstance(strings[0], str) else 0
    names = [level_name(level) for level in range(levels)]
    out = np.empty((len(strings), levels), dtype=np.int64)
    for row, text in enumerate(strings):
        out[row] = _parse_one(text, names, row)
    return out


def _parse_one(text, names: list[str], row: int) -> list[int]:
    if not isinstance(text, str):
        raise InputError(f"row {row}: {text!r} is not a token string like {_EXAMPLE}")
    pieces = _TOKEN.findall(text)
    if "".join(f"<{name}_{value}>" for name, value in pieces) != text:
        raise InputError(f"row {row}: {text[:60]!r} is not a token string like {_EXAMPLE}")
    found = [name for name, _ in pieces]
    if found != names:
        raise InputError(f"row {row}: {text[:60]!r} holds tokens {''.join(found)} where "
                         f"{''.join(names)} were expected, in that order")
    return [int(value) for _, value in pieces]


# ------------------------------------------------------------------------------ files


def write_codes(path: str | os.PathLike, table: CodesTable, format: str = "codes") -> None:
    """Write ``table`` atomically as ``.parquet`` (any ``format``) or ``.npy`` (codes only).

    Raises
    ------
    InputError
        For another extension; for ``.npy`` with a format other than ``codes``,
        item ids or a suffix (a ``.npy`` array cannot keep them: write ``.parquet``);
        for ``flat`` without codebook sizes.
    """
    path = Path(path)
    _check_format(format)
    if path.suffix == ".npy":
        _check_npy_writable(path, table, format)
        with atomic_output(path) as tmp:
            np.save(tmp, table.codes)
        return
    if path.suffix != ".parquet":
        raise InputError(f"{path} has extension {path.suffix!r}; codes are written as .parquet or .npy")
    arrow = pa.table(_columns(table, format))
    arrow = arrow.replace_schema_metadata({METADATA_KEY: json.dumps(table.metadata(format)).encode()})
    with atomic_output(path) as tmp:
        pq.write_table(arrow, tmp)


def _check_npy_writable(path: Path, table: CodesTable, format: str) -> None:
    if format != "codes":
        raise InputError(f"{path}: the {format} layout needs .parquet (a .npy array cannot say how to read it "
                         "back); write e.g. codes.parquet")
    for what, value in (("item ids", table.item_ids), ("a suffix", table.suffix)):
        if value is not None:
            raise InputError(f"{path}: a .npy codes file cannot keep {what}; write e.g. codes.parquet")


def _columns(table: CodesTable, format: str) -> dict[str, np.ndarray | pa.Array]:
    ids = np.arange(len(table)) if table.item_ids is None else np.asarray(table.item_ids)
    if format == "tokens":
        return {"item_id": ids, "tokens": pa.array(table.tokens().tolist(), pa.string())}
    values, names = (table.flat(), flat_columns(table.levels)) if format == "flat" else \
        (table.codes, code_columns(table.levels))
    columns = {"item_id": ids, **{name: values[:, i] for i, name in enumerate(names)}}
    if table.suffix is not None:
        columns["suffix"] = table.suffix
    return columns


def read_codes(path: str | os.PathLike) -> CodesTable:
    """Read a codes file of any layout (and a parquet written before the metadata) as plain codes.

    Returns
    -------
    CodesTable
        Codes (N, L) as ``c1..cL`` hold them, whatever the layout on disk.

    Raises
    ------
    InputError
        If the file is missing, unreadable, or its columns or metadata are wrong,
        with the file, what was wrong and how to fix it on one line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"codes file {path} does not exist; write it with `rqgmm encode`")
    if path.suffix not in (".npy", ".parquet"):
        raise InputError(f"{path} has extension {path.suffix!r}; codes must be .npy or .parquet")
    try:
        return _read_npy_codes(path) if path.suffix == ".npy" else _read_parquet_codes(path)
    except InputError as exc:  # the table's own validation does not know the file: name it
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None


def _read_npy_codes(path: Path) -> CodesTable:
    codes = read_npy(path, "codes")
    if not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"{path} holds {codes.dtype}; codes must be integers")
    return CodesTable(np.asarray(codes, dtype=np.int64))


def _read_parquet_codes(path: Path) -> CodesTable:
    table = read_parquet(path, "codes")
    meta = _read_metadata(table.schema.metadata, path)
    format = meta.get("format", "codes")
    if format == "tokens":
        values, suffix = _token_values(table, meta, path)
    else:
        values = _integer_columns(table, "t" if format == "flat" else "c", path)
        suffix = _suffix_column(table, path)
    if meta and values.shape[1] != meta["levels"]:
        raise InputError(f"{path} has {values.shape[1]} levels of codes but its metadata says {meta['levels']}; "
                         "rewrite it with `rqgmm encode`")
    sizes = meta.get("codebook_sizes")
    if meta and meta.get("suffix_range") != _range(suffix):
        raise InputError(f"{path}: its suffix spans {_range(suffix)} but its metadata says "
                         f"{meta.get('suffix_range')}; rewrite it with `rqgmm encode`")
    ids = item_id_column(table.column("item_id"), path) if "item_id" in table.column_names else None
    try:
        codes = unflatten_codes(values, sizes) if format == "flat" else values
        return CodesTable(codes, ids, sizes, meta.get("method"), suffix, meta.get("fingerprint"))
    except InputError as exc:
        raise InputError(f"{path}: {exc}; rewrite it with `rqgmm encode`") from None


def _range(suffix: np.ndarray | None) -> list[int] | None:
    return None if suffix is None or len(suffix) == 0 else [int(suffix.min()), int(suffix.max())]


def _integer_columns(table: pa.Table, prefix: str, path: Path) -> np.ndarray:
    """The columns ``{prefix}1 .. {prefix}L`` as (N, L) int64."""
    names = sorted((n for n in table.column_names if n[:1] == prefix and n[1:].isdigit()), key=lambda n: int(n[1:]))
    if not names or names != [f"{prefix}{level + 1}" for level in range(len(names))]:
        raise InputError(f"{path} must have columns {prefix}1..{prefix}L; found {table.column_names}")
    for name in names:
        column = table.column(name)
        if not pa.types.is_integer(column.type) or column.null_count:
            raise InputError(
                f"{path}: column {name} holds {column.type} with {column.null_count} nulls; "
                "codes must be integers without nulls"
            )
    return np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.int64)


def _suffix_column(table: pa.Table, path: Path) -> np.ndarray | None:
    if "suffix" not in table.column_names:
        return None
    column = table.column("suffix")
    if not pa.types.is_integer(column.type) or column.null_count:
        raise InputError(f"{path}: column suffix holds {column.type} with {column.null_count} nulls; "
                         "the suffix must be integers without nulls")
    return column.to_numpy().astype(np.int64)


def _token_values(table: pa.Table, meta: dict, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (N, L) and suffix (N,) or None from the ``tokens`` column."""
    if "tokens" not in table.column_names:
        raise InputError(f"{path} is in the tokens layout but has no 'tokens' column; rewrite it with `rqgmm encode`")
    column = table.column("tokens")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{path}: column tokens holds {column.type}; tokens are strings like {_EXAMPLE}")
    with_suffix = "suffix_range" in meta
    try:
        values = parse_tokens(column.to_pylist(), meta["levels"] + with_suffix)
    except InputError as exc:
        raise InputError(f"{path}: {exc}; rewrite it with `rqgmm encode --format tokens`") from None
    return (values[:, :-1], values[:, -1]) if with_suffix else (values, None)


# --------------------------------------------------------------------------- metadata


def _read_metadata(schema_metadata: dict | None, path: Path) -> dict:
    """The checked ``rqgmm`` metadata of a parquet file; {} for a file written before it existed."""
    raw = (schema_metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        meta = None
    problem = _metadata_problem(meta)
    if problem:
        raise InputError(f"{path}: its schema metadata 'rqgmm' {problem}; rewrite it with `rqgmm encode`")
    if meta["version"] > METADATA_VERSION:
        raise InputError(f"{path} has codes metadata version {meta['version']}, newer than this release reads "
                         f"({METADATA_VERSION}); upgrade rqgmm")
    return meta


def _is_count(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _metadata_problem(meta) -> str | None:
    """What is wrong with a metadata object, or None."""
    if not isinstance(meta, dict):
        return "is not a JSON object"
    if not _is_count(meta.get("version"), 1) or meta.get("format") not in FORMATS:
        return f"lacks a valid 'version' or 'format' (one of {', '.join(FORMATS)})"
    if not _is_count(meta.get("levels"), 1):
        return f"has levels {meta.get('levels')!r}, not a positive integer"
    sizes = meta.get("codebook_sizes")
    if sizes is not None and not (isinstance(sizes, list) and len(sizes) == meta["levels"]
                                  and all(_is_count(k, 1) for k in sizes)):
        return f"has codebook_sizes {sizes!r}, not {meta['levels']} positive integers"
    for key in ("method", "fingerprint"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"has {key} {meta[key]!r}, not a string"
    rng = meta.get("suffix_range")
    if "suffix_range" in meta and not (isinstance(rng, list) and len(rng) == 2 and all(_is_count(v) for v in rng)):
        return f"has suffix_range {rng!r}, not [min, max]"
    if meta["format"] == "flat":
        return _flat_problem(meta)
    return None


def _flat_problem(meta: dict) -> str | None:
    sizes = meta.get("codebook_sizes")
    if sizes is None:
        return "is in the flat layout without codebook_sizes, so the ids cannot be mapped back"
    if meta.get("offsets") != level_offsets(sizes).tolist() or meta.get("vocab_size") != sum(sizes):
        return (f"has offsets {meta.get('offsets')!r} and vocab_size {meta.get('vocab_size')!r}, which do not "
                f"match codebook_sizes {sizes}")
    return None
