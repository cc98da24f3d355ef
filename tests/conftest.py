"""Shared fixtures: small generated mixtures with known parameters."""

import os

# Idle OpenMP threads spin by default; on a shared 2-core machine that slows small fits 20-100x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def make_mixture(n_per: int = 200, k: int = 6, d: int = 8, seed: int = 0, spread: float = 6.0):
    """Points drawn from k diagonal Gaussians; returns X (k*n_per, d) float64 and the true means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (k, d))
    scales = rng.uniform(0.5, 2.0, (k, d))
    X = np.concatenate([rng.normal(means[j], scales[j], (n_per, d)) for j in range(k)])
    return X[rng.permutation(len(X))], means


def write_embeddings(directory, X: np.ndarray, first_id: int = 0) -> None:
    """``directory/x.npy`` and ``directory/x.parquet`` (item ids first_id, first_id + 1, ...) holding X (N, D)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    np.save(directory / "x.npy", X)
    pq.write_table(pa.table({"item_id": np.arange(first_id, first_id + len(X)), "embedding": list(X)}),
                   directory / "x.parquet")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: small fits gain nothing from two, and lose much when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def mixture():
    return make_mixture()[0]
