"""KMeans: one codebook level fitted by Lloyd's algorithm (also the GMM's initialiser).

Pure tensor functions first (distances, k-means++, assignment, update, splitting
empty clusters), then the estimator. Distances use the expanded quadratic
``|x|^2 - 2 x.c + |c|^2`` as a matrix product, chunked so the (N, K) matrix is
never held whole.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import torch

from rqgmm.tokenizers.balance import BALANCE_CONSTRAINTS, balanced_assign
from rqgmm.errors import InputError
from rqgmm.tokenizers.level import FewDistinctWarning, IterativeLevel, check_fitted, warn_few_distinct
from rqgmm.runtime.source import chunk_rows
from rqgmm.runtime.validation import Integer, Real, as_matrix, like_input

logger = logging.getLogger(__name__)

#: Bytes of one one-hot block of :func:`one_hot_sums` ((rows, K) float64: 65,536 rows at K = 256).
ONE_HOT_BYTES = 128 << 20


def squared_distances(X: torch.Tensor, C: torch.Tensor, C_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances (n, K) between rows of X (n, D) and C (K, D), clamped at 0."""
    C_sq = (C * C).sum(1) if C_sq is None else C_sq
    d2 = (X * X).sum(1, keepdim=True) - 2.0 * (X @ C.T) + C_sq
    return d2.clamp_min_(0.0)


def _duplicate_tolerance(X: torch.Tensor) -> float:
    # Rounding in the expanded distance is ~eps * |x|^2; below this a point repeats a centre.
    return 64.0 * torch.finfo(X.dtype).eps


