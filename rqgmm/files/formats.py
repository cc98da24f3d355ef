"""File formats: embeddings and model directories (the codes table lives in :mod:`rqgmm.ids.codes`).

Every writer goes through :func:`rqgmm.files.atomic.atomic_output`, so an interrupted
run leaves the old output or the new one, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once
from rqgmm.files.itemjoin import check_unique_ids
from rqgmm.files.modalities import fused

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
TENSORS_NAME = "model.safetensors"


# ----------------------------------------------------------------------------- models


def save_model(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a model directory: ``config.json`` and ``model.safetensors``, atomically.

    ``config`` must hold ``method``; ``format_version`` is added here.
    """
    config = {"format_version": FORMAT_VERSION, **config}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_output(path, directory=True, marker=CONFIG_NAME) as tmp:
        save_file(tensors, str(tmp / TENSORS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_model(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model directory written by :func:`save_model`.

    Returns
    -------
    (config, tensors)

    Raises
    ------
    InputError
        If the directory, its config or its tensors are missing, corrupt or of a
        format version this release cannot read.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"model directory {path} does not exist; pass the --out directory of `rqgmm fit`")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise InputError(f"{config_file} is missing; {path} is not a model directory written by `rqgmm fit`")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_file} is not valid JSON ({exc}); refit the model") from None
    if not isinstance(config, dict) or "method" not in config or "format_version" not in config:
        raise InputError(f"{config_file} lacks 'method' or 'format_version'; refit the model")
    if not isinstance(config["method"], str):
        raise InputError(f"{config_file} has method {config['method']!r}, not a method name; refit the model")
    version = config["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{config_file} has format_version {version!r}, not a positive integer; refit the model")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path} has model format version {version!r}, newer than this release reads "
            f"({FORMAT_VERSION}); upgrade rqgmm"
        )
    try:
        tensors = load_file(str(path / TENSORS_NAME))
    except FileNotFoundError:
        raise InputError(f"{path / TENSORS_NAME} is missing; refit the model") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path / TENSORS_NAME} is truncated or corrupt ({exc}); refit the model") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{path / TENSORS_NAME}: tensor {name!r} holds NaN or Inf values; refit the model")
    return config, tensors


FINGERPRINT_CHARS = 16


