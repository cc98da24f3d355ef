"""The default ID shape (levels L x codebook size K) for a catalogue of N items: one rule, read by both tasks.

Residual codes crowd: items fill the ID space far from evenly, so a space of
K^L IDs shares many IDs long before K^L reaches N (measured: 2 x 128, 16,384
IDs, left 62% of MovieLens latest-small's 9,066 items sharing an ID; 2 x 256 on
10^6 items, 99%). The rule leaves room:

- K = 256 from N >= 4,096 items (a byte per level, TIGER's choice); below, the
  smallest power of two >= 2 sqrt(N), at least 8 (small catalogues keep codes
  with several items each, so an ID still says something);
- L = the smallest L >= 2 with K^L >= 16 N (about 16 IDs of room per item).

N = 1,682 -> 3 x 128; 9,066 -> 3 x 256; 10^6 -> 3 x 256; 10^8 -> 4 x 256.
"""

from __future__ import annotations

import math

#: IDs of room per item that the default shape leaves.
ROOM = 16
#: Codebook size of large catalogues (one byte per level).
LARGE_K = 256
#: Catalogues of at least this many items get LARGE_K.
LARGE_FROM = 4096


def default_shape(n_items: int) -> tuple[int, int]:
    """``(levels, codebook_size)`` for a catalogue of ``n_items`` (>= 1) items, by the rule above."""
    if n_items < 1:
        raise ValueError(f"a catalogue holds at least one item, got {n_items}")
    k = LARGE_K if n_items >= LARGE_FROM else max(8, 1 << math.ceil(math.log2(2 * math.sqrt(n_items))))
    levels = 2
    while k**levels < ROOM * n_items:
        levels += 1
    return levels, k


def describe(n_items: int) -> str:
    """One line for logs and reports: the shape the rule chose and why."""
    levels, k = default_shape(n_items)
    return (f"default shape {levels} x {k} for {n_items:,} items ({k**levels:,} IDs, at least {ROOM} per item; "
            "pass --levels and --codebook-size to choose another)")
