"""The one boundary where user arrays become tensors the library trusts."""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError

ArrayLike = "np.ndarray | torch.Tensor"


def _nonfinite_message(bad_rows: np.ndarray, n_rows: int, what: str) -> str:
    first = ", ".join(str(int(i)) for i in bad_rows[:5])
    more = ", ..." if len(bad_rows) > 5 else ""
    return (
        f"{what} has NaN or Inf values in {len(bad_rows)} of {n_rows} rows "
        f"(rows {first}{more}); drop or impute those rows before fitting or encoding"
    )


def as_matrix(
    X,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    n_features: int | None = None,
    what: str = "the input",
) -> torch.Tensor:
    """Validate ``X`` and return it as a 2-D floating tensor.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (N, D)
        Integer, float16, bfloat16, float32 or float64 values; converted, not refused.
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
        On a non-2-D or empty input, a wrong dimension, non-numeric values, or
        NaN/Inf (with the count and first row numbers).
    """
    if not isinstance(X, torch.Tensor):
        arr = np.asarray(X)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(
                f"{what} must be numeric, got dtype {arr.dtype}; pass a float array of shape (N, D)"
            )
        # A read-only memory map must be copied: torch does not wrap non-writable arrays.
        X = torch.from_numpy(np.array(arr, order="C", copy=not arr.flags.writeable or None))
    if X.ndim != 2:
        raise InputError(
            f"{what} must be 2-D (N items x D dimensions), got shape {tuple(X.shape)}; "
            "reshape it to (N, D)"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{what} is empty (shape {tuple(X.shape)}); pass at least one row of D > 0 values")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(
            f"{what} has dimension {X.shape[1]} but the model expects {n_features}; "
            "use embeddings from the same model the tokenizer was fitted on"
        )
    X = X.to(device=device if device is not None else X.device, dtype=dtype)
    finite = torch.isfinite(X).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().cpu().numpy()
        raise InputError(_nonfinite_message(bad, X.shape[0], what))
    return X


def as_codes(codes, *, levels: int | None = None, codebook_sizes: list[int] | None = None) -> torch.Tensor:
    """Validate an int code table of shape (N, L) and return it as int64."""
    if not isinstance(codes, torch.Tensor):
        codes = torch.from_numpy(np.array(codes))
    if codes.ndim != 2:
        raise InputError(f"codes must be 2-D (N items x L levels), got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise InputError(f"codes must be integers, got {codes.dtype}; pass the int64 table from encode")
    codes = codes.to(torch.int64)
    if levels is not None and codes.shape[1] > levels:
        raise InputError(f"codes have {codes.shape[1]} levels but the model has {levels}")
    if codebook_sizes is not None and codes.numel():
        for level in range(codes.shape[1]):
            col = codes[:, level]
            if int(col.min()) < 0 or int(col.max()) >= codebook_sizes[level]:
                raise InputError(
                    f"codes at level {level + 1} must lie in [0, {codebook_sizes[level]}), "
                    f"got values in [{int(col.min())}, {int(col.max())}]"
                )
    return codes


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ``InputError`` if it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
