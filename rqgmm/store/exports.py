"""What serving reads from a generation: the lookup table, the prefix trie and the token vocabulary.

Written by every publish into ``STORE/exports/gen-NNNNNN/`` from the live items:

- ``lookup.parquet``: one row per distinct full ID (``c1..cL[, suffix]``,
  sorted) with ``item_ids``, the list of items holding it: one item each with
  suffixes, possibly several without (the report counts those IDs);
- ``trie.parquet``: the :class:`rqgmm.ids.trie.PrefixTrie` of the full IDs, for
  constrained beam search;
- ``vocab.txt``: the token strings, one per line: ``<a_0>`` .. for level 1,
  ``<b_0>`` .. for level 2, ..., then the suffix tokens (named like the next
  level, as ``rqgmm encode --format tokens`` writes them). The suffix tokens
  come last, so a later generation's file only appends: token ids stay put.
  With Hugging Face tokenizers::

      tokenizer.add_tokens(open("vocab.txt").read().split(), special_tokens=True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.files.atomic import atomic_output
from rqgmm.ids.codes import code_columns, level_name
from rqgmm.errors import InputError
from rqgmm.files.formats import read_parquet
from rqgmm.ids.keys import rows_of_keys
from rqgmm.ids.trie import PrefixTrie

LOOKUP = "lookup.parquet"
TRIE = "trie.parquet"
VOCAB = "vocab.txt"
FILES = (LOOKUP, TRIE, VOCAB)


def id_columns(levels: int, suffix: bool) -> list[str]:
    return [*code_columns(levels), *(["suffix"] if suffix else [])]


def vocabulary(vocab_sizes: list[int]) -> list[str]:
    """Token strings of every position t < T: ``<{level_name(t)}_{v}>`` for v < V_t, position by position."""
    return [f"<{level_name(t)}_{v}>" for t, size in enumerate(vocab_sizes) for v in range(size)]


def lookup_table(rows: np.ndarray, starts: np.ndarray, items: np.ndarray, suffix: bool) -> pa.Table:
    """One row per distinct full ID: rows (M, T) sorted, holding the items ``items[starts[m]:starts[m + 1]]``."""
    offsets = np.r_[starts, len(items)]
    lists = (pa.ListArray if len(items) < 2**31 else pa.LargeListArray).from_arrays(
        pa.array(offsets.astype(np.int32 if len(items) < 2**31 else np.int64)), pa.array(items))
    names = id_columns(rows.shape[1] - suffix, suffix)
    return pa.table({**{name: rows[:, i] for i, name in enumerate(names)}, "item_ids": lists})


def write_exports(directory: Path, keys: np.ndarray, item_ids: np.ndarray, vocab_sizes: list[int],
                  suffix: bool) -> dict:
    """Write the three exports of live items into ``directory`` (atomically, as one).

    ``keys`` (N,) are the items' full IDs as :func:`rqgmm.ids.keys.row_keys` under
    ``vocab_sizes`` gives them (one int64 each: no (N, T) copy of 10^7 rows);
    one sort of them serves the lookup and the trie. Returns
    ``{"full_ids": distinct IDs, "one_to_many": IDs held by more than one item}``.
    """
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    rows = rows_of_keys(keys[starts], vocab_sizes)
    del keys
    lookup = lookup_table(rows, starts, np.asarray(item_ids)[order], suffix)
    trie = PrefixTrie.from_sorted_rows(rows, vocab_sizes)
    with atomic_output(directory, directory=True, marker=TRIE) as tmp:
        pq.write_table(lookup, tmp / LOOKUP)
        trie.save(tmp / TRIE)
        (tmp / VOCAB).write_text("\n".join(vocabulary(vocab_sizes)) + "\n")
    return {"full_ids": len(starts), "one_to_many": int((np.diff(np.r_[starts, len(order)]) > 1).sum())}


def read_lookup(path: str | os.PathLike, levels: int, suffix: bool) -> tuple[np.ndarray, list]:
    """Full IDs (M, T) and their item lists (M,) from a lookup export."""
    table = read_parquet(Path(path), "a lookup table")
    names = id_columns(levels, suffix)
    if any(n not in table.column_names for n in [*names, "item_ids"]):
        raise InputError(f"{path} lacks the columns {names + ['item_ids']}; publish again")
    ids = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.int64)
    return ids, table.column("item_ids").to_pylist()


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """The token strings of a vocabulary export, in order."""
    return Path(path).read_text().split()
