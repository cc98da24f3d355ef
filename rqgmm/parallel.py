"""Data-parallel runs: join the process group that ``torchrun`` describes.

``torchrun --nproc-per-node N -m rqgmm fit ...`` starts N processes with
RANK/WORLD_SIZE/MASTER_ADDR in their environment; each joins the group (gloo on
CPU, NCCL on GPUs), fits on its block of rows, and rank 0 writes the outputs.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Iterator

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """True when the environment describes a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: str) -> Iterator[str]:
    """Join the torchrun group for the block (if any); yields the device this rank uses."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    # gloo for the CPU tensors every group exchanges (row counts, validation), NCCL for the GPU statistics.
    timeout = datetime.timedelta(seconds=float(os.environ.get("RQGMM_DIST_TIMEOUT", "600")))
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timeout)
    logger.info("rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), device)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def is_writer() -> bool:
    """Whether this process writes outputs (rank 0, or the only process)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
