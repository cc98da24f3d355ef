"""Alignment: renumber a refitted model's codes to agree with an earlier model's.

An independent refit (another seed, more data) finds much the same partition
under new numbers, so every ID changes. :func:`align` renumbers the new model's
codes, level by level, to agree as much as possible with a reference model on
the items both encode:

- level 1: the permutation that maximises the number of items whose level-1
  code equals the reference's -- an optimal matching (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment``) of the K x K co-assignment counts;
- level l > 1: one permutation of the level's shared codebook, matched on the
  co-assignment counts of the items whose aligned parent prefix (levels < l)
  already equals the reference's, so it maximises full-prefix agreement given
  the levels above; counts over all items break ties, then the identity.

Renumbering permutes each level's parameters (codewords, means, variances,
weights, ...) with its codes, so a code keeps its meaning: decoding the aligned
model's codes gives the original model's reconstructions, and the partition
(and so the adjusted Rand index) is unchanged.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from rqgmm.refit.churn import churn
from rqgmm.errors import InputError
from rqgmm.refit.lineage import as_numpy, check_compatible, fingerprint_of

logger = logging.getLogger(__name__)


def contingency(new: np.ndarray, old: np.ndarray, n_codes: int) -> np.ndarray:
    """Co-assignment counts (K, K) int64: items with new code a and reference code b (codes >= K dropped)."""
    keep = old < n_codes
    counts = np.zeros((n_codes, n_codes), dtype=np.int64)
    np.add.at(counts, (new[keep], old[keep]), 1)
    return counts


def matching(weight: np.ndarray) -> np.ndarray:
    """The permutation (K,) maximising Σ_a weight[a, perm[a]] for a square weight (K, K)."""
    rows, cols = linear_sum_assignment(weight, maximize=True)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


def level_permutations(new: np.ndarray, old: np.ndarray, codebook_sizes: list[int]) -> list[np.ndarray]:
    """Per level, the permutation (K_l,) taking the new codes to aligned ones.

    Parameters
    ----------
    new, old : (N, L) int64
        Codes of the same items by the model to renumber and by the reference.
    codebook_sizes : list of int
        K'_l of the model to renumber (its codes lie in [0, K'_l)).
    """
    n = len(new)
    agree = np.ones(n, dtype=bool)  # items whose aligned prefix so far equals the reference's
    perms = []
    for level, k in enumerate(codebook_sizes):
        within = contingency(new[agree, level], old[agree, level], k)
        overall = contingency(new[:, level], old[:, level], k)
        # Lexicographic: agreement within the parent, then overall, then the identity (exact in float64
        # while 2 * N * (N + 1) < 2**53, i.e. N < 6e7).
        weight = (within.astype(np.float64) * (n + 1) + overall) * 2 + np.eye(k)
        perm = matching(weight)
        perms.append(perm)
        agree &= perm[new[:, level]] == old[:, level]
    return perms


def renumber(model, perms: list[np.ndarray]):
    """A copy of ``model`` whose level-l code ``perm_l[a]`` means what its code ``a`` meant.

    Every tensor of level l (``level{l}.*`` in ``state_tensors``) has one row per
    component and is permuted with the codes; the normaliser is kept.
    """
    tensors = dict(model.state_tensors())
    for level, perm in enumerate(perms):
        order = torch.from_numpy(np.argsort(perm))
        for key in [k for k in tensors if k.startswith(f"level{level}.")]:
            if tensors[key].shape[0] != len(perm):
                raise InputError(f"cannot renumber {key}: {tensors[key].shape[0]} rows for {len(perm)} codes")
            tensors[key] = tensors[key][order.to(tensors[key].device)]
    copy = type(model).from_state(model.get_config(), tensors)
    return copy.to(model._model_device)


def align(model, reference, X):
    """``model`` renumbered to agree with ``reference`` on the items X (N, D); ``model`` is not changed.

    Parameters
    ----------
    model : fitted RQGMM, RQKMeans or PRQKMeans
        The new fit to renumber.
    reference : fitted tokenizer of the same levels, codebook sizes and dimension
        The earlier model whose IDs should be kept (any method of the residual stack).
    X : array-like or tensor (N, D)
        Items both models encode (typically the new fit's data).

    Returns
    -------
    A new model of ``model``'s type: ``encode(X)`` gives the renumbered codes,
    ``decode`` of those codes gives ``model``'s reconstructions, and
    ``lineage_`` holds ``how="aligned"``, the reference's fingerprint, the churn
    and adjusted Rand index after alignment and the churn before it
    (``before``).
    """
    for name, m in (("model", model), ("reference", reference)):
        if not hasattr(m, "levels_"):
            raise InputError(f"align needs a fitted RQ-GMM, RQ-KMeans or PRQ-KMeans {name}, "
                             f"got {type(m).__name__}")
    check_compatible(model, reference, same_method=False, what="the reference model")
    old, new = as_numpy(reference.encode(X)), as_numpy(model.encode(X))
    perms = level_permutations(new, old, model.effective_codebook_sizes)
    aligned = renumber(model, perms)
    before = churn(old, new)
    after = churn(old, np.column_stack([perm[new[:, level]] for level, perm in enumerate(perms)]))
    aligned.lineage_ = {"how": "aligned", "reference": fingerprint_of(reference), **after,
                        "before": {"full_id_changed": before["full_id_changed"],
                                   "code_changed": before["code_changed"]}}
    logger.info("aligned: full IDs changed on %.1f%% of %d items (%.1f%% before), level-1 codes on %.1f%%",
                100 * after["full_id_changed"], len(new), 100 * before["full_id_changed"],
                100 * after["code_changed"][0])
    return aligned
