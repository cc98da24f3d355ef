"""The report of one generation of a store: churn, fan-out, load, fallbacks, retirements, head and tail.

Every figure is recomputed from the files (every file of the generation is
checked against the manifest first), not
copied from the manifest's counts:

- ``churn``: of the items the parent generation had published (live or
  retired), the share whose full ID differs in this generation (0 by the
  append-only rule), and how many are missing (0: nothing is ever deleted);
- ``fanout``: per depth of the trie, the nodes there and their children
  (mean, max): how many tokens a constrained decoder chooses from;
- ``load``: live items per prefix (the L codes): prefixes used, mean, p99,
  max, the largest prefix's codes; the one-to-many full IDs (no suffix);
- ``fallbacks`` and ``retirements``: this generation's and in all;
- with an interaction log, ``head_tail``: the most popular 10% of live items
  (by interactions) against the rest: per level l, the distinct length-l
  prefixes each group uses and the head's share of all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqgmm.store.allocation import codes_of_keys, prefix_keys
from rqgmm.errors import InputError
from rqgmm.files.columns import check_named_once
from rqgmm.store.generations import Generation, Store, export_dir
from rqgmm.files.itemjoin import positions
from rqgmm.ids.trie import PrefixTrie

logger = logging.getLogger(__name__)

HEAD_SHARE = 0.1
FEW_MATCHED = 0.5  # below this share of the log's rows naming a live item, the head/tail split is flagged


def store_report(store: Store, generation: int | None = None, interactions: str | None = None,
                 item_column: str = "item_id") -> dict:
    """The report (a JSON-able dict, no NaN) of ``generation`` (default: the current one)."""
    entry = store.entry(generation)
    store.verify([entry])
    gen = store.read(entry["generation"])
    trie = PrefixTrie.read(store.file(entry, f"{export_dir(entry['generation'])}/trie.parquet"))
    live = gen.live
    out = {"store": str(store.path), "generation": entry["generation"], "parent": entry["parent"],
           "fingerprint": entry["fingerprint"], "time": entry["time"], "method": store.method,
           "levels": store.levels, "codebook_sizes": store.codebook_sizes, "suffix": store.has_suffix,
           "max_per_prefix": entry["max_per_prefix"], "items": len(gen), "live": int(live.sum()),
           "churn": churn_against_parent(store, gen, entry), "fanout": fanout(trie),
           "load": load(gen, store.codebook_sizes),
           "fallbacks": {"this_generation": int((gen.fallback & (gen.born == entry["generation"])).sum()),
                         "live": int((gen.fallback & live).sum())},
           "retirements": {"this_generation": int((gen.retired == entry["generation"]).sum()),
                           "all": int((~live).sum())}}
    if interactions is not None:
        out["head_tail"] = head_tail(gen, popularity(interactions, item_column, gen.item_ids[live]))
    return out


def churn_against_parent(store: Store, gen: Generation, entry: dict) -> dict | None:
    """Of the parent's items: the share whose full ID changed, and the number missing; None for generation 1."""
    if entry["parent"] is None:
        return None
    parent = store.read(entry["parent"])
    found, rows = positions(parent.item_ids, gen.item_ids)
    rows = rows[found]
    changed = (parent.full_ids()[found] != gen.full_ids()[rows]).any(1)
    return {"parent_items": len(parent), "full_id_changed": float(changed.mean()) if len(changed) else 0.0,
            "changed_items": int(changed.sum()), "missing_items": int((~found).sum())}


def fanout(trie: PrefixTrie) -> list[dict]:
    """Per depth t < T: the nodes at depth t and the mean and max number of their children."""
    children = np.diff(trie.indptr.cpu().numpy())
    node_depth = np.r_[0, trie.depth.cpu().numpy() + 1]
    out = []
    for t in range(trie.length):
        counts = children[node_depth == t]
        out.append({"depth": t, "nodes": int(len(counts)), "mean_children": float(counts.mean()) if len(counts) else 0.0,
                    "max_children": int(counts.max()) if len(counts) else 0})
    return out


