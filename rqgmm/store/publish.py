"""Publishing a catalogue into a generations store: the append-only rules, one generation at a time.

:func:`publish` reads the store's current generation and the catalogue's item
ids, then:

- items already published keep their full ID, whatever the model (only the new
  items are encoded, so published IDs never depend on it);
- published items missing from the catalogue are retired (marked, never
  deleted); a retired item that comes back is revived with its old full ID
  (a new one only where ``reuse_retired`` gave its slot away meanwhile);
- new items get the model's codes as their prefix and a suffix slot of it
  (:mod:`rqgmm.store.allocation`): never a slot handed out before, unless
  ``reuse_retired``; with a cap, those that do not fit fall back to the
  nearest prefix with room (:mod:`rqgmm.store.nearest`);
- the generation file, its delta and its exports are written, then the
  manifest (:mod:`rqgmm.store.generations`), all under the store's lock.

Nothing is written before every input has been checked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.store import allocation as alloc
from rqgmm.errors import InputError
from rqgmm.store.exports import write_exports
from rqgmm.store.generations import (Generation, Store, codes_metadata, delta_file, export_dir, generation_file,
                                     generation_files, locked, now, remove_stale_temporaries, write_generation)
from rqgmm.files.formats import embedding_batches, item_id_column
from rqgmm.files.columns import check_named_once
from rqgmm.files.itemjoin import positions
from rqgmm.ids.keys import key_strides, row_keys
from rqgmm.store.nearest import nearest_codes, reconstruction_cost
from rqgmm.runtime.validation import checked_batches

logger = logging.getLogger(__name__)

BATCH_ROWS = 1 << 18  # catalogue rows per record batch


@dataclass(frozen=True)
class PublishConfig:
    """How to publish.

    max_per_prefix : slots per prefix at most (None: no cap)
    reuse_retired : new items may take the slots of retired items
    suffix : full IDs carry a suffix (fixed when the store is created)
    command : the command line, recorded in the manifest
    item : the catalogue's item id column
    embedding : the catalogue's embedding column(s) (None: the model's, else ``embedding``)
    """

    max_per_prefix: int | None = None
    reuse_retired: bool = False
    suffix: bool = True
    command: list[str] = field(default_factory=list)
    item: str = "item_id"
    embedding: tuple[str, ...] | None = None


def publish(store_path: str | Path, model, fingerprint: str, catalogue: str | Path,
            config: PublishConfig = PublishConfig()) -> dict:
    """Publish the items of ``catalogue`` (a parquet of ``item_id`` and embeddings) as the next generation.

    Returns the new generation's manifest entry.
    """
    catalogue = Path(catalogue)
    if catalogue.suffix != ".parquet":
        raise InputError(f"{catalogue}: publishing needs item ids; pass a .parquet with item_id and embedding columns")
    item_ids = _catalogue_ids(catalogue, config.item)
    Store.open(store_path)  # a folder that is no store is refused before a lock file is made in it
    with locked(store_path):
        store = Store.open(store_path)
        if not store.is_new:
            store.verify([store.current])  # every file serving loads, before anything builds on them
        settings = _settings(store, model, config)
        store_sizes = settings["codebook_sizes"]
        _check_cap_size(config.max_per_prefix, store_sizes)
        parent = store.read() if not store.is_new else Generation.empty(model.levels, config.suffix, item_ids.dtype)
        _check_id_kind(parent.item_ids, item_ids, catalogue, store.path)
        gen = 1 if store.is_new else store.current["generation"] + 1
        old, revived, new_rows, counts = _carry_over(parent, item_ids, gen, store_sizes)
        slots = alloc.store_slots(alloc.prefix_keys(old.codes, store_sizes), old.suffix, old.live,
                                  config.reuse_retired, store_sizes)
        alloc.check_cap(slots, config.max_per_prefix, store_sizes)
        X = _embeddings(catalogue, new_rows, model, config.embedding)
        new = _new_items(model, X, item_ids[new_rows], slots, config, store_sizes, gen)
        del X, slots, item_ids
        table = Generation.concat([old, new])
        counts.update(items=len(table), live=int(table.live.sum()), new=len(new), fallbacks=int(new.fallback.sum()))
        delta = Generation.concat([new, old.select(np.flatnonzero(old.retired == gen)),
                                   old.select(np.flatnonzero(revived))])
        del parent, old, new  # the peak comes with the exports: hold one copy of the rows by then
        return _write(store, settings, table, delta, fingerprint, gen, counts, config)


def _check_id_kind(held: np.ndarray, ids: np.ndarray, catalogue: Path, store: Path) -> None:
    """Refuse a catalogue whose item ids are text where the store's are integers, or the reverse."""
    def kind(values: np.ndarray) -> str:
        return "integer" if values.dtype.kind in "iu" else "text"

    if len(held) and kind(held) != kind(ids):
        raise InputError(f"{catalogue} has {kind(ids)} item ids, {store} holds {kind(held)} ones; publish a "
                         f"catalogue with the store's {kind(held)} ids")


