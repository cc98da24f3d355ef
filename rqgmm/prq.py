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
from tqdm.auto import tqdm

from .errors import InputError
from .kmeans import _disable, kmeans_plusplus, make_generator, warn_few_distinct
from .residual import codebook_size_list
from .tokenizer import Tokenizer, like_input, register
from .validation import as_codes, as_matrix, check_positive_int

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 16384
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


def cosine_assign(R: torch.Tensor, C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard cosine assignment of unit rows R (N, D) to unit centroids C (K, D).

    Returns
    -------
    codes : Tensor (N,) int64, argmax_k cos(r, c_k)
    cosine : Tensor (N,), the winning cosine
    """
    codes, cos = [], []
    for start in range(0, R.shape[0], chunk_size):
        best = (R[start : start + chunk_size] @ C.T).max(dim=1)
        cos.append(best.values)
        codes.append(best.indices)
    return torch.cat(codes), torch.cat(cos)


def soft_topk_update(
    R: torch.Tensor, C: torch.Tensor, top_k: int, beta: float, chunk_size: int = DEFAULT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """One top-k soft refinement of centroids C (K, D) on unit residuals R (N, D).

    Each residual adds itself to its ``top_k`` most similar centroids with
    weights softmax(beta * cos) over those k; each centroid becomes the
    normalised weighted mean. A centroid that received no weight keeps its value.

    Returns
    -------
    centroids : Tensor (K, D), unit rows
    mass : Tensor (K,), the total weight each centroid received
    """
    K, D = C.shape
    k = min(top_k, K)
    sums = torch.zeros(K, D, dtype=torch.float64, device=C.device)
    mass = torch.zeros(K, dtype=torch.float64, device=C.device)
    for start in range(0, R.shape[0], chunk_size):
        r = R[start : start + chunk_size]
        cos, idx = (r @ C.T).topk(k, dim=1)
        w = torch.softmax(beta * cos, dim=1).to(torch.float64)
        r64 = r.to(torch.float64)
        for j in range(k):
            sums.index_add_(0, idx[:, j], w[:, j : j + 1] * r64)
            mass.index_add_(0, idx[:, j], w[:, j])
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


def code_mean_cosine(codes: torch.Tensor, cosine: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Mean winning cosine (K,) of the residuals assigned to each code (1 for unused codes)."""
    total = torch.zeros(n_clusters, dtype=torch.float64, device=codes.device).index_add_(0, codes, cosine.double())
    count = torch.bincount(codes, minlength=n_clusters).double()
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total)).to(cosine.dtype)


# ------------------------------------------------------------------------- estimator


