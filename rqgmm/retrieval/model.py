"""A decoder-only next-item model over item tokens (causal transformer, teacher forcing).

A window of S item slots is flattened to S x T tokens (slot after slot, an
item's T tokens in order); each token's embedding is its token's (one table
over the positions' vocabularies, offset per position, plus a padding token)
plus its slot's and its position-in-item's. A causal transformer reads it and
the hidden state at a token predicts the next one, over the vocabulary of the
next token's position. Every item of a window is a target in one forward pass
(as SASRec), so a user's sequence trains in one pass, not one per prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .vocab import ItemTokens


@dataclass(frozen=True)
class ModelConfig:
    """Size of the transformer.

    Parameters
    ----------
    dim : int
        Width of embeddings and hidden states.
    layers, heads : int
    dropout : float
    """

    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1


class NextItemModel(nn.Module):
    """Causal transformer over flattened item tokens.

    Parameters
    ----------
    tokens : ItemTokens
        The item table (kept as a buffer: item rows become tokens on the device).
    slots : int
        S, item slots per window (history + the target).
    config : ModelConfig
    """

    def __init__(self, tokens: ItemTokens, slots: int, config: ModelConfig) -> None:
        super().__init__()
        self.sizes, self.generated, self.slots = tokens.sizes, tokens.generated, slots
        offsets = np.concatenate([[0], np.cumsum(tokens.sizes)[:-1]])
        self.vocab = int(sum(tokens.sizes))  # the padding token
        self.register_buffer("table", torch.as_tensor(tokens.tokens + offsets, dtype=torch.int64))
        self.offsets = [int(o) for o in offsets]
        self.register_buffer("shift", torch.as_tensor(offsets, dtype=torch.int64))  # a prefix's tokens as input
        d = config.dim
        self.embed = nn.Embedding(self.vocab + 1, d)
        self.slot = nn.Embedding(slots, d)
        self.level = nn.Embedding(tokens.length, d)
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, config.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.vocab)

    def flat(self, items: torch.Tensor) -> torch.Tensor:
        """Item rows (B, S') (-1: padding) -> flat tokens (B, S' x T)."""
        tokens = self.table[items.clamp(min=0)]
        tokens = torch.where(items[..., None] >= 0, tokens, torch.full_like(tokens, self.vocab))
        return tokens.flatten(1)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Flat tokens (B, n), n <= S x T, starting at slot 0 -> hidden states (B, n, dim)."""
        n, T = tokens.shape[1], len(self.sizes)
        position = torch.arange(n, device=tokens.device)
        x = self.embed(tokens) + self.slot(position // T) + self.level(position % T)
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device, dtype=x.dtype)
        return self.norm(self.blocks(x, mask=mask, is_causal=True))

    def logits(self, hidden: torch.Tensor, position: int) -> torch.Tensor:
        """Scores (..., V_position) of the tokens of item position ``position`` from hidden states (..., dim)."""
        lo = self.offsets[position]
        hi = lo + self.sizes[position]
        return nn.functional.linear(hidden, self.head.weight[lo:hi], self.head.bias[lo:hi])

    def loss(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy of every generated token of every target slot, and the number of target items.

        Parameters
        ----------
        items : LongTensor (B, S), item rows, -1 for padding (left)

        A slot is a target when it and the slot before it hold items. Both
        results stay on the device (no host sync).
        """
        T, tokens = len(self.sizes), self.flat(items)
        hidden = self.hidden(tokens)
        target = (items[:, 1:] >= 0) & (items[:, :-1] >= 0)
        total = torch.zeros((), device=items.device)
        for g in range(self.generated):
            # the state before token g of slot j (j >= 1) is at j*T + g - 1
            states = hidden[:, T + g - 1::T][:, :items.shape[1] - 1]
            truth = self.table[items[:, 1:].clamp(min=0), g] - self.offsets[g]
            truth = torch.where(target, truth, torch.full_like(truth, -100))
            total = total + nn.functional.cross_entropy(self.logits(states, g).flatten(0, 1), truth.flatten(),
                                                        ignore_index=-100, reduction="sum")
        return total, target.sum()
