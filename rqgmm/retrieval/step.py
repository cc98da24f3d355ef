"""One optimisation step of the next-item model (loss, backward, fused Adam), eager or replayed from a CUDA graph.

On a GPU the full-mode step is bound by kernel launches, not arithmetic: one
step of the 2-layer model of width 128 on 256 windows issues about 1,700 aten
calls, and an epoch of a 5M-row planted log (404 steps) took 4-8.5 s on an
H100 (issue 27). With ``graph=True`` on a CUDA device the step (forward, the
loss, backward, Adam with its learning rate read from a device tensor, the
epoch's running sums) is captured once into a CUDA graph, after
:data:`GRAPH_WARMUP` eager steps on a side stream as torch's whole-network
recipe asks, and each later step copies its windows into the captured input and
replays it: one launch. A batch shorter than the captured one (an epoch's last)
is padded with empty windows (-1), which hold no target and add nothing to the
loss. Dropout and the dense loss's negatives draw from torch's CUDA generator,
which graphs advance at each replay, so a run repeats itself. Should the capture
fail (an operation that syncs the host, say) the step logs why and stays eager.

Elsewhere, and with ``graph=False``, the step is the eager one, exactly as the
trainer ran it before (the same rate per step as ``LambdaLR`` gave).
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch

from rqgmm.retrieval.model import NextItemModel

logger = logging.getLogger(__name__)

#: Eager steps (on a side stream) before the capture: they build autograd's and cuBLAS's state the graph reuses.
GRAPH_WARMUP = 3
#: Learning-rate schedules (:func:`rate_factor`), and the cosine one's share of warm-up steps.
SCHEDULES = ("constant", "cosine")
WARMUP = 0.05


def rate_factor(schedule: str, steps: int) -> Callable[[int], float]:
    """The learning-rate factor of step i (0-based) of ``schedule`` over a budget of ``steps`` steps.

    "constant": 1. "cosine": a linear rise over the first :data:`WARMUP` of the steps, then a half cosine to 0 at
    the budget's end. Raises ValueError for another schedule.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Expected schedule in {SCHEDULES}, got {schedule!r}")
    warmup = max(1, int(WARMUP * steps))

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return factor


class TrainStep:
    """Adam steps on the model's mean loss per target item, the sums of the loss and of the targets kept on the device.

    Parameters
    ----------
    model : NextItemModel
    lr : float
        The peak learning rate; step i uses ``lr x factor(i)``.
    factor : callable int -> float
        :func:`rate_factor`'s schedule.
    batch : int
        The most windows of one step (the captured input's rows).
    graph : bool
        Capture the step into a CUDA graph when the model is on a CUDA device (ignored elsewhere).
    """

    def __init__(self, model: NextItemModel, lr: float, factor: Callable[[int], float], batch: int,
                 graph: bool) -> None:
        device = model.table.device
        self.model, self.lr, self.factor, self.steps, self.read_at = model, lr, factor, 0, 0
        self.graphed = graph and device.type == "cuda"
        self.total = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device, dtype=torch.int64)
        self.graph: torch.cuda.CUDAGraph | None = None  # captured at the first step after the warm-up
        params = list(model.parameters())
        if self.graphed:
            self.rate = torch.tensor(lr, device=device)
            self.optimizer = torch.optim.Adam(params, lr=self.rate, fused=True, capturable=True)
            self.windows = torch.full((batch, model.slots), -1, dtype=torch.int64, device=device)
        else:
            self.optimizer = torch.optim.Adam(params, lr=lr, fused=device.type in ("cuda", "cpu"))

    def __call__(self, windows: torch.Tensor) -> None:
        """One step on ``windows`` (B, S) item rows (B <= batch), added to the running sums."""
        rate = self.lr * self.factor(self.steps)
        self.steps += 1
        if not self.graphed:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            self.optimizer.zero_grad(set_to_none=True)
            self._body(windows)
            return
        self.rate.fill_(rate)
        self.windows[:len(windows)].copy_(windows)
        self.windows[len(windows):].fill_(-1)
        if self.graph is not None:
            self.graph.replay()
        elif self.steps <= GRAPH_WARMUP:
            self._on_side_stream()
        else:
            self._capture()

    def epoch_loss(self) -> float:
        """The mean loss per target item since the last call (one host read), and the sums reset."""
        value = float(self.total / self.count.clamp(min=1)) if self.steps > self.read_at else math.nan
        self.read_at = self.steps
        self.total.zero_()
        self.count.zero_()
        return value

    def _body(self, windows: torch.Tensor) -> None:
        loss, n = self.model.loss(windows)
        (loss / n.clamp(min=1)).backward()
        self.optimizer.step()
        self.total.add_(loss.detach())
        self.count.add_(n)

    def _on_side_stream(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.optimizer.zero_grad(set_to_none=True)
            self._body(self.windows)
        torch.cuda.current_stream().wait_stream(stream)

    def _capture(self) -> None:
        """Capture the step on the current input and replay it; on failure, this step and the later ones eager."""
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._body(self.windows)
        except RuntimeError as error:
            logger.warning("CUDA graph capture of the training step failed (%s); training eagerly",
                           str(error).splitlines()[0])
            self.graphed = False
            self.optimizer.zero_grad(set_to_none=True)
            self._body(self.windows)
            return
        self.graph = graph
        graph.replay()
