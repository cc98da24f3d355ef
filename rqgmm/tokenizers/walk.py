"""The residual walk and the decode sum: residual quantization's two loops, written once.

Every residual quantizer (the k-means-style stacks, their fit-time replay of
the residuals, the VAEs' quantizer) walks r_1 -> r_2 -> ... the same way: at
level l a code z_l is chosen for r_l, and r_{l+1} = step(r_l, C_l[z_l]).
Decoding is the one sum Σ_l w_l · C_l[z_l] back. :class:`ResidualSource` serves
the residuals of a row source after the levels fitted so far, chunk by chunk.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from rqgmm.runtime.source import RowSource, fits_on_device

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


class ResidualSource:
    """The residuals of a :class:`RowSource`'s rows after the levels fitted so far.

    r_1 = ``normalise(x)``; r_{j+1} = ``next_residual(r_j, codebooks[j][codes[:, j]])``.
    ``codebooks`` (list of (K_j, D)) and ``codes`` ((n_local, j) int64) are the
    levels fitted so far; with none, the residual is the normalised input.

    The residuals are recomputed chunk by chunk on every pass, except where
    :func:`keeps_residuals` says they are kept: then they are computed once and
    every pass reads them (``kept_`` says which).
    """

    def __init__(self, base: RowSource, normalise: Callable[[torch.Tensor], torch.Tensor],
                 next_residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 codebooks: list[torch.Tensor], codes: torch.Tensor) -> None:
        self.base, self.normalise, self.next_residual = base, normalise, next_residual
        self.codebooks, self.codes = codebooks, codes
        for name in ("dtype", "device", "sharded", "n_total", "n_features", "start", "n_local"):
            setattr(self, name, getattr(base, name))
        self.kept_ = torch.cat(list(self._computed())) if keeps_residuals(base) else None

    def _residual(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return final_residual(self.normalise(x), self.codebooks, codes, self.next_residual)

    def _computed(self) -> Iterator[torch.Tensor]:
        offset = 0
        for x in self.base.chunks():
            yield self._residual(x, self.codes[offset : offset + x.shape[0]])
            offset += x.shape[0]

    def chunks(self) -> Iterator[torch.Tensor]:
        if self.kept_ is None:
            yield from self._computed()
            return
        for lo in range(0, self.n_local, self.base.chunk_size):
            yield self.kept_[lo : lo + self.base.chunk_size]

    def take(self, index: np.ndarray) -> torch.Tensor:
        if self.kept_ is not None:
            return self.kept_[torch.as_tensor(index, device=self.kept_.device)]
        return self._residual(self.base.take(index), self.codes[torch.as_tensor(index, device=self.codes.device)])

    def all_reduce(self, *tensors: torch.Tensor) -> None:
        self.base.all_reduce(*tensors)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.base.gather_rows(rows)


def keeps_residuals(base: RowSource) -> bool:
    """Whether a level's residuals are computed once and kept: on a GPU, when they fit beside the rows.

    Recomputing them costs a normalisation and one gather and subtraction per
    level fitted so far, on every pass of every iteration; on a GPU that is a
    large share of an iteration, and its memory is there to spare. On the CPU
    they are recomputed (memory is what out-of-core fits are short of).
    """
    return fits_on_device(base.n_local, base.n_features, base.dtype, base.device)