def _check_cap_size(cap: int | None, sizes: list[int]) -> None:
    """Refuse a cap whose IDs (cap per prefix) could not be keyed in an int64: it would overflow the allocation."""
    prefixes = math.prod(sizes)
    if cap is not None and cap * prefixes > 2 ** 62:
        raise InputError(f"--max-per-prefix {cap} times the {prefixes:,} prefixes is more than 2**62 IDs, more than "
                         f"a store indexes; pass a cap of at most {2 ** 62 // prefixes:,}")


def _catalogue_ids(path: Path, item: str = "item_id") -> np.ndarray:
    """The catalogue's item ids (N,) from column ``item``: present, of one type, no nulls, no repeats."""
    try:
        schema = pq.read_schema(path)
        if item not in schema.names:
            raise InputError(f"{path} lacks column {item!r}; publishing keys items by it (name it with --item)")
        check_named_once(schema.names, [item], path)
        column = pq.read_table(path, columns=[item]).column(item)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable parquet file of embeddings ({exc})") from None
    ids = item_id_column(column, path)
    if not len(ids):
        raise InputError(f"{path} holds no items; publish at least one")
    return ids


def _settings(store: Store, model, config: PublishConfig) -> dict:
    """The store's fixed settings; refuse a model or a suffix choice that differs from an existing store's."""
    ours = {"method": model.method, "levels": int(model.levels), "codebook_sizes": [int(k) for k in model.codebook_sizes],
            "suffix": config.suffix}
    key_strides(ours["codebook_sizes"])
    if store.is_new:
        return ours
    theirs = {k: store.manifest[k] for k in ours}
    if {k: theirs[k] for k in ("method", "levels", "codebook_sizes")} != \
            {k: ours[k] for k in ("method", "levels", "codebook_sizes")}:
        raise InputError(f"{store.path} holds IDs of a {theirs['method']} model with {theirs['levels']} levels of "
                         f"sizes {theirs['codebook_sizes']}, the model is {ours['method']} with {ours['levels']} of "
                         f"{ours['codebook_sizes']}; publish with a model of the store's method, levels and sizes")
    if theirs["suffix"] != config.suffix:
        raise InputError(f"{store.path} was created {'with' if theirs['suffix'] else 'without'} suffixes; "
                         f"{'drop' if theirs['suffix'] else 'add'} --no-suffix")
    return theirs


def _carry_over(parent: Generation, item_ids: np.ndarray, gen: int,
                sizes: list[int]) -> tuple[Generation, np.ndarray, np.ndarray, dict]:
    """The parent's rows with this generation's retirements and revivals, the mask of the revived ones among
    them, and the catalogue rows (M,) to publish.

    A revived item whose slot a live item holds (possible only with reused slots) is published anew.
    """
    found, position = positions(item_ids, parent.item_ids)
    known = position[found]
    in_catalogue = np.zeros(len(parent), dtype=bool)
    in_catalogue[known] = True
    retired = parent.retired.copy()
    retiring = (retired == 0) & ~in_catalogue
    reviving = (retired > 0) & in_catalogue
    retired[retiring] = gen
    retired[reviving] = 0
    old = Generation(parent.item_ids, parent.codes, parent.suffix, parent.born, retired, parent.fallback)
    clash = _slot_taken(old, reviving, sizes)
    new_rows = np.flatnonzero(~found)
    if clash.any():
        new_rows = np.sort(np.r_[new_rows, np.flatnonzero(found)[np.isin(known, np.flatnonzero(clash))]])
        old, reviving = old.select(np.flatnonzero(~clash)), reviving[~clash]
    counts = {"retired": int(retiring.sum()), "revived": int(reviving.sum()), "renumbered_revived": int(clash.sum())}
    return old, reviving, new_rows, counts