def load(gen: Generation, sizes: list[int]) -> dict:
    """Live items per prefix (the L codes); full IDs held by more than one live item."""
    live = gen.live
    keys, counts = np.unique(prefix_keys(gen.codes[live], sizes), return_counts=True)
    if not len(keys):
        return {"prefixes": 0, "mean": 0.0, "p99": 0.0, "max": 0, "largest_prefix": None, "one_to_many_ids": 0}
    largest = codes_of_keys(keys[[int(np.argmax(counts))]], sizes)[0]
    shared = 0
    if gen.suffix is None:
        shared = int((counts > 1).sum())
    return {"prefixes": int(len(keys)), "mean": float(counts.mean()), "p99": float(np.percentile(counts, 99)),
            "max": int(counts.max()), "largest_prefix": [int(c) for c in largest], "one_to_many_ids": shared}


def popularity(path: str, column: str, item_ids: np.ndarray) -> np.ndarray:
    """Interactions (N,) of each item of ``item_ids`` in the log ``path`` (a parquet with ``column``)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".parquet":
        raise InputError(f"--interactions {path}: pass an existing .parquet log with one row per interaction")
    try:
        if column not in pq.read_schema(path).names:
            raise InputError(f"--interactions {path} lacks column {column!r}; name the item column with --item")
        check_named_once(pq.read_schema(path).names, [column], path)
        log = pq.read_table(path, columns=[column]).column(column)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"--interactions {path} is not a readable parquet file ({exc})") from None
    counts = pc.value_counts(log.combine_chunks())
    values, n = counts.field("values"), counts.field("counts").to_numpy()
    try:
        where = pc.index_in(pa.array(item_ids), value_set=values)
    except pa.ArrowException:
        raise InputError(f"--interactions {path}: column {column!r} holds {log.type}, the store's item ids "
                         f"another type; name the item column with --item") from None
    found = where.is_valid().to_numpy(zero_copy_only=False)
    out = np.zeros(len(item_ids), dtype=np.int64)
    out[found] = n[where.to_numpy(zero_copy_only=False)[found].astype(np.int64)]
    _warn_unmatched(path, column, int(out.sum()), len(log))
    return out


def _warn_unmatched(path: Path, column: str, matched: int, rows: int) -> None:
    """Warn when few or none of the log's rows name a live item of the store: the head/tail split then says little."""
    if matched == 0:
        logger.warning("none of the %d rows of --interactions %s names a live item of the store (column %r); the "
                       "head/tail split is arbitrary: check --item and that the log is of this catalogue",
                       rows, path, column)
    elif matched < FEW_MATCHED * rows:
        logger.warning("only %d of the %d rows (%.1f%%) of --interactions %s name a live item of the store; the "
                       "head/tail split counts those only", matched, rows, 100 * matched / rows, path)


def head_tail(gen: Generation, counts: np.ndarray) -> dict:
    """Distinct length-l prefixes used by the most popular 10% of live items against the rest, l = 1..L."""
    codes = gen.codes[gen.live]
    order = np.argsort(-counts, kind="stable")
    n_head = int(np.ceil(HEAD_SHARE * len(codes)))
    head = np.zeros(len(codes), dtype=bool)
    head[order[:n_head]] = True
    levels = []
    for l in range(1, codes.shape[1] + 1):
        sizes = [int(v) for v in codes[:, :l].max(0) + 1] if len(codes) else [1] * l
        keys = prefix_keys(codes[:, :l], sizes)
        h, t, every = (len(np.unique(keys[m])) for m in (head, ~head, np.ones(len(keys), dtype=bool)))
        levels.append({"level": l, "head_prefixes": h, "tail_prefixes": t, "all_prefixes": every,
                       "head_share": h / every if every else 0.0,
                       "head_prefixes_per_item": h / max(1, n_head),
                       "tail_prefixes_per_item": t / max(1, len(codes) - n_head)})
    return {"head_items": n_head, "tail_items": len(codes) - n_head,
            "head_interactions_share": float(counts[head].sum() / max(1, counts.sum())), "levels": levels}
