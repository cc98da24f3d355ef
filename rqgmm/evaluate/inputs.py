"""The inputs of ``rqgmm evaluate``, read and checked before any training.

Everything a user can get wrong (a missing column, labels that are not 0/1, an
item without an embedding, a time column that cannot be ordered, a bag column
that holds no lists) is an :class:`~rqgmm.errors.InputError` raised here, so a
refused run has trained nothing and written nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow

from ..errors import InputError
from .config import EvaluateConfig

logger = logging.getLogger(__name__)


@dataclass
class EvaluationData:
    """Checked interaction rows and items.

    Attributes
    ----------
    interactions : DataFrame, N rows
    items : DataFrame, M rows, one per item
    vectors : dict of str → ndarray (M, D_c) float32
        Each embedding column, rows aligned with ``items``.
    timed : bool
        Whether the split is by time (else random).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    vectors: dict[str, np.ndarray]
    timed: bool

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.index.to_numpy()


def read_table(path: str, what: str) -> pd.DataFrame:
    """A parquet file as a DataFrame; unreadable files are InputErrors."""
    try:
        return pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException, ValueError) as exc:
        raise InputError(f"cannot read {what} {path} as parquet ({str(exc).splitlines()[0]}); "
                         "pass a parquet file") from None


def _require(frame: pd.DataFrame, columns, flag: str, where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{where} has no column {missing[0]!r} ({flag}); its columns are {list(frame.columns)}")


def _check_labels(frame: pd.DataFrame, column: str) -> None:
    values = frame[column]
    if values.isna().any() or not np.isin(values.to_numpy(), (0, 1)).all():
        shown = pd.unique(values.to_numpy())[:5].tolist()
        raise InputError(f"label column {column!r} must hold 0 or 1 only, got values {shown}; binarise it first")


def _check_time(frame: pd.DataFrame, column: str) -> None:
    values = frame[column]
    if values.isna().any():
        raise InputError(f"time column {column!r} has {int(values.isna().sum())} missing values; fill or drop them")
    try:
        values.sort_values(kind="stable")
    except TypeError:
        raise InputError(f"time column {column!r} cannot be ordered (mixed types: "
                         f"{sorted({type(v).__name__ for v in values})}); use numbers or timestamps") from None
    if values.dtype == object and not all(isinstance(v, str) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise InputError(f"time column {column!r} cannot be ordered (it holds {kinds}); use numbers or timestamps")


def _check_bag(frame: pd.DataFrame, column: str) -> None:
    listlike = frame[column].map(lambda v: v is None or isinstance(v, (list, tuple, np.ndarray)))
    if not listlike.all():
        raise InputError(f"bag column {column!r} must hold a list per row, got {frame[column][~listlike].iloc[0]!r}; "
                         "pass it with --categorical, or store lists")


def _vectors(items: pd.DataFrame, column: str) -> np.ndarray:
    """One embedding column as (M, D) float32; every item needs a finite vector of one width."""
    values = items[column]
    missing = values.map(lambda v: v is None or (np.ndim(v) == 0))
    if missing.any():
        raise InputError(f"{int(missing.sum())} item(s) have no {column!r} embedding (first: "
                         f"{items.index[missing.to_numpy()][0]!r}); give every item a vector")
    widths = values.map(len)
    if widths.nunique() != 1:
        raise InputError(f"embedding column {column!r} has vectors of widths {sorted(widths.unique())[:5]}; "
                         "give every item a vector of one width")
    try:
        matrix = np.stack(values.to_numpy()).astype(np.float32)
    except (TypeError, ValueError):
        raise InputError(f"embedding column {column!r} must hold lists of numbers") from None
    if not np.isfinite(matrix).all():
        raise InputError(f"embedding column {column!r} has NaN or Inf values; drop or impute those items")
    return matrix


def _index_items(items: pd.DataFrame, column: str) -> pd.DataFrame:
    if items[column].isna().any() or items[column].duplicated().any():
        dup = items[column][items[column].duplicated()].unique()[:5].tolist()
        raise InputError(f"the items table has duplicate or missing {column!r} values {dup}; keep one row per item")
    return items.set_index(items[column].astype(str), drop=False)


def check_inputs(interactions: pd.DataFrame, items: pd.DataFrame, config: EvaluateConfig,
                 names: tuple[str, str] = ("the interactions", "the items table")) -> EvaluationData:
    """Check every declared column and value; returns the data ready to split.

    Raises
    ------
    InputError
        With one line that names the column, what was wrong and how to fix it.
    """
    rows_name, items_name = names
    _require(interactions, [config.user, config.item], "--user/--item", rows_name)
    _require(interactions, [config.label], "--label", rows_name)
    _require(items, [config.item], "--item", items_name)
    _require(items, config.embedding, "--embedding", items_name)
    for flag in ("categorical", "bag", "numeric"):
        for column in getattr(config, flag):
            if column not in interactions.columns and column not in items.columns:
                raise InputError(f"column {column!r} (--{flag}) is in neither {rows_name} nor {items_name}; "
                                 f"their columns are {list(interactions.columns)} and {list(items.columns)}")
    _check_labels(interactions, config.label)
    timed = config.time in interactions.columns
    if not timed and config.time_given:
        raise InputError(f"{rows_name} has no column {config.time!r} (--time); its columns are "
                         f"{list(interactions.columns)}")
    if timed:
        _check_time(interactions, config.time)
    for column in config.bag:
        _check_bag(interactions if column in interactions.columns else items, column)
    items = _index_items(items, config.item)
    unknown = ~interactions[config.item].astype(str).isin(items.index)
    if unknown.any():
        raise InputError(f"{int(unknown.sum())} interaction row(s) have an item without an embedding in {items_name} "
                         f"(first: {interactions[config.item][unknown].tolist()[0]!r}); add those items")
    vectors = {column: _vectors(items, column) for column in config.embedding}
    if len(interactions) < 10:
        raise InputError(f"{rows_name} has {len(interactions)} rows; an 80/10/10 split needs at least 10")
    if not timed:
        logger.info("no %r column: splitting at random (seed 0)", config.time)
    return EvaluationData(interactions.reset_index(drop=True), items, vectors, timed)