def _slot_taken(gen: Generation, reviving: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Mask (N,) of reviving rows whose full ID some other live row holds."""
    if gen.suffix is None or not reviving.any():
        return np.zeros(len(gen), dtype=bool)
    keys = row_keys(gen.full_ids(), [*sizes, int(gen.suffix.max()) + 1])
    return reviving & np.isin(keys, keys[(gen.retired == 0) & ~reviving])


def _embeddings(path: Path, rows: np.ndarray, model, columns: tuple[str, ...] | None = None) -> np.ndarray:
    """Embeddings (M, D) of the catalogue rows ``rows`` (sorted); every row of the file is checked finite.

    The item ids are not read again (:func:`_catalogue_ids` has them).
    """
    columns = tuple(columns or getattr(model, "embedding_columns_", None) or ("embedding",))
    batches = embedding_batches(path, columns, BATCH_ROWS, with_ids=False)
    parts, offset = [], 0
    for _, X in checked_batches(batches, model.n_features_in_, str(path)):
        lo, hi = np.searchsorted(rows, [offset, offset + len(X)])
        parts.append(np.asarray(X[rows[lo:hi] - offset], dtype=np.float32))
        offset += len(X)
    return np.concatenate(parts) if parts else np.zeros((0, model.n_features_in_), dtype=np.float32)


def _new_items(model, X: np.ndarray, item_ids: np.ndarray, slots: alloc.Slots, config: PublishConfig,
               sizes: list[int], gen: int) -> Generation:
    """Full IDs of the new items: the model's codes, the cap's fallbacks, the suffixes."""
    codes = np.asarray(model.encode(X), dtype=np.int64) if len(X) else np.zeros((0, len(sizes)), dtype=np.int64)
    keys = alloc.prefix_keys(codes, sizes)
    own_cost = None
    if config.max_per_prefix is not None:
        own_cost = reconstruction_cost(model, X, codes)

    def candidates(rows: np.ndarray, beam: int) -> tuple[np.ndarray, np.ndarray]:
        cand, cost = nearest_codes(model, X[rows], beam)
        return alloc.prefix_keys(cand.reshape(-1, len(sizes)), sizes).reshape(cost.shape), cost

    full_beam = int(np.prod(sizes[:-1]))
    keys, fallback = alloc.place(keys, slots, config.max_per_prefix, own_cost, candidates, full_beam)
    suffix = alloc.assign_suffix(keys, slots) if config.suffix else None
    n = len(keys)
    return Generation(item_ids, alloc.codes_of_keys(keys, sizes), suffix, np.full(n, gen, dtype=np.int64),
                      np.zeros(n, dtype=np.int64), fallback)


def _write(store: Store, settings: dict, table: Generation, delta: Generation, fingerprint: str, gen: int,
           counts: dict, config: PublishConfig) -> dict:
    """Write the generation, its delta and exports, then commit the manifest; returns the entry.

    The full IDs' vocabulary is checked before any file is written, and a failure before the commit removes
    the files this publish wrote (no manifest names them): a refused publish leaves the store as it was.
    """
    suffix_size = _suffix_size(store, table, config)
    vocab_sizes = [*settings["codebook_sizes"], *([suffix_size] if config.suffix else [])]
    key_strides(vocab_sizes)  # full IDs fit one int64 key (a huge --max-per-prefix is refused here)
    files = generation_files(gen)
    try:
        counts.update(suffix_size=suffix_size if config.suffix else None,
                      **_write_files(store, settings, table, delta, fingerprint, gen, counts, vocab_sizes, config))
        entry = {"generation": gen, "parent": gen - 1 or None, "fingerprint": fingerprint, "counts": counts,
                 "max_per_prefix": config.max_per_prefix, "reuse_retired": config.reuse_retired,
                 "command": list(config.command), "time": now(), "files": files}
        store.commit(settings, entry)
    except BaseException:
        if not _committed(store.path, gen):  # no manifest names them
            _remove(store.path, files)
        raise
    stale = remove_stale_temporaries(store.path)  # a killed publish's leftovers: the lock says none is ours
    if stale:
        logger.info("removed %d temporary file(s) a killed publish left in %s", len(stale), store.path)
    logger.info("published generation %d to %s: %d new, %d retired, %d revived, %d fallbacks; %d live of %d items",
                gen, store.path, counts["new"], counts["retired"], counts["revived"], counts["fallbacks"],
                counts["live"], counts["items"])
    return store.current


def _write_files(store: Store, settings: dict, table: Generation, delta: Generation, fingerprint: str, gen: int,
                 counts: dict, vocab_sizes: list[int], config: PublishConfig) -> dict:
    """Write generation ``gen``'s table, delta and exports; returns the exports' counts."""
    write_generation(store.path / generation_file(gen), table, codes_metadata(settings, table, fingerprint))
    change = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat([0, 1, 2], [counts["new"], counts["retired"], counts["revived"]]).astype(np.int8)),
        pa.array(["new", "retired", "revived"]))
    write_generation(store.path / delta_file(gen), delta, codes_metadata(settings, delta, fingerprint),
                     {"change": change})
    keys = row_keys(table.codes, settings["codebook_sizes"])
    if config.suffix:
        keys = keys * vocab_sizes[-1] + table.suffix  # the key of (codes, suffix) under vocab_sizes
    live = table.live
    return write_exports(store.path / export_dir(gen), keys[live], table.item_ids[live], vocab_sizes, config.suffix)


def _committed(path: Path, gen: int) -> bool:
    """Whether the manifest at ``path`` names generation ``gen`` as current (a readable one only)."""
    try:
        return (Store.open(path).current or {}).get("generation") == gen
    except InputError:
        return False


def _remove(root: Path, files: list[str]) -> None:
    """Remove ``files`` under ``root`` (those that exist), and their export folder once empty."""
    for name in files:
        (root / name).unlink(missing_ok=True)
    for folder in {(root / name).parent for name in files} - {root / "generations", root / "deltas"}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _suffix_size(store: Store, table: Generation, config: PublishConfig) -> int:
    """The suffix vocabulary: never smaller than the parent's, the cap, or the largest suffix + 1."""
    previous = (store.current["counts"].get("suffix_size") or 0) if store.current else 0
    largest = int(table.suffix.max()) + 1 if table.suffix is not None and len(table) else 0
    return max(previous, largest, config.max_per_prefix or 0)
