"""The residual walk and the decode sum: residual quantization's two loops, written once.

Every residual quantizer (the k-means-style stacks, their fit-time replay of
the residuals, the VAEs' quantizer) walks r_1 -> r_2 -> ... the same way: at
level l a code z_l is chosen for r_l, and r_{l+1} = step(r_l, C_l[z_l]).
Decoding is the one sum Σ_l w_l · C_l[z_l] back.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

Choose = Callable[[int, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def subtract(residual: torch.Tensor, codeword: torch.Tensor) -> torch.Tensor:
    """The plain residual rule: r - c."""
    return residual - codeword


def residual_walk(residual: torch.Tensor, codebooks: Sequence[torch.Tensor], choose: Choose, step: Step = subtract,
                  *, to_the_end: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """The hard residual path of rows r_1 = ``residual`` (n, D) through ``codebooks`` (K_l, D).

    Yields ``(l, r_l, z_l)`` for each level l (0-based), with codes
    z_l = ``choose(l, r_l)`` (n,) int64, then moves on to
    r_{l+1} = ``step(r_l, codebooks[l][z_l])``. The residual after the last
    level is computed only with ``to_the_end``, and then yielded last as
    ``(L, r_{L+1}, None)`` (what a level fitted after these sees). ``choose``
    may change ``codebooks[l]`` before it returns (an initialiser fitting it on r_l).
    """
    last = len(codebooks) - 1
    for level, codebook in enumerate(codebooks):
        code = choose(level, residual)
        yield level, residual, code
        if level < last or to_the_end:
            residual = step(residual, codebook[code])
    if to_the_end:
        yield len(codebooks), residual, None


def final_residual(residual: torch.Tensor, codebooks: Sequence[torch.Tensor], codes: torch.Tensor,
                   step: Step = subtract) -> torch.Tensor:
    """r_{L+1} (n, D) after walking rows r_1 (n, D) along known codes (n, L) (L may be 0)."""
    *_, (_, last, _) = residual_walk(residual, codebooks, lambda level, _: codes[:, level], step, to_the_end=True)
    return last


def codeword_sum(codebooks: Sequence[torch.Tensor], codes: torch.Tensor,
                 weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Σ_l w_l · C_l[z_l] (n, D) over the first l' = codes.shape[1] levels of codes (n, l').

    ``weights`` (one (n,) tensor per level) scale each row's codeword; None is 1.
    """
    out = codebooks[0].new_zeros(codes.shape[0], codebooks[0].shape[1])
    for level in range(codes.shape[1]):
        term = codebooks[level][codes[:, level]]
        out = out + (term if weights is None else weights[level].unsqueeze(1) * term)
    return out
