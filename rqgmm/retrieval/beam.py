"""Beam search constrained to existing IDs: every beam extends a prefix only by a token the prefix trie allows.

The allowed next tokens of every inner trie node are one dense boolean table
(nodes x V_max, built once on the device), so a decoding step is a
``searchsorted`` walk and a gather: no host sync inside the search; one copy of
the results to the host per call.
"""

from __future__ import annotations

import torch

from rqgmm.ids.trie import PrefixTrie
from rqgmm.retrieval.model import NextItemModel, step_context


class TrieMasks:
    """The allowed next tokens of every prefix of a trie's IDs, as a dense table on one device.

    Parameters
    ----------
    trie : PrefixTrie
        The trie of the existing IDs (G tokens each).
    device : torch.device
    """

    def __init__(self, trie: PrefixTrie, device: torch.device) -> None:
        inner = 1 + int((trie.depth < trie.length - 1).sum())  # nodes 0 .. inner-1 have children
        table = torch.zeros(inner, max(trie.vocab_sizes), dtype=torch.bool)
        table[trie.parent, trie.token] = True
        self.trie, self.table = trie.to(device), table.to(device)

    def allowed(self, prefixes: torch.Tensor) -> torch.Tensor:
        """BoolTensor (B, V_t): the tokens that may follow each prefix (B, t) (none after a dead prefix)."""
        node = self.trie.walk(prefixes)
        mask = self.table[node.clamp(min=0), :self.trie.vocab_sizes[prefixes.shape[1]]]
        return mask & (node >= 0)[:, None]


@torch.no_grad()
def beam_search(model: NextItemModel, masks: TrieMasks, history: torch.Tensor, beam: int,
                context: tuple[torch.Tensor, list] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam`` most likely existing IDs after each history.

    Parameters
    ----------
    model : NextItemModel, in eval mode
    masks : TrieMasks of the IDs that exist
    history : LongTensor (B, H), item rows (-1: padding, left); H = model.slots - 1
    beam : int
    context : the hidden states (B, H x T, dim) and cache of ``model.hidden(model.flat(history))``, when the
        caller has read the history already (the dense rule's query reads the same states); None: read here.

    Returns
    -------
    ids : LongTensor (B, beam, G), best first; -1 rows where fewer than ``beam`` IDs exist
    scores : FloatTensor (B, beam), log-probabilities; -inf on the -1 rows
    """
    B, device = history.shape[0], history.device
    states, cache = context or model.hidden(model.flat(history))  # once per user; beams read its keys and values
    cache = step_context(cache)
    start = states.shape[1]
    last = states[:, -1]
    prefix = torch.zeros(B, 1, 0, dtype=torch.int64, device=device)
    scores = torch.zeros(B, 1, device=device)
    for g in range(model.generated):
        width = prefix.shape[1]
        if g:
            last = model.hidden(prefix.flatten(0, 1) + model.shift[:g], cache, start)[0][:, -1]
        logp = torch.log_softmax(model.logits(last, g).float(), -1)
        logp = logp.masked_fill(~masks.allowed(prefix.flatten(0, 1)), float("-inf"))
        total = (scores[:, :, None] + logp.view(B, width, -1)).flatten(1)
        scores, index = total.topk(min(beam, total.shape[1]), dim=1)
        parent, token = index // logp.shape[1], index % logp.shape[1]
        prefix = torch.cat([prefix.gather(1, parent[..., None].expand(-1, -1, g)), token[..., None]], 2)
    if prefix.shape[1] < beam:  # fewer IDs than beams in the whole trie
        pad = beam - prefix.shape[1]
        prefix = torch.cat([prefix, prefix.new_full((B, pad, prefix.shape[2]), -1)], 1)
        scores = torch.cat([scores, scores.new_full((B, pad), float("-inf"))], 1)
    return torch.where(torch.isfinite(scores)[..., None], prefix, torch.full_like(prefix, -1)), scores

