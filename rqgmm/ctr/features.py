"""CTR features: field records, vocabularies fitted on training rows, and tensors.

Every content variant gets the same base fields: ``user_id``, each user field,
``item_id`` and the item's genres (a multi-hot bag). Content adds either one
categorical field per semantic-ID level (``c1..cL``, vocabulary ``K_l``) or one
dense field (the item embedding, projected by the model).

Id-like vocabularies are built from the training rows only and reserve index 0
for values never seen there. An item absent from training therefore shares the
``item_id`` row 0 with every other cold item and is told apart only by its
content; that is what semantic IDs are for. Content exists for every item, cold
ones included, so code fields and embeddings are looked up per item, never
through the training vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

FieldKind = Literal["categorical", "bag", "dense"]


@dataclass(frozen=True)
class FieldSpec:
    """One input field of a CTR model.

    Parameters
    ----------
    name : str
        Field name, e.g. ``"item_id"`` or ``"c2"``.
    vocab_size : int
        Rows of the field's embedding table (index 0 included); 0 for dense.
    dim : int
        Width of the field's embedding.
    kind : {"categorical", "bag", "dense"}
        ``categorical``: one index per row; ``bag``: a padded list of indices,
        mean-pooled (0 is padding); ``dense``: a float vector, projected.
    input_dim : int
        Width of the raw dense vector (``dense`` only, else 0).
    """

    name: str
    vocab_size: int
    dim: int
    kind: FieldKind = "categorical"
    input_dim: int = 0


@dataclass(frozen=True)
class FeatureBatch:
    """The model inputs for B rows.

    Attributes
    ----------
    categorical : torch.Tensor, shape (B, F_cat), int64
    genres : torch.Tensor, shape (B, G), int64, 0 = padding
    dense : torch.Tensor, shape (B, D), float32, or None
    """

    categorical: torch.Tensor
    genres: torch.Tensor
    dense: torch.Tensor | None = None


@dataclass
class CTRTensors:
    """All rows of one interactions frame, pre-built once.

    The dense content is kept per item (``dense_table``) and gathered per
    batch through ``dense_rows`` so a 768-d embedding is not copied per row.

    Attributes
    ----------
    categorical : torch.Tensor, shape (N, F_cat), int64
    genres : torch.Tensor, shape (N, G), int64, 0 = padding
    labels : torch.Tensor, shape (N,), float32, or None
    dense_table : torch.Tensor, shape (M, D), float32, or None
    dense_rows : torch.Tensor, shape (N,), int64 rows of ``dense_table``, or None
    """

    categorical: torch.Tensor
    genres: torch.Tensor
    labels: torch.Tensor | None = None
    dense_table: torch.Tensor | None = None
    dense_rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.categorical.shape[0])

    @property
    def dense(self) -> torch.Tensor | None:
        """The dense content per row, shape (N, D), or None."""
        return None if self.dense_table is None else self.dense_table[self.dense_rows]

    def batch(self, index: torch.Tensor | slice) -> FeatureBatch:
        """The model inputs for the rows ``index`` (an index tensor or a slice)."""
        dense = None
        if self.dense_table is not None:
            dense = self.dense_table[self.dense_rows[index]]
        return FeatureBatch(self.categorical[index], self.genres[index], dense)

    def to(self, device: str | torch.device) -> "CTRTensors":
        """A copy with every tensor on ``device``."""
        tensors = (self.categorical, self.genres, self.labels, self.dense_table, self.dense_rows)
        return CTRTensors(*(None if t is None else t.to(device) for t in tensors))


class Vocabulary:
    """Raw values → indices 1..n in order of first appearance; 0 = unseen.

    Parameters
    ----------
    values : array-like
        The values seen in training.
    """

    def __init__(self, values) -> None:
        self.index = pd.Index(pd.unique(np.asarray(values)))

    def __len__(self) -> int:
        """Table size, the OOV row 0 included."""
        return len(self.index) + 1

    def lookup(self, values) -> np.ndarray:
        """Indices of ``values``, shape (N,) int64; 0 for values never seen."""
        return self.index.get_indexer(np.asarray(values)).astype(np.int64) + 1


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} lacks the column(s) {missing}; it has {list(frame.columns)}"
        )


def _row_lookup(table_ids: pd.Index, ids: np.ndarray) -> np.ndarray:
    """Rows of ``ids`` in ``table_ids``, shape (N,) int64; -1 where absent."""
    return table_ids.get_indexer(ids).astype(np.int64)


def _take_or_zero(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``table[rows]`` with all-zero (OOV / padding) rows where ``rows`` is -1."""
    padded = np.vstack([table, np.zeros((1, table.shape[1]), table.dtype)])
    return padded[np.where(rows < 0, len(table), rows)]


