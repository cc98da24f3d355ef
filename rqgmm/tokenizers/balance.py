"""Balanced codes: assignment of rows to codes under a bound on every code's size.

A level with ``balance`` set replaces its plain assignment (nearest centre,
MAP component) by a size-constrained one: among ``n`` rows assigned together,
no code takes more than ``capacity(n, K, max_cluster_size) = ceil(max_cluster_size
· n / K)`` rows. Two methods, both on torch tensors on any device:

- ``"greedy"``: rounds of proposals. Every unassigned row proposes to its
  cheapest code that still has room; each code accepts its cheapest proposals
  up to its room; the rest propose again. At most K + 1 rounds (each round fills
  a code or ends), and the bound holds exactly.
- ``"sinkhorn"``: first a price per code from log-domain Sinkhorn iterations
  on the soft assignment exp(-(cost + price) / ε), with the column masses held
  at or below the capacity (a price only rises for a code over it); then the
  greedy rounds on cost + price, so the bound holds exactly and few rows need
  moving. Costs are shifted per row and ε is a fraction of the typical spread
  of a row's costs, so the method has no scale to tune.

Rows are assigned in blocks (the levels' ``chunk_size``): the bound holds for
every block of n rows, so over N rows in blocks it is at most
Σ_blocks ceil(f · n_b / K) <= f · N / K + number of blocks; pass a
``chunk_size`` of at least N for the exact bound ceil(f · N / K) over all rows.
The cost is held as one (n, K) block.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rqgmm.errors import InputError
from rqgmm.runtime.validation import Rule
from rqgmm.tokenizers.names import BALANCE_METHODS

METHODS = BALANCE_METHODS
SINKHORN_ITERATIONS = 30
SINKHORN_TEMPERATURE = 0.05  # ε as a fraction of the mean per-row spread (std) of the costs


def check_balance(balance: str | None, max_cluster_size) -> None:
    """Raise InputError unless ``balance`` is None or a method and ``max_cluster_size`` a number >= 1."""
    if balance is not None and balance not in METHODS:
        raise InputError(f"balance must be None or one of {', '.join(METHODS)}, got {balance!r}")
    if isinstance(max_cluster_size, bool) or not isinstance(max_cluster_size, (int, float, np.integer, np.floating)) \
            or not float(max_cluster_size) >= 1.0 or not math.isfinite(float(max_cluster_size)):
        raise InputError(f"max_cluster_size must be a number >= 1 (a code holds at most max_cluster_size "
                         f"x N / K rows), got {max_cluster_size!r}")


#: The declared constraints of the two balance arguments (:func:`rqgmm.runtime.validation.validate_params`).
BALANCE_CONSTRAINTS = {
    "balance": Rule(lambda value: check_balance(value, 1.0)),
    "max_cluster_size": Rule(lambda value: check_balance(None, value)),
}


def capacity(n_rows: int, n_codes: int, max_cluster_size: float) -> int:
    """The most rows one code may take: ceil(max_cluster_size · n_rows / n_codes), at least 1."""
    return max(1, math.ceil(float(max_cluster_size) * n_rows / n_codes - 1e-9))


def greedy_assign(cost: torch.Tensor, cap: int) -> torch.Tensor:
    """Codes (n,) int64 for costs (n, K), no code taking more than ``cap`` rows (needs K · cap >= n)."""
    n, k = cost.shape
    labels = torch.full((n,), -1, dtype=torch.int64, device=cost.device)
    room = torch.full((k,), cap, dtype=torch.int64, device=cost.device)
    pending = torch.arange(n, device=cost.device)
    while pending.numel():
        best, choice = cost[pending].masked_fill((room <= 0).unsqueeze(0), math.inf).min(1)
        order = torch.argsort(best, stable=True)
        order = order[torch.argsort(choice[order], stable=True)]  # by code, cheapest first within each
        chosen = choice[order]
        counts = torch.bincount(chosen, minlength=k)
        rank = torch.arange(len(order), device=cost.device) - (torch.cumsum(counts, 0) - counts)[chosen]
        accept = rank < room[chosen]
        labels[pending[order[accept]]] = chosen[accept]
        room -= torch.bincount(chosen[accept], minlength=k)
        pending = pending[order[~accept]]
    return labels


def sinkhorn_prices(cost: torch.Tensor, cap: int, n_iter: int = SINKHORN_ITERATIONS) -> torch.Tensor:
    """Prices (K,) >= 0 so that soft assignments by cost + price put at most ``cap`` mass on each code."""
    cost = cost - cost.min(1, keepdim=True).values
    eps = SINKHORN_TEMPERATURE * float(cost.std(1).mean().clamp_min(torch.finfo(cost.dtype).tiny))
    price = torch.zeros(cost.shape[1], dtype=cost.dtype, device=cost.device)
    for _ in range(n_iter):
        logits = -(cost + price) / eps
        log_mass = torch.logsumexp(logits - torch.logsumexp(logits, 1, keepdim=True), 0)
        price = (price + eps * (log_mass - math.log(cap))).clamp_min(0.0)
    return price


def balanced_assign(cost: torch.Tensor, method: str, max_cluster_size: float) -> torch.Tensor:
    """Size-constrained codes (n,) int64 for costs (n, K) (lower is better): see the module docstring."""
    cap = capacity(cost.shape[0], cost.shape[1], max_cluster_size)
    if method == "sinkhorn":
        cost = cost + sinkhorn_prices(cost, cap)
    return greedy_assign(cost, cap)
