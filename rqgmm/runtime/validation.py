"""The one boundary where user arrays become tensors the library trusts, and constructor arguments are checked.

Estimators declare ``_parameter_constraints`` (argument name -> :class:`Constraint`,
as scikit-learn declares its own) and call :func:`validate_params` once, when
``fit`` starts; every argument then gets the same wording of message. The constraints and the
validator live in :mod:`rqgmm.runtime.constraints` (importable without torch) and are re-exported here.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import torch

from rqgmm.errors import InputError
from rqgmm.runtime.constraints import (
    ANY as ANY, Choices as Choices, Constraint as Constraint, Integer as Integer, Options as Options,
    Real as Real, Rule as Rule, check_positive_int as check_positive_int, validate_params as validate_params,
)


def _rows(bad_rows: np.ndarray, n_rows: int) -> str:
    """'k of N rows (rows i, j, ...)': the count and the first five row numbers."""
    first = ", ".join(str(int(i)) for i in bad_rows[:5])
    more = ", ..." if len(bad_rows) > 5 else ""
    return f"{len(bad_rows)} of {n_rows} rows (rows {first}{more})"


def nonfinite_message(bad_rows: np.ndarray, n_rows: int, what: str) -> str:
    return (
        f"{what} has NaN or Inf values in {_rows(bad_rows, n_rows)}; "
        "drop or impute those rows before fitting or encoding"
    )


def _overflow_message(bad_rows: np.ndarray, n_rows: int, what: str, dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    return (
        f"{what} has values beyond the range of {name} (|x| > {torch.finfo(dtype).max:.3g}) in "
        f"{_rows(bad_rows, n_rows)}; scale the data down before fitting or encoding"
    )


def as_matrix(
    X,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    n_features: int | None = None,
    what: str = "the input",
    owner: str = "the model",
) -> torch.Tensor:
    """Validate ``X`` and return it as a 2-D floating tensor.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (N, D)
        Integer, bool, float16, bfloat16, float32, float64 or long double values, in
        either byte order; converted, not refused. A tensor is detached from autograd.
    dtype : torch.dtype
        Floating dtype of the result.
    device : str or torch.device, optional
        Where the result lives; default: where ``X`` is (CPU for numpy).
    n_features : int, optional
        Expected D (the model's dimension), checked when given.

    Returns
    -------
    torch.Tensor, shape (N, D), ``dtype`` on ``device``.

    Raises
    ------
    InputError
        On a non-2-D or empty input, a wrong dimension, non-numeric or complex
        values, NaN/Inf, or values beyond the range of ``dtype`` (with the count
        and first row numbers).
    """
    X = as_real_tensor(X, what)
    check_shape(tuple(X.shape), what)
    check_dimension(X, n_features, what, owner)
    source = X
    X = X.to(device=device if device is not None else X.device, dtype=dtype)
    bad = nonfinite_rows(X)
    if len(bad):
        bad = bad.cpu()
        if bool(torch.isfinite(source[bad].to(torch.float64)).all()):
            raise InputError(_overflow_message(bad.numpy(), X.shape[0], what, dtype))
        raise InputError(nonfinite_message(bad.numpy(), X.shape[0], what))
    return X


def nonfinite_rows(X: torch.Tensor) -> torch.Tensor:
    """Row numbers (m,) int64 of a float X (n, D) that hold NaN or ±Inf, on X's device; empty when none.

    One sum first: it is finite only when every value is (NaN and Inf propagate
    through a sum; a sum of finite values that overflows to Inf only costs the
    exact row-wise test). One read of X instead of ``isfinite``'s several passes
    and its (n, D) mask (about 4 ms of a 30 ms 1M x 768 tf32 GPU encode).
    """
    if bool(torch.isfinite(X.sum())):
        return torch.zeros(0, dtype=torch.int64, device=X.device)
    return torch.nonzero(~torch.isfinite(X).all(dim=1)).flatten()


def check_shape(shape: tuple[int, ...], what: str = "X") -> None:
    """Raise InputError unless ``shape`` is (N, D) with N > 0 and D > 0 (scikit-learn's wording)."""
    if len(shape) != 2:
        raise InputError(f"{what} must be 2-D (N items x D dimensions), got shape {shape}. Reshape your data to (N, D)")
    if shape[0] == 0:
        raise InputError(f"{what} is empty: 0 sample(s) (shape={shape}); pass at least one row")
    if shape[1] == 0:
        raise InputError(f"{what} has 0 feature(s) (shape={shape}) while a minimum of 1 is required; "
                         "pass rows of D > 0 values")


def check_dimension(X, n_features: int | None, what: str = "X", owner: str = "the model") -> None:
    """Raise InputError when X (N, D) does not have the model's D (scikit-learn's message)."""
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(
            f"{what} has {X.shape[1]} features, but {owner} is expecting {n_features} features as input; "
            "use embeddings of the dimension the model was fitted on"
        )


def checked_batches(batches: Iterable[tuple[Any, np.ndarray]], n_features: int | None,
                    what: str) -> Iterator[tuple[Any, np.ndarray]]:
    """The batches ``(ids, X (n, D))`` of a stream, each checked for shape and the model's D, yielded while
    every row so far is finite.

    From the first batch with a NaN or Inf row on, the rest is read and checked but not
    yielded; at the end the bad rows of the whole stream (global row numbers) are refused in
    one InputError. Consume it to the end before writing anything.
    """
    bad, offset = [], 0
    for ids, X in batches:
        check_shape(tuple(X.shape), what)
        check_dimension(X, n_features, what=what)
        clean = not bad
        bad.extend(np.flatnonzero(~np.isfinite(X).all(1)) + offset)
        offset += len(X)
        if clean and not bad:
            yield ids, X
    if bad:
        raise InputError(nonfinite_message(np.asarray(bad, dtype=np.int64), offset, what))


def like_input(values: torch.Tensor, like) -> np.ndarray | torch.Tensor:
    """``values`` in the user's type: numpy when ``like`` is not a tensor, else a tensor on ``like``'s device."""
    if isinstance(like, torch.Tensor):
        return values.to(like.device)
    return values.cpu().numpy()


def as_numpy(values) -> np.ndarray:
    """A numpy array of ``values``: a tensor (on any device, detached) copied to the host, anything else as
    ``np.asarray`` gives it."""
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def as_real_tensor(X, what: str) -> torch.Tensor:
    """``X`` as a real-valued tensor, detached from autograd; numpy arrays are not copied unless needed."""
    if isinstance(X, torch.Tensor):
        if X.is_complex():
            raise InputError(f"{what} is complex ({X.dtype}): Complex data not supported; pass real-valued embeddings")
        if X.layout != torch.strided:
            raise InputError(f"{what} is a sparse tensor ({X.layout}); sparse input is not supported: pass X.to_dense()")
        return X.detach()
    if type(X).__module__.startswith("scipy.sparse"):
        raise InputError(f"{what} is a scipy sparse {type(X).__name__}; sparse input is not supported: "
                         "pass a dense array (X.toarray())")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{what} is not a numeric (N, D) array ({exc}); pass a float array of shape (N, D)") from None
    if arr.dtype == object:
        arr = _object_as_float(arr, what)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}; pass a float array of shape (N, D)")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{what} is complex ({arr.dtype}): Complex data not supported; pass real-valued embeddings")
    if np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)  # long double: torch has no such dtype
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian files: torch reads native order only
    # A read-only memory map must be copied: torch does not wrap non-writable arrays.
    return torch.from_numpy(np.array(arr, order="C", copy=not arr.flags.writeable or None))


def _object_as_float(arr: np.ndarray, what: str) -> np.ndarray:
    """An object array of numbers (or numeric strings) as float64; anything else refused."""
    try:
        return arr.astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise _NotNumericError(f"{what} must be numeric, got dtype object ({exc}); "
                               "pass a float array of shape (N, D)") from None


class _NotNumericError(InputError, TypeError):
    """Values that are not numbers: bad input (exit 2) and, as in scikit-learn, a TypeError."""