@register
class PRQKMeans(Tokenizer):
    """Projection residual quantization with top-k soft spherical k-means levels.

    Parameters
    ----------
    levels : int
        Number of code levels L.
    codebook_size : int or list of int
        Codes per level K_l (one int for all levels, or L ints).
    top_k : int
        How many nearest centroids each residual updates during refinement.
    beta : float
        Inverse temperature of the softmax over those top-k cosines.
    max_iter : int
        Refinement iterations per level (0: k-means++ seeds only).
    tol : float
        Stop refining a level once no centroid moves by more than ``tol``
        in cosine distance (1 - cos between successive values).
    random_state : int, optional
        Seed for the k-means++ seeding.
    device : str or torch.device, optional
        Where to fit and encode (default CPU).
    chunk_size : int
        Rows per similarity block; the (N, K) matrix is never held whole.
    progress : bool, optional
        tqdm bar over levels; None lets tqdm decide (only on a terminal).

    Attributes
    ----------
    mean_ : Tensor (D,)
        Global mean of the L2-normalised training embeddings.
    codebooks_ : list of L tensors (K_l, D)
        Unit centroids.
    code_cosine_ : list of L tensors (K_l,)
        Mean cosine between each centroid and its assigned residuals (for ``decode``).
    n_features_in_ : int
        Input dimension D.
    n_iter_ : list of int
        Refinement iterations run at each level.
    """

    method: ClassVar[str] = "prqkmeans"
    reconstructs: ClassVar[bool] = False
    chunked: ClassVar[bool] = True

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | list[int] = 256,
        *,
        top_k: int = 2,
        beta: float = 15.0,
        max_iter: int = 25,
        tol: float = 1e-6,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool | None = None,
    ) -> None:
        self.codebook_size = codebook_size_list(codebook_size, check_positive_int("levels", levels))
        self.top_k = check_positive_int("top_k", top_k)
        self.max_iter = check_positive_int("max_iter", max_iter, minimum=0)
        if not float(beta) > 0 or not float(tol) >= 0:
            raise InputError(f"beta must be > 0 and tol >= 0, got beta={beta!r}, tol={tol!r}")
        self.beta, self.tol = float(beta), float(tol)
        self.random_state = random_state
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.progress = progress

    # -------------------------------------------------------------------- fit

    def fit(self, X) -> "PRQKMeans":
        """Fit on X (N, D); returns self."""
        X = as_matrix(X, device=self.device)
        self.n_features_in_ = X.shape[1]
        self.mean_ = l2_normalize(X).mean(dim=0)
        R = self._project(X)
        generator = make_generator(self.random_state, R.device)
        self.codebooks_, self.code_cosine_, self.n_iter_ = [], [], []
        for level in tqdm(range(self.levels), desc=f"{self.method} levels", leave=False, disable=_disable(self.progress)):
            C = self._fit_level(R, self.codebook_size[level], generator, f"level {level + 1}")
            codes, cos = cosine_assign(R, C, self.chunk_size)
            self.codebooks_.append(C)
            self.code_cosine_.append(code_mean_cosine(codes, cos, C.shape[0]))
            logger.info("%s level %d: %d of %d codes used, mean cosine %.4f",
                        self.method, level + 1, int(torch.unique(codes).numel()), C.shape[0], float(cos.mean()))
            R = projection_residual(R, C[codes])
        return self

    def _fit_level(self, R: torch.Tensor, n_clusters: int, generator: torch.Generator, name: str) -> torch.Tensor:
        C = seed_centroids(R, n_clusters, generator, name)
        n_iter, idle = 0, 0
        for n_iter in range(1, self.max_iter + 1):
            C_new, mass = soft_topk_update(R, C, self.top_k, self.beta, self.chunk_size)
            moved = float((1.0 - (C_new * C).sum(1)).max())
            C, idle = C_new, int((mass == 0).sum())
            if moved <= self.tol:
                break
        self.n_iter_.append(n_iter)
        logger.debug("%s %s: %d refinement iterations, %d centroids without weight in the last",
                     self.method, name, n_iter, idle)
        return C

    def _project(self, X: torch.Tensor) -> torch.Tensor:
        """Unit embeddings with the global-mean direction removed, (N, D)."""
        return remove_direction(l2_normalize(X), self.mean_)

    # ----------------------------------------------------------- encode/decode

    def encode(self, X) -> np.ndarray | torch.Tensor:
        """Codes (N, L) int64 of X (N, D); numpy in, numpy out. Never changes the model."""
        return like_input(self._encode(X)[0], X)

    def residuals(self, X) -> list[torch.Tensor]:
        """The unit residuals r_1..r_L (each (N, D)) that the levels see for X (N, D)."""
        return self._encode(X)[1]

    def _encode(self, X) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check_fitted()
        R = self._project(as_matrix(X, device=self.device, n_features=self.n_features_in_))
        codes, residuals = [], []
        for C in self.codebooks_:
            residuals.append(R)
            code = cosine_assign(R, C, self.chunk_size)[0]
            codes.append(code)
            R = projection_residual(R, C[code])
        return torch.stack(codes, dim=1), residuals

    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Approximate direction (N, D) in the normalised, mean-removed space (see the module docstring).

        Not a reconstruction of the input embeddings (``reconstructs`` is False).
        """
        self._check_fitted()
        c = as_codes(codes, levels=self.levels, codebook_sizes=self.codebook_sizes).to(self.device)
        out = torch.zeros(c.shape[0], self.n_features_in_, device=self.device)
        scale = torch.ones(c.shape[0], 1, device=self.device)
        for level in range(c.shape[1]):
            a = self.code_cosine_[level][c[:, level]].unsqueeze(1)
            out = out + scale * a * self.codebooks_[level][c[:, level]]
            scale = scale * (1 - a * a).clamp_min(0).sqrt()
        return like_input(out, codes)

    def _check_fitted(self) -> None:
        if not hasattr(self, "codebooks_"):
            raise InputError("this PRQKMeans is not fitted yet; call fit(X) first")

    # ---------------------------------------------------------------- state

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.codebook_size)

    def get_config(self) -> dict:
        self._check_fitted()
        return {
            "levels": self.levels,
            "codebook_size": list(self.codebook_size),
            "top_k": self.top_k,
            "beta": self.beta,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "random_state": self.random_state,
            "chunk_size": self.chunk_size,
            "n_features": self.n_features_in_,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        tensors = {"mean": self.mean_}
        for level, (C, a) in enumerate(zip(self.codebooks_, self.code_cosine_)):
            tensors[f"codebook_{level}"] = C
            tensors[f"code_cosine_{level}"] = a
        return tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "PRQKMeans":
        keys = ("levels", "codebook_size", "top_k", "beta", "max_iter", "tol", "random_state", "chunk_size")
        tok = cls(**{k: config[k] for k in keys})
        tok.n_features_in_ = int(config["n_features"])
        tok.mean_ = tensors["mean"].to(tok.device)
        tok.codebooks_ = [tensors[f"codebook_{l}"].to(tok.device) for l in range(tok.levels)]
        tok.code_cosine_ = [tensors[f"code_cosine_{l}"].to(tok.device) for l in range(tok.levels)]
        for level, C in enumerate(tok.codebooks_):
            if tuple(C.shape) != (tok.codebook_size[level], tok.n_features_in_):
                raise InputError(f"codebook_{level} has shape {tuple(C.shape)}, config says "
                                 f"({tok.codebook_size[level]}, {tok.n_features_in_}); refit the model")
        return tok

