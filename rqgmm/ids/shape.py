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
from collections.abc import Callable

#: IDs of room per item that the default shape leaves.
ROOM = 16
#: Codebook size of large catalogues (one byte per level).
LARGE_K = 256
#: Catalogues of at least this many items get LARGE_K.
LARGE_FROM = 4096
#: The default shape (levels, K) before the rule above, whatever the catalogue (releases up to issue 26's).
PREVIOUS_DEFAULT = (2, 128)


def default_shape(n_items: int) -> tuple[int, int]:
    """``(levels, codebook_size)`` for a catalogue of ``n_items`` (>= 1) items, by the rule above."""
    if n_items < 1:
        raise ValueError(f"a catalogue holds at least one item, got {n_items}")
    k = LARGE_K if n_items >= LARGE_FROM else max(8, 1 << math.ceil(math.log2(2 * math.sqrt(n_items))))
    levels = 2
    while k**levels < ROOM * n_items:
        levels += 1
    return levels, k


def describe(n_items: int, levels=None, codebook_size=None) -> str:
    """One line for logs and reports: the shape the rule chose and why; with one of ``levels`` and
    ``codebook_size`` given, the shape used (that one as given, the other from the rule)."""
    default_levels, default_k = default_shape(n_items)
    if levels is None and codebook_size is None:
        return (f"default shape {default_levels} x {default_k} for {n_items:,} items ({default_k**default_levels:,} "
                f"IDs, at least {ROOM} per item; pass --levels and --codebook-size to choose another)")
    given, taken = ("levels", "codebook size") if levels is not None else ("codebook size", "levels")
    return (f"shape {_words(levels or default_levels)} x {_words(codebook_size or default_k)} for {n_items:,} "
            f"items: the {given} as given, the {taken} from the default shape {default_levels} x {default_k}")


def _words(value) -> str:
    """"3", or a sweep's list "2, 3"."""
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def previous_default_note(theirs: dict, differ: list[str], n_items: Callable[[], int]) -> str | None:
    """Why runs stored at the previous default shape do not resume under the default shape, or None.

    ``theirs``: the stored runs' settings; ``differ``: the settings that differ from this run's, whose shape is
    the default (not given); ``n_items()``: the catalogue's size. Only when the shape alone differs and the runs
    have :data:`PREVIOUS_DEFAULT`: then passing that shape resumes them."""
    if not differ or not set(differ) <= {"levels", "codebook_size"}:
        return None
    if (theirs.get("levels"), theirs.get("codebook_size")) != PREVIOUS_DEFAULT:
        return None
    n = n_items()
    levels, k = default_shape(n)
    old_levels, old_k = PREVIOUS_DEFAULT
    return (f"holds runs made at the previous default ID shape, {old_levels} x {old_k}; the default shape now "
            f"follows the catalogue ({levels} x {k} for {n:,} items): pass --levels {old_levels} --codebook-size "
            f"{old_k} to resume those runs, or a new --out")
