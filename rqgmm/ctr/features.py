"""CTR features from a declared :class:`~rqgmm.ctr.spec.FeatureSpec`: fit, transform, save, load.

Every declared column is a field, found in the interaction rows, the user table
or the item table (in that order). Vocabularies are fitted on the training rows
only and reserve index 0 for values never seen there: an item absent from
training shares the item-id row 0 with every other cold item and is told apart
only by its item-table fields and its content (:mod:`rqgmm.ctr.content`).

Fields of the user and item tables are encoded once per user / item at fit time
and gathered per row, so a saved builder (JSON plus safetensors, never pickle)
scores new interaction rows without the original tables.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_output
from ..errors import InputError
from .content import ItemContent, item_keys
from .spec import FeatureSpec, FieldSpec
from .vocabulary import Vocabulary, as_strings

logger = logging.getLogger(__name__)

CONFIG_NAME = "features.json"
TENSORS_NAME = "features.safetensors"
SOURCES = ("row", "user", "item")


@dataclass
class CTRTensors:
    """All rows of one interactions frame, built once.

    Attributes
    ----------
    fields : dict of str → Tensor
        Per-row values: categorical (N,) int64, bag (N, G) int64 (0 = padding),
        numeric (N, 1) float32.
    dense : dict of str → (Tensor (M, D) float32, Tensor (N,) int64)
        Dense content kept per item and gathered per batch, so a 768-d vector is
        not copied per row.
    labels : Tensor (N,) float32, or None
    """

    fields: dict[str, torch.Tensor]
    dense: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(next(iter(self.fields.values())).shape[0])

    def batch(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """The model inputs of the rows ``index``: field name → tensor with B rows."""
        out = {name: values[index] for name, values in self.fields.items()}
        out.update({name: table[rows[index]] for name, (table, rows) in self.dense.items()})
        return out

    def to(self, device: str | torch.device) -> "CTRTensors":
        """A copy with every tensor on ``device``."""
        return CTRTensors({k: v.to(device) for k, v in self.fields.items()},
                          {k: (t.to(device), r.to(device)) for k, (t, r) in self.dense.items()},
                          None if self.labels is None else self.labels.to(device))


# ----------------------------------------------------------------------------- encoding


def _as_list(value, column: str) -> list:
    """One row's list value; None or NaN → empty."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    raise InputError(f"bag column {column!r} must hold a list per row, got {type(value).__name__} {value!r}; "
                     "split such strings into lists first")


def _flat_bag(values: pd.Series, column: str) -> tuple[list[list], list]:
    lists = [_as_list(v, column) for v in values]
    return lists, [x for row in lists for x in row]


def _padded(lists: list[list], vocab: Vocabulary) -> np.ndarray:
    """Padded indices, shape (N, G_max) int64, 0 = padding or unseen."""
    width = max([len(row) for row in lists] + [1])
    matrix = np.zeros((len(lists), width), np.int64)
    for i, row in enumerate(lists):
        matrix[i, : len(row)] = vocab.lookup(row) if row else []
    return matrix


