"""Outputs never touch inputs: every output path is checked against every input before any work.

The command line declares, per verb, the paths it reads and the paths it will
write; :func:`check_outputs` refuses the run (``InputError``, exit status 2)
when an output is, contains, lies inside or would replace an input (symbolic
links resolved, hard links caught by ``os.path.samefile``), when two outputs
overlap, when a directory output would replace a file, the working directory
or a directory holding anything other than an earlier output of its kind, and
when a file output's place is a directory or lies under a file. All of this
happens before the data is read, so a refused run has done no work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from rqgmm.errors import InputError


@dataclass(frozen=True)
class Output:
    """One path a command will write.

    Parameters
    ----------
    path : the path as the user gave it.
    flag : names it in messages (``"--out"``).
    kind : ``"file"`` (replaced whole), ``"directory"`` (replaced whole) or
        ``"workdir"`` (a directory the command adds files to, e.g. a checkpoint).
    marker : for a ``"directory"``: the file an earlier output of this kind
        holds (``config.json`` of a model); an existing directory without it and
        with other contents is refused rather than replaced.
    """

    path: str | os.PathLike
    flag: str
    kind: Literal["file", "directory", "workdir"]
    marker: str | None = None


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _overlaps(a: Path, b: Path) -> bool:
    """Whether a and b (resolved) are the same path or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inputs: Sequence[str | os.PathLike], outputs: Sequence[Output]) -> None:
    """Refuse outputs that would touch an input, each other, or something that is not theirs to replace.

    Parameters
    ----------
    inputs : the paths the command reads (files or directories); missing ones are skipped here.
    outputs : the paths the command writes.

    Raises
    ------
    InputError
        With a one-line message naming the option, the path and the fix.
    """
    for out in outputs:
        _check_against_inputs(out, inputs)
        _check_place(out)
    for i, a in enumerate(outputs):
        for b in outputs[i + 1 :]:
            if _overlaps(_real(a.path), _real(b.path)):
                raise InputError(f"{a.flag} {a.path} and {b.flag} {b.path} overlap; give them separate paths")


def _check_against_inputs(out: Output, inputs: Sequence[str | os.PathLike]) -> None:
    real = _real(out.path)
    for source in inputs:
        if not os.path.exists(source):
            continue
        if _same_file(out.path, source) or real == _real(source):
            raise InputError(f"{out.flag} {out.path} is the input {source}; write the output to another path")
        if _overlaps(real, _real(source)):
            where = "lies inside" if _real(source) in real.parents else "contains"
            raise InputError(
                f"{out.flag} {out.path} {where} the input {source}; writing it would replace the input. "
                "Write the output to another path"
            )


def _check_place(out: Output) -> None:
    path = Path(out.path)
    _check_parent(path, out.flag)
    if out.kind == "file" and path.is_dir():
        raise InputError(f"{out.flag} {path} is a directory; pass a file path such as {path / 'codes.parquet'}")
    if out.kind == "directory":
        check_replaceable_directory(path, out.marker, flag=out.flag)
    if out.kind == "workdir" and path.exists() and not path.is_dir():
        raise InputError(f"{out.flag} {path} is a file; pass a directory")


def _check_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor must be a writable directory."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is a file, not a directory; pass a path under a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: directory {parent} is not writable; pass a path you can write to")


def check_replaceable_directory(path: str | os.PathLike, marker: str | None, *, flag: str = "output") -> None:
    """Refuse to replace ``path`` unless it is absent, empty, or an earlier output holding ``marker``.

    A regular file, the working directory (or one holding it) and a directory of
    other files are never replaced.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise InputError(f"{flag} {path} exists and is a file; pass a new directory path or remove the file")
    cwd = _real(Path.cwd())
    if _real(path) == cwd or _real(path) in cwd.parents:
        raise InputError(f"{flag} {path} is or holds the working directory; pass a new directory path")
    if path.is_symlink():
        raise InputError(f"{flag} {path} is a symbolic link; pass the directory itself or a new path")
    if any(path.iterdir()) and (marker is None or not (path / marker).is_file()):
        what = f"no {marker}" if marker else "other files"
        raise InputError(
            f"{flag} {path} is a directory with {what}: not an earlier rqgmm output, so it is not replaced; "
            "pass a new directory path"
        )
