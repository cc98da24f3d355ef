"""Devices: the one place a device name becomes a ``torch.device`` this machine has.

One rule decides where a computation runs (:func:`default_device`): the device
asked for, else where the input is -- a tensor's device, the CPU for numpy
arrays and files. It is resolved once, where the data enters (a tokenizer's or
a level's ``fit``), and passed down. A fit of numpy data never moves to a GPU
unless asked, so the same call gives the same result on every machine.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

from rqgmm.errors import InputError
from rqgmm.runtime.names import PRECISIONS, no_cuda_message, no_device_message


def default_device(X, spec: str | torch.device | None = None, *, what: str = "device") -> torch.device:
    """Where a computation on X runs: ``spec`` when given (checked), else X's device (a tensor's or a row
    source's), else the CPU (numpy arrays, memory maps, lists)."""
    if spec is not None:
        return resolve_device(spec, what=what)
    device = getattr(X, "device", None)
    return resolve_device(device) if isinstance(device, torch.device) else torch.device("cpu")


def resolve_device(spec: str | torch.device | None, *, what: str = "device") -> torch.device:
    """The device named by ``spec`` (None: the CPU), checked against this machine.

    Parameters
    ----------
    spec : "cpu", "cuda", "cuda:N", "mps", a torch.device, or None.
    what : names the setting in messages (``"--device"`` on the command line).

    Raises
    ------
    InputError
        When ``spec`` names no device type torch knows, or a device this
        machine lacks (no CUDA, an index past the last GPU, no MPS).
    """
    if spec is None:
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{what} {spec!r} is not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        return _check_cuda(device, what)
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise InputError(no_device_message(what, spec, cuda=torch.cuda.is_available()))


def _check_cuda(device: torch.device, what: str) -> torch.device:
    if not torch.cuda.is_available():
        raise InputError(no_cuda_message(what, str(device)))
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(f"{what} {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())




def check_precision(precision: str, *, what: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else InputError."""
    if precision not in PRECISIONS:
        raise InputError(f"{what} {precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def matmul_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Run the matrix products on ``device`` at ``precision`` for the block (a GPU only; restored after).

    ``fp32``: full float32 products; ``tf32``: TensorFloat-32 products (10-bit
    mantissa inputs, float32 accumulation); ``bf16``: products under bfloat16
    autocast (results in bfloat16). The EM statistics stay float64 at every precision.
    Works whatever the caller set with torch's legacy or new precision API
    (:func:`cuda_tf32`).
    """
    if torch.device(device).type != "cuda":
        yield
        return
    with cuda_tf32(precision == "tf32"), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


@contextlib.contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """TensorFloat-32 cuBLAS products on (or off) for the block; every precision flag restored after.

    torch (2.9 and later) keeps two records of the float32 matmul precision: the
    legacy one (``set_float32_matmul_precision``, ``backends.cuda.matmul.allow_tf32``)
    and the new per-backend one (``backends.{cuda,mkldnn}.matmul.fp32_precision``).
    A cuBLAS product raises unless the two agree for CUDA, and the legacy getter
    raises whenever a caller mixed the two APIs, so this never reads the legacy
    record as the caller left it: it reads the new records (their getters never
    raise), neutralises them, reads the legacy one, and in the block sets both
    records for CUDA in agreement (``allow_tf32``'s setter does). After the block
    the legacy record and both backends' new records are put back as they read.
    The products are the only thing in the block that reads them, so a caller's
    mixed settings are left as mixed as they were.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for the legacy API
        saved = _matmul_flags()
        torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _restore_matmul_flags(saved)


_BACKENDS = ("cuda", "mkldnn")


def _matmul_flags() -> dict[str, str]:
    """The legacy float32 matmul precision and each backend's new-API matmul precision, read without raising."""
    if not hasattr(torch.backends, "fp32_precision"):  # torch < 2.9: the legacy record is the only one
        return {"legacy": torch.get_float32_matmul_precision()}
    backends = {name: getattr(torch.backends, name).matmul.fp32_precision for name in _BACKENDS}
    for name in _BACKENDS:  # no mix left for the legacy getter to object to
        getattr(torch.backends, name).matmul.fp32_precision = "ieee"
    return {"legacy": torch.get_float32_matmul_precision(), **backends}


def _restore_matmul_flags(saved: dict[str, str]) -> None:
    torch.set_float32_matmul_precision(saved["legacy"])  # also writes the backends' records: rewritten below
    for name in set(_BACKENDS) & set(saved):
        getattr(torch.backends, name).matmul.fp32_precision = saved[name]


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch threads, then restore the setting."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