def _numeric(values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    if np.isinf(numbers).any():
        raise InputError(f"numeric column {column!r} holds Inf values; clip or drop them")
    return numbers


def _take(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` with zeros (OOV, padding, mean) where ``rows`` is -1."""
    padded = np.concatenate([matrix, np.zeros((1, *matrix.shape[1:]), matrix.dtype)])
    return padded[np.where(rows < 0, len(matrix), rows)]


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


# ----------------------------------------------------------------------------- builder


class FeatureBuilder:
    """Fit field vocabularies on training rows; turn interaction rows into tensors by field name.

    Parameters
    ----------
    spec : FeatureSpec

    Attributes
    ----------
    fields : list of FieldSpec
        In order: the user id, the item id, categorical, bag and numeric fields,
        then each content's fields (code levels or one dense field).
    sources : dict of str → {"row", "user", "item"}
        Where each declared column was found.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.fields: list[FieldSpec] = []
        self.sources: dict[str, str] = {}
        self.vocabs: dict[str, Vocabulary] = {}
        self.stats: dict[str, tuple[float, float]] = {}
        self.entities: dict[str, tuple[pd.Index, dict[str, np.ndarray]]] = {}
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
        self.vocabs = {spec.user: Vocabulary(train[spec.user]), spec.item: Vocabulary(train[spec.item])}
        raw = {c: self._raw(train, c, tables) for c in self.sources}
        self.vocabs.update({c: Vocabulary(raw[c]) for c in spec.categorical})
        self.vocabs.update({c: Vocabulary(_flat_bag(raw[c], c)[1]) for c in spec.bag})
        self.stats = {c: self._moments(_numeric(raw[c], c)) for c in spec.numeric}
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
        """Raw values of ``column`` per row of ``frame`` (joined from its table), NaN where absent."""
        kind = self.sources[column]
        if kind == "row":
            return frame[column]
        return tables[kind][column].reindex(as_strings(frame[self._key(kind)]))

    @staticmethod
    def _moments(values: np.ndarray) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if not len(finite):
            return 0.0, 1.0
        std = float(finite.std())
        return float(finite.mean()), std if std > 0 else 1.0

    def _encode(self, column: str, values: pd.Series) -> np.ndarray:
        """Encoded values: categorical (N,) int64, bag (N, G) int64, numeric (N, 1) float32."""
        if column in self.stats:
            mean, std = self.stats[column]
            z = (_numeric(values, column) - mean) / std
            return np.nan_to_num(z, nan=0.0).astype(np.float32)[:, None]
        if column in self.spec.bag:
            return _padded(_flat_bag(values, column)[0], self.vocabs[column])
        return self.vocabs[column].lookup(values)

    def _encode_entity(self, kind: str, table: pd.DataFrame) -> tuple[pd.Index, dict[str, np.ndarray]]:
        columns = [c for c, source in self.sources.items() if source == kind]
        return table.index, {c: self._encode(c, table[c]) for c in columns}

    def _field_specs(self) -> list[FieldSpec]:
        spec, d = self.spec, self.spec.embedding_dim
        fields = [FieldSpec(c, len(self.vocabs[c]), d) for c in (spec.user, spec.item, *spec.categorical)]
        fields += [FieldSpec(c, len(self.vocabs[c]), d, kind="bag") for c in spec.bag]
        fields += [FieldSpec(c, 0, d, kind="dense", input_dim=1) for c in spec.numeric]
        return fields + [f for content in self.content for f in content.fields(d)]

    # ------------------------------------------------------------ transform

    def transform(self, interactions: pd.DataFrame) -> CTRTensors:
        """Turn interaction rows into model tensors, one entry per field name.

        Parameters
        ----------
        interactions : DataFrame, N rows
            The spec's user and item columns, the row-level declared columns
            and, if labelled, the label (0/1).

        Returns
        -------
        CTRTensors
            ``fields`` per row, ``dense`` content per item, ``labels`` (N,) or None.

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
        fields = {c: self.vocabs[c].lookup(interactions[c]) for c in (spec.user, spec.item)}
        fields.update({c: self._encode(c, interactions[c]) for c in row_columns})
        for kind, (keys, encoded) in self.entities.items():
            rows = keys.get_indexer(as_strings(interactions[self._key(kind)])).astype(np.int64)
            fields.update({c: _take(values, rows) for c, values in encoded.items()})
        items, dense = item_keys(interactions[spec.item]), {}
        for content in self.content:
            rows = content.rows(items)
            if content.is_codes:
                fields.update({name: content.values[rows, level] for level, name in enumerate(content.field_names)})
            else:
                dense[content.name] = (torch.from_numpy(content.values), torch.from_numpy(rows))
        ordered = {f.name: torch.from_numpy(np.ascontiguousarray(fields[f.name])) for f in self.fields
                   if f.name in fields}
        return CTRTensors(ordered, dense, _labels(interactions, spec.label))

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
                      entities={kind: keys.tolist() for kind, (keys, _) in self.entities.items()},
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
        builder.entities = {kind: (pd.Index(keys, dtype=object).astype(str),
                                   {c: tensors[f"{kind}/{c}"] for c, s in builder.sources.items() if s == kind})
                            for kind, keys in config["entities"].items()}
        builder.content = [ItemContent(c["name"], np.asarray(c["ids"], dtype=str), tensors[f"content/{c['name']}"],
                                       c["codebook_sizes"]) for c in config["content"]]
        builder.fields = builder._field_specs()
        return builder
