"""Devices: the one place a device name becomes a ``torch.device`` this machine has.

The default is the CPU everywhere (library and command line): a fit never moves
to a GPU unless asked, so the same call gives the same result on every machine.
"""

from __future__ import annotations

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
