"""What the installed torch build offers, read without importing torch.

A refusal of ``--device cuda`` on a machine whose torch has no CUDA should
answer as fast as any other refused argument, and importing torch takes
seconds. The build's CUDA version is a line of ``torch/version.py``, so a
device this build can never have is refused here, in the words
:func:`rqgmm.runtime.device.resolve_device` uses; anything else (a CUDA build, an
index past the last GPU) is left to it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from rqgmm.errors import InputError
from rqgmm.runtime.names import no_cuda_message, no_device_message

_CUDA_LINE = re.compile(r"^cuda\b[^=]*=\s*(.+?)\s*$", re.MULTILINE)


def built_with_cuda() -> bool | None:
    """Whether the installed torch was built with CUDA: the ``cuda`` line of ``torch/version.py`` (None when
    torch or that line cannot be found: then nothing is decided here)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = _CUDA_LINE.search(text)
    return None if found is None else found.group(1) != "None"


def refuse_absent_device(spec: str | None, what: str = "--device") -> None:
    """InputError, before torch loads, for a ``cuda`` or ``mps`` device this torch build can never have; the
    same message as :func:`~rqgmm.runtime.device.resolve_device`'s. Returns quietly in every other case."""
    if spec is None or built_with_cuda() is not False:
        return
    if re.fullmatch(r"cuda(:\d+)?", spec):
        raise InputError(no_cuda_message(what, spec))
    if re.fullmatch(r"mps(:\d+)?", spec) and sys.platform != "darwin":
        raise InputError(no_device_message(what, spec, cuda=False))
