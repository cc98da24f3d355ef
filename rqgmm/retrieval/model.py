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

from rqgmm.retrieval.dense import SCALE_INIT, SCALE_MAX, sampled_softmax_loss
from rqgmm.retrieval.vocab import ItemTokens


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


class Block(nn.Module):
    """A pre-norm transformer block whose attention can read a cached context (keys and values of earlier tokens).

    Parameters
    ----------
    dim, heads : int
    dropout : float
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (N, n, dim) -> (N, n, dim) and this call's keys and values (N, heads, n, dim / heads).

        ``past``: the keys and values of a context that precedes every row of x, laid out by
        :func:`step_context` (B x heads contexts), with N = B x w (w rows per context, consecutive): x reads the
        context and, causally, itself.
        """
        N, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(N, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if past is None:
            att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # dropout: on the residuals
        else:
            att = _attend_after(q, k, v, *past)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(N, n, d)))
        return x + self.drop(self.ff(self.norm2(x))), (k, v)


def step_context(cache: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A context's keys and values (per block, (B, h, n0, e) each, as :meth:`NextItemModel.hidden` returns them)
    laid out once for the calls that read it: keys transposed (B x h, e, n0) and values (B x h, n0, e),
    contiguous (the operands of :func:`_attend_after`'s matrix products, not copied again at every beam step)."""
    return [(k.transpose(2, 3).reshape(-1, k.shape[3], k.shape[2]).contiguous(),
             v.reshape(-1, v.shape[2], v.shape[3]).contiguous()) for k, v in cache]


#: Bytes of attention scores (rows x (n0 + n) floats) normalised at once by a cached step on the CPU: a few
#: contexts' scores stay in the cache and their blocks are reused, where the softmax of all at once (over 32 MB at
#: 256 users, beam 20, n = 3) was mapped afresh (page faults) at every call. Other devices take all at once.
STEP_SCORE_BYTES = {"cpu": 2 << 20}


def _attend_after(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_kt: torch.Tensor,
                  past_v: torch.Tensor) -> torch.Tensor:
    """Attention of q (B*w, h, n, e) over a shared context (B*h, e, n0) keys transposed, (B*h, n0, e) values
    (:func:`step_context`) and, causally, over k, v (B*w, h, n, e).

    The matrix products are those of ``einsum("bwhqe,bhke->bwhqk")`` and ``einsum("bwhqk,bhke->bwhqe")`` over
    all contexts at once (one per context and head, on the same contiguous operands); each row's scores (context,
    then own) go through the softmax as one row, :data:`STEP_SCORE_BYTES` of them at a time, the weights written
    over the scores: the bits of the einsum form.
    """
    N, h, n, e = q.shape
    n0 = past_kt.shape[2]
    B = past_kt.shape[0] // h
    w = N // B
    scale = e ** -0.5
    qb = q.view(B, w, h, n, e)
    scores = torch.bmm(qb.transpose(1, 2).reshape(B * h, w * n, e), past_kt).mul_(scale)  # (B*h, w*n, n0)
    own = torch.einsum("bwhqe,bwhke->bwhqk", qb, k.view(B, w, h, n, e)).mul_(scale)
    own.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    own = own.transpose(1, 2).reshape(B * h, w * n, n)
    limit = STEP_SCORE_BYTES.get(q.device.type)
    step = len(scores) if limit is None else max(1, limit // (w * n * (n0 + n) * scores.element_size()))
    for i in range(0, len(scores), step):
        weights = torch.softmax(torch.cat([scores[i:i + step], own[i:i + step]], -1), -1)
        scores[i:i + step], own[i:i + step] = weights[..., :n0], weights[..., n0:]
    out = torch.bmm(scores, past_v).view(B, h, w, n, e).transpose(1, 2)
    out = out + torch.einsum("bwhqk,bwhke->bwhqe", own.view(B, h, w, n, n).transpose(1, 2), v.view(B, w, h, n, e))
    return out.reshape(q.shape)


class NextItemModel(nn.Module):
    """Causal transformer over flattened item tokens.

    Parameters
    ----------
    tokens : ItemTokens
        The item table (kept as a buffer: item rows become tokens on the device).
    slots : int
        S, item slots per window (history + the target).
    config : ModelConfig
    vectors : ndarray float (M, E) or None
        The items' unit embeddings: the model also learns a projection of the state before an item to them
        (LIGER's dense rule, :mod:`.dense`) with a learned scale, its sampled-softmax loss weighted by
        ``dense_weight``.
    """

    def __init__(self, tokens: ItemTokens, slots: int, config: ModelConfig, vectors: np.ndarray | None = None,
                 dense_weight: float = 0.0) -> None:
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
        self.blocks = nn.ModuleList(Block(d, config.heads, config.dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.vocab)
        self.dense_weight = dense_weight
        if vectors is not None:  # the dense rule's projection (:mod:`.dense`), built last: the other weights stay
            self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))
            self.project = nn.Linear(d, self.vectors.shape[1])
            self.log_scale = nn.Parameter(torch.tensor(float(np.log(SCALE_INIT))))

    def flat(self, items: torch.Tensor) -> torch.Tensor:
        """Item rows (B, S') (-1: padding) -> flat tokens (B, S' x T)."""
        tokens = self.table[items.clamp(min=0)]
        tokens = torch.where(items[..., None] >= 0, tokens, torch.full_like(tokens, self.vocab))
        return tokens.flatten(1)

    def hidden(self, tokens: torch.Tensor, past: list | None = None, start: int = 0) -> tuple[torch.Tensor, list]:
        """Flat tokens (N, n) at positions start.. -> hidden states (N, n, dim), and each block's keys and values.

        ``past``: the cache a call on the preceding tokens returned (positions 0 .. start - 1), laid out by
        :func:`step_context`, shared by consecutive groups of N / B rows; None: the tokens start at position 0.
        """
        n, T = tokens.shape[1], len(self.sizes)
        position = torch.arange(start, start + n, device=tokens.device)
        x = self.embed(tokens) + self.slot(position // T) + self.level(position % T)
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            cache.append(kv)
        return self.norm(x), cache

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

        A slot is a target when it and the slot before it hold items. With the dense rule's projection the
        sum adds ``dense_weight x`` the sampled-softmax loss (:func:`.dense.sampled_softmax_loss`) per target
        item. Both results stay on the device (no host sync).
        """
        T, tokens = len(self.sizes), self.flat(items)
        hidden, _ = self.hidden(tokens)
        target = (items[:, 1:] >= 0) & (items[:, :-1] >= 0)
        total = torch.zeros((), device=items.device)
        for g in range(self.generated):
            # the state before token g of slot j (j >= 1) is at j*T + g - 1
            states = hidden[:, T + g - 1::T][:, :items.shape[1] - 1]
            truth = self.table[items[:, 1:].clamp(min=0), g] - self.offsets[g]
            truth = torch.where(target, truth, torch.full_like(truth, -100))
            total = total + nn.functional.cross_entropy(self.logits(states, g).flatten(0, 1), truth.flatten(),
                                                        ignore_index=-100, reduction="sum")
        if hasattr(self, "project"):
            states = hidden[:, T - 1::T][:, :items.shape[1] - 1].flatten(0, 1)
            query = nn.functional.normalize(self.project(states), dim=-1)
            rows = items[:, 1:].clamp(min=0).flatten()
            total = total + self.dense_weight * sampled_softmax_loss(query, rows, target.flatten(), self.vectors,
                                                                     self.scale)
        return total, target.sum()

    @property
    def scale(self) -> torch.Tensor:
        """The dense rule's learned scale of cosines (at most :data:`.dense.SCALE_MAX`)."""
        return self.log_scale.exp().clamp(max=SCALE_MAX)

    def query(self, history: torch.Tensor) -> torch.Tensor:
        """The dense rule's query (B, E), unit length: the projected state after each history (B, H) of item rows."""
        return self.query_of(self.hidden(self.flat(history))[0][:, -1])

    def query_of(self, state: torch.Tensor) -> torch.Tensor:
        """The dense rule's query (B, E), unit length, from the hidden state (B, dim) after each history."""
        return nn.functional.normalize(self.project(state), dim=-1)
