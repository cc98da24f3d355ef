"""CTR features from a declared :class:`~rqgmm.ctr.spec.FeatureSpec`: fit, transform, save, load.

Every declared column is a field, found in the interaction rows, the user table
or the item table (in that order). Vocabularies are fitted on the training rows
only and reserve index 0 for values never seen there: an item absent from
training shares the item-id row 0 with every other cold item and is told apart
only by its item-table fields and its content (:mod:`rqgmm.ctr.content`).

Fields of the user and item tables are encoded once per user / item at fit time
and gathered per row, so a saved builder (JSON plus safetensors, never pickle)
scores new interaction rows without the original tables. Content is held once
per distinct item of the rows (:class:`~rqgmm.ctr.tensors.CTRTensors`).

This is the API for frames that fit in memory, a DataFrame adapter over
:mod:`rqgmm.ctr.log`: fitting encodes the training rows (their user- and
item-table fields joined on) as an :class:`~rqgmm.ctr.log.EncodedLog` and
reads its training vocabularies and numeric moments, so both inputs get them
from one place; ``rqgmm evaluate`` encodes its whole log the same way.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save_file

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.ctr.content import ItemContent, content_block, item_keys
from rqgmm.ctr.encoding import as_arrow, padded, standardised
from rqgmm.ctr.log import EncodedLog, ItemTable, LogColumns, LogEncoder
from rqgmm.ctr.spec import FeatureSpec, FieldSpec
from rqgmm.ctr.tensors import CTRTensors, FieldBlock
from rqgmm.ctr.vocabulary import Vocabulary, as_keys

logger = logging.getLogger(__name__)

CONFIG_NAME = "features.json"
TENSORS_NAME = "features.safetensors"
SOURCES = ("row", "user", "item")

# ----------------------------------------------------------------------------- encoding


def _bag(values, column: str) -> tuple[pa.Array, np.ndarray]:
    """A bag column's flat values and its per-row lengths (N,); a missing list is empty."""
    array = _bag_array(values, column)
    return array.flatten(), pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)


