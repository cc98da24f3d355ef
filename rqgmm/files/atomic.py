"""Filesystem atomics: every output is built beside its destination and renamed into place.

An interrupted run (even by SIGKILL) leaves the old output or the new one, never a
partial one; only a temporary ``.NAME.tmp-*`` may remain beside it. New files and
directories get the mode any new file would get under the process's umask (0644
and 0755 under umask 022), whatever the library that wrote them chose.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError

from rqgmm.files.paths import check_replaceable_directory


class StorageError(OSError):
    """A write that failed inside a library that reports it in its own error type, raised as an OSError.

    The command line reports every OSError on one line with exit status 2;
    :func:`atomic_output` turns safetensors' ``SafetensorError`` for a failed
    write (an ``IoError`` inside) into this, with the errno it names. pyarrow
    reports write failures as ``OSError`` already (its ``ArrowIOError``).
    """


#: safetensors' words for a failed write: ``IoError(Os { code: 28, ... })`` (Debug) or ``I/O error: No space
#: left on device (os error 28)`` (Display, what a real full disk gives), and where each names the errno.
_IO_ERROR = re.compile(r"IoError|I/O error")
_ERRNO = re.compile(r"code: (\d+)|os error (\d+)")


def storage_error(exc: BaseException, path: Path) -> StorageError | None:
    """``exc`` as a :class:`StorageError` naming ``path`` when it is a library's report of a failed write, else None."""
    if not (isinstance(exc, SafetensorError) and _IO_ERROR.search(str(exc))):
        return None
    code = _ERRNO.search(str(exc))
    number = int(code.group(1) or code.group(2)) if code else None
    return StorageError(number, os.strerror(number) if number else " ".join(str(exc).split()), str(path))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : the file or directory to write.
    directory : yield a directory instead of a file.
    marker : for a directory, the file whose presence shows that an existing
        directory at ``path`` is an earlier output of the same kind; any other
        existing directory (one holding other files) or a file at ``path`` is
        refused with :class:`~rqgmm.errors.InputError` rather than replaced.

    On an exception the temporary file or directory is removed and ``path`` is
    untouched; a library's own report of a failed write is raised as the
    OSError it is (:class:`StorageError`). The new content is flushed to disk (fsync) before the rename and
    the rename itself after it, so the output survives a power loss as well as a kill.
    """
    path = Path(path)
    if directory:
        check_replaceable_directory(path, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _set_modes(tmp)
        _fsync_tree(tmp)
        if directory:
            _replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)  # the rename itself
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        storage = storage_error(exc, path)
        if storage is not None:
            raise storage from exc
        raise


def _set_modes(path: Path) -> None:
    """Give a new file or tree the modes the umask gives new files (mkstemp makes 0600, safetensors too)."""
    entries = [*path.rglob("*"), path] if path.is_dir() else [path]
    for p in entries:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~_UMASK)


def _fsync(path: Path) -> None:
    """Flush one file or directory entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or a directory and every file in it, to disk."""
    for p in [*(p for p in path.rglob("*") if p.is_file()), path] if path.is_dir() else [path]:
        _fsync(p)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(_libc(), "renameat2", None) if os.name == "posix" else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the kernel or the file system cannot exchange
    raise OSError(err, os.strerror(err), str(b))


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _replace_directory(tmp: Path, path: Path) -> None:
    # A directory cannot be renamed over a non-empty one. Where the OS can swap the two
    # atomically, path always holds the old or the new output; elsewhere the old one is
    # moved aside first, which leaves a short window without an output at path.
    if not path.exists():
        os.replace(tmp, path)
    elif _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old output
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / "old")
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
