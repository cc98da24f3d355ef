"""The declared feature specification, and the per-field records models are built from.

A :class:`FeatureSpec` names the columns a CTR model reads: the user and item
id columns, the label, and any number of categorical, bag (list) and numeric
columns. Each such column may live in the interaction rows, the user table or
the item table; the :class:`~rqgmm.ctr.features.FeatureBuilder` finds it there
(in that order). Item content (embedding vectors, semantic-ID codes) is not a
column of any table: it comes as :mod:`rqgmm.ctr.content` tables keyed by item.

Nothing here names a dataset's column: every name arrives from the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from rqgmm.errors import InputError

FieldKind = Literal["categorical", "bag", "numeric", "dense"]


@dataclass(frozen=True)
class FieldSpec:
    """One input field of a CTR model, as the model sees it.

    Parameters
    ----------
    name : str
        Field name; models look the field's tensor up by it.
    vocab_size : int
        Rows of the field's block of the shared embedding table (index 0
        included); 0 for numeric and dense.
    dim : int
        Width of the field's embedding.
    kind : {"categorical", "bag", "numeric", "dense"}
        ``categorical``: one index per row; ``bag``: padded indices, mean-pooled,
        0 = padding; ``numeric``: one standardised float per row, ``x * w + b``;
        ``dense``: a float vector (input_dim,) per row, projected by a linear layer.
    input_dim : int
        Width of the raw vector (``numeric`` 1, ``dense`` its width, else 0).
    """

    name: str
    vocab_size: int
    dim: int
    kind: FieldKind = "categorical"
    input_dim: int = 0


@dataclass(frozen=True)
class FeatureSpec:
    """The columns a CTR model reads, declared once.

    Parameters
    ----------
    user, item : str
        The user and item id columns of the interaction rows (each also a
        categorical field; ids unseen in training share the out-of-vocabulary row).
    label : str
        The 0/1 label column of the interaction rows.
    categorical : tuple of str
        Columns of the interaction rows, the user table or the item table; one
        embedding per value seen in training.
    bag : tuple of str
        List columns (any table); each row's list is mean-pooled.
    numeric : tuple of str
        Float columns (any table); standardised with the training mean and std.
    embedding_dim : int
        Width ``d`` of every field's embedding.
    """

    user: str
    item: str
    label: str
    categorical: tuple[str, ...] = ()
    bag: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    embedding_dim: int = 16

    def __post_init__(self) -> None:
        for name in ("categorical", "bag", "numeric"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.embedding_dim < 1:
            raise InputError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        names = [self.user, self.item, self.label, *self.categorical, *self.bag, *self.numeric]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"columns {repeated} are declared more than once; give each column one role")

    @property
    def columns(self) -> list[str]:
        """Every feature column (ids first), without the label."""
        return [self.user, self.item, *self.categorical, *self.bag, *self.numeric]

    def without(self, columns) -> "FeatureSpec":
        """The same specification with ``columns`` dropped from the categorical, bag and numeric fields."""
        drop = set(columns)
        return FeatureSpec(self.user, self.item, self.label,
                           tuple(c for c in self.categorical if c not in drop),
                           tuple(c for c in self.bag if c not in drop),
                           tuple(c for c in self.numeric if c not in drop), self.embedding_dim)

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureSpec":
        return cls(**values)


