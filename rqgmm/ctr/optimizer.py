"""Adam for the CTR step: torch's fused Adam kernel, called without ``torch.optim``'s per-step machinery.

A CTR model is a few dozen tensors trained for a few hundred steps a run, and a grid runs dozens of runs: on a
GPU the step is bound by the host's launches, not by the kernels. ``torch.optim.Adam(fused=True)`` spends most of
its step in Python around one kernel (hooks, grouping the tensors by device and type, graph-capture checks,
``zero_grad``), and building the first one imports ``torch._dynamo`` (about 1.2 s and 70 MB on the hosts we
measured). :class:`FusedAdam` keeps the state the same way and calls the same kernel with the same arguments, so
its updates equal ``torch.optim.Adam(fused=True)``'s bit for bit (``tests/test_ctr_optimizer.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class FusedAdam:
    """Adam (L2 ``weight_decay`` added to the gradient, no AMSGrad) over ``params`` on one device, in one fused
    kernel per step.

    Parameters
    ----------
    params : iterable of Parameter
        Floating-point tensors on one CPU or CUDA device.
    lr : float
        Learning rate; :attr:`lr` may be changed between steps (a warm-up).
    betas, eps, weight_decay : as ``torch.optim.Adam``'s.

    Attributes
    ----------
    state : dict of Parameter -> (exp_avg, exp_avg_sq, step)
        Created at a parameter's first step with a gradient; ``step`` is a float32 scalar tensor on its device,
        as the fused ``torch.optim.Adam`` keeps it.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.available(self.params):
            raise ValueError("FusedAdam needs floating-point parameters on one CPU or CUDA device, got "
                             f"{sorted({f'{p.dtype} on {p.device}' for p in self.params})}")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.state: dict[nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def available(params: Iterable[nn.Parameter]) -> bool:
        """Whether the fused kernel serves these parameters: floating point, all on one CPU or CUDA device."""
        params = list(params)
        devices = {p.device for p in params}
        return (len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
                and all(p.is_floating_point() for p in params))

    def zero_grad(self) -> None:
        """Drop every gradient (the next backward allocates fresh ones)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient (the others, and their step counts, stay)."""
        live = [p for p in self.params if p.grad is not None]
        if not live:
            return
        for p in live:
            if p not in self.state:
                self.state[p] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros((), dtype=torch.float32, device=p.device))
        exp_avgs, exp_avg_sqs, steps = (list(t) for t in zip(*(self.state[p] for p in live)))
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(live, [p.grad for p in live], exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
                           eps=self.eps, maximize=False, grad_scale=None, found_inf=None)
