"""Intervals for paired AUC differences: a bootstrap over test users, widened by the spread across seeds.

**Bootstrap (kind ``"bootstrap"``).** Both variants scored the same test rows,
so their AUC difference is paired row by row. The resampling unit is the
test *user* (rows of one user are not independent): a Poisson bootstrap gives
each user a weight ``w ~ Poisson(1)`` per resample. Re-ranking 5e6 rows for
each of 1,000 resamples would cost minutes, so each resample is taken on the
AUC's first-order expansion (the Hajek projection of the AUC U-statistic,
i.e. DeLong's placement values): ``AUC* = AUC + sum_i (w_i - 1) psi_i`` with
``psi_i = (V10_i - AUC) / n_pos`` for a positive row (``V10_i``: the share of
negatives it outranks, ties counted half) and ``(V01_j - AUC) / n_neg`` for a
negative one. The difference's influences are summed per user, so a resample
is one product ``(B, users) @ (users,)``: O(N log N) for the ranks and
O(B * users) for the resamples, shared by every comparison. The point
estimate is the exact AUC difference; with two seeds the per-seed influences
are averaged (the same user weights for both seeds). The interval is normal
with the resamples' standard deviation as standard error, and the p-value is
its dual: percentile quantiles of 1,000 resamples cannot reach the small
levels of a multiple-comparison correction (0.05 / 80 = 0.0006).

**Seeds and users (kind ``"seeds+users"``, 2 or more seeds).** A difference
between two trained configurations varies with the test users *and* with
training (tokenizer fit, CTR initialisation). By the law of total variance,
``Var(mean_s d_s) = Var_users(E_train) + E(Var_train | users)``: the first term
is the user bootstrap's variance of the seed-averaged difference (above), the
second the sample variance of the per-seed differences ``d_s`` (all scored on
the same test rows, so they differ by training noise only) over ``S``. The
interval is Student-t with the Welch-Satterthwaite degrees of freedom
``se^4 / ((s^2 / S)^2 / (S - 1))`` (the user term has ample degrees of freedom):
near the normal when users dominate, near t(S - 1) when training noise does.
This is the closed-form equivalent of a two-level bootstrap (resample seeds,
then users with Poisson weights). With one seed the bootstrap covers test
users only; the verdict labels such tokenizer-against-tokenizer comparisons
"one seed: training noise not covered" and never calls them a win.

**Across seeds (kind ``"t"``).** The per-seed AUC differences, a Student-t
interval on their mean (:func:`seed_difference`), used from 2 seeds on when the
runs' predictions are not at hand (outputs of older releases).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 1000
#: Users whose Poisson weights are drawn at once (bounds the (B, chunk) weight block).
USER_CHUNK = 1 << 14
#: Resamples whose weights of one user chunk are held at once: (ROW_BLOCK, USER_CHUNK) float32 is 16 MiB.
ROW_BLOCK = 256
#: Bytes for the bootstrap's per-user influence table held in memory (beyond: a temporary file), and for one user
#: chunk's influences of a group of comparisons (64 MiB: 1,024 comparisons per pass over the users).
BUDGET_BYTES = 1 << 26
#: Bytes for the runs whose influences are computed side by side: 500,000 test rows run 4 at a time, 2,000,000
#: and more one at a time.
PARALLEL_BYTES = 1 << 27
#: What one run's influences hold at their peak, per test row (tracemalloc: 62 bytes at 500,000 rows and five
#: columns: the predictions, their sort order, each column's ranks and the float64 influences).
RUN_BYTES_PER_ROW = 64
#: Poisson(1)'s CDF up to 20 (the mass beyond is ~1e-19), for drawing weights by inversion (:func:`poisson_weights`).
POISSON_CDF = stats.poisson.cdf(np.arange(21), 1.0).astype(np.float32)


@dataclass(frozen=True)
class Difference:
    """A paired AUC difference ``a - b`` and what its intervals are drawn from.

    Attributes
    ----------
    mean : float
        The difference (bootstrap: the exact AUC difference, averaged over seeds; t: the mean per-seed difference).
    kind : str
        ``"bootstrap"`` (over test users, one seed), ``"seeds+users"`` (users and seeds), ``"t"`` (Student-t
        across seeds) or ``"none"`` (no interval: one value).
    n : int
        Seeds behind the difference.
    samples : ndarray (B,) or None
        Bootstrap resamples of the difference.
    se : float or None
        Its standard error: the resamples' std (``"bootstrap"``), or the per-seed differences' std / sqrt(n)
        (``"t"``), or the root of the two variances (``"seeds+users"``).
    df : float or None
        Degrees of freedom of a ``"seeds+users"`` interval (None: the normal).
    """

    mean: float
    kind: str
    n: int
    samples: np.ndarray | None = None
    se: float | None = None
    df: float | None = None

    @property
    def _law(self):
        """The distribution the interval and p-value are read from: normal, or Student-t."""
        if self.kind == "t":
            return stats.t(self.n - 1)
        return stats.norm() if self.df is None else stats.t(self.df)

    @property
    def covers_training(self) -> bool:
        """Whether the interval covers training noise (2 or more seeds)."""
        return self.kind in ("t", "seeds+users")

    def interval(self, alpha: float = 0.05) -> tuple[float | None, float | None]:
        """The two-sided ``1 - alpha`` interval ``mean ± q(1 - alpha/2) * se``; (None, None) without one."""
        if self.kind == "none":
            return None, None
        half = self._law.ppf(1 - alpha / 2) * self.se
        return self.mean - half, self.mean + half

    def p_value(self) -> float | None:
        """Two-sided p-value of ``a - b = 0``, dual to :meth:`interval` (0 excluded at level alpha iff p < alpha)."""
        if self.kind == "none":
            return None
        if self.se == 0:
            return 0.0 if self.mean != 0 else 1.0
        return float(2 * self._law.sf(abs(self.mean / self.se)))


def _inversion_table(bins: int = 1 << 16) -> np.ndarray:
    """``searchsorted(POISSON_CDF, u)`` for every u of each of ``bins`` equal bins of [0, 1) (uint8 (bins,)); 255
    where a CDF value falls inside the bin, so that the bin's draws need the exact search."""
    table = np.searchsorted(POISSON_CDF, ((np.arange(bins) + 0.5) / bins).astype(np.float32)).astype(np.uint8)
    inside = np.floor(POISSON_CDF.astype(np.float64) * bins).astype(np.int64)
    table[inside[inside < bins]] = 255
    return table


