"""Planted click logs: a content signal of known shape, for tests, benchmarks and users checking the harness.

Items lie on latent topics and every embedding column carries the topic (a
topic centre plus noise, one centre set per column). Each topic has an appeal
and each user a preference per topic; a row's label is a Bernoulli draw from a
logistic model of the topic's appeal plus the user's affinity to it, plus a
user bias and an item quality that no embedding carries. Items are released
over time (the first half of the catalogue exists before the first row, the
rest arrives evenly over the log), so the last rows hold items never seen
earlier: the time split's test part has cold items, where only content can
tell them apart.

Output, in the format ``rqgmm evaluate`` reads:

- ``interactions.parquet``: ``user_id`` int64, ``item_id`` int64, ``label``
  int8 (0/1), ``timestamp`` int64 (seconds), in time order, written one row
  group at a time (memory stays at one row group however many rows);
- ``items.parquet``: ``item_id``, ``category`` (a coarse topic group, for
  ``--categorical category``) and one ``list<float32>`` column per embedding
  width: ``embedding``, ``embedding_1``, ...

The same configuration (seed and row-group size included) writes the same
files. From the shell::

    python -m rqgmm.data.planted --rows 5000000 --items 200000 --users 100000 --out planted/
    rqgmm evaluate planted/interactions.parquet --items planted/items.parquet \\
        --embedding embedding --embedding embedding_1 --quick --out report/
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.files.atomic import atomic_output
from rqgmm.console import Parser, exit_status, setup_logging
from rqgmm.errors import InputError
from rqgmm.files.paths import Output, check_outputs

logger = logging.getLogger("rqgmm.data.planted")  # by name: under "rqgmm" also when run as __main__

START_S = 1_600_000_000  # the first row's timestamp (2020-09-13)
SPAN_S = 90 * 24 * 3600  # the log covers 90 days
TOPICS_PER_CATEGORY = 4


@dataclass(frozen=True)
class PlantedConfig:
    """The size and shape of a planted log.

    Parameters
    ----------
    rows, items, users, topics : int
        Impressions, catalogue size, users and latent topics.
    widths : tuple of int
        One embedding column per width; each carries the item's topic.
    skew : float
        Zipf exponent of item popularity (0: uniform; 1: the usual long tail).
    seed : int
    affinity : float
        Standard deviation of a user's own preference for a topic (logit units).
    appeal : float
        Standard deviation of a topic's appeal to every user (logit units).
        Affinity and appeal are the planted content signal.
    embedding_noise : float
        Per-dimension noise around the topic centre (centres have unit
        variance per dimension); column c gets ``embedding_noise * (1 + c / 2)``.
    catalogue : float
        Share of the items released before the first row; the rest are
        released evenly over the log.
    fresh : float
        Share of impressions given to an item released in the last
        ``fresh_window`` of the log (new items get traffic).
    fresh_window : float
        Recency window of the fresh impressions, as a share of the log's span.
    base_logit : float
        Logit of the click rate at zero affinity (-1.5: about 18%).
    sequential : float
        Share of impressions drawn from the user's current session topic
        (0, the default: none, and the log is the same as without the option).
        Each user's span is cut into ``sessions`` equal sessions, each with a
        topic drawn from the user's preferences (softmax), so a user's next
        items tend to share the topic of their last ones (the retrieval task's
        planted structure). Within the topic, a share ``fresh`` goes to its
        items released in the last ``fresh_window``, the rest follow
        popularity among those released by then.
    sessions : int
        Sessions per user over the log (with ``sequential``).
    row_group : int
        Rows per parquet row group (and per generated chunk).
    """

    rows: int = 1_000_000
    items: int = 20_000
    users: int = 10_000
    topics: int = 32
    widths: tuple[int, ...] = (64, 32)
    skew: float = 1.0
    seed: int = 0
    affinity: float = 1.0
    appeal: float = 1.0
    embedding_noise: float = 1.0
    catalogue: float = 0.5
    fresh: float = 0.1
    fresh_window: float = 0.02
    base_logit: float = -1.5
    sequential: float = 0.0
    sessions: int = 8
    row_group: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("rows", "items", "users", "topics", "row_group", "sessions"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"planted log: {name} must be an integer >= 1, got {value!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise InputError(f"planted log: widths must be one or more integers >= 1, got {self.widths!r}")
        for name in ("skew", "affinity", "appeal", "embedding_noise"):
            if not getattr(self, name) >= 0:
                raise InputError(f"planted log: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("catalogue", "fresh", "fresh_window", "sequential"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"planted log: {name} must lie in [0, 1], got {getattr(self, name)}")
        if round(self.catalogue * self.items) < 1:
            raise InputError(f"planted log: catalogue {self.catalogue} x {self.items} items releases no item "
                             "before the first row; raise --items or catalogue")

    @property
    def embedding_columns(self) -> list[str]:
        """``embedding``, ``embedding_1``, ... one per width."""
        return ["embedding" if c == 0 else f"embedding_{c}" for c in range(len(self.widths))]

    @property
    def n_catalogue(self) -> int:
        """Items released before the first row (items 0 .. n_catalogue - 1)."""
        return int(round(self.catalogue * self.items))


@dataclass
class Catalogue:
    """The latent world behind a planted log (items in release order).

    Attributes
    ----------
    topic : ndarray (M,) int64
    release : ndarray (M,) float64
        Release time of each item in [0, 1) (0 for the initial catalogue); non-decreasing.
    popularity_cdf : ndarray (M,) float64
        Cumulative Zipf weights of the items (in item order, ranks shuffled).
    quality : ndarray (M,) float32
        Item logit offset that no embedding carries.
    vectors : dict of str -> ndarray (M, D_c) float32
    preference : ndarray (U, T) float32
        Each user's logit offset per topic (the topic's appeal plus the user's affinity).
    user_bias : ndarray (U,) float32
    """

    topic: np.ndarray
    release: np.ndarray
    popularity_cdf: np.ndarray
    quality: np.ndarray
    vectors: dict[str, np.ndarray]
    preference: np.ndarray
    user_bias: np.ndarray


def make_catalogue(config: PlantedConfig) -> Catalogue:
    """Draw topics, embeddings, release times, popularity and user preferences from ``config.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    M, U, T = config.items, config.users, config.topics
    topic = rng.integers(0, T, M)
    vectors = {}
    for c, (name, width) in enumerate(zip(config.embedding_columns, config.widths)):
        centres = rng.standard_normal((T, int(width)), dtype=np.float32)
        noise = np.float32(config.embedding_noise * (1 + c / 2))
        vectors[name] = centres[topic] + noise * rng.standard_normal((M, int(width)), dtype=np.float32)
    late = M - config.n_catalogue
    release = np.concatenate([np.zeros(config.n_catalogue), np.arange(late) / max(late, 1)])
    weights = (rng.permutation(M) + 1.0) ** -config.skew
    cdf = np.cumsum(weights)
    appeal = config.appeal * rng.standard_normal(T, dtype=np.float32)
    preference = appeal + config.affinity * rng.standard_normal((U, T), dtype=np.float32)
    return Catalogue(topic=topic, release=release, popularity_cdf=cdf / cdf[-1],
                     quality=(0.5 * rng.standard_normal(M)).astype(np.float32), vectors=vectors,
                     preference=preference, user_bias=(0.5 * rng.standard_normal(U)).astype(np.float32))