def n_local_trials(n_clusters: int) -> int:
    """Candidates per step of greedy k-means++: 2 + floor(ln K), scikit-learn's choice."""
    return 2 + int(math.log(n_clusters))


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator,
                    n_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007; scikit-learn's variant).

    The first centre is a uniform draw; each next one is the best of
    ``n_trials`` candidates drawn with probability proportional to D² (the
    squared distance to the nearest centre so far): the one that lowers the
    potential Σ D² most. ``n_trials`` defaults to :func:`n_local_trials`
    (2 + floor(ln K)); 1 is plain k-means++.

    Returns centres (K', D) with K' <= n_clusters: seeding stops early when every
    point already coincides with a chosen centre (fewer distinct rows than K).
    The draws come from the CPU ``generator`` (uniforms turned into indices by
    the inverse CDF of the D² weights), and the D² weights and potentials are
    computed in float64: rounding differences between devices and matrix-product
    precisions stay far below the gaps between the CDF's steps and between
    distinct candidates' potentials, so the same seed picks the same centres on
    every device and at every precision.
    """
    n, dtype = X.shape[0], X.dtype
    trials = n_local_trials(n_clusters) if n_trials is None else n_trials
    tol = _duplicate_tolerance(X)
    X = X.to(torch.float64)
    x_sq = (X * X).sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    d2 = _point_distances(X, x_sq, X[first : first + 1], tol)[:, 0]
    for _ in range(1, n_clusters):
        cdf = torch.cumsum(d2, 0)
        total = float(cdf[-1])
        if total <= 0.0:
            break
        u = torch.rand(trials, generator=generator, dtype=torch.float64) * total
        candidates = torch.searchsorted(cdf, u.to(cdf.device), right=True).clamp_max_(n - 1)
        potentials = torch.minimum(_point_distances(X, x_sq, X[candidates], tol), d2.unsqueeze(1))  # (n, trials)
        best = int(potentials.sum(0).argmin())  # the first of equal potentials: the same on every device
        chosen.append(int(candidates[best]))
        d2 = potentials[:, best].contiguous()
    return X[torch.tensor(chosen, device=X.device)].to(dtype)


def _point_distances(X: torch.Tensor, x_sq: torch.Tensor, C: torch.Tensor, tol: float) -> torch.Tensor:
    """Squared distances (n, m) from X's rows (n, D) to each of C's (m, D); below rounding, 0 (a repeat).

    As X @ C.T: the (n, D) x (D, m) product with few columns is the faster orientation (1.7x on a CPU).
    """
    c_sq = (C * C).sum(1)
    d2 = torch.addmm(c_sq, X, C.T, alpha=-2.0).add_(x_sq.unsqueeze(1)).clamp_min_(0.0)
    return torch.where(d2 <= tol * (x_sq.unsqueeze(1) + c_sq), torch.zeros_like(d2), d2)


def lloyd_pass(source, centres: torch.Tensor, constrained=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass of Lloyd's algorithm over a source's chunks.

    Returns per-centre sums (K, D) and counts (K,) of the nearest-centre
    assignment -- or, with ``constrained`` (squared distances (n, K) -> codes
    (n,)), of that size-constrained assignment -- and the inertia (), all
    float64 and summed over ranks.
    """
    K, D = centres.shape
    sums = torch.zeros(K, D, dtype=torch.float64, device=centres.device)
    counts = torch.zeros(K, dtype=torch.float64, device=centres.device)
    inertia = torch.zeros((), dtype=torch.float64, device=centres.device)
    C_sq = (centres * centres).sum(1)
    for chunk in source.chunks():
        # argmin_k |x - c_k|^2 = argmin_k (|c_k|^2 - 2 x.c_k): |x|^2 is added for the inertia only.
        scores = torch.addmm(C_sq, chunk, centres.T, alpha=-2.0)
        # |x|^2 as a squared norm: one read of the chunk, no (n, D) temporary.
        x_sq = torch.linalg.vector_norm(chunk, dim=1).square()
        partial, labels = scores.min(dim=1) if constrained is None else _constrained_min(scores, x_sq, constrained)
        inertia += (partial + x_sq).clamp_min(0.0).sum(dtype=torch.float64)
        sums += cluster_sums(chunk, labels, K)  # accumulated across chunks in float64
        counts += torch.bincount(labels, minlength=K).to(torch.float64)
    source.all_reduce(sums, counts, inertia)
    return sums, counts, inertia


def cluster_sums(chunk: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """Σ of the rows of ``chunk`` (n, D) with each label (n,) in [0, K): (K, D) float64, the same bits on every run.

    On the CPU, ``scatter_add_`` in the chunk's dtype (faster than ``index_add_``; one order of additions). On a
    GPU ``scatter_add_`` adds through atomics, in another order on each run, so the codes of a fit would change
    from run to run: there the sums are one-hot products in float64, blocks of :data:`ONE_HOT_BYTES`.
    """
    if chunk.device.type == "cpu":
        rows = labels.unsqueeze(1).expand(-1, chunk.shape[1])
        return torch.zeros(K, chunk.shape[1], dtype=chunk.dtype).scatter_add_(0, rows, chunk).to(torch.float64)
    return one_hot_sums(chunk, labels, K)


def one_hot_sums(chunk: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """:func:`cluster_sums` by one-hot (rows, K) float64 products: no atomics, so run to run the same."""
    sums = torch.zeros(K, chunk.shape[1], dtype=torch.float64, device=chunk.device)
    rows = max(1, ONE_HOT_BYTES // (8 * K))
    for start in range(0, len(chunk), rows):
        part = labels[start : start + rows]
        one_hot = torch.zeros(len(part), K, dtype=torch.float64, device=chunk.device)
        one_hot.scatter_(1, part.unsqueeze(1), 1.0)
        sums += one_hot.T @ chunk[start : start + rows].to(torch.float64)
    return sums


def _constrained_min(scores: torch.Tensor, x_sq: torch.Tensor, constrained) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, code) of a size-constrained assignment; it ranks rows, so it sees whole squared distances."""
    labels = constrained(scores + x_sq.unsqueeze(1))
    return scores.gather(1, labels.unsqueeze(1)).squeeze(1), labels


def relocate_empty(source, centres: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor,
                   constrained=None) -> tuple[int, int]:
    """Refill empty clusters as scikit-learn does, on a Lloyd pass's sums (K, D) and counts (K,), in place.

    Each empty cluster takes one of the points farthest from their centres
    (the farthest first): the point leaves its cluster's sum and count and
    becomes the empty cluster's only member, so after the update every centre
    is the mean of the points it counts. Points that repeat their centre
    (distance 0) are never taken: with fewer distinct points than clusters a
    cluster stays empty instead of trading a point back and forth. Costs one
    more pass over the rows, only when a cluster is empty.

    Returns
    -------
    (refilled, left_empty) : the clusters refilled, and those left empty for want of such points.
    """
    empty = torch.nonzero(counts == 0).flatten()
    n_empty = int(empty.numel())
    if n_empty == 0:
        return 0, 0
    far = _farthest_points(source, centres, n_empty, constrained)
    m = far.shape[0]
    labels, points = far[:, 1].to(torch.int64), far[:, 2:]
    sums.index_add_(0, labels, -points)
    counts.index_add_(0, labels, -torch.ones(m, dtype=counts.dtype, device=counts.device))
    sums[empty[:m]] = points
    counts[empty[:m]] = 1.0
    return m, n_empty - m


def _farthest_points(source, centres: torch.Tensor, k: int, constrained) -> torch.Tensor:
    """The (at most) ``k`` points farthest from their assigned centres, over all ranks, farthest first.

    Rows (m, 2 + D) float64: squared distance, assigned cluster, the point;
    only points at a positive distance (beyond rounding) from their centre.
    """
    tol = _duplicate_tolerance(centres)
    C_sq = (centres * centres).sum(1)
    parts = []
    for chunk in source.chunks():
        scores = torch.addmm(C_sq, chunk, centres.T, alpha=-2.0)
        x_sq = torch.linalg.vector_norm(chunk, dim=1).square()
        partial, labels = scores.min(dim=1) if constrained is None else _constrained_min(scores, x_sq, constrained)
        d2 = (partial + x_sq).clamp_min(0.0)
        d2 = torch.where(d2 <= tol * (x_sq + C_sq[labels]), torch.zeros_like(d2), d2)
        top = d2.topk(min(k, d2.shape[0]))
        parts.append(torch.cat([top.values.unsqueeze(1), labels[top.indices].unsqueeze(1).to(d2.dtype),
                                chunk[top.indices]], 1).to(torch.float64))
    rows = source.gather_rows(torch.cat(parts))
    rows = rows[torch.argsort(rows[:, 0], descending=True, stable=True)[:k]]
    return rows[rows[:, 0] > 0]


class KMeans(IterativeLevel):
    """One k-means codebook level: Lloyd's algorithm with greedy k-means++ seeding.

    Documented differences from ``sklearn.cluster.KMeans``: with fewer distinct
    input rows than K a cold start shrinks the level to that number
    (``n_clusters_``) with a :class:`~rqgmm.tokenizers.level.FewDistinctWarning`; a warm
    start from centres with repeats keeps its K and leaves the surplus clusters
    empty (never chosen), with the same warning. Empty clusters are refilled
    as scikit-learn does (:func:`relocate_empty`). The inertia criterion ``tol``
    is relative (scikit-learn's is a shift of the centres).

    Parameters
    ----------
    n_clusters : int
        Codebook size K.
    max_iter : int
        Maximum Lloyd iterations.
    tol : float
        Stop when the relative decrease of the inertia is below ``tol``.
    n_init : int
        Seeded starts; the one with the lowest inertia is kept (scikit-learn's meaning).
    random_state : int, optional
        Seed for the seeding (device-independent).
    device : str, optional
        Where to compute (default: where the input is; numpy input: the CPU).
    dtype : {"float32", "float64"}
    chunk_size : int, optional
        Rows per distance block; the (N, K) distance matrix is never held whole.
        Default: 32,768 on CPU, 262,144 on a GPU (:data:`rqgmm.runtime.source.CHUNK_ROWS`).
    init_sample_size : int, optional
        k-means++ seeds on a seeded uniform sample of at most this many rows
        (default 256·K); all rows when the data has no more.
    progress : bool, optional
        Show a tqdm bar over iterations; None lets tqdm decide (only on a terminal).
    name : str
        Used in warnings and progress bars (e.g. "level 2").
    balance : {None, "greedy", "sinkhorn"}
        None: nearest centre. Otherwise size-constrained k-means: every
        assignment (Lloyd's and the codes) gives no centre more than
        ``ceil(max_cluster_size · n / K')`` of each block of n rows
        (:mod:`rqgmm.tokenizers.balance`).
    max_cluster_size : float >= 1
        The size bound as a multiple of the mean cluster size (used with ``balance``).

    Attributes
    ----------
    cluster_centers_ : Tensor (K', D)
    n_clusters_ : int          effective K' (<= n_clusters)
    inertia_ : float           sum of squared distances at the last assignment
    n_iter_ : int
    converged_ : bool
    n_split_ : list[int]       empty clusters refilled at each iteration
    origin_ : Tensor (D,) or None  centre of the fitting frame (data far from the origin), see :mod:`rqgmm.tokenizers.level`
    history_ : list[float]     inertia per iteration
    n_features_in_ : int
    """

    _verb = "k-means"
    _value_name = "inertia"
    _parameter_constraints = {**IterativeLevel._parameter_constraints, **BALANCE_CONSTRAINTS,
                              "n_clusters": Integer(1), "tol": Real(0), "n_init": Integer(1)}

    def __init__(
        self,
        n_clusters: int = 256,
        *,
        max_iter: int = 50,
        tol: float = 1e-4,
        n_init: int = 1,
        random_state: int | None = None,
        device: str | None = None,
        dtype: str = "float32",
        chunk_size: int | None = None,
        init_sample_size: int | None = None,
        progress: bool | None = None,
        name: str = "kmeans",
        balance: str | None = None,
        max_cluster_size: float = 1.5,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.progress = progress
        self.name = name
        self.balance = balance
        self.max_cluster_size = max_cluster_size

    @property
    def _n_requested(self) -> int:
        return self.n_clusters

    def _initialise(self, sample: torch.Tensor, generator: torch.Generator, seed: int | None) -> torch.Tensor:
        centres = kmeans_plusplus(sample, self.n_clusters, generator, self._seeding_trials)
        if centres.shape[0] < self.n_clusters:
            warn_few_distinct(self.name, self.n_clusters, centres.shape[0])
        self.n_clusters_ = centres.shape[0]
        self._warned_empty = False
        return centres

    def _warm_state(self, previous: "KMeans", sample: torch.Tensor) -> torch.Tensor:
        self.n_clusters_ = previous.cluster_centers_.shape[0]
        self._warned_empty = False
        return previous.cluster_centers_.to(device=sample.device, dtype=self.torch_dtype).clone()

    def _warm_value(self, previous: "KMeans") -> float | None:
        return getattr(previous, "inertia_", None)

    def _step(self, source, centres: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, int]:
        sums, counts, inertia = lloyd_pass(source, centres, self._constrained)
        refilled, left_empty = relocate_empty(source, centres, sums, counts, self._constrained)
        if left_empty and not getattr(self, "_warned_empty", False):
            self._warned_empty = True
            warnings.warn(f"{self.name}: {left_empty} of {centres.shape[0]} clusters are empty and every point "
                          "repeats its centre (fewer distinct vectors than clusters); they keep their centres "
                          "and are never chosen", FewDistinctWarning, stacklevel=5)
        means = sums / counts.clamp_min(1).unsqueeze(1)
        centres = torch.where((counts > 0).unsqueeze(1), means, centres.to(torch.float64)).to(self.torch_dtype)
        return centres, float(inertia), refilled

    def _converged(self, previous: float | None, current: float) -> bool:
        return previous is not None and previous - current <= float(self.tol) * previous

    def _finish(self, source, centres: torch.Tensor) -> None:
        self.cluster_centers_ = centres
        self.inertia_ = float(lloyd_pass(source, centres, self._constrained)[2])

    def _objective(self) -> float:
        return -self.inertia_

    def _shift_state(self, centres: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return centres + delta

    def _shift_fitted(self, delta: torch.Tensor) -> None:
        self.cluster_centers_ = self.cluster_centers_ + delta

    def _state_tensors(self, centres: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"centres": centres}

    def _restore_tensors(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["centres"]

    def _extra_progress(self) -> dict:
        return {"n_clusters": self.n_clusters_}

    @property
    def _constrained(self):
        """The size-constrained assignment (squared distances (n, K) -> codes (n,)), or None."""
        if getattr(self, "balance", None) is None:
            return None
        return lambda d2: balanced_assign(d2, self.balance, self.max_cluster_size)

    @property
    def n_split_(self) -> list[int]:
        """Empty clusters refilled after each iteration (scikit-learn's relocation)."""
        return self.n_fixed_

    # ---------------------------------------------------------------- inference

    def predict(self, X) -> np.ndarray | torch.Tensor:
        """Index of the nearest centre (N,) int64 for X (N, D); numpy in, numpy out."""
        check_fitted(self, "cluster_centers_")
        C = self.cluster_centers_
        x = as_matrix(X, dtype=C.dtype, device=C.device, n_features=C.shape[1], what="X", owner=type(self).__name__)
        return like_input(torch.cat([self.assign_chunk(c) for c in x.split(chunk_rows(self.chunk_size, x.device))]), X)

    def fit_predict(self, X, y=None) -> np.ndarray | torch.Tensor:
        """``fit(X).predict(X)``."""
        return self.fit(X).predict(X)

    def assign_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes (n,) of a validated chunk (n, D) in the model's dtype and device (size-constrained with ``balance``)."""
        C, chunk = self._frame(self.cluster_centers_), self._frame(chunk)
        if self._constrained is not None:
            return self._constrained(squared_distances(chunk, C))
        return torch.addmm((C * C).sum(1), chunk, C.T, alpha=-2.0).argmin(1)

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords (K', D): the cluster centres."""
        return self.cluster_centers_

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fitted tensors for a model file."""
        return {"cluster_centers": self.cluster_centers_, **self._origin_tensors()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> "KMeans":
        """Restore fitted tensors written by :meth:`state_tensors`."""
        centres = tensors["cluster_centers"]
        if centres.ndim != 2 or centres.shape[0] > self.n_clusters:
            raise InputError(f"{self.name}: stored centres have shape {tuple(centres.shape)}; refit the model")
        self.cluster_centers_ = centres.to(dtype=self.torch_dtype)
        self.n_clusters_, self.n_features_in_ = centres.shape
        self._load_origin(tensors)
        return self

    def to(self, device) -> "KMeans":
        """Move the fitted centres to ``device``; returns self."""
        self.cluster_centers_ = self.cluster_centers_.to(device)
        self._move_origin(device)
        return self
