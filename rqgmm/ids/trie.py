"""The prefix trie of published full IDs: the allowed next tokens for constrained decoding.

A full ID is a sequence of T tokens (the L codes, then the suffix when there is
one); token ``t`` lies in ``[0, V_t)``. The trie holds every distinct sequence
and nothing else, so a beam search that only extends a prefix by a token
:meth:`PrefixTrie.allowed_next` allows ends on a published full ID, and a
sequence is accepted (:meth:`PrefixTrie.accepts`) exactly when it is one.

Layout (compressed sparse rows, tensors, so that a batch on a GPU stays there):
node 0 is the root; edge ``e`` leads to node ``e + 1``. Edges are numbered by
depth, then parent, then token, so the children of node ``v`` are the edges
``indptr[v]:indptr[v + 1]``, sorted by token, and ``parent * V_max + token``
is strictly increasing over the edges: finding a child is one
``searchsorted`` per step, vectorised over the batch.

On disk (:meth:`PrefixTrie.save`): a parquet of one row per edge (``depth``,
``parent``, ``token``) with the vocabulary sizes in the schema metadata key
``rqgmm_trie``; :meth:`PrefixTrie.read` checks it and rebuilds the rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.files.formats import read_parquet
from rqgmm.ids.keys import row_keys, rows_of_keys, sorted_distinct

METADATA_KEY = b"rqgmm_trie"
VERSION = 1


@dataclass(frozen=True)
class PrefixTrie:
    """The trie of a set of full IDs (build it with :meth:`build`).

    Attributes
    ----------
    vocab_sizes : tuple of int, length T
        V_t, the number of tokens at position t.
    indptr : LongTensor (n_nodes + 1,)
        Children of node v: edges ``indptr[v]:indptr[v + 1]`` (node = edge + 1).
    parent, token : LongTensor (n_edges,)
        The node each edge leaves and the token it carries.
    depth : LongTensor (n_edges,)
        The position of each edge's token (0 for the root's children).
    keys : LongTensor (n_edges,)
        ``parent * max(vocab_sizes) + token``, strictly increasing: the search key of each edge.
    """

    vocab_sizes: tuple[int, ...]
    indptr: torch.Tensor
    parent: torch.Tensor
    token: torch.Tensor
    depth: torch.Tensor
    keys: torch.Tensor

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, ids: np.ndarray, vocab_sizes: list[int]) -> "PrefixTrie":
        """The trie of the distinct rows of ``ids`` (N, T) int, token t in ``[0, vocab_sizes[t])``."""
        ids = np.asarray(ids, dtype=np.int64)
        sizes = tuple(int(v) for v in vocab_sizes)
        if ids.ndim != 2 or ids.shape[1] != len(sizes):
            raise InputError(f"a trie needs full IDs of shape (N, {len(sizes)}), got {ids.shape}")
        if len(ids) and ((ids < 0).any() or (ids >= np.array(sizes)).any()):
            raise InputError(f"full IDs hold tokens outside the vocabulary sizes {list(sizes)}")
        return cls.from_sorted_rows(sorted_unique_rows(ids, sizes), sizes)

    @classmethod
    def from_sorted_rows(cls, rows: np.ndarray, vocab_sizes) -> "PrefixTrie":
        """The trie of distinct rows (M, T) already in lexicographic order (as :func:`sorted_unique_rows` gives)."""
        return cls.from_edges(vocab_sizes, *_edges(np.asarray(rows, dtype=np.int64)))

    @classmethod
    def from_edges(cls, vocab_sizes, parent: np.ndarray, token: np.ndarray, depth: np.ndarray) -> "PrefixTrie":
        """The trie of edges in trie order (as :meth:`build` makes them and :meth:`save` stores them)."""
        sizes = tuple(int(v) for v in vocab_sizes)
        parent, token, depth = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
                                for a in (parent, token, depth))
        n_nodes = len(parent) + 1
        indptr = torch.zeros(n_nodes + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(parent, minlength=n_nodes), 0)
        return cls(sizes, indptr, parent, token, depth, parent * max(sizes) + token)

    # ------------------------------------------------------------------ queries

    @property
    def length(self) -> int:
        """T, the number of tokens of a full ID."""
        return len(self.vocab_sizes)

    @property
    def device(self) -> torch.device:
        return self.token.device

    @property
    def offsets(self) -> list[int]:
        """Offset of position t in one shared vocabulary of ``sum(vocab_sizes)`` tokens."""
        return [int(v) for v in np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]])]

    def to(self, device: str | torch.device) -> "PrefixTrie":
        """The same trie with its tensors on ``device``."""
        return PrefixTrie(self.vocab_sizes, *(t.to(device) for t in (self.indptr, self.parent, self.token,
                                                                      self.depth, self.keys)))

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """The node (B,) each prefix (B, t) of tokens leads to; -1 where it is no prefix of a full ID."""
        prefixes = torch.as_tensor(prefixes, dtype=torch.int64, device=self.device)
        if prefixes.ndim != 2 or prefixes.shape[1] > self.length:
            raise InputError(f"prefixes must be (B, t) with t <= {self.length}, got {tuple(prefixes.shape)}")
        keys, v_max = self.keys, max(self.vocab_sizes)
        node = torch.zeros(prefixes.shape[0], dtype=torch.int64, device=self.device)
        for t in range(prefixes.shape[1]):
            tok = prefixes[:, t]
            key = node.clamp(min=0) * v_max + tok
            edge = torch.searchsorted(keys, key).clamp(max=max(len(keys) - 1, 0))
            found = (node >= 0) & (tok >= 0) & (tok < self.vocab_sizes[t])
            found &= keys[edge] == key if len(keys) else torch.zeros_like(found)
            node = torch.where(found, edge + 1, torch.full_like(node, -1))
        return node

    def allowed_next(self, prefixes: torch.Tensor, flat: bool = False) -> torch.Tensor:
        """Mask of the tokens that may follow each prefix.

        Parameters
        ----------
        prefixes : LongTensor (B, t), t < T
            Token sequences (t = 0: the root); a tensor on the trie's device.
        flat : bool
            Give the mask over one shared vocabulary of ``sum(vocab_sizes)``
            tokens (position t's tokens at ``offsets[t]``) instead of V_t.

        Returns
        -------
        BoolTensor (B, V_t), or (B, sum V) with ``flat``; all False for a prefix
        of no published full ID.
        """
        prefixes = torch.as_tensor(prefixes, dtype=torch.int64, device=self.device)
        t = prefixes.shape[1] if prefixes.ndim == 2 else -1
        if not 0 <= t < self.length:
            raise InputError(f"allowed_next takes prefixes (B, t) with t < {self.length}, got {tuple(prefixes.shape)}")
        nodes, inverse = torch.unique(self.walk(prefixes), return_inverse=True)  # beams share prefixes
        rows, edges = self._children(nodes)
        width, shift = (sum(self.vocab_sizes), self.offsets[t]) if flat else (self.vocab_sizes[t], 0)
        mask = torch.zeros(len(nodes), width, dtype=torch.bool, device=self.device)
        mask[rows, self.token[edges] + shift] = True
        return mask[inverse]

    def _children(self, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, edge) pairs: every child edge of every node (B,) (none for -1)."""
        live = node >= 0
        safe = node.clamp(min=0)
        start = self.indptr[safe]
        count = torch.where(live, self.indptr[safe + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(node), device=self.device), count)
        first = torch.cumsum(count, 0) - count
        return rows, start[rows] + torch.arange(len(rows), device=self.device) - first[rows]

    def accepts(self, sequences: torch.Tensor) -> torch.Tensor:
        """BoolTensor (B,): whether each sequence (B, T') is a full ID of the trie (never when T' != T)."""
        sequences = torch.as_tensor(sequences, dtype=torch.int64, device=self.device)
        if sequences.ndim != 2:
            raise InputError(f"sequences must be (B, T), got {tuple(sequences.shape)}")
        if sequences.shape[1] != self.length:
            return torch.zeros(sequences.shape[0], dtype=torch.bool, device=self.device)
        return self.walk(sequences) >= 0

    def full_ids(self) -> np.ndarray:
        """Every full ID (M, T) of the trie, in sorted order (the leaves, read back through their parents)."""
        parent, token, depth = (t.cpu().numpy() for t in (self.parent, self.token, self.depth))
        leaves = np.flatnonzero(depth == self.length - 1) + 1  # nodes
        out = np.empty((len(leaves), self.length), dtype=np.int64)
        node = leaves
        for t in range(self.length - 1, -1, -1):
            out[:, t] = token[node - 1]
            node = parent[node - 1]
        return out

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write the trie as parquet (one row per edge), atomically."""
        table = pa.table({"depth": pa.array(self.depth.cpu().numpy().astype(np.int8)),
                          "parent": pa.array(self.parent.cpu().numpy()),
                          "token": pa.array(self.token.cpu().numpy())})
        meta = {"version": VERSION, "vocab_sizes": list(self.vocab_sizes)}
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
        with atomic_output(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PrefixTrie":
        """Read and check a trie written by :meth:`save`; InputError naming the file when it is damaged."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"trie file {path} does not exist; publish a generation to write it")
        table = read_parquet(path, "a prefix trie")
        try:
            meta = json.loads((table.schema.metadata or {})[METADATA_KEY])
            sizes = [int(v) for v in meta["vocab_sizes"]]
            depth, parent, token = (table.column(c).to_numpy().astype(np.int64) for c in ("depth", "parent", "token"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not a prefix trie written by rqgmm ({exc}); publish again") from None
        problem = _edges_problem(sizes, parent, token, depth)
        if problem:
            raise InputError(f"{path} is a damaged prefix trie ({problem}); publish again")
        return cls.from_edges(sizes, parent, token, depth)


def sorted_unique_rows(ids: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """The distinct rows of ``ids`` (N, T), token t in [0, sizes[t]), in lexicographic order."""
    if len(ids) == 0:
        return ids.reshape(0, len(sizes))
    return rows_of_keys(sorted_distinct(row_keys(ids, list(sizes))), list(sizes))


def _edges(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (parent, token, depth) in trie order of distinct, sorted rows (M, T)."""
    m, length = rows.shape
    starts = np.ones((m, length), dtype=bool)  # row i starts a new length-(t+1) prefix
    if m:
        starts[1:] = np.logical_or.accumulate(rows[1:] != rows[:-1], axis=1)
    parents, tokens, depths = [], [], []
    node_of_row = np.zeros(m, dtype=np.int64)  # each row's node at the previous depth (the root first)
    base = 1
    for t in range(length):
        new = starts[:, t]
        parents.append(node_of_row[new])
        tokens.append(rows[new, t])
        depths.append(np.full(int(new.sum()), t, dtype=np.int64))
        node_of_row = base + np.cumsum(new) - 1
        base += len(tokens[-1])
    return np.concatenate(parents), np.concatenate(tokens), np.concatenate(depths)


def _edges_problem(sizes: list[int], parent: np.ndarray, token: np.ndarray, depth: np.ndarray) -> str | None:
    """What makes these edges no trie in trie order, or None."""
    if not sizes or min(sizes) < 1:
        return f"vocabulary sizes {sizes}"
    n = len(parent)
    if not n:
        return None
    if (depth < 0).any() or (depth >= len(sizes)).any() or (np.diff(depth) < 0).any():
        return "depths out of order"
    if (token < 0).any() or (token >= np.asarray(sizes)[depth]).any():
        return "tokens outside the vocabulary"
    if (parent < 0).any() or (parent > np.arange(n)).any():
        return "an edge leaves a node that comes after it"
    parent_depth = np.where(parent == 0, -1, depth[np.maximum(parent - 1, 0)])
    if (parent_depth != depth - 1).any():
        return "an edge skips a level"
    keys = parent * max(sizes) + token
    if (np.diff(keys) <= 0).any():
        return "edges not in trie order"
    return None