@dataclass(frozen=True)
class TopicIndex:
    """Items sorted by (topic, item): ``items`` (M,), search ``keys`` topic * M + item, each topic's first
    position ``starts`` (T,), and the running sum of popularity weights in that order ``cumulative`` (M,)."""

    items: np.ndarray
    keys: np.ndarray
    starts: np.ndarray
    cumulative: np.ndarray


class PlantedLog:
    """A planted log, generated chunk by chunk (one chunk = one row group).

    Row ``j`` of ``N`` happens at time ``t = (j + 0.5) / N`` in [0, 1). Each chunk
    draws from its own stream (seed, chunk index), so chunks can be made in any
    order. With ``sequential`` > 0, :meth:`draw_items` gives a share of the
    impressions to the user's session topic (a user's next items share the
    topic of their last ones); otherwise impressions are independent given the
    time.
    """

    def __init__(self, config: PlantedConfig) -> None:
        self.config = config
        self.world = make_catalogue(config)

    @property
    def n_chunks(self) -> int:
        return -(-self.config.rows // self.config.row_group)

    def released(self, t: np.ndarray) -> np.ndarray:
        """Number of items released by time t (N,) -> (N,) int64 (items are numbered in release order)."""
        cfg = self.config
        late = cfg.items - cfg.n_catalogue
        arrived = np.clip(np.floor(late * t).astype(np.int64) + 1, 0, late)
        return cfg.n_catalogue + np.where(t < 0, 0, arrived)

    def draw_items(self, rng: np.random.Generator, t: np.ndarray, users: np.ndarray) -> np.ndarray:
        """The item of each impression at times t (N,) by users (N,): -> (N,) int64.

        A share ``fresh`` goes to an item released in the last ``fresh_window``;
        the rest follow Zipf popularity among the items released by then
        (rejection sampling: a draw not yet released is drawn again).
        """
        cfg, world = self.config, self.world
        items = np.searchsorted(world.popularity_cdf, rng.random(len(t)), side="right")
        pending = world.release[items] > t
        while pending.any():
            where = np.flatnonzero(pending)
            items[where] = np.searchsorted(world.popularity_cdf, rng.random(len(where)), side="right")
            pending[where] = world.release[items[where]] > t[where]
        lo, hi = self.released(t - cfg.fresh_window), self.released(t)
        fresh = (rng.random(len(t)) < cfg.fresh) & (hi > lo)
        offset = np.floor(rng.random(len(t)) * (hi - lo)).astype(np.int64)
        items = np.where(fresh, lo + offset, items)
        if cfg.sequential > 0:
            items = self._session_items(rng, t, users, items)
        return items

    def _session_items(self, rng: np.random.Generator, t: np.ndarray, users: np.ndarray,
                       items: np.ndarray) -> np.ndarray:
        """Replace a share ``sequential`` of ``items`` (N,) by an item of the user's session topic.

        Within the topic, a share ``fresh`` goes to one of its items released in the last ``fresh_window``
        (uniformly), the rest follow popularity among its items released by then.
        """
        cfg, topics = self.config, self.topic_index
        session = np.minimum((t * cfg.sessions).astype(np.int64), cfg.sessions - 1)
        topic = self.session_topics[users, session]
        start = topics.starts[topic]
        stop = np.searchsorted(topics.keys, topic * cfg.items + self.released(t))  # released items of the topic
        first_fresh = np.searchsorted(topics.keys, topic * cfg.items + self.released(t - cfg.fresh_window))
        base = np.where(start > 0, topics.cumulative[np.maximum(start - 1, 0)], 0.0)
        top = topics.cumulative[np.maximum(stop - 1, 0)]
        draw = np.searchsorted(topics.cumulative, base + rng.random(len(t)) * (top - base), side="right")
        popular = np.clip(draw, start, np.maximum(stop - 1, start))
        recent = first_fresh + np.floor(rng.random(len(t)) * (stop - first_fresh)).astype(np.int64)
        fresh = (rng.random(len(t)) < cfg.fresh) & (stop > first_fresh)
        chosen = topics.items[np.minimum(np.where(fresh, recent, popular), cfg.items - 1)]
        use = (rng.random(len(t)) < cfg.sequential) & (stop > start)
        return np.where(use, chosen, items)

    @functools.cached_property
    def session_topics(self) -> np.ndarray:
        """The topic of each user's session (U, sessions), drawn from softmax(preference) (its own stream)."""
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3]))
        weights = np.exp(self.world.preference - self.world.preference.max(1, keepdims=True))
        cdf = np.cumsum(weights, 1)
        draws = rng.random((cfg.users, cfg.sessions)) * cdf[:, -1:]
        return np.minimum((cdf[:, None, :] <= draws[:, :, None]).sum(-1), cfg.topics - 1).astype(np.int64)

    @functools.cached_property
    def topic_index(self) -> "TopicIndex":
        """The items grouped by topic, in release order, with cumulative popularity weights."""
        world, M = self.world, self.config.items
        items = np.lexsort((np.arange(M), world.topic))
        weights = np.diff(np.r_[0.0, world.popularity_cdf])[items]
        starts = np.searchsorted(world.topic[items], np.arange(self.config.topics))
        return TopicIndex(items, world.topic[items] * M + items, starts, np.cumsum(weights))

    def labels(self, rng: np.random.Generator, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bernoulli(sigmoid(base + preference[user, topic] + user bias + item quality)) (N,) -> (N,) int8."""
        world = self.world
        logit = (self.config.base_logit + world.preference[users, world.topic[items]] + world.user_bias[users]
                 + world.quality[items])
        return (rng.random(len(users)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)

    def chunk(self, index: int) -> pa.Table:
        """Rows ``index * row_group`` .. of the log as an arrow table (time order)."""
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, index]))
        start = index * cfg.row_group
        rows = np.arange(start, min(start + cfg.row_group, cfg.rows))
        t = (rows + 0.5) / cfg.rows
        users = rng.integers(0, cfg.users, len(rows))
        items = self.draw_items(rng, t, users)
        return pa.table({"user_id": users.astype(np.int64), "item_id": items.astype(np.int64),
                         "label": self.labels(rng, users, items),
                         "timestamp": START_S + np.floor(t * SPAN_S).astype(np.int64)})

    def items_table(self) -> pa.Table:
        """``item_id``, ``category`` and the embedding columns (``list<float32>``), M rows."""
        world = self.world
        columns = {"item_id": np.arange(self.config.items, dtype=np.int64),
                   "category": (world.topic // TOPICS_PER_CATEGORY).astype(np.int64)}
        for name, matrix in world.vectors.items():
            offsets = np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32)
            columns[name] = pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel()))
        return pa.table(columns)


def write_planted(config: PlantedConfig, out: str | Path) -> tuple[Path, Path]:
    """Write ``out/interactions.parquet`` and ``out/items.parquet``; each file appears whole or not at all.

    Returns
    -------
    (interactions path, items path)
    """
    out = Path(out)
    paths = out / "interactions.parquet", out / "items.parquet"
    check_outputs([], [Output(p, "--out", "file") for p in paths])
    log = PlantedLog(config)
    with atomic_output(paths[1]) as tmp:
        pq.write_table(log.items_table(), tmp)
    with atomic_output(paths[0]) as tmp:
        first = log.chunk(0)
        with pq.ParquetWriter(tmp, first.schema) as writer:
            writer.write_table(first, row_group_size=config.row_group)
            for index in range(1, log.n_chunks):
                writer.write_table(log.chunk(index), row_group_size=config.row_group)
    logger.info("wrote %s rows (%d items, %d users, %d topics) to %s", f"{config.rows:,}", config.items,
                config.users, config.topics, out)
    return paths


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,32, got {text!r}") from None


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = parser_class(prog="python -m rqgmm.data.planted", description=__doc__.splitlines()[0])
    defaults = {f.name: f.default for f in fields(PlantedConfig)}
    parser.add_argument("--out", required=True, help="directory for interactions.parquet and items.parquet")
    for name in ("rows", "items", "users", "topics", "seed", "row_group"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name],
                            help=f"default {defaults[name]}")
    parser.add_argument("--widths", type=_int_list, default=defaults["widths"],
                        help="embedding widths, one column each (default 64,32)")
    parser.add_argument("--sessions", type=int, default=defaults["sessions"], help=f"default {defaults['sessions']}")
    for name in ("skew", "affinity", "appeal", "embedding_noise", "catalogue", "fresh", "sequential"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=defaults[name],
                            help=f"default {defaults[name]} (see PlantedConfig)")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m rqgmm.data.planted``; the exit status: 0, or 2 with one line on bad arguments."""

    def work() -> None:
        args = build_parser(Parser).parse_args(argv)
        setup_logging(args.quiet)
        write_planted(PlantedConfig(**{k: v for k, v in vars(args).items() if k not in ("out", "quiet")}), args.out)

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
