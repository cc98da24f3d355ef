"""Data-parallel runs: join the process group that ``torchrun`` describes.

``torchrun --nproc-per-node N -m rqgmm fit ...`` starts N processes with
RANK/WORLD_SIZE/MASTER_ADDR in their environment; each joins the group (gloo on
CPU, NCCL on GPUs), fits on its block of rows, and rank 0 writes the outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """True when the environment describes a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: str, timeout_s: float = 600.0) -> Iterator[str]:
    """Join the torchrun group for the block (if any); yields the device this rank uses.

    ``timeout_s`` bounds a collective's wait for the slowest rank (the
    ``RQGMM_DIST_TIMEOUT`` environment variable overrides it).
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=float(os.environ.get("RQGMM_DIST_TIMEOUT", timeout_s)))
    dist.init_process_group(backend=backend_for(device), timeout=timeout)
    logger.info("rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), device)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def backend_for(device: str) -> str:
    """The process group's backends for a fit on ``device``: gloo on CPU; on GPUs NCCL, with gloo beside it.

    The fit's own collectives run on its device (:class:`rqgmm.runtime.source.RowSource`
    refuses a tensor on another), so NCCL carries all of a GPU fit's traffic;
    the gloo backend is there for CPU tensors that torch itself exchanges
    (e.g. ``destroy_process_group``'s barrier), which NCCL alone cannot carry.
    """
    return "cpu:gloo,cuda:nccl" if str(device).startswith("cuda") else "gloo"


def is_writer() -> bool:
    """Whether this process writes outputs (rank 0, or the only process, or a block run :func:`alone`)."""
    return rank_and_size()[0] == 0


_alone = contextvars.ContextVar("alone", default=False)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Run the block as a process of its own: a fit inside it neither shards its rows over the group nor
    waits for other ranks (the evaluate grid gives each whole fit to one rank)."""
    token = _alone.set(True)
    try:
        yield
    finally:
        _alone.reset(token)


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the group's size: (0, 1) outside a process group or inside :func:`alone`."""
    if dist.is_available() and dist.is_initialized() and not _alone.get():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_from_writer(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (pickled; over gloo on CPU where the group has it); ``value`` alone."""
    if rank_and_size()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_everywhere(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank; ``[value]`` alone."""
    size = rank_and_size()[1]
    if size == 1:
        return [value]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, value)
    return out