def _unique_ids(ids, what: str, column: str = "item_id") -> pd.Index:
    index = pd.Index(np.asarray(ids))
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise InputError(f"{what} has duplicate {column} values {dup}; keep one row per id")
    return index


def _as_genre_list(value) -> list:
    """One item's genres as a list; None or NaN → no genres."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    raise InputError(
        f"genres must be a list of str per item, got {type(value).__name__} {value!r}; "
        "split genre strings into lists first"
    )


def _missing_content(rows: np.ndarray, ids: np.ndarray, what: str) -> None:
    if (rows < 0).any():
        absent = pd.unique(ids[rows < 0])
        raise InputError(
            f"{len(absent)} item_id value(s) in the interactions are missing from the "
            f"{what} (first: {absent[:5].tolist()}); encode every item, cold ones included"
        )


def _check_codes(codes: pd.DataFrame, codebook_sizes: Sequence[int]) -> np.ndarray:
    """Validate a codes table and return its code matrix, shape (M, L) int64."""
    columns = [f"c{level + 1}" for level in range(len(codebook_sizes))]
    _require_columns(codes, ["item_id", *columns], "the codes table")
    if f"c{len(columns) + 1}" in codes.columns:
        raise InputError(
            f"the codes table has more levels than the {len(columns)} codebook_sizes given; "
            "pass one size per level"
        )
    matrix = codes[columns].to_numpy()
    if not np.issubdtype(matrix.dtype, np.integer):
        raise InputError(f"codes must be integers, got {matrix.dtype}; pass the int64 table from encode")
    for level, size in enumerate(codebook_sizes):
        col = matrix[:, level]
        if len(col) and (col.min() < 0 or col.max() >= size):
            raise InputError(
                f"codes at level {level + 1} must lie in [0, {size}), got values in "
                f"[{col.min()}, {col.max()}]; pass the codebook sizes the tokenizer used"
            )
    return matrix.astype(np.int64)


def _check_embeddings(item_embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(item_ids (M,), vectors (M, D))`` and return them as numpy arrays."""
    try:
        item_ids, vectors = item_embeddings
    except (TypeError, ValueError):
        raise InputError("item_embeddings must be a pair (item_ids (M,), vectors (M, D))") from None
    item_ids, vectors = np.asarray(item_ids), np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or item_ids.shape != (vectors.shape[0],):
        raise InputError(
            f"item_embeddings must be item_ids (M,) and vectors (M, D), got shapes "
            f"{item_ids.shape} and {vectors.shape}"
        )
    if not np.isfinite(vectors).all():
        raise InputError("item_embeddings have NaN or Inf values; drop or impute those items")
    return item_ids, vectors


