"""FusedAdam: the CTR step's Adam equals torch.optim.Adam(fused=True) bit for bit, without importing dynamo."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from rqgmm.ctr.optimizer import FusedAdam


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 1))


def _train(model: nn.Module, optimizer, lrs: list[float], set_lr, frozen: nn.Parameter | None = None) -> None:
    generator = torch.Generator().manual_seed(7)
    for lr in lrs:
        set_lr(lr)
        x = torch.randint(0, 50, (32, 3), generator=generator)
        y = torch.randint(0, 2, (32,), generator=generator).float()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
        optimizer.zero_grad()
        loss.backward()
        if frozen is not None:
            frozen.grad = None  # a parameter without a gradient this step
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_updates_equal_torch_fused_adam_bit_for_bit(weight_decay):
    lrs = [1e-3 * (i + 1) / 4 for i in range(4)] + [1e-3] * 6  # a warm-up, then a constant rate
    ours, theirs = _model(0), _model(0)
    mine = FusedAdam(ours.parameters(), lr=lrs[0], weight_decay=weight_decay)
    reference = torch.optim.Adam(theirs.parameters(), lr=lrs[0], weight_decay=weight_decay, fused=True)
    _train(ours, mine, lrs, lambda lr: setattr(mine, "lr", lr), frozen=ours[2].bias)

    def set_reference(lr):
        for group in reference.param_groups:
            group["lr"] = lr

    _train(theirs, reference, lrs, set_reference, frozen=theirs[2].bias)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        if p is ours[2].bias:
            assert p not in mine.state and q not in reference.state  # never had a gradient: no state, no step
            continue
        exp_avg, exp_avg_sq, step = mine.state[p]
        assert torch.equal(exp_avg, reference.state[q]["exp_avg"])
        assert torch.equal(exp_avg_sq, reference.state[q]["exp_avg_sq"])
        assert torch.equal(step, reference.state[q]["step"])


def test_fused_adam_refuses_parameters_it_cannot_serve():
    with pytest.raises(ValueError, match="floating-point parameters on one CPU or CUDA device"):
        FusedAdam([nn.Parameter(torch.zeros(2, dtype=torch.float64)), nn.Parameter(torch.zeros(2), requires_grad=False),
                   nn.Parameter(torch.zeros(2, device="meta"))], lr=1e-3)
    assert FusedAdam.available(list(_model(0).parameters()))


def test_a_ctr_training_run_never_imports_dynamo():
    """torch.optim's first optimiser imports torch._dynamo (seconds, tens of MB); the CTR step needs none of it."""
    run = subprocess.run([sys.executable, "-c", _TINY_TRAINING], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "dynamo imported: False"


_TINY_TRAINING = """
import sys
import numpy as np, pandas as pd
from rqgmm.ctr import FeatureSpec, run_ctr
rng = np.random.default_rng(0)
frame = pd.DataFrame({"user": rng.integers(0, 30, 600), "item": rng.integers(0, 40, 600),
                      "label": rng.integers(0, 2, 600)})
spec = FeatureSpec(user="user", item="item", label="label")
run_ctr(frame[:400], frame[400:500], frame[500:], spec)
print("dynamo imported:", "torch._dynamo" in sys.modules)
"""
