"""KMeans: one codebook level fitted by Lloyd's algorithm (also the GMM's initialiser).

Pure tensor functions first (distances, k-means++, assignment, update, splitting
empty clusters), then the estimator. Distances use the expanded quadratic
``|x|^2 - 2 x.c + |c|^2`` as a matrix product, chunked so the (N, K) matrix is
never held whole.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .source import as_source, sample_rows
from .validation import as_matrix, check_positive_int

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 32768


class FewDistinctWarning(UserWarning):
    """A level had fewer distinct vectors than components and shrank its codebook."""


POINTS_PER_CENTRE = 256  # initialisation sample: at most this many rows per centre (faiss's rule)


def make_generator(random_state: int | None, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded by ``random_state`` (fresh entropy if None)."""
    seed = int(np.random.SeedSequence(random_state).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


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
    """
    n = X.shape[0]
    x_sq = (X * X).sum(1)
    tol = _duplicate_tolerance(X)
    first = int(torch.randint(n, (1,), generator=generator, device=X.device))
    centres = [X[first]]
    d2 = _point_distance(X, x_sq, X[first], tol)
    for _ in range(1, n_clusters):
        total = d2.sum()
        if float(total) <= 0.0:
            break
        idx = torch.multinomial(d2 / total, 1, generator=generator)
        centre = X[idx[0]]
        centres.append(centre)
        torch.minimum(d2, _point_distance(X, x_sq, centre, tol), out=d2)
    return torch.stack(centres)


def _point_distance(X: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, tol: float) -> torch.Tensor:
    c_sq = (c * c).sum()
    d2 = (x_sq - 2.0 * (X @ c) + c_sq).clamp_min_(0.0)
    return torch.where(d2 <= tol * (x_sq + c_sq), torch.zeros_like(d2), d2)


def assign(X: torch.Tensor, C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row: labels (N,) int64 and squared distances (N,)."""
    C_sq = (C * C).sum(1)
    labels, dists = [], []
    for start in range(0, X.shape[0], chunk_size):
        d2 = squared_distances(X[start : start + chunk_size], C, C_sq)
        d, lab = d2.min(dim=1)
        labels.append(lab)
        dists.append(d)
    return torch.cat(labels), torch.cat(dists)


def lloyd_pass(source, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass of Lloyd's algorithm over a source's chunks.

    Returns per-centre sums (K, D) and counts (K,) of the nearest-centre
    assignment and the inertia (), all float64 and summed over ranks.
    """
    K, D = centres.shape
    sums = torch.zeros(K, D, dtype=torch.float64, device=centres.device)
    counts = torch.zeros(K, dtype=torch.float64, device=centres.device)
    inertia = torch.zeros((), dtype=torch.float64, device=centres.device)
    C_sq = (centres * centres).sum(1)
    for chunk in source.chunks():
        # argmin_k |x - c_k|^2 = argmin_k (|c_k|^2 - 2 x.c_k): |x|^2 is added for the inertia only.
        partial, labels = torch.addmm(C_sq, chunk, centres.T, alpha=-2.0).min(dim=1)
        inertia += (partial + (chunk * chunk).sum(1)).clamp_min(0.0).sum(dtype=torch.float64)
        # Per-chunk sums in the compute dtype, accumulated across chunks in float64.
        sums += torch.zeros(K, D, dtype=chunk.dtype, device=chunk.device).index_add_(0, labels, chunk).to(torch.float64)
        counts += torch.bincount(labels, minlength=K).to(torch.float64)
    source.all_reduce(sums, counts, inertia)
    return sums, counts, inertia


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
        scale = 1e-4 * centres[m].abs().clamp_min(1e-8)
        sign = torch.randint(0, 2, centres[m].shape, generator=generator, device=centres.device) * 2 - 1
        delta = scale * sign.to(centres.dtype)
        centres[j] = centres[m] + delta
        centres[m] = centres[m] - delta
        counts[j] = counts[m] / 2
        counts[m] = counts[m] - counts[j]
    return len(empty)


def warn_few_distinct(name: str, requested: int, effective: int) -> None:
    """Warn that a level shrank to ``effective`` components."""
    warnings.warn(
        f"{name}: only {effective} distinct vectors for {requested} components; "
        f"using effective K={effective} (codes stay in [0, {requested}))",
        FewDistinctWarning,
        stacklevel=3,
    )


class KMeans:
    """One k-means codebook level: Lloyd's algorithm with k-means++ seeding.

    Parameters
    ----------
    n_clusters : int
        Codebook size K. With fewer distinct input rows the level shrinks to that
        number (``n_clusters_``) with a :class:`FewDistinctWarning`.
    max_iter : int
        Maximum Lloyd iterations.
    tol : float
        Stop when the relative decrease of the inertia is below ``tol``.
    random_state : int, optional
        Seed for the seeding and for splitting empty clusters.
    device, dtype :
        Where and in which precision to compute (default: the input's device, float32).
    chunk_size : int
        Rows per distance block; the (N, K) distance matrix is never held whole.
    init_sample_size : int, optional
        k-means++ seeds on a seeded uniform sample of at most this many rows
        (default 256·K); all rows when the data has no more.
    progress : bool, optional
        Show a tqdm bar over iterations; None lets tqdm decide (only on a terminal).
    name : str
        Used in warnings and progress bars (e.g. "level 2").

    Attributes
    ----------
    cluster_centers_ : Tensor (K', D)
    n_clusters_ : int          effective K' (<= n_clusters)
    inertia_ : float           sum of squared distances at the last assignment
    n_iter_ : int
    converged_ : bool
    n_split_ : list[int]       empty clusters refilled at each iteration
    history_ : list[float]     inertia per iteration
    """

    def __init__(
        self,
        n_clusters: int = 256,
        *,
        max_iter: int = 50,
        tol: float = 1e-4,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        chunk_size: int = DEFAULT_CHUNK,
        init_sample_size: int | None = None,
        progress: bool | None = None,
        name: str = "kmeans",
    ) -> None:
        self.n_clusters = check_positive_int("n_clusters", n_clusters)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = float(tol)
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.init_sample_size = init_sample_size or POINTS_PER_CENTRE * self.n_clusters
        self.progress = progress
        self.name = name

    def fit(self, X, *, resume: tuple[dict, dict] | None = None, on_progress=None,
            progress_every: int = 5) -> "KMeans":
        """Fit on X (N, D) — an array, a tensor or a :mod:`rqgmm.source` source; returns self.

        ``resume`` and ``on_progress`` work as in :meth:`rqgmm.DiagonalGMM.fit`.
        """
        source = as_source(X, dtype=self.dtype, device=self.device, chunk_size=self.chunk_size)
        if resume is None:
            sample = sample_rows(source, self.init_sample_size, self.random_state)
            gen = make_generator(self.random_state, sample.device)
            centres = kmeans_plusplus(sample, self.n_clusters, gen)
            if centres.shape[0] < self.n_clusters:
                warn_few_distinct(self.name, self.n_clusters, centres.shape[0])
            self.n_clusters_ = centres.shape[0]
            self.history_, self.n_split_ = [], []
        else:
            centres, gen = self._restore(*resume)
        self.converged_ = False
        prev = self.history_[-1] if self.history_ else float("inf")
        self.n_iter_ = len(self.history_)
        bar = tqdm(total=self.max_iter, initial=self.n_iter_, desc=f"{self.name} k-means", leave=False,
                   disable=_disable(self.progress))
        for iteration in range(self.n_iter_ + 1, self.max_iter + 1):
            self.n_iter_ = iteration
            sums, counts, total = lloyd_pass(source, centres)
            inertia = float(total)
            centres = (sums / counts.clamp_min(1).unsqueeze(1)).to(self.dtype)
            self.n_split_.append(split_empty(centres, counts, gen))
            self.history_.append(inertia)
            bar.update()
            bar.set_postfix(inertia=f"{inertia:.4g}")
            if self.n_iter_ > 1 and prev - inertia <= self.tol * prev and self.n_split_[-1] == 0:
                self.converged_ = True
                break
            prev = inertia
            if on_progress is not None and self.n_iter_ % progress_every == 0:
                on_progress({"history": self.history_, "n_split": self.n_split_, "n_clusters": self.n_clusters_},
                            {"centres": centres, "generator": gen.get_state()})
        bar.close()
        self.cluster_centers_ = centres
        self.inertia_ = float(lloyd_pass(source, centres)[2])
        return self

    def _restore(self, state: dict, tensors: dict) -> tuple[torch.Tensor, torch.Generator]:
        self.history_, self.n_split_, self.n_clusters_ = list(state["history"]), list(state["n_split"]), state["n_clusters"]
        centres = tensors["centres"].to(device=self.device, dtype=self.dtype)
        gen = torch.Generator(device=centres.device)
        gen.set_state(tensors["generator"])
        return centres, gen

    def predict(self, X) -> torch.Tensor:
        """Index of the nearest centre (N,) int64 for X (N, D)."""
        C = self.cluster_centers_
        X = as_matrix(X, dtype=C.dtype, device=C.device, n_features=C.shape[1])
        return assign(X, C, self.chunk_size)[0]

    def assign_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes (n,) of a validated chunk (n, D) in the model's dtype and device."""
        return squared_distances(chunk, self.cluster_centers_).argmin(1)

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
        self.cluster_centers_ = centres.to(device=self.device, dtype=self.dtype)
        self.n_clusters_ = centres.shape[0]
        return self


def _disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None means 'only on a terminal'."""
    return None if progress is None else not progress
