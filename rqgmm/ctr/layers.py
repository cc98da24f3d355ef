"""Blocks every CTR backbone is built from: embedding, MLP, FM, cross network, inner product.

A backbone file is then a short ``forward`` over these blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rqgmm.errors import InputError
from rqgmm.ctr.spec import FieldSpec
from rqgmm.ctr.tensors import Batch

# Small enough that the first MLP layer starts near-linear, large enough that
# Adam moves the tables within the few epochs the study affords.
EMBEDDING_INIT_STD = 0.01


class FeatureEmbedding(nn.Module):
    """Embed every field of a :class:`~rqgmm.ctr.tensors.Batch` to one vector of width ``d``.

    ONE ``nn.Embedding`` holds every categorical and bag field (each semantic-ID
    level included), field after field: a field's index is its code plus the
    field's offset, so all categorical fields cost one lookup, and all bag
    fields another, mean-pooled per field over their non-zero entries (0 is
    padding, or a value never seen in training). Numeric fields are ``x * w_f +
    b_f``; each dense field (an embedding column) has its own ``nn.Linear``.

    Parameters
    ----------
    fields : sequence of FieldSpec
        Grouped by kind, in batch order: categorical, bag, numeric, dense; all
        share ``dim``.
    dim : int, optional
        Override of the fields' width (``LinearTerm`` uses 1).

    Shapes
    ------
    forward(batch) -> (B, F, d), in field order.
    """

    def __init__(self, fields: Sequence[FieldSpec], dim: int | None = None) -> None:
        super().__init__()
        self.dim = _shared_dim(fields) if dim is None else int(dim)
        unknown = [f for f in fields if f.kind not in KINDS]
        if unknown:
            raise InputError(f"unknown field kind {unknown[0].kind!r} of field {unknown[0].name!r}; "
                             f"use one of {', '.join(KINDS)}")
        groups = {kind: [f for f in fields if f.kind == kind] for kind in KINDS}
        if [f for kind in KINDS for f in groups[kind]] != list(fields):
            raise InputError("fields must come grouped by kind (categorical, bag, numeric, dense), as "
                             "FeatureBuilder.fields gives them")
        self.names = [f.name for f in fields]
        self.num_codes, self.num_bags = len(groups["categorical"]), len(groups["bag"])
        sizes = [f.vocab_size for f in (*groups["categorical"], *groups["bag"])]
        offsets = torch.tensor([0, *sizes], dtype=torch.int64).cumsum(0)[:len(sizes)]
        self.register_buffer("code_offsets", offsets[:self.num_codes].clone(), persistent=False)
        self.register_buffer("bag_offsets", offsets[self.num_codes:].clone(), persistent=False)
        self.register_buffer("bag_ids", torch.arange(self.num_bags), persistent=False)
        self.table = nn.Embedding(max(sum(sizes), 1), self.dim)
        nn.init.normal_(self.table.weight, std=EMBEDDING_INIT_STD)
        n_numeric = len(groups["numeric"])
        # each numeric field starts as nn.Linear(1, d) does: weight and bias U(-1, 1)
        self.numeric_weight = nn.Parameter(torch.empty(n_numeric, self.dim).uniform_(-1, 1))
        self.numeric_bias = nn.Parameter(torch.empty(n_numeric, self.dim).uniform_(-1, 1))
        self.dense = nn.ModuleList(nn.Linear(f.input_dim, self.dim) for f in groups["dense"])

    @property
    def num_fields(self) -> int:
        return len(self.names)

    @property
    def output_dim(self) -> int:
        """Width of the flattened output, F * d."""
        return self.num_fields * self.dim

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = [self.table(batch.codes + self.code_offsets)] if self.num_codes else []
        if self.num_bags:
            parts.append(self._pooled_bags(batch))
        if len(self.numeric_weight):
            parts.append(batch.numeric.unsqueeze(-1) * self.numeric_weight + self.numeric_bias)
        parts += [linear(x).unsqueeze(1) for linear, x in zip(self.dense, batch.dense)]
        return torch.cat(parts, dim=1)

    def _pooled_bags(self, batch: Batch) -> torch.Tensor:
        """Mean of each bag field's non-zero entries, (B, F_b, d); zeros for an empty bag."""
        present = (batch.bags > 0).to(self.table.weight.dtype)                                # (B, G)
        vectors = self.table(batch.bags + self.bag_offsets[batch.bag_fields])                 # (B, G, d)
        # (G, F_b); a comparison, not one_hot, which checks its range on the host
        membership = (batch.bag_fields.unsqueeze(1) == self.bag_ids).to(present.dtype)
        sums = torch.einsum("bgd,bg,gf->bfd", vectors, present, membership)
        return sums / (present @ membership).clamp(min=1).unsqueeze(-1)


KINDS = ("categorical", "bag", "numeric", "dense")


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

    def forward(self, batch: Batch) -> torch.Tensor:
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
