"""An items table's text → the ``item_id`` + ``embedding`` parquet that fit, encode and evaluate read.

The library face of ``rqgmm embed``: the item texts are read and checked
(:mod:`rqgmm.data.item_texts`), embedded with an offline model through the
on-disk cache (:func:`rqgmm.data.embedders.embed_items`) and written atomically.
Text only: no registry package the project installs ships an image model.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once
from rqgmm.data.embedders import embed_items, get_embedder
from rqgmm.data.item_texts import read_item_texts

logger = logging.getLogger(__name__)

#: Schema metadata key of an embeddings file: JSON with the model, its dimension and the text columns.
METADATA_KEY = b"rqgmm_embeddings"


@dataclass(frozen=True)
class EmbedConfig:
    """What to embed and how.

    Parameters
    ----------
    text : the text columns, joined per item in this order (:func:`rqgmm.data.item_texts.join_parts`).
    item : the item id column (written as ``item_id`` whatever its name here).
    model : ``minilm`` (384-d), ``mpnet`` (768-d) or ``hashing-<dim>`` (a deterministic stand-in for tests).
    device : torch device of a sentence-transformers model.
    batch_size : texts per model call.
    progress : a tqdm bar over the batches; None draws it only on a terminal.
    cache_dir : the embedding cache; default ``$RQGMM_CACHE`` or ``~/.cache/rqgmm``.
    keep : columns of the items table copied to the output as they are (a category, a brand), so
        ``evaluate --categorical`` can read them without a join.
    """

    text: tuple[str, ...]
    item: str = "item_id"
    model: str = "minilm"
    device: str = "cpu"
    batch_size: int = 64
    progress: bool | None = None
    cache_dir: str | os.PathLike | None = None
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.text or any(not c for c in self.text):
            raise InputError(f"text columns {','.join(self.text)!r}: name one or more columns, e.g. title,description")
        if len(set(self.text)) != len(self.text):
            raise InputError(f"text columns {','.join(self.text)}: a column is named twice; name each once")
        if len(set(self.keep)) != len(self.keep) or any(not c for c in self.keep):
            raise InputError(f"--keep {','.join(self.keep)}: name each column once, e.g. --keep category,brand")
        clash = [c for c in self.keep if c in ("item_id", "embedding", self.item)]
        if clash:
            raise InputError(f"--keep {','.join(self.keep)}: {clash[0]!r} is written by embed itself (item_id, "
                             "embedding); keep other columns")


def embed_table(items: str | os.PathLike, out: str | os.PathLike, config: EmbedConfig) -> tuple[int, int]:
    """Embed the item texts of ``items`` and write ``out``; returns its shape (N, D).

    ``out`` is a parquet file with ``item_id`` (as in ``items``) and ``embedding``
    (list<float32>, unit-norm rows), rows in the order of ``items``. Every check
    runs before the model is loaded; nothing is written on failure.
    """
    embedder = get_embedder(config.model, batch_size=config.batch_size, device=config.device, what="model")
    item_ids, texts = read_item_texts(items, config.text, config.item)
    kept = _kept_columns(items, config.keep)
    vectors = embed_items(texts, embedder, config.cache_dir, batch_size=config.batch_size, progress=config.progress)
    write_embeddings(out, item_ids, vectors, {"model": embedder.name, "dim": embedder.dim, "text": list(config.text)},
                     kept)
    logger.info("embedded %d items with %s (%d-d) from %s; wrote %s", len(texts), embedder.name, embedder.dim,
                ",".join(config.text), out)
    return vectors.shape


def _kept_columns(items: str | os.PathLike, keep: tuple[str, ...]) -> pa.Table | None:
    """The ``keep`` columns of the items table, row for row, or None; a missing column is refused."""
    if not keep:
        return None
    try:
        names = pq.read_schema(items).names
        missing = [c for c in keep if c not in names]
        if missing:
            raise InputError(f"--keep: {items} has no column {missing[0]!r} (it has {', '.join(names)})")
        check_named_once(names, keep, items)
        return pq.read_table(items, columns=list(keep))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{items} is not a readable parquet file ({exc})") from None


def write_embeddings(path: str | os.PathLike, item_ids: pa.Array, vectors: np.ndarray, metadata: dict,
                     kept: pa.Table | None = None) -> None:
    """Write ``item_id`` (N,), ``embedding`` list<float32> (N rows of D) and the ``kept`` columns (N rows) to the
    parquet ``path``, atomically.

    ``metadata`` is stored as JSON under the schema metadata key ``rqgmm_embeddings``.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    extra = {} if kept is None else {name: kept.column(name) for name in kept.column_names}
    table = pa.table({"item_id": item_ids, "embedding": _list_column(vectors), **extra})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def _list_column(vectors: np.ndarray) -> pa.ChunkedArray:
    """(N, D) float32 as a list<float32> column, in chunks whose values fit list's int32 offsets."""
    n, d = vectors.shape
    rows = max(1, (2**31 - 1) // max(d, 1))
    chunks = [pa.ListArray.from_arrays(pa.array(np.arange(len(block) + 1, dtype=np.int32) * d),
                                       pa.array(block.ravel(), type=pa.float32()))
              for block in (vectors[i : i + rows] for i in range(0, n, rows))]
    return pa.chunked_array(chunks, type=pa.list_(pa.float32()))
