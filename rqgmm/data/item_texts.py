"""Item texts from an items table: the id and text columns checked, one text per item.

An items parquet holds an id column and one or more text columns (a title, a
description, ...). :func:`read_item_texts` reads only those columns, checks each
against its role and joins an item's text columns into the one text the model
embeds (:func:`join_parts`). Every problem is an :class:`~rqgmm.errors.InputError`
whose one line names the column and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once

#: A part that already ends with one of these is followed by a space only, not by ". ".
SENTENCE_ENDS = (".", "!", "?", ":", ";")


def join_parts(parts: Sequence[str | None]) -> str:
    """One item's text from its text columns, in the order given.

    Each part is stripped of surrounding white space; null and empty parts are
    skipped; the rest are joined by ``". "``, or by ``" "`` after a part that
    already ends a sentence. ``join_parts(["Heat", "A heist goes wrong."])`` is
    ``"Heat. A heist goes wrong."``; ``join_parts(["Heat", None])`` is ``"Heat"``.
    """
    kept = [p.strip() for p in parts if p is not None and p.strip()]
    return "".join(p + ("" if i == len(kept) - 1 else " " if p.endswith(SENTENCE_ENDS) else ". ")
                   for i, p in enumerate(kept))


def read_item_texts(path: str | os.PathLike, text_columns: Sequence[str],
                    item_column: str = "item_id") -> tuple[pa.Array, list[str]]:
    """The item ids and one joined text per item of the parquet file ``path``.

    Parameters
    ----------
    path : an items parquet file.
    text_columns : the string columns whose texts are joined (:func:`join_parts`).
    item_column : the item id column: integers or strings, no nulls, no repeats.

    Returns
    -------
    item_ids : pyarrow.Array, length N (dictionary encoding removed)
    texts : list of str, length N, none of them empty

    Raises
    ------
    InputError
        A missing or unreadable file, a missing column, an id column that is not
        integer or text, holds nulls or repeats, a text column that does not hold
        text, no rows, or items whose every text column is null or empty (an empty
        text would give all of them one meaningless shared vector: they are refused).
    """
    path = Path(path)
    table = _read_columns(path, [item_column, *text_columns])
    if table.num_rows == 0:
        raise InputError(f"{path} holds no rows; embed a table with at least one item")
    item_ids = _item_ids(table.column(item_column), item_column, path)
    columns = [_text_values(table.column(c), c, path) for c in text_columns]
    texts = [join_parts(parts) for parts in zip(*columns, strict=True)]
    _check_not_empty(texts, item_ids, text_columns, path)
    return item_ids, texts


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    """The named columns of ``path``, each read once; a missing file, column or unreadable file is refused."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"items file {path} {what}; pass an existing parquet file")
    try:
        names = pq.read_schema(path).names
        missing = [c for c in dict.fromkeys(columns) if c not in names]
        if missing:
            raise InputError(f"{path} has no column {', '.join(map(repr, missing))} (it has {', '.join(names)}); "
                             "name the item id column with --item and the text columns with --text")
        check_named_once(names, columns, path)
        return pq.read_table(path, columns=list(dict.fromkeys(columns)))
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is not a readable parquet file ({first}); write the items table with "
                         "pandas.DataFrame.to_parquet or pyarrow.parquet.write_table") from None


def _decoded(column: pa.ChunkedArray) -> pa.Array:
    col = column.combine_chunks()
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _item_ids(column: pa.ChunkedArray, name: str, path: Path) -> pa.Array:
    ids = _decoded(column)
    if not (pa.types.is_integer(ids.type) or _is_text(ids.type)):
        raise InputError(f"{path}: item id column {name!r} holds {ids.type}; item ids must be integers or strings "
                         "(name another column with --item)")
    if ids.null_count:
        raise InputError(f"{path}: item id column {name!r} has {ids.null_count} null values; every item needs an id")
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated):
        first = repeated[0].as_py()
        raise InputError(f"{path}: {len(repeated)} item ids appear more than once in {name!r} (first: "
                         f"{first['values']!r}, {first['counts']} times); keep one row per item")
    return ids.cast(pa.string()) if pa.types.is_string_view(ids.type) else ids


def _text_values(column: pa.ChunkedArray, name: str, path: Path) -> list[str | None]:
    values = _decoded(column)
    if pa.types.is_null(values.type):
        return [None] * len(values)
    if not _is_text(values.type):
        hint = " (bytes: decode them to UTF-8 strings first)" if pa.types.is_binary(values.type) or \
            pa.types.is_large_binary(values.type) else ""
        raise InputError(f"{path}: text column {name!r} holds {values.type}, not text{hint}; pass string "
                         "columns to --text")
    return values.to_pylist()


def _check_not_empty(texts: list[str], item_ids: pa.Array, columns: Sequence[str], path: Path) -> None:
    empty = np.flatnonzero(np.array([not t for t in texts], dtype=bool))
    if empty.size:
        raise InputError(f"{path}: {empty.size} of {len(texts)} items have no text in {','.join(columns)} (null or "
                         f"empty; first: item {item_ids[int(empty[0])].as_py()!r}); fill in their text or drop "
                         "those rows")
