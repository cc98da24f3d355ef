"""Seeds: one way to derive independent child seeds from one ``random_state``.

Every consumer of randomness (a stack's levels, a level's sample and its
starts, a GMM's k-means initialiser, the VAE, the CTR runs) gets its own
stream, derived from its parent's seed and its own name by
``numpy.random.SeedSequence.spawn``; no stream is ever handed to two
consumers. Draws come from CPU generators, so a seed gives the same draws on
every device.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def child_seeds(random_state: int | None, name: str, count: int = 1) -> list[int | None]:
    """``count`` independent 32-bit seeds for the consumer ``name``, derived from ``random_state``.

    Parameters
    ----------
    random_state : int >= 0, or None
        The parent seed. None gives ``count`` Nones: each consumer then draws
        fresh entropy of its own.
    name : str
        Names the consumer ("levels", "sample", "start", "vae", "ctr", ...):
        two names give unrelated streams from one parent.
    count : int
        How many children (one per level, per start, per run, ...).

    Returns
    -------
    list of ``count`` ints in [0, 2**32), or of Nones.
    """
    if random_state is None:
        return [None] * count
    key = (zlib.crc32(name.encode()),)
    parent = np.random.SeedSequence(int(random_state), spawn_key=key)
    return [int(child.generate_state(1)[0]) for child in parent.spawn(count)]


def child_seed(random_state: int | None, name: str) -> int | None:
    """The one seed for the consumer ``name`` (:func:`child_seeds` with count 1)."""
    return child_seeds(random_state, name)[0]


def int_seed(seed: int | None) -> int:
    """A 32-bit seed drawn from ``seed`` (fresh entropy if None), for ``torch.manual_seed`` and generators."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0])


def cpu_generator(seed: int | None) -> torch.Generator:
    """A CPU torch generator seeded by ``seed`` (fresh entropy if None): the same draws on every device."""
    return torch.Generator().manual_seed(int_seed(seed))


@contextmanager
def forked_rng(device: torch.device, seed: int | None) -> Iterator[None]:
    """Run the block with torch's global RNG (CPU, and ``device`` if CUDA) seeded by ``seed``, then restored.

    For draws that only the global RNG serves (dropout): the caller's random
    state is the same after the block as before it.
    """
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int_seed(seed))
        yield
