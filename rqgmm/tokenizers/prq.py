"""PRQ-KMeans: projection residual quantization on the unit sphere.

Luo et al. (Kuaishou, 2026), "Projection Residual Quantization for Semantic ID
Tokenization". Every step works with directions (cosine similarity):

1. L2-normalise each embedding; remove its projection on the global mean m of
   the normalised embeddings, x - (x.m / |m|^2) m, and L2-normalise again
   (the shared direction every text embedding carries says nothing about the
   item).
2. At each level, seed K centroids by k-means++ on the residuals, then refine
   them ``max_iter`` times with top-k soft weights: each residual contributes to
   its ``top_k`` most cosine-similar centroids with weights
   softmax(beta * cos) over those k; a centroid becomes the normalised
   weighted mean of its contributions (a centroid nobody contributes to keeps
   its place). Refinement stops early only at a fixed point (no centroid
   moves by more than ``tol`` in cosine distance).
3. The code is the hard cosine assignment argmax_k cos(r, c_k).
4. The next residual is the projection residual r - (r.c / |c|^2) c of the
   selected centroid c, L2-normalised: orthogonal to c and of unit norm. (A
   residual that vanishes -- r parallel to c -- stays the zero vector.)

Defaults: ``top_k=2``, ``beta=15``, ``max_iter=25`` (the paper's setting).

Decoding
--------
The residuals are not additive: step 4 drops the scalar r.c and the norm of
the remainder, which the codes do not hold, so no reconstruction in the input
space exists. ``decode`` returns an *approximation in the normalised,
mean-removed space*: with a_l[k] the mean cosine between centroid k of level l
and the residuals assigned to it at fit time,

    x_hat = sum_l  (prod_{t<l} sqrt(1 - a_t^2)) * a_l[z_l] * c_l[z_l]

(the expected expansion r_l = a_l c_l + sqrt(1 - a_l^2) r_{l+1}). It is
comparable with the projected unit vectors, not with the raw embeddings, so
the class sets ``reconstructs = False``: reports must print ``rmse`` as null
for it rather than compare this error with the other tokenizers'.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import torch

from rqgmm.tokenizers.level import IterativeLevel, warn_few_distinct
from rqgmm.tokenizers.kmeans import kmeans_plusplus
from rqgmm.tokenizers.residual import ResidualQuantizer
from rqgmm.tokenizers.base import register
from rqgmm.runtime.validation import Integer, Real, like_input
from rqgmm.tokenizers.walk import codeword_sum
from rqgmm.errors import InputError

logger = logging.getLogger(__name__)

# Below this norm a projection residual is rounding noise, not a direction.
VANISHING_NORM = 1e-5


# ----------------------------------------------------------------- tensor functions


def l2_normalize(X: torch.Tensor) -> torch.Tensor:
    """Rows of X (N, D) scaled to unit norm; zero rows stay zero."""
    norms = X.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, X / norms.clamp_min(torch.finfo(X.dtype).tiny), torch.zeros_like(X))


def remove_direction(X: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """x - (x.m / |m|^2) m for each row of X (N, D) and one direction m (D,), re-normalised."""
    m_sq = (direction * direction).sum()
    if float(m_sq) == 0.0:
        return X
    return l2_normalize(X - torch.outer(X @ direction / m_sq, direction))


def projection_residual(R: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Normalised projection residual of each row r of R (N, D) on its centroid c (row of C, (N, D)).

    r - (r.c / |c|^2) c, L2-normalised; the projection is applied twice so the
    result is orthogonal to c to float precision even when r is close to c.
    Rows whose residual vanishes (norm < ``VANISHING_NORM``) become zero.
    """
    c_sq = (C * C).sum(1, keepdim=True).clamp_min(torch.finfo(C.dtype).tiny)
    out = R - ((R * C).sum(1, keepdim=True) / c_sq) * C
    vanished = out.norm(dim=1) < VANISHING_NORM
    out = l2_normalize(out)
    out = l2_normalize(out - ((out * C).sum(1, keepdim=True) / c_sq) * C)
    out[vanished] = 0.0
    return out


