"""The columns of a parquet file: each one a command reads must be named once (Arrow cannot tell two apart)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from rqgmm.errors import InputError


def check_named_once(names: Sequence[str], wanted: Iterable[str], path: str | os.PathLike) -> None:
    """Refuse a parquet file whose columns ``names`` hold one of ``wanted`` twice: Arrow cannot tell them apart
    (a table written with duplicated columns)."""
    repeated = [c for c in dict.fromkeys(wanted) if list(names).count(c) > 1]
    if repeated:
        raise InputError(f"{path} has {list(names).count(repeated[0])} columns named {repeated[0]!r}; rename all but "
                         "one of them")
