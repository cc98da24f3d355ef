"""KMeans level: agreement with scikit-learn, seeding, empty-cluster splitting."""

import numpy as np
import pytest
import torch
from conftest import make_mixture
from sklearn.cluster import KMeans as SKKMeans

from rqgmm import FewDistinctWarning, KMeans


def test_inertia_close_to_sklearn():
    X, _ = make_mixture(n_per=300, k=8, d=12, seed=1, spread=2.0)
    ours = min(KMeans(8, max_iter=100, tol=1e-6, random_state=s, dtype="float64", progress=False).fit(X).inertia_
               for s in range(5))
    best = min(SKKMeans(8, n_init=1, random_state=s).fit(X).inertia_ for s in range(5))
    assert ours <= 1.02 * best


def test_labels_are_nearest_centres(mixture):
    km = KMeans(6, random_state=0, progress=False).fit(mixture)
    d = ((mixture[:, None, :] - km.cluster_centers_.numpy()[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(km.predict(mixture), d.argmin(1))


def test_inertia_history_non_increasing(mixture):
    km = KMeans(12, max_iter=30, tol=0, random_state=0, dtype="float64", progress=False).fit(mixture)
    assert np.all(np.diff(km.history_) <= 1e-9 * km.history_[0])


def test_few_distinct_rows_shrink():
    X = np.repeat(np.eye(5), 10, axis=0)
    with pytest.warns(FewDistinctWarning, match="effective K=5"):
        km = KMeans(16, random_state=0, progress=False).fit(X)
    assert km.n_clusters_ == 5 and km.inertia_ == pytest.approx(0.0, abs=1e-6)


def test_same_seed_same_centres(mixture):
    a = KMeans(6, random_state=3, progress=False).fit(mixture).cluster_centers_
    b = KMeans(6, random_state=3, progress=False).fit(mixture).cluster_centers_
    assert torch.equal(a, b)


def test_one_hot_cluster_sums_equal_a_float64_reference_and_repeat_bit_for_bit():
    """The GPU path of the Lloyd sums (one-hot float64 products, no atomics): numpy's float64 sums, every time."""
    from rqgmm.tokenizers import kmeans

    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 7)).astype(np.float32)
    labels = rng.integers(0, 5, 1000)
    reference = np.zeros((6, 7))
    np.add.at(reference, labels, X.astype(np.float64))  # label 5 has no rows: a zero row
    chunk, codes = torch.from_numpy(X), torch.from_numpy(labels)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kmeans, "ONE_HOT_BYTES", 128 * 8 * 6)  # 128 rows a block: several blocks
        first = kmeans.one_hot_sums(chunk, codes, 6)
        again = kmeans.one_hot_sums(chunk, codes, 6)
    np.testing.assert_allclose(first.numpy(), reference, rtol=1e-12, atol=1e-12)
    assert torch.equal(first, again)
    np.testing.assert_allclose(kmeans.cluster_sums(chunk, codes, 6).numpy(), reference, rtol=1e-5, atol=1e-5)
