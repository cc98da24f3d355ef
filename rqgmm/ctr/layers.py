"""Blocks every CTR backbone is built from: embedding, MLP, FM, cross network, inner product.

A backbone file is then a short ``forward`` over these blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from .spec import FieldSpec

# Small enough that the first MLP layer starts near-linear, large enough that
# Adam moves the tables within the few epochs the study affords.
EMBEDDING_INIT_STD = 0.01


class FeatureEmbedding(nn.Module):
    """Embed every field, by name, to one vector of width ``d``.

    One ``nn.Embedding`` per categorical field (so each semantic-ID level has
    its own table), a mean-pooled ``nn.EmbeddingBag`` per bag field (index 0
    is padding) and a ``nn.Linear`` projection per dense field (an embedding
    column, or a numeric value with ``input_dim`` 1).

    Parameters
    ----------
    fields : sequence of FieldSpec
        Any number of each kind; all fields share ``dim``.
    dim : int, optional
        Override of the fields' width (``LinearTerm`` uses 1).

    Shapes
    ------
    forward(batch: field name → (B,) / (B, G) / (B, input_dim)) -> (B, F, d), in field order.
    """

    def __init__(self, fields: Sequence[FieldSpec], dim: int | None = None) -> None:
        super().__init__()
        self.dim = _shared_dim(fields) if dim is None else int(dim)
        self.names = [f.name for f in fields]
        # ModuleDict keys cannot hold every column name (".", ""), so modules are keyed by position
        self.blocks = nn.ModuleList(_field_module(f, self.dim) for f in fields)

    @property
    def num_fields(self) -> int:
        return len(self.names)

    @property
    def output_dim(self) -> int:
        """Width of the flattened output, F * d."""
        return self.num_fields * self.dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([block(batch[name]) for name, block in zip(self.names, self.blocks)], dim=1)


def _field_module(spec: FieldSpec, dim: int) -> nn.Module:
    """The module that embeds one field: (B, ...) -> (B, dim)."""
    if spec.kind == "dense":
        return nn.Linear(spec.input_dim, dim)
    if spec.kind == "bag":
        module = nn.EmbeddingBag(spec.vocab_size, dim, mode="mean", padding_idx=0)
    elif spec.kind == "categorical":
        module = nn.Embedding(spec.vocab_size, dim)
    else:
        raise InputError(f"unknown field kind {spec.kind!r} of field {spec.name!r}; use categorical, bag or dense")
    nn.init.normal_(module.weight, std=EMBEDDING_INIT_STD)
    return module


def _shared_dim(fields: Sequence[FieldSpec]) -> int:
    dims = {f.dim for f in fields}
    if len(dims) != 1:
        raise InputError(f"all fields must share one embedding dim (FM and cross layers need it), got {sorted(dims)}")
    return dims.pop()


class MLP(nn.Module):
    """Linear → ReLU (→ Dropout) stacks, optionally ending in a linear head.

    Parameters
    ----------
    input_dim : int
    hidden : sequence of int
        Hidden widths, e.g. (256, 128).
    dropout : float
        Dropout after each hidden layer (0 disables it).
    output_dim : int, optional
        Width of a final linear layer without activation.

    Shapes
    ------
    forward(x (B, input_dim)) -> (B, output_dim or hidden[-1])
    """

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 output_dim: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(input_dim, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            input_dim = width
        if output_dim is not None:
            layers.append(nn.Linear(input_dim, output_dim))
            input_dim = output_dim
        self.output_dim = input_dim
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FactorizationMachine(nn.Module):
    """Second-order FM term: Σ_{i<j} <e_i, e_j> = ½ Σ_d [(Σ_i e_i)² − Σ_i e_i²].

    Shapes
    ------
    forward(e (B, F, d)) -> (B,)
    """

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        square_of_sum = e.sum(dim=1).pow(2)
        sum_of_square = e.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


class CrossNetworkV2(nn.Module):
    """DCN-V2 full-rank cross layers: x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l.

    Parameters
    ----------
    input_dim : int
    num_layers : int

    Shapes
    ------
    forward(x0 (B, D)) -> (B, D)
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class LinearTerm(nn.Module):
    """First-order term: a scalar weight per field value, summed, plus a bias.

    Shapes
    ------
    forward(batch) -> (B,)
    """

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(fields, dim=1)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weights(batch).sum(dim=(1, 2)) + self.bias


class InnerProduct(nn.Module):
    """IPNN's product layer: the inner product of every pair of field embeddings.

    Shapes
    ------
    forward(e (B, F, d)) -> (B, F (F - 1) / 2)
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @property
    def output_dim(self) -> int:
        return int(self.rows.numel())

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return (e[:, self.rows] * e[:, self.cols]).sum(dim=-1)