def _bag_array(values, column: str) -> pa.Array:
    """A bag column as a pyarrow list array (N,); a column of missing values only is empty lists."""
    try:
        array = as_arrow(values, column)
    except InputError:
        array = None
    if array is None or not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or
                             pa.types.is_null(array.type)):
        shown = next((v for v in values if not _missing(v)), None)
        raise InputError(f"bag column {column!r} must hold a list per row, got {type(shown).__name__} {shown!r}; "
                         "split such strings into lists first")
    return pa.nulls(len(array), pa.list_(pa.string())) if pa.types.is_null(array.type) else array


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _numeric(values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    if np.isinf(numbers).any():
        raise InputError(f"numeric column {column!r} holds Inf values; clip or drop them")
    return numbers


def _take(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` with zeros (OOV, padding, mean) where ``rows`` is -1."""
    with_zeros = np.concatenate([matrix, np.zeros((1, *matrix.shape[1:]), matrix.dtype)])
    return with_zeros[np.where(rows < 0, len(matrix), rows)]


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what} lack(s) the column(s) {missing}; it has {list(frame.columns)}")


def _labels(frame: pd.DataFrame, column: str) -> torch.Tensor | None:
    if column not in frame.columns:
        return None
    labels = frame[column].to_numpy()
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise InputError(f"label column {column!r} must hold 0 or 1, got values {pd.unique(labels)[:5].tolist()}; "
                         "binarise it first")
    return torch.from_numpy(labels.astype(np.float32))


def _rows_of(keys: pa.Array, values) -> np.ndarray:
    """Row of each of ``values`` (N,) in ``keys`` (M,), -1 where absent, int64."""
    found = pc.index_in(as_keys(values), value_set=keys, skip_nulls=False)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


# ----------------------------------------------------------------------------- builder


class FeatureBuilder:
    """Fit field vocabularies on training rows; turn interaction rows into model tensors.

    Parameters
    ----------
    spec : FeatureSpec

    Attributes
    ----------
    fields : list of FieldSpec
        Grouped by kind as the models read them: categorical (the user id, the
        item id, the categorical columns, then each content's code levels),
        bag, numeric, then each dense content.
    sources : dict of str → {"row", "user", "item"}
        Where each declared column was found.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.fields: list[FieldSpec] = []
        self.sources: dict[str, str] = {}
        self.vocabs: dict[str, Vocabulary] = {}
        self.stats: dict[str, tuple[float, float]] = {}
        self.entities: dict[str, tuple[pa.Array, dict[str, np.ndarray]]] = {}
        self.content: list[ItemContent] = []

    # ------------------------------------------------------------------ fit

    def fit(self, train: pd.DataFrame, *, users: pd.DataFrame | None = None, items: pd.DataFrame | None = None,
            content: Sequence[ItemContent] = ()) -> "FeatureBuilder":
        """Build vocabularies and statistics from ``train``, encode the user and item tables.

        Parameters
        ----------
        train : DataFrame, N rows
            Training interactions: the spec's user, item and label columns, and
            any declared column that lives on the row.
        users, items : DataFrame, optional
            Keyed by the spec's user / item column (one row per id).
        content : sequence of ItemContent
            Embedding and code tables, each covering every item.

        Returns
        -------
        self
        """
        spec = self.spec
        _require_columns(train, [spec.user, spec.item], "the training interactions")
        tables = {"row": train, "user": self._keyed(users, spec.user, "user"),
                  "item": self._keyed(items, spec.item, "item")}
        self.sources = {c: self._source(c, tables) for c in [*spec.categorical, *spec.bag, *spec.numeric]}
        log = self._training_log(train, {c: self._raw(train, c, tables) for c in self.sources})
        self.vocabs = {c: Vocabulary(log.dictionaries[c]) for c in (spec.user, *spec.categorical, *spec.bag)}
        self.vocabs[spec.item] = Vocabulary(log.items.keys[log.items.ids > 0].to_numpy())
        self.stats = dict(log.moments)
        self.entities = {kind: self._encode_entity(kind, tables[kind]) for kind in ("user", "item")
                         if tables[kind] is not None}
        self.content = list(content)
        self.fields = self._field_specs()
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise InputError(f"field names {names} repeat; give each content a name no column has")
        logger.debug("CTR fields: %s", [(f.name, f.vocab_size) for f in self.fields])
        return self

    @staticmethod
    def _keyed(table: pd.DataFrame | None, key: str, what: str) -> pd.DataFrame | None:
        if table is None:
            return None
        _require_columns(table, [key], f"the {what} table")
        keys = item_keys(table[key])
        if not keys.is_unique:
            raise InputError(f"the {what} table has duplicate {key} values "
                             f"{keys[keys.duplicated()].unique()[:5].tolist()}; keep one row per id")
        return table.set_axis(keys)

    @staticmethod
    def _source(column: str, tables: dict) -> str:
        for kind in SOURCES:
            if tables[kind] is not None and column in tables[kind].columns:
                return kind
        raise InputError(f"column {column!r} is in none of the tables (interactions"
                         + "".join(f", {k} table" for k in ("user", "item") if tables[k] is not None)
                         + "); check its name")

    def _key(self, kind: str) -> str:
        return self.spec.user if kind == "user" else self.spec.item

    def _raw(self, frame: pd.DataFrame, column: str, tables: dict) -> pd.Series:
        """Raw values of ``column`` per row of ``frame`` (joined from its table), missing where absent."""
        kind = self.sources[column]
        if kind == "row":
            return frame[column]
        table = tables[kind]
        rows = _rows_of(as_keys(table.index.to_numpy()), frame[self._key(kind)])
        values = table[column].to_numpy(dtype=object)
        return pd.Series(np.where(rows < 0, None, values[np.maximum(rows, 0)]) if len(values) else [None] * len(rows))

    def _training_log(self, train: pd.DataFrame, raw: dict[str, pd.Series]) -> EncodedLog:
        """``train`` (N rows, table fields joined as ``raw``) as a log ordered with every row a training row."""
        spec, n = self.spec, len(train)
        columns = LogColumns(spec.user, spec.item, spec.label, categorical=tuple(spec.categorical),
                             bag=tuple(spec.bag), numeric=tuple(spec.numeric))
        arrays = {spec.user: as_arrow(train[spec.user], spec.user), spec.item: as_arrow(train[spec.item], spec.item),
                  spec.label: pa.array(np.zeros(n, np.int8))}  # labels play no part in vocabularies
        arrays.update({c: as_arrow(raw[c], c) for c in spec.categorical})
        arrays.update({c: _bag_array(raw[c], c) for c in spec.bag})
        arrays.update({c: pa.array(_numeric(raw[c], c)) for c in spec.numeric})
        encoder = LogEncoder(columns, n)
        encoder.add(pa.table(arrays))
        keys = pc.unique(as_keys(arrays[spec.item]))
        log = encoder.finish(ItemTable(pd.Index(keys.to_numpy(zero_copy_only=False)), np.arange(len(keys))))
        return log.ordered(np.arange(n), n)

    def _encode(self, column: str, values) -> np.ndarray:
        """Encoded values: categorical (N,) int32, bag (N, G) int32, numeric (N,) float32."""
        if column in self.stats:
            return standardised(_numeric(values, column), *self.stats[column])
        if column in self.spec.bag:
            flat, lengths = _bag(values, column)
            return padded(self.vocabs[column].lookup(flat), lengths)
        return self.vocabs[column].lookup(values)

    def _encode_entity(self, kind: str, table: pd.DataFrame) -> tuple[pa.Array, dict[str, np.ndarray]]:
        columns = [c for c, source in self.sources.items() if source == kind]
        return as_keys(table.index.to_numpy()), {c: self._encode(c, table[c]) for c in columns}

    def _field_specs(self) -> list[FieldSpec]:
        spec, d = self.spec, self.spec.embedding_dim
        fields = [FieldSpec(c, len(self.vocabs[c]), d) for c in (spec.user, spec.item, *spec.categorical)]
        fields += [f for content in self.content for f in content.fields(d) if f.kind == "categorical"]
        fields += [FieldSpec(c, len(self.vocabs[c]), d, kind="bag") for c in spec.bag]
        fields += [FieldSpec(c, 0, d, kind="numeric", input_dim=1) for c in spec.numeric]
        return fields + [f for content in self.content for f in content.fields(d) if f.kind == "dense"]

    # ------------------------------------------------------------ transform

    def transform(self, interactions: pd.DataFrame) -> CTRTensors:
        """Turn interaction rows into model tensors.

        Parameters
        ----------
        interactions : DataFrame, N rows
            The spec's user and item columns, the row-level declared columns
            and, if labelled, the label (0/1).

        Returns
        -------
        CTRTensors
            Row fields per row, content per distinct item, ``labels`` (N,) or None.

        Raises
        ------
        InputError
            If a column is missing, an item has no content, or the labels are not 0/1.
        """
        if not self.fields:
            raise InputError("the FeatureBuilder is not fitted; call fit(train, ...) first")
        spec = self.spec
        row_columns = [c for c, source in self.sources.items() if source == "row"]
        _require_columns(interactions, [spec.user, spec.item, *row_columns], "the interactions")
        labels = _labels(interactions, spec.label)
        encoded = {c: self.vocabs[c].lookup(interactions[c]) for c in (spec.user, spec.item)}
        encoded.update({c: self._encode(c, interactions[c]) for c in row_columns})
        for kind, (keys, columns) in self.entities.items():
            rows = _rows_of(keys, interactions[self._key(kind)])
            encoded.update({c: _take(values, rows) for c, values in columns.items()})
        n = len(interactions)
        block = FieldBlock.build(n, np.stack([encoded[c] for c in (spec.user, spec.item, *spec.categorical)], 1),
                                 [encoded[c] for c in spec.bag],
                                 np.stack([encoded[c] for c in spec.numeric], 1) if spec.numeric else None)
        item_rows, distinct = pd.factorize(item_keys(interactions[spec.item]))
        return CTRTensors(block, content_block(self.content, pd.Index(distinct)),
                          torch.from_numpy(item_rows.astype(np.int64)), labels, [f.name for f in self.fields])

    def tensors(self, spec: FeatureSpec, content: Sequence[ItemContent], parts: Sequence[pd.DataFrame],
                device: str | torch.device = "cpu") -> tuple[list[FieldSpec], list[CTRTensors]]:
        """The fields and the tensors of ``parts`` (frames), as :meth:`EncodedLog.tensors` gives them for log parts.

        ``spec`` and ``content`` must be those the builder was fitted with; the
        tensors stay on the host (training places them on ``device``).
        """
        if spec != self.spec or [c.name for c in content] != [c.name for c in self.content]:
            raise InputError("the spec and content must be those the FeatureBuilder was fitted with; fit another")
        return self.fields, [self.transform(part) for part in parts]

    # ---------------------------------------------------------- save / load

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted builder to the directory ``path``: ``features.json`` and ``features.safetensors``."""
        if not self.fields:
            raise InputError("the FeatureBuilder is not fitted; call fit(train, ...) before save")
        tensors = {f"{kind}/{c}": torch.from_numpy(np.ascontiguousarray(v))
                   for kind, (_, encoded) in self.entities.items() for c, v in encoded.items()}
        tensors.update({f"content/{c.name}": torch.from_numpy(c.values) for c in self.content})
        config = dict(spec=self.spec.to_dict(), sources=self.sources,
                      vocabs={c: v.to_list() for c, v in self.vocabs.items()}, stats=self.stats,
                      entities={kind: keys.to_pylist() for kind, (keys, _) in self.entities.items()},
                      content=[dict(name=c.name, ids=c.keys.tolist(), codebook_sizes=c.codebook_sizes)
                               for c in self.content])
        with atomic_output(path, directory=True, marker=CONFIG_NAME) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(config))
            save_file(tensors, str(tmp / TENSORS_NAME))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureBuilder":
        """Read a builder written by :meth:`save`."""
        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise InputError(f"{path} holds no {CONFIG_NAME}; pass a directory written by FeatureBuilder.save")
        config = json.loads((path / CONFIG_NAME).read_text())
        tensors = {k: v.numpy() for k, v in load_file(str(path / TENSORS_NAME)).items()}
        builder = cls(FeatureSpec.from_dict(config["spec"]))
        builder.sources = config["sources"]
        builder.vocabs = {c: Vocabulary.from_list(v) for c, v in config["vocabs"].items()}
        builder.stats = {c: tuple(v) for c, v in config["stats"].items()}
        builder.entities = {kind: (pa.array(keys, pa.string()),
                                   {c: tensors[f"{kind}/{c}"] for c, s in builder.sources.items() if s == kind})
                            for kind, keys in config["entities"].items()}
        builder.content = [ItemContent(c["name"], np.asarray(c["ids"], dtype=str), tensors[f"content/{c['name']}"],
                                       c["codebook_sizes"]) for c in config["content"]]
        builder.fields = builder._field_specs()
        return builder
