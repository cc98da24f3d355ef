"""How every command speaks: one-line errors, the ``rqgmm: ...`` log format, argparse types.

Used by the ``rqgmm`` verbs (:mod:`rqgmm.cli`) and by every module with a
``main`` (``python -m rqgmm.data.planted``, ``python -m rqgmm.bench...``). It
sits at the root, beside :mod:`rqgmm.errors`, because ``data/`` and ``bench/``
use it while ``cli/`` imports them: inside ``cli/`` it would close a circle.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from typing import Callable

from rqgmm.errors import InputError

logger = logging.getLogger("rqgmm")

MAX_SEED = 2**32 - 1


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (status 2) instead of usage + message."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse hook
        raise InputError(f"{message} (see `{self.prog} --help`)")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value

    return parse


class Formatter(logging.Formatter):
    """``rqgmm: message`` for information, ``rqgmm: warning: message`` for warnings."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"rqgmm: {level}{record.getMessage()}"


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Route Python warnings to one clean log line, without internal paths or source lines."""
    logger.warning("%s", message)


def setup_logging(quiet: bool) -> None:
    """Send the ``rqgmm`` loggers and Python warnings to stderr as ``rqgmm: ...`` lines (errors only when quiet)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    root = logging.getLogger("rqgmm")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.INFO)
    warnings.showwarning = show_warning
    warnings.simplefilter("ignore" if quiet else "default")


def os_error_message(exc: OSError) -> str:
    """One line for a filesystem error: the path, the system's reason, and what to check."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; check the path, its permissions and the free space"


def typed_command(argv: list[str]) -> str:
    """The command line as typed: ``rqgmm ARGS`` or ``python -m rqgmm ARGS`` (shell-quoted)."""
    program = ["python", "-m", "rqgmm"] if os.path.basename(sys.argv[0]) == "__main__.py" else ["rqgmm"]
    return shlex.join([*program, *argv])


def exit_status(work: Callable[[], None]) -> int:
    """Run ``work()`` (a module's ``main``): 0, or 2 with the InputError's one line on stderr."""
    try:
        work()
    except InputError as exc:
        sys.stderr.write(f"rqgmm: error: {exc}\n")
        return 2
    return 0
