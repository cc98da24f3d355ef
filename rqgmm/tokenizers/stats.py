"""Sufficient statistics of EM for a diagonal Gaussian mixture.

``update`` adds one chunk's Σγ, Σγx, Σγx² and log-likelihood; the M-step reads
them once all chunks are in. Chunked in-memory EM, out-of-core EM and
multi-process EM differ only in where ``update`` is called and whether the
accumulators are all-reduced over ranks before the M-step. Accumulators are float64 whatever the
compute precision, so the sum over many chunks does not lose digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GMMStats:
    """Σγ (K,), Σγx (K, D), Σγx² (K, D), Σ log p(x) and the row count, in float64."""

    nk: torch.Tensor
    sx: torch.Tensor
    sxx: torch.Tensor
    loglik: torch.Tensor
    n: torch.Tensor

    @classmethod
    def zeros(cls, n_components: int, n_features: int, device: torch.device) -> "GMMStats":
        """Empty statistics for K components in D dimensions."""
        z = dict(dtype=torch.float64, device=device)
        return cls(
            nk=torch.zeros(n_components, **z),
            sx=torch.zeros(n_components, n_features, **z),
            sxx=torch.zeros(n_components, n_features, **z),
            loglik=torch.zeros((), **z),
            n=torch.zeros((), **z),
        )

    def update(self, X: torch.Tensor, X2: torch.Tensor, resp: torch.Tensor, log_norm: torch.Tensor) -> None:
        """Add a chunk: X (n, D), X2 = X * X (n, D), responsibilities (n, K), log p(x) per row (n,)."""
        self.nk += resp.sum(0, dtype=torch.float64)
        self.sx += (resp.T @ X).to(torch.float64)
        self.sxx += (resp.T @ X2).to(torch.float64)
        self.loglik += log_norm.sum(dtype=torch.float64)
        self.n += X.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The accumulators, for an all-reduce over ranks."""
        return self.nk, self.sx, self.sxx, self.loglik, self.n

    @property
    def mean_loglik(self) -> float:
        """Mean log-likelihood per sample."""
        return float(self.loglik / self.n)