def soft_topk_pass(source, C: torch.Tensor, top_k: int, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One top-k soft refinement of centroids C (K, D) over a source's unit residuals.

    Each residual adds itself to its ``top_k`` most similar centroids with
    weights softmax(beta * cos) over those k; each centroid becomes the
    normalised weighted mean. A centroid that received no weight keeps its value.
    Sums are float64 and all-reduced over ranks.

    Returns
    -------
    centroids : Tensor (K, D), unit rows
    mass : Tensor (K,), the total weight each centroid received
    """
    K, D = C.shape
    k = min(top_k, K)
    sums = torch.zeros(K, D, dtype=torch.float64, device=C.device)
    mass = torch.zeros(K, dtype=torch.float64, device=C.device)
    for r in source.chunks():
        cos, idx = (r @ C.T).topk(k, dim=1)
        w = torch.softmax(beta * cos, dim=1).to(torch.float64)
        r64 = r.to(torch.float64)
        for j in range(k):
            sums.index_add_(0, idx[:, j], w[:, j : j + 1] * r64)
            mass.index_add_(0, idx[:, j], w[:, j])
    source.all_reduce(sums, mass)
    new = l2_normalize(sums).to(C.dtype)
    keep = (mass == 0) | (new.norm(dim=1) == 0)
    new[keep] = C[keep]
    return new, mass


def seed_centroids(R: torch.Tensor, n_clusters: int, generator: torch.Generator, name: str) -> torch.Tensor:
    """K unit centroids (K, D) seeded by k-means++ on unit residuals R (N, D).

    With fewer distinct residuals than K, the extra centroids repeat the first
    ones (they are never chosen: argmax takes the first of equal cosines).
    """
    C = kmeans_plusplus(R, n_clusters, generator)
    if C.shape[0] < n_clusters:
        warn_few_distinct(name, n_clusters, C.shape[0])
        C = C[torch.arange(n_clusters, device=C.device) % C.shape[0]]
    return l2_normalize(C)


def code_mean_cosine(source, C: torch.Tensor) -> torch.Tensor:
    """Mean winning cosine (K,) of the residuals assigned to each centroid of C (K, D) (1 for unused codes)."""
    total = torch.zeros(C.shape[0], dtype=torch.float64, device=C.device)
    count = torch.zeros(C.shape[0], dtype=torch.float64, device=C.device)
    for r in source.chunks():
        best = (r @ C.T).max(dim=1)
        total.index_add_(0, best.indices, best.values.to(torch.float64))
        count += torch.bincount(best.indices, minlength=C.shape[0]).to(torch.float64)
    source.all_reduce(total, count)
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total)).to(C.dtype)


# ------------------------------------------------------------------------- estimators


class SphericalKMeans(IterativeLevel):
    """One PRQ level: k-means++ seeds on unit residuals, refined by top-k soft updates.

    Parameters are those of :class:`PRQKMeans` for one level; ``max_iter`` may be
    0 (the seeds only). ``history_`` holds the largest cosine distance any
    centroid moved in each refinement; the fit stops at a fixed point
    (no centroid moves by more than ``tol``).

    Attributes
    ----------
    centroids_ : Tensor (K, D), unit rows
    code_cosine_ : Tensor (K,), mean cosine between each centroid and its assigned residuals
    """

    _verb = "refinement"
    _value_name = "moved"
    _centres_far_data = False  # directions on the unit sphere: a shift would change them
    _parameter_constraints = {**IterativeLevel._parameter_constraints, "n_clusters": Integer(1), "top_k": Integer(1),
                              "beta": Real(0, open_low=True), "max_iter": Integer(0), "tol": Real(0)}

    def __init__(self, n_clusters: int = 256, *, top_k: int = 2, beta: float = 15.0, max_iter: int = 25,
                 tol: float = 1e-6, random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", chunk_size: int | None = None, init_sample_size: int | None = None,
                 progress: bool | None = None, name: str = "level") -> None:
        self.n_clusters = n_clusters
        self.top_k = top_k
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.progress = progress
        self.name = name

    @property
    def _n_requested(self) -> int:
        return self.n_clusters

    def _initialise(self, sample: torch.Tensor, generator: torch.Generator, seed: int | None) -> torch.Tensor:
        return seed_centroids(sample, self.n_clusters, generator, self.name)

    def _warm_state(self, previous: "SphericalKMeans", sample: torch.Tensor) -> torch.Tensor:
        return previous.centroids_.to(device=sample.device, dtype=self.torch_dtype).clone()

    def _step(self, source, C: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, int]:
        new, _ = soft_topk_pass(source, C, int(self.top_k), float(self.beta))
        return new, float((1.0 - (new * C).sum(1)).max()), 0

    def _converged(self, previous: float | None, current: float) -> bool:
        return current <= float(self.tol)

    def _finish(self, source, C: torch.Tensor) -> None:
        self.centroids_ = C
        self.code_cosine_ = code_mean_cosine(source, C)

    def _state_tensors(self, C: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"centroids": C}

    def _restore_tensors(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["centroids"]

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords (K, D): unit centroids."""
        return self.centroids_

    def assign_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """argmax_k cos(r, c_k) (n,) for unit residuals (n, D)."""
        return (chunk @ self.centroids_.T).argmax(1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids_, "code_cosine": self.code_cosine_}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> "SphericalKMeans":
        C, a = tensors["centroids"], tensors["code_cosine"]
        if C.ndim != 2 or C.shape[0] != self.n_clusters or a.shape != (C.shape[0],):
            raise InputError(f"{self.name}: stored centroids have shape {tuple(C.shape)}, expected "
                             f"({self.n_clusters}, D); refit the model")
        self.centroids_, self.code_cosine_ = C.to(self.torch_dtype), a.to(self.torch_dtype)
        self.n_features_in_ = C.shape[1]
        return self

    def to(self, device) -> "SphericalKMeans":
        self.centroids_, self.code_cosine_ = self.centroids_.to(device), self.code_cosine_.to(device)
        return self


@register
class PRQKMeans(ResidualQuantizer):
    """Projection residual quantization with top-k soft spherical k-means levels.

    Parameters (besides :class:`~rqgmm.tokenizers.residual.ResidualQuantizer`'s)
    --------------------------------------------------------------------
    top_k : int      how many nearest centroids each residual updates during refinement.
    beta : float     inverse temperature of the softmax over those top-k cosines.
    max_iter : int   refinement iterations per level (0: k-means++ seeds only).
    tol : float      stop refining once no centroid moves by more than ``tol`` (cosine distance).

    Attributes
    ----------
    mean_ : Tensor (D,)   global mean of the L2-normalised training embeddings.
    levels_ : list of :class:`SphericalKMeans`
    """

    method: ClassVar[str] = "prqkmeans"
    reconstructs: ClassVar[bool] = False
    level_params = ("top_k", "beta", "max_iter", "tol")
    normaliser_tensors = ("mean",)
    _parameter_constraints = {**ResidualQuantizer._parameter_constraints, "top_k": Integer(1),
                              "beta": Real(0, open_low=True), "max_iter": Integer(0), "tol": Real(0)}

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, random_state: int | None = None, *,
                 top_k: int = 2, beta: float = 15.0, max_iter: int = 25, tol: float = 1e-6,
                 device: str | None = None, dtype: str = "float32", chunk_size: int | None = None,
                 precision: str = "fp32", progress: bool | None = None) -> None:
        super().__init__(levels, codebook_size, random_state, device=device, dtype=dtype, chunk_size=chunk_size,
                         precision=precision, progress=progress)
        self.top_k = top_k
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol

    def _make_level(self, index: int, n_components: int, seed: int | None) -> SphericalKMeans:
        return SphericalKMeans(n_components, **self._level_kwargs(index, seed))

    def _fit_normaliser(self, source) -> None:
        total = torch.zeros(source.n_features, dtype=torch.float64, device=source.device)
        for chunk in source.chunks():
            total += l2_normalize(chunk).sum(0, dtype=torch.float64)
        source.all_reduce(total)
        self.mean_ = (total / source.n_total).to(source.dtype)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return remove_direction(l2_normalize(x), self.mean_)

    @staticmethod
    def _next_residual(residual: torch.Tensor, codeword: torch.Tensor) -> torch.Tensor:
        return projection_residual(residual, codeword)

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Approximate direction (N, D) in the normalised, mean-removed space (see the module docstring).

        Not a reconstruction of the input embeddings (``reconstructs`` is False).
        """
        c = self._codes_table(codes)
        cosines = [level.code_cosine_[k] for level, k in zip(self.levels_, c.T)]  # a_l[z_l], (N,) each
        remainder = torch.ones(c.shape[0], dtype=self.mean_.dtype, device=self._model_device)
        weights = []
        for a in cosines:  # w_l = a_l · prod_{t<l} sqrt(1 - a_t²)
            weights.append(remainder * a)
            remainder = remainder * (1 - a * a).clamp_min(0).sqrt()
        return like_input(codeword_sum([level.centroids_ for level in self.levels_], c, weights), codes)

    @property
    def codebooks_(self) -> list[torch.Tensor]:
        """The unit centroids (K_l, D) of each level."""
        self._check_fitted()
        return [level.centroids_ for level in self.levels_]

    @torch.no_grad()
    def residuals(self, X) -> list[torch.Tensor]:
        """The unit residuals r_1..r_L (each (N, D)) that the levels see for X (N, D)."""
        self._check_fitted()
        source = self._source(X, shard=False, device=self._model_device)
        return [residual for _, residual, _ in self._walk(torch.cat(list(source.chunks())))]

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "PRQKMeans":
        return super().from_state(config, _upgrade_prq_tensors(tensors))


def _upgrade_prq_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensor names of rqgmm 0.1 PRQ model files (``codebook_L``, ``code_cosine_L``) in today's layout."""
    out = {}
    for key, value in tensors.items():
        for old, new in (("codebook_", "centroids"), ("code_cosine_", "code_cosine")):
            if key.startswith(old) and key[len(old):].isdigit():
                key = f"level{key[len(old):]}.{new}"
        out[key] = value
    return out
