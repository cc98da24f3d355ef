"""Lineage: what a model records about the earlier model it was refitted from or aligned to.

A refit that should keep IDs stable names an earlier model: ``fit(X, init=old)``
(a warm start) or :func:`rqgmm.refit.align.align` (a renumbering). Both check the two
models can share IDs (:func:`check_compatible`) and leave on the new model a
``lineage_`` dict, stored in its ``config.json`` under ``lineage``: how it was
made (``warm_start`` or ``aligned``), the earlier model's fingerprint, and the
churn and adjusted Rand index (:mod:`rqgmm.refit.churn`) of its codes against the
earlier model's on the items it was fitted or aligned on.
"""

from __future__ import annotations


from rqgmm.refit.churn import churn
from rqgmm.errors import InputError
from rqgmm.runtime.validation import as_numpy
from rqgmm.files.formats import fingerprint


def fingerprint_of(model) -> str:
    """:func:`rqgmm.files.formats.fingerprint` of a fitted tokenizer, the same as that of its saved directory
    (:func:`rqgmm.files.formats.model_fingerprint`) without reading it: hashed from what ``save`` writes."""
    return fingerprint(model.saved_config(), model.state_tensors())


def check_compatible(new, old, *, same_method: bool, what: str = "the earlier model") -> None:
    """Raise InputError unless ``old`` (fitted) can share IDs with ``new`` (fitted or not).

    Both need the same number of levels and the same codebook sizes; with
    ``same_method``, the same method too (a warm start reuses the parameters).
    ``new``'s dimension is checked when it has one.
    """
    if not hasattr(old, "levels_"):
        raise InputError(f"{what} is a {type(old).__name__}; warm starts and alignment need a fitted "
                         "RQ-GMM, RQ-KMeans or PRQ-KMeans model")
    if same_method and type(old) is not type(new):
        raise InputError(f"{what} is a {old.method!r} model and this fit is {new.method!r}; "
                         f"fit with --method {old.method} to start from it")
    if old.levels != new.levels or list(old.codebook_sizes) != list(new.codebook_sizes):
        raise InputError(f"{what} has {old.levels} levels of sizes {old.codebook_sizes}, this model "
                         f"{new.levels} of sizes {new.codebook_sizes}; use --levels {old.levels} "
                         f"--codebook-size {','.join(map(str, old.codebook_sizes))}")
    if getattr(new, "n_features_in_", old.n_features_in_) != old.n_features_in_:
        raise InputError(f"{what} takes {old.n_features_in_}-dimensional embeddings, these have "
                         f"{new.n_features_in_}; pass embeddings of the same model")


def refit_lineage(how: str, old, new, X) -> dict:
    """The ``lineage_`` of ``new`` made from ``old`` on X (N, D): how, from what, churn of its codes."""
    old_codes, new_codes = (as_numpy(model.encode(X)) for model in (old, new))
    return {"how": how, "reference": fingerprint_of(old), **churn(old_codes, new_codes)}