class FeatureBuilder:
    """Fit field vocabularies on training rows; turn interactions into tensors.

    Parameters
    ----------
    user_fields : sequence of str
        Categorical columns of the ``users`` table to use (may be empty).
    embedding_dim : int
        Width ``d`` of every field's embedding.

    Attributes
    ----------
    fields : list of FieldSpec
        In input order: ``user_id``, user fields, ``item_id``, ``c1..cL``
        (categorical), ``genres`` (bag), then ``content`` (dense) if given.
    """

    def __init__(self, user_fields: Sequence[str] = (), embedding_dim: int = 16) -> None:
        if embedding_dim < 1:
            raise InputError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.user_fields = list(user_fields)
        self.embedding_dim = int(embedding_dim)
        self.fields: list[FieldSpec] = []

    def fit(
        self,
        train: pd.DataFrame,
        users: pd.DataFrame,
        items: pd.DataFrame,
        *,
        codes: pd.DataFrame | None = None,
        codebook_sizes: Sequence[int] | None = None,
        item_embeddings: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "FeatureBuilder":
        """Build vocabularies from ``train`` and per-item content tables.

        Parameters
        ----------
        train : DataFrame
            Training interactions with ``user_id``, ``item_id``, ``label``.
        users : DataFrame
            ``user_id`` plus the ``user_fields`` columns.
        items : DataFrame
            ``item_id`` plus ``genres`` (a list of str per item).
        codes : DataFrame, optional
            ``item_id``, ``c1..cL`` int64: the semantic-ID variant.
        codebook_sizes : list of int, optional
            ``K_l`` per level; required with ``codes``.
        item_embeddings : (ndarray (M,), ndarray (M, D)), optional
            Item ids and their content vectors: the direct-embedding variant.

        Returns
        -------
        self
        """
        _require_columns(train, ["user_id", "item_id"], "the training interactions")
        _require_columns(users, ["user_id", *self.user_fields], "the users table")
        _require_columns(items, ["item_id", "genres"], "the items table")
        if codes is not None and item_embeddings is not None:
            raise InputError("pass codes or item_embeddings, not both: one content variant per model")
        if (codes is None) != (codebook_sizes is None):
            raise InputError("codes and codebook_sizes go together; pass both or neither")
        self._fit_ids(train, users, items)
        self._fit_content(codes, codebook_sizes, item_embeddings)
        self.fields = self._field_specs()
        logger.debug("CTR fields: %s", [(f.name, f.vocab_size) for f in self.fields])
        return self

    def _fit_ids(self, train: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> None:
        self.user_vocab = Vocabulary(train["user_id"])
        self.item_vocab = Vocabulary(train["item_id"])
        self._users = _unique_ids(users["user_id"], "the users table", "user_id")
        seen_users = users[users["user_id"].isin(self.user_vocab.index)]
        self.user_field_vocabs = [Vocabulary(seen_users[f].astype(str)) for f in self.user_fields]
        columns = [v.lookup(users[f].astype(str)) for v, f in zip(self.user_field_vocabs, self.user_fields)]
        self._user_codes = (np.stack(columns, axis=1) if columns
                            else np.zeros((len(users), 0), np.int64))
        self._items = _unique_ids(items["item_id"], "the items table")
        seen_items = items[items["item_id"].isin(self.item_vocab.index)]
        seen_genres = [g for value in seen_items["genres"] for g in _as_genre_list(value)]
        self.genre_vocab = Vocabulary(seen_genres)
        self._item_genres = self._genre_matrix(items["genres"])

    def _genre_matrix(self, genres: pd.Series) -> np.ndarray:
        """Padded genre indices per item, shape (M, G_max) int64, 0 = padding."""
        lists = [self.genre_vocab.lookup(_as_genre_list(g)) for g in genres]
        width = max([len(g) for g in lists] + [1])
        matrix = np.zeros((len(lists), width), np.int64)
        for row, g in enumerate(lists):
            matrix[row, : len(g)] = g
        return matrix

    def _fit_content(self, codes, codebook_sizes, item_embeddings) -> None:
        self.codebook_sizes = [int(k) for k in codebook_sizes] if codebook_sizes is not None else []
        self._content_items: pd.Index | None = None
        self._codes = self._vectors = None
        if codes is not None:
            self._codes = _check_codes(codes, self.codebook_sizes)
            self._content_items = _unique_ids(codes["item_id"], "the codes table")
        if item_embeddings is not None:
            item_ids, self._vectors = _check_embeddings(item_embeddings)
            self._content_items = _unique_ids(item_ids, "item_embeddings")

    def _field_specs(self) -> list[FieldSpec]:
        d = self.embedding_dim
        fields = [FieldSpec("user_id", len(self.user_vocab), d)]
        fields += [FieldSpec(f, len(v), d) for f, v in zip(self.user_fields, self.user_field_vocabs)]
        fields.append(FieldSpec("item_id", len(self.item_vocab), d))
        fields += [FieldSpec(f"c{i + 1}", k, d) for i, k in enumerate(self.codebook_sizes)]
        fields.append(FieldSpec("genres", len(self.genre_vocab), d, kind="bag"))
        if self._vectors is not None:
            fields.append(FieldSpec("content", 0, d, kind="dense", input_dim=self._vectors.shape[1]))
        return fields

    def transform(self, interactions: pd.DataFrame) -> CTRTensors:
        """Turn an interactions frame into model tensors.

        Parameters
        ----------
        interactions : DataFrame, N rows
            ``user_id``, ``item_id`` and, if labelled, ``label`` (0/1).

        Returns
        -------
        CTRTensors
            ``categorical`` (N, F_cat), ``genres`` (N, G), ``labels`` (N,) or
            None, and the dense content when the builder has one.

        Raises
        ------
        InputError
            If an item has no row in the codes or embedding table, or the
            labels are not 0/1.
        """
        if not self.fields:
            raise InputError("the FeatureBuilder is not fitted; call fit(train, users, items) first")
        _require_columns(interactions, ["user_id", "item_id"], "the interactions")
        user_ids = interactions["user_id"].to_numpy()
        item_ids = interactions["item_id"].to_numpy()
        categorical = [self.user_vocab.lookup(user_ids)[:, None], self._user_columns(user_ids),
                       self.item_vocab.lookup(item_ids)[:, None]]
        content_rows = self._content_rows(item_ids)
        if self._codes is not None:
            categorical.append(self._codes[content_rows])
        return CTRTensors(
            categorical=torch.from_numpy(np.concatenate(categorical, axis=1)),
            genres=torch.from_numpy(self._genre_rows(item_ids)),
            labels=_labels(interactions),
            dense_table=None if self._vectors is None else torch.from_numpy(self._vectors),
            dense_rows=None if self._vectors is None else torch.from_numpy(content_rows),
        )

    def _user_columns(self, user_ids: np.ndarray) -> np.ndarray:
        """User-field indices per row, shape (N, n_user_fields); 0 for unknown users."""
        return _take_or_zero(self._user_codes, _row_lookup(self._users, user_ids))

    def _genre_rows(self, item_ids: np.ndarray) -> np.ndarray:
        rows = _row_lookup(self._items, item_ids)
        if (rows < 0).any():
            logger.warning("%d interaction rows have items missing from the items table; "
                           "they get no genres", int((rows < 0).sum()))
        return _take_or_zero(self._item_genres, rows)

    def _content_rows(self, item_ids: np.ndarray) -> np.ndarray:
        if self._content_items is None:
            return np.zeros(len(item_ids), np.int64)
        rows = _row_lookup(self._content_items, item_ids)
        _missing_content(rows, item_ids, "codes table" if self._codes is not None else "item_embeddings")
        return rows


def _labels(interactions: pd.DataFrame) -> torch.Tensor | None:
    if "label" not in interactions.columns:
        return None
    labels = interactions["label"].to_numpy()
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise InputError(
            f"label must be 0 or 1, got values {np.unique(labels)[:5].tolist()}; "
            "binarise it first (e.g. rating >= 4 -> 1)"
        )
    return torch.from_numpy(labels.astype(np.float32))