def fingerprint(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    """A short stable hash of a model's content: the first 16 hex digits of a SHA-256.

    Parameters
    ----------
    config : dict
        As given to :func:`save_model` (``format_version`` is added when absent) or
        as returned by :func:`read_model`.
    tensors : dict of str to torch.Tensor
        Hashed in name order with their dtype, shape and bytes, wherever they live.

    The hash covers the canonical JSON of the config, not the bytes of
    ``config.json``, so it is the same for a model in memory and on disk.
    """
    digest = hashlib.sha256()
    config = {"format_version": FORMAT_VERSION, **config}
    digest.update(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def model_fingerprint(path: str | os.PathLike) -> str:
    """:func:`fingerprint` of the model directory ``path`` (read and checked by :func:`read_model`)."""
    return fingerprint(*read_model(path))


# ------------------------------------------------------------------------- embeddings


def read_embeddings(path: str | os.PathLike,
                    columns: tuple[str, ...] = ()) -> tuple[np.ndarray | None, np.ndarray | dict[str, np.ndarray]]:
    """Read embeddings from ``.npy`` (memory-mapped) or ``.parquet``.

    ``columns`` names the parquet list columns to read (default: ``embedding``);
    with more than one, the result is a dict of column -> (N, D_c), for
    :func:`rqgmm.files.modalities.fused`. A ``.npy`` holds one matrix: naming columns is refused.

    Returns
    -------
    item_ids : ndarray (N,) or None
        The parquet ``item_id`` column; None for ``.npy``.
    X : ndarray, shape (N, D), or dict of them
        Memory-mapped for ``.npy``; dtype as stored.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"embedding file {path} {what}; pass an existing .npy or .parquet file")
    if path.suffix == ".npy":
        if columns:
            raise InputError(f"--embedding names parquet columns, but {path} is a .npy (one matrix); drop --embedding")
        return None, read_npy(path)
    if path.suffix == ".parquet":
        return _read_parquet_embeddings(path, columns or ("embedding",))
    raise InputError(f"{path} has extension {path.suffix!r}; embeddings must be .npy or .parquet")


def read_npy(path: Path, what: str = "embeddings") -> np.ndarray:
    """A 2-D real ``.npy`` array (N, D) or (N, L), memory-mapped where it can be; ``what`` names it in messages."""
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy array ({exc}); write it with numpy.save") from None
    if X.ndim != 2:
        axes = "(N, D)" if what == "embeddings" else "(N, L)"
        raise InputError(f"{path} holds an array of shape {X.shape}; {what} must be 2-D {axes}")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise InputError(f"{path} holds complex values ({X.dtype}); {what} must be real")
    if not X.dtype.isnative:
        # torch reads native byte order only: a big-endian file is converted in memory.
        return np.asarray(X, dtype=X.dtype.newbyteorder("="))
    if np.issubdtype(X.dtype, np.floating) and X.dtype.itemsize > 8:
        return np.asarray(X, dtype=np.float64)  # long double: torch has no such dtype
    return X


#: Rows per record batch when embeddings are read from parquet (the table is never read whole).
PARQUET_BATCH_ROWS = 65_536


def iter_parquet_embeddings(path: str | os.PathLike, columns: tuple[str, ...] = ("embedding",),
                            batch_rows: int | None = None,
                            with_ids: bool = True) -> Iterator[tuple[np.ndarray | None, np.ndarray | dict]]:
    """``(item_ids (n,), X (n, D))`` per record batch of a parquet file (X a dict of column -> (n, D_c)
    with several ``columns``), each batch checked as :func:`read_embeddings` checks the whole file,
    except that item ids are unique only within the batch (see :func:`check_unique_ids`).

    ``with_ids=False`` leaves the ``item_id`` column unread (None in its place), for a caller that has them.
    """
    path, columns = Path(path), columns or ("embedding",)
    read = ["item_id", *columns] if with_ids else list(columns)
    try:
        file = pq.ParquetFile(path)
        missing = [c for c in read if c not in file.schema_arrow.names]
        if missing:
            fix = ("embeddings parquet needs 'item_id' and 'embedding'" if columns == ("embedding",)
                   else f"name list columns of it with --embedding (it has {', '.join(file.schema_arrow.names)})")
            raise InputError(f"{path} lacks column(s) {missing}; {fix}")
        check_named_once(file.schema_arrow.names, read, path)
        for batch in file.iter_batches(batch_size=batch_rows or PARQUET_BATCH_ROWS, columns=read):
            ids = item_id_column(pa.chunked_array([batch.column("item_id")]), path, unique=False) if with_ids else None
            vectors = {c: _embedding_column(pa.chunked_array([batch.column(c)]), path, c) for c in columns}
            yield ids, vectors if len(columns) > 1 else vectors[columns[0]]
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, "embeddings", exc) from None


def embedding_batches(path: str | os.PathLike, columns: tuple[str, ...] = ("embedding",),
                      batch_rows: int | None = None, with_ids: bool = True) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """:func:`iter_parquet_embeddings` with several columns fused (:func:`rqgmm.files.modalities.fused`):
    ``(item_ids (n,) or None, X (n, D))`` per record batch. Check the values with
    :func:`rqgmm.runtime.validation.checked_batches`."""
    for ids, X in iter_parquet_embeddings(path, columns, batch_rows, with_ids):
        yield ids, fused(X) if isinstance(X, dict) else X


def _read_parquet_embeddings(path: Path, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | dict]:
    """The whole file, read batch by batch into one preallocated array per column (the table is never whole)."""
    ids, out, offset, total = [], {}, 0, None
    for batch_ids, X in iter_parquet_embeddings(path, columns):
        n = len(batch_ids)
        total = total if total is not None else pq.ParquetFile(path).metadata.num_rows  # footer read once
        for c in columns:
            rows = X[c] if isinstance(X, dict) else X
            if c not in out:
                out[c] = np.empty((total, rows.shape[1]), dtype=rows.dtype)
            elif n and rows.shape[1] != out[c].shape[1]:
                raise InputError(f"{path}: '{c}' is ragged (lengths {rows.shape[1]} and {out[c].shape[1]}); every "
                                 "row needs the same D")
            out[c][offset : offset + n] = rows
        ids.append(batch_ids)
        offset += n
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    item_ids = check_unique_ids(np.concatenate(ids), path)
    vectors = {c: out[c][:offset] for c in columns}
    return item_ids, vectors if len(columns) > 1 else vectors[columns[0]]


def item_id_column(column: pa.ChunkedArray, path: Path, unique: bool = True) -> np.ndarray:
    """The ``item_id`` column (N,) as numpy: integers or strings, no nulls, no repeats (any parquet encoding)."""
    col = column.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"{path}: 'item_id' has type {col.type}; item ids must be integers or strings")
    if col.null_count:
        raise InputError(f"{path}: 'item_id' has {col.null_count} null values; every item needs an id")
    ids = col.to_numpy(zero_copy_only=False)
    return check_unique_ids(ids, path) if unique else ids


def read_parquet(path: Path, what: str) -> pa.Table:
    """The whole parquet file as a table; an unreadable file is an ``InputError`` naming ``what`` it should hold."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, what, exc) from None
    check_named_once(table.column_names, table.column_names, path)
    return table



def _unreadable(path: Path, what: str, exc: Exception) -> InputError:
    """The one-line error for a parquet file Arrow cannot read, naming ``what`` it should hold."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"{path} is not a readable parquet file of {what} ({first})")


def _embedding_column(column: pa.ChunkedArray, path: Path, name: str = "embedding") -> np.ndarray:
    col = column.combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise InputError(f"{path}: '{name}' has type {col.type}; it must be a list of floats per row")
    value_type = col.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise InputError(f"{path}: '{name}' holds {value_type}; it must hold numbers")
    if col.null_count:
        raise InputError(f"{path}: '{name}' has {col.null_count} null rows; drop them")
    if len(col) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if pa.types.is_fixed_size_list(col.type):  # one length by type: a catalogue of 10^7 rows skips the count
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    lengths = np.asarray(pc.list_value_length(col))
    if lengths.min() != lengths.max():
        raise InputError(
            f"{path}: '{name}' is ragged (lengths {lengths.min()} to {lengths.max()}); every row needs the same D"
        )
    values = col.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(col), int(lengths[0]))