INVERSION = _inversion_table()


def poisson_weights(uniform: np.ndarray) -> np.ndarray:
    """``w - 1`` for Poisson(1) weights ``w`` drawn by inversion of float32 uniforms in [0, 1): float32, the shape
    of ``uniform``; equal to ``searchsorted(POISSON_CDF, uniform) - 1``, through a table of 65,536 bins (about
    seven times faster) and the exact search for the few draws in a bin that holds a CDF value."""
    counts = INVERSION[(uniform * np.float32(len(INVERSION))).astype(np.uint16)]
    unsure = np.flatnonzero(counts == 255)
    counts.flat[unsure] = np.searchsorted(POISSON_CDF, uniform.flat[unsure])
    weights = counts.astype(np.float32)
    weights -= 1.0
    return weights


def _ranked_influence(ranked: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC and influences of rows sorted by score: ``ranked`` (n,) scores ascending, ``positive`` (n,) bool;
    the influences (n,) float64 in that sorted order (a tie group shares its values).

    Per tie group g (G groups): ``v10[g]``, the share of negatives a positive of g outranks, and ``v01[g]``, the
    share of positives outranking a negative of g; each (G,) array is dropped once used (G is n for distinct
    scores: the peak is a few (G,) arrays, not a dozen)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    first = np.r_[True, ranked[1:] != ranked[:-1]]
    starts = np.flatnonzero(first)
    pos_tied = np.add.reduceat(positive, starts, dtype=np.int64) if len(starts) else np.zeros(0, np.int64)
    neg_tied = np.diff(starts, append=len(positive))
    del starts
    neg_tied -= pos_tied
    v10 = _share(neg_tied, n_neg, below=True)  # a positive: share of negatives it outranks
    del neg_tied
    v01 = _share(pos_tied, n_pos, below=False)  # a negative: share of positives outranking it
    del pos_tied
    group = np.cumsum(first, dtype=np.int32 if len(first) < 2**30 else np.int64)  # 1 + each sorted row's tie group
    del first
    auc = float(v10[group[positive] - 1].mean())
    table = np.empty(2 * len(v10) + 2)  # by 2 * (1 + group) + positive: a negative's value, then a positive's
    np.subtract(v01, auc, out=v01)
    np.divide(v01, n_neg, out=table[2::2])
    del v01
    np.subtract(v10, auc, out=v10)
    np.divide(v10, n_pos, out=table[3::2])
    del v10
    group *= 2
    group += positive
    return auc, table[group]


def _share(tied: np.ndarray, total: int, below: bool) -> np.ndarray:
    """Per tie group (G,) float64: ``(below + 0.5 * tied) / total`` with ``below`` the count in lower groups
    (``below=True``), or ``(total - below - 0.5 * tied) / total`` (``below=False``)."""
    lower = np.cumsum(tied)
    lower -= tied
    if below:
        out = lower + 0.5 * tied
    else:
        out = total - lower
        out = out - 0.5 * tied
    out /= total
    return out


def auc_influence(labels: np.ndarray, scores: np.ndarray, order: np.ndarray | None = None
                  ) -> tuple[float, np.ndarray]:
    """The AUC and each row's first-order influence on it (one sort; ties count half).

    Parameters
    ----------
    labels : ndarray (N,) of 0/1, both present
    scores : ndarray (N,)
    order : ndarray (N,) of int, optional
        The rows by ascending score (an ``argsort`` of ``scores``, taken when not given; the order within a
        tie does not matter).

    Returns
    -------
    auc : float
        Equal to ``sklearn.metrics.roc_auc_score(labels, scores)``.
    psi : ndarray (N,) float64
        ``AUC(weights w) ~ auc + sum((w - 1) * psi)`` for row weights near 1.
    """
    order = np.argsort(scores) if order is None else order
    auc, ranked_psi = _ranked_influence(np.asarray(scores)[order], np.asarray(labels)[order] == 1)
    psi = np.empty(len(order))
    psi[order] = ranked_psi
    return auc, psi


class UserBootstrap:
    """Poisson bootstrap over the test users, the same resamples for every comparison.

    Parameters
    ----------
    labels : ndarray (N,) of 0/1
    users : ndarray (N,) of int, each row's user
    resamples : int
    seed : int
    """

    def __init__(self, labels: np.ndarray, users: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> None:
        self.labels, self.resamples, self.seed = np.asarray(labels), resamples, seed
        self.positive = self.labels == 1
        _, user_rows = np.unique(np.asarray(users), return_inverse=True)
        self.user_rows = user_rows.astype(np.int32 if len(user_rows) < 2**31 else np.int64).reshape(-1)
        self.n_users = int(self.user_rows.max(initial=-1)) + 1

    def influence(self, scores: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """AUC of ``scores`` on the rows ``rows`` (bool (N,)) and its influence summed per user (U,)."""
        return self.influences(scores, {None: rows})[None]

    def influences(self, scores: np.ndarray, columns: Mapping) -> dict:
        """AUC of ``scores`` (N,) on each column's rows (name -> bool (N,)) and its influence summed per user
        (U,) float32, by column: one sort of all rows, each column's rows taken from it in that order."""
        scores = np.asarray(scores)
        order = np.argsort(scores)  # ties are grouped later: the order within a tie does not matter
        return {name: self._column(scores, order, rows) for name, rows in columns.items()}

    def _column(self, scores: np.ndarray, order: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """AUC and per-user influences (U,) float32 on the rows ``rows`` (bool (N,)), given the order of all rows."""
        every = bool(rows.all())
        ranked = order if every else order[rows[order]]  # the column's rows by ascending score
        auc, ranked_psi = _ranked_influence(scores[ranked], self.positive[ranked])
        psi = np.empty(len(scores)) if every else np.zeros(len(scores))
        psi[ranked] = ranked_psi  # back in row order: the per-user sums add rows in that order
        del ranked, ranked_psi
        user_rows, psi = (self.user_rows, psi) if every else (self.user_rows[rows], psi[rows])
        return auc, np.bincount(user_rows, psi, minlength=self.n_users).astype(np.float32)

    def shifts(self, influences: np.ndarray) -> np.ndarray:
        """``sum_u (w_u - 1) * influence[u, c]`` for B resamples: (B, C) from influences (U, C)."""
        return self.streamed_shifts(lambda start, stop: influences[start:stop], influences.shape[1])

    def streamed_shifts(self, chunk_of: Callable[[int, int], np.ndarray], n_columns: int) -> np.ndarray:
        """:meth:`shifts` of the influences (U, C) that ``chunk_of(start, stop)`` gives a user chunk at a time.

        The weights of one user chunk are drawn ``ROW_BLOCK`` resamples at a time (the same draws as all B at
        once: one stream, row-major), so memory stays at a (ROW_BLOCK, USER_CHUNK) block and one chunk's rows."""
        rng, out = np.random.default_rng(self.seed), np.zeros((self.resamples, n_columns))
        for start in range(0, self.n_users, USER_CHUNK):
            part = chunk_of(start, min(start + USER_CHUNK, self.n_users))
            for first in range(0, self.resamples, ROW_BLOCK):
                rows = min(ROW_BLOCK, self.resamples - first)
                out[first:first + rows] += poisson_weights(rng.random((rows, len(part)), dtype=np.float32)) @ part
        return out


def bootstrap_differences(boot: UserBootstrap, predictions: Mapping,
                          pairs: Sequence[tuple[list, list, str, np.ndarray]], budget: int = BUDGET_BYTES,
                          directory: str | os.PathLike | None = None) -> list[Difference]:
    """AUC(a) - AUC(b) for each pair, all from the same user resamples, in one pass over the users.

    Each run's predictions are read once (from disk when stored) and sorted once for every column named in
    ``pairs``; its per-user influences (U,) on each column go to an :class:`InfluenceTable` (in memory within
    ``budget`` bytes, else a temporary file in ``directory``). The resamples then pass over the users a chunk
    at a time: each chunk's influences of every comparison (chunk, C) are summed from the table's rows and
    multiplied by the chunk's weights, drawn once. Memory: one run's predictions and sort order (N,) (several
    runs' side by side in threads while they fit :data:`PARALLEL_BYTES`), the table where it fits the budget,
    the weights of one (256, 16384) block and one chunk's (16384, C) float32 influences (comparisons are
    taken in groups that keep it within ``budget``; each group draws the same weights, the bootstrap's seed).

    Parameters
    ----------
    boot : UserBootstrap
    predictions : mapping of key -> array-like (N,), each run's test predictions (an ndarray, or an object that
        ``np.asarray`` reads from disk such as ``grid.StoredArray``)
    pairs : sequence of (keys_a, keys_b, column, rows)
        ``keys_a``/``keys_b`` name one prediction array per seed, aligned by seed; ``rows`` (bool (N,)) are the
        rows of ``column``, the same for every pair of that column.
    budget : int
        Bytes for the influence table held in memory, and for one chunk's influences of a group of comparisons.
    directory : path, optional
        Where the influence table's temporary file goes when it exceeds ``budget`` (None: the system's).
    """
    columns = {column: rows for *_, column, rows in pairs}
    keys = list(dict.fromkeys(k for a, b, *_ in pairs for k in (*a, *b)))
    slots = {(key, column): i for i, (key, column) in enumerate((k, c) for k in keys for c in columns)}
    aucs = {}
    with InfluenceTable(len(slots), boot.n_users, budget, directory) as table:
        for key, found in zip(keys, _each_influences(boot, predictions, keys, columns)):
            for column, (auc, psi) in found.items():
                aucs[key, column] = auc
                table.put(slots[key, column], psi)
        recipes = [[(slots[pa, column], slots[pb, column]) for pa, pb in zip(a, b, strict=True)]
                   for a, b, column, _ in pairs]
        group = max(1, budget // (4 * USER_CHUNK))
        out = []
        for first in range(0, len(pairs), group):
            part = recipes[first:first + group]
            shifts = boot.streamed_shifts(lambda start, stop: _summed(table.rows(start, stop), part), len(part))
            out += [combine([aucs[pa, column] - aucs[pb, column] for pa, pb in zip(a, b)], shifts[:, c])
                    for c, (a, b, column, _) in enumerate(pairs[first:first + group])]
    return out


def _each_influences(boot: UserBootstrap, predictions: Mapping, keys: list, columns: Mapping) -> Iterator[dict]:
    """``boot.influences`` of each key's predictions, in ``keys``' order: several runs side by side in threads
    (numpy's sorts release the GIL) while their rows fit :data:`PARALLEL_BYTES`, else one at a time."""
    n_rows = len(boot.labels)
    workers = max(1, min(_cores(), PARALLEL_BYTES // max(RUN_BYTES_PER_ROW * n_rows, 1), len(keys)))
    one = lambda key: boot.influences(np.asarray(predictions[key]), columns)  # noqa: E731
    if workers == 1:
        yield from map(one, keys)
        return
    with ThreadPoolExecutor(workers) as pool:
        for first in range(0, len(keys), workers):  # at most `workers` runs' predictions in memory at once
            yield from pool.map(one, keys[first:first + workers])


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _summed(block: np.ndarray, recipes: Sequence[list[tuple[int, int]]]) -> np.ndarray:
    """Each comparison's influences on a user chunk, (chunk, C) float32, from the table's rows ``block``
    (K, chunk): the mean over seeds of a's row minus b's."""
    out = np.zeros((block.shape[1], len(recipes)), np.float32)
    for c, recipe in enumerate(recipes):
        for a, b in recipe:
            out[:, c] += (block[a] - block[b]) / len(recipe)
    return out


class InfluenceTable:
    """A (K, U) float32 table of per-user influences, one row per (run, column): in memory when it fits
    ``budget`` bytes, else in a temporary file (removed on exit) written a row at a time and read a user chunk
    at a time (plain reads: the file's pages stay in the page cache, outside this process's memory)."""

    def __init__(self, n_rows: int, n_users: int, budget: int, directory: str | os.PathLike | None = None) -> None:
        self.shape, self.row_bytes = (n_rows, n_users), 4 * n_users
        self.memory = np.zeros(self.shape, np.float32) if n_rows * self.row_bytes <= budget else None
        self.directory, self.file = directory, None

    def __enter__(self) -> "InfluenceTable":
        if self.memory is None:
            self.file = tempfile.TemporaryFile(prefix="rqgmm-influences-", dir=self.directory)
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()

    def put(self, row: int, values: np.ndarray) -> None:
        """Row ``row`` := ``values`` (U,) float32."""
        if self.memory is not None:
            self.memory[row] = values
        else:
            os.pwrite(self.file.fileno(), np.ascontiguousarray(values, np.float32).tobytes(), row * self.row_bytes)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Users ``start:stop`` of every row: (K, stop - start) float32."""
        if self.memory is not None:
            return self.memory[:, start:stop]
        out = np.empty((self.shape[0], stop - start), np.float32)
        for row in range(self.shape[0]):
            out[row] = np.frombuffer(os.pread(self.file.fileno(), 4 * (stop - start),
                                              row * self.row_bytes + 4 * start), np.float32)
        return out


def combine(per_seed: Sequence[float], shifts: np.ndarray) -> Difference:
    """The difference of per-seed AUC differences (S,) with user-bootstrap shifts of their mean (B,).

    One seed: kind ``"bootstrap"`` (normal, test users only). Two or more: kind ``"seeds+users"``, the user
    variance plus the between-seed variance over S, Student-t with Welch-Satterthwaite degrees of freedom.
    """
    mean, n = float(np.mean(per_seed)), len(per_seed)
    user_var = float(shifts.std(ddof=1)) ** 2
    if n < 2:
        return Difference(mean, "bootstrap", n, samples=mean + shifts, se=math.sqrt(user_var))
    seed_var = float(np.var(per_seed, ddof=1)) / n
    total = user_var + seed_var
    df = None if seed_var == 0 else total**2 / (seed_var**2 / (n - 1))
    return Difference(mean, "seeds+users", n, samples=mean + shifts, se=math.sqrt(total), df=df)


def seed_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """The mean per-seed difference a - b with its Student-t standard error (kind ``"none"`` for one seed).

    Parameters
    ----------
    a, b : sequences of float (n,), aligned by seed
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"seed_difference expects sequences of one equal, non-zero length (one value per seed), "
                         f"got {len(a)} and {len(b)}")
    diff = np.subtract(a, b, dtype=np.float64)
    if len(diff) < 2:
        return Difference(float(diff.mean()), "none", len(diff))
    return Difference(float(diff.mean()), "t", len(diff), se=float(diff.std(ddof=1) / math.sqrt(len(diff))))
