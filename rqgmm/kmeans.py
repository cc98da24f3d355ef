"""KMeans: one codebook level fitted by Lloyd's algorithm (also the GMM's initialiser).

Pure tensor functions first (distances, k-means++, assignment, update, splitting
empty clusters), then the estimator. Distances use the expanded quadratic
``|x|^2 - 2 x.c + |c|^2`` as a matrix product, chunked so the (N, K) matrix is
never held whole.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .balance import balanced_assign, check_balance
from .errors import InputError
from .level import IterativeLevel, check_fitted, warn_few_distinct
from .source import chunk_rows
from .validation import as_matrix, check_positive_int, like_input

logger = logging.getLogger(__name__)


def squared_distances(X: torch.Tensor, C: torch.Tensor, C_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances (n, K) between rows of X (n, D) and C (K, D), clamped at 0."""
    C_sq = (C * C).sum(1) if C_sq is None else C_sq
    d2 = (X * X).sum(1, keepdim=True) - 2.0 * (X @ C.T) + C_sq
    return d2.clamp_min_(0.0)


def _duplicate_tolerance(X: torch.Tensor) -> float:
    # Rounding in the expanded distance is ~eps * |x|^2; below this a point repeats a centre.
    return 64.0 * torch.finfo(X.dtype).eps


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Returns centres (K', D) with K' <= n_clusters: seeding stops early when every
    point already coincides with a chosen centre (fewer distinct rows than K).
    The draws come from the CPU ``generator`` (uniforms turned into indices by
    the inverse CDF of the D^2 weights), and the D^2 weights are computed in
    float64: rounding differences between devices and matrix-product
    precisions stay far below the gaps between the CDF's steps, so the same
    seed picks the same centres on every device and at every precision.
    """
    n, dtype = X.shape[0], X.dtype
    tol = _duplicate_tolerance(X)
    X = X.to(torch.float64)
    x_sq = (X * X).sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [X[first]]
    d2 = _point_distance(X, x_sq, X[first], tol)
    for _ in range(1, n_clusters):
        cdf = torch.cumsum(d2, 0)
        total = float(cdf[-1])
        if total <= 0.0:
            break
        u = float(torch.rand((), generator=generator, dtype=torch.float64)) * total
        idx = min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64, device=cdf.device), right=True)), n - 1)
        centre = X[idx]
        centres.append(centre)
        torch.minimum(d2, _point_distance(X, x_sq, centre, tol), out=d2)
    return torch.stack(centres).to(dtype)


def random_signs(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """±1 of ``shape`` drawn on the CPU generator, in ``like``'s dtype and device."""
    return (torch.randint(0, 2, tuple(shape), generator=generator) * 2 - 1).to(device=like.device, dtype=like.dtype)


def _point_distance(X: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, tol: float) -> torch.Tensor:
    c_sq = (c * c).sum()
    d2 = (x_sq - 2.0 * (X @ c) + c_sq).clamp_min_(0.0)
    return torch.where(d2 <= tol * (x_sq + c_sq), torch.zeros_like(d2), d2)


def assign(X: torch.Tensor, C: torch.Tensor, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row: labels (N,) int64 and squared distances (N,)."""
    C_sq = (C * C).sum(1)
    labels, dists = [], []
    rows = chunk_rows(chunk_size, X.device)
    for start in range(0, X.shape[0], rows):
        d2 = squared_distances(X[start : start + rows], C, C_sq)
        d, lab = d2.min(dim=1)
        labels.append(lab)
        dists.append(d)
    return torch.cat(labels), torch.cat(dists)


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
        # Per-chunk sums in the compute dtype (scatter_add_: faster than index_add_ on CPU and GPU),
        # accumulated across chunks in float64.
        rows = labels.unsqueeze(1).expand(-1, D)
        sums += torch.zeros(K, D, dtype=chunk.dtype, device=chunk.device).scatter_add_(0, rows, chunk).to(torch.float64)
        counts += torch.bincount(labels, minlength=K).to(torch.float64)
    source.all_reduce(sums, counts, inertia)
    return sums, counts, inertia


def _constrained_min(scores: torch.Tensor, x_sq: torch.Tensor, constrained) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, code) of a size-constrained assignment; it ranks rows, so it sees whole squared distances."""
    labels = constrained(scores + x_sq.unsqueeze(1))
    return scores.gather(1, labels.unsqueeze(1)).squeeze(1), labels


def split_empty(centres: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> int:
    """Refill empty clusters in place by splitting the largest ones (as faiss does).

    Each empty cluster takes a copy of the currently largest cluster; the two are
    pushed apart by a small symmetric perturbation and share its count.
    Returns the number of clusters refilled.
    """
    empty = torch.nonzero(counts == 0).flatten().tolist()
    for j in empty:
        m = int(torch.argmax(counts))
        if counts[m] <= 1:
            break
        delta = 1e-4 * centres[m].abs().clamp_min(1e-8) * random_signs(centres[m].shape, generator, centres)
        centres[j] = centres[m] + delta
        centres[m] = centres[m] - delta
        counts[j] = counts[m] / 2
        counts[m] = counts[m] - counts[j]
    return len(empty)


class KMeans(IterativeLevel):
    """One k-means codebook level: Lloyd's algorithm with k-means++ seeding.

    Parameters
    ----------
    n_clusters : int
        Codebook size K. With fewer distinct input rows the level shrinks to that
        number (``n_clusters_``) with a :class:`~rqgmm.level.FewDistinctWarning`.
    max_iter : int
        Maximum Lloyd iterations.
    tol : float
        Stop when the relative decrease of the inertia is below ``tol``.
    random_state : int, optional
        Seed for the seeding and for splitting empty clusters (device-independent).
    device : str, optional
        Where to compute (default: where the input is; numpy input: the CPU).
    dtype : {"float32", "float64"}
    chunk_size : int, optional
        Rows per distance block; the (N, K) distance matrix is never held whole.
        Default: 32,768 on CPU, 262,144 on a GPU (:data:`rqgmm.source.CHUNK_ROWS`).
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
        (:mod:`rqgmm.balance`).
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
    history_ : list[float]     inertia per iteration
    n_features_in_ : int
    """

    _verb = "k-means"
    _value_name = "inertia"

    def __init__(
        self,
        n_clusters: int = 256,
        *,
        max_iter: int = 50,
        tol: float = 1e-4,
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
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.progress = progress
        self.name = name
        self.balance = balance
        self.max_cluster_size = max_cluster_size

    def _check_params(self) -> None:
        super()._check_params()
        check_balance(self.balance, self.max_cluster_size)
        check_positive_int("n_clusters", self.n_clusters)
        if not float(self.tol) >= 0:
            raise InputError(f"tol must be >= 0, got {self.tol!r}")

    @property
    def _n_requested(self) -> int:
        return self.n_clusters

    def _initialise(self, sample: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        centres = kmeans_plusplus(sample, self.n_clusters, generator)
        if centres.shape[0] < self.n_clusters:
            warn_few_distinct(self.name, self.n_clusters, centres.shape[0])
        self.n_clusters_ = centres.shape[0]
        return centres

    def _warm_state(self, previous: "KMeans", sample: torch.Tensor) -> torch.Tensor:
        self.n_clusters_ = previous.cluster_centers_.shape[0]
        return previous.cluster_centers_.to(device=sample.device, dtype=self.torch_dtype).clone()

    def _step(self, source, centres: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, int]:
        sums, counts, inertia = lloyd_pass(source, centres, self._constrained)
        centres = (sums / counts.clamp_min(1).unsqueeze(1)).to(self.torch_dtype)
        return centres, float(inertia), split_empty(centres, counts, generator)

    def _converged(self) -> bool:
        if len(self.history_) < 2:
            return False
        prev, inertia = self.history_[-2], self.history_[-1]
        return prev - inertia <= self.tol * prev

    def _finish(self, source, centres: torch.Tensor) -> None:
        self.cluster_centers_ = centres
        self.inertia_ = float(lloyd_pass(source, centres, self._constrained)[2])

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
        """Empty clusters refilled after each iteration."""
        return self.n_fixed_

    # ---------------------------------------------------------------- inference

    def predict(self, X) -> np.ndarray | torch.Tensor:
        """Index of the nearest centre (N,) int64 for X (N, D); numpy in, numpy out."""
        check_fitted(self, "cluster_centers_")
        C = self.cluster_centers_
        x = as_matrix(X, dtype=C.dtype, device=C.device, n_features=C.shape[1], what="X", owner=type(self).__name__)
        if self._constrained is not None:
            return like_input(torch.cat([self.assign_chunk(c) for c in x.split(chunk_rows(self.chunk_size, x.device))]), X)
        return like_input(assign(x, C, self.chunk_size)[0], X)

    def fit_predict(self, X, y=None) -> np.ndarray | torch.Tensor:
        """``fit(X).predict(X)``."""
        return self.fit(X).predict(X)

    def assign_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes (n,) of a validated chunk (n, D) in the model's dtype and device (size-constrained with ``balance``)."""
        if self._constrained is not None:
            return self._constrained(squared_distances(chunk, self.cluster_centers_))
        return torch.addmm((self.cluster_centers_ ** 2).sum(1), chunk, self.cluster_centers_.T, alpha=-2.0).argmin(1)

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords (K', D): the cluster centres."""
        return self.cluster_centers_

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fitted tensors for a model file."""
        return {"cluster_centers": self.cluster_centers_}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> "KMeans":
        """Restore fitted tensors written by :meth:`state_tensors`."""
        centres = tensors["cluster_centers"]
        if centres.ndim != 2 or centres.shape[0] > self.n_clusters:
            raise InputError(f"{self.name}: stored centres have shape {tuple(centres.shape)}; refit the model")
        self.cluster_centers_ = centres.to(dtype=self.torch_dtype)
        self.n_clusters_, self.n_features_in_ = centres.shape
        return self

    def to(self, device) -> "KMeans":
        """Move the fitted centres to ``device``; returns self."""
        self.cluster_centers_ = self.cluster_centers_.to(device)
        return self
