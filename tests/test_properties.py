"""Property-based tests (hypothesis) of RQGMM and RQKMeans over shapes, dtypes, K, L and chunk_size.

For every drawn case: codes are int64 in [0, K_l) (and below the effective K'_l),
a model cut to its first l levels gives the first l code columns, decoding gives
finite (N, D), and the metrics of ``rqgmm.ids.metrics.report`` lie in their ranges.
Examples are derandomised so ``make test`` is repeatable; ``EXAMPLES`` counts
the examples that ran (printed with ``-s``).
"""

import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rqgmm import RQGMM, RQKMeans
from rqgmm.ids.metrics import report

EXAMPLES: Counter = Counter()
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["float32", "float64", "float16", "int32", "int64", "bfloat16"]


@pytest.fixture(scope="module", autouse=True)
def report_examples(one_torch_thread):
    yield
    print(f"\nhypothesis examples run: {dict(EXAMPLES)}")


@st.composite
def cases(draw):
    """(X, codebook sizes, chunk_size): N in [1, 80], D in [1, 6], L in [1, 3], K_l in [1, 9]."""
    n = draw(st.integers(1, 80), label="N")
    d = draw(st.integers(1, 6), label="D")
    levels = draw(st.integers(1, 3), label="L")
    sizes = draw(st.lists(st.integers(1, 9), min_size=levels, max_size=levels), label="K")
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    distinct = draw(st.integers(1, n), label="distinct rows")
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]), label="scale")
    seed = draw(st.integers(0, 2**16), label="seed")
    chunk = draw(st.integers(1, 100), label="chunk_size")
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.0, scale, (distinct, d))
    X = rows[rng.integers(distinct, size=n)]
    if dtype.startswith("int"):
        X = np.rint(X * 3).astype(dtype)
    elif dtype == "bfloat16":
        X = torch.from_numpy(X).to(torch.bfloat16)
    else:
        X = X.astype(dtype)
    return X, sizes, chunk


def _check(cls, X, sizes, chunk, **kwargs):
    n, d = X.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls(levels=len(sizes), codebook_size=sizes, random_state=0, chunk_size=chunk,
                    progress=False, **kwargs).fit(X)
    codes = model.encode(X)
    codes = codes.numpy() if isinstance(codes, torch.Tensor) else codes
    assert codes.dtype == np.int64 and codes.shape == (n, len(sizes))
    assert (codes >= 0).all() and (codes < np.array(model.effective_codebook_sizes)).all()
    assert all(k_eff <= k for k_eff, k in zip(model.effective_codebook_sizes, sizes))
    for length in range(1, len(sizes)):
        prefix = model.truncate(length).encode(X)
        prefix = prefix.numpy() if isinstance(prefix, torch.Tensor) else prefix
        np.testing.assert_array_equal(prefix, codes[:, :length])
        assert model.decode(codes[:, :length]).shape == (n, d)
    X_hat = model.decode(codes)
    X_hat = X_hat.float().numpy() if isinstance(X_hat, torch.Tensor) else X_hat
    assert X_hat.shape == (n, d) and np.isfinite(X_hat).all()
    X_np = X.float().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)
    _check_metrics(report(codes, sizes, X_np, X_hat), sizes, n)
    EXAMPLES[cls.method] += 1


def _check_metrics(r, sizes, n):
    eps = 1e-9
    assert all(0 < u <= 1 for u in r["utilization"]), r["utilization"]
    assert all(0 < u <= 1 + eps for u in r["prefix_utilization"]), r["prefix_utilization"]
    assert 0 <= r["collision_rate"] <= 1 and 0 <= r["icr"] <= 1
    assert all(0 <= g < 1 for g in r["gini"]), r["gini"]
    assert all(1 - eps <= p <= k + eps for p, k in zip(r["perplexity"], sizes)), r["perplexity"]
    assert math.isfinite(r["rmse"]) and r["rmse"] >= 0
    assert math.isfinite(r["relative_mse"]) and r["relative_mse"] >= 0
    assert r["n_items"] == n and r["levels"] == len(sizes) and r["codebook_size"] == sizes


@SETTINGS
@given(cases())
def test_rqgmm_properties(case):
    _check(RQGMM, *case, max_iter=5, init_max_iter=3)


@SETTINGS
@given(cases())
def test_rqkmeans_properties(case):
    _check(RQKMeans, *case, max_iter=5)
