"""Devices: the one place a device name becomes a ``torch.device`` this machine has.

The default is the CPU everywhere (library and command line): a fit never moves
to a GPU unless asked, so the same call gives the same result on every machine.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .errors import InputError


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
    raise InputError(f"{what} {spec!r}: this machine has no such device; use cpu" +
                     (" or cuda" if torch.cuda.is_available() else ""))


def _check_cuda(device: torch.device, what: str) -> torch.device:
    if not torch.cuda.is_available():
        fix = "use --device cpu" if what.startswith("--") else "use the CPU"
        raise InputError(f"{what} {device}: this machine has no CUDA device (or torch was built without CUDA); {fix}")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(f"{what} {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


#: Matrix-product precisions on a GPU. On a CPU every one computes in fp32.
PRECISIONS = ("fp32", "tf32", "bf16")


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
    """
    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        torch.set_float32_matmul_precision(before)
