"""PRQ-KMeans: the projection residual, a numpy reference, and the tokenizer contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rqgmm.tokenizers.base
from rqgmm.errors import InputError
from rqgmm.tokenizers.prq import PRQKMeans, soft_topk_pass
from rqgmm.runtime.source import RowSource


def rows(R, chunk_size=32768):
    return RowSource(R, dtype=R.dtype, device=R.device, chunk_size=chunk_size)


# ------------------------------------------------------------------ numpy reference


def np_normalize(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def np_soft_topk_refine(R: np.ndarray, C: np.ndarray, top_k: int, beta: float, n_iter: int) -> np.ndarray:
    """Top-k soft spherical centroid refinement, one row at a time."""
    for _ in range(n_iter):
        sums = np.zeros_like(C, dtype=np.float64)
        for r in R.astype(np.float64):
            cos = C @ r
            top = np.argsort(-cos, kind="stable")[:top_k]
            w = np.exp(beta * (cos[top] - cos[top].max()))
            w /= w.sum()
            for j, wj in zip(top, w):
                sums[j] += wj * r
        used = np.linalg.norm(sums, axis=1) > 0
        C = C.copy()
        C[used] = np_normalize(sums[used])
    return C


def np_prq_encode(X: np.ndarray, mean: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """Normalise, remove the global-mean direction, then argmax-cosine codes with projection residuals."""
    R = np_normalize(X.astype(np.float64))
    R = np_normalize(R - np.outer(R @ mean / (mean @ mean), mean))
    codes = []
    for C in codebooks:
        C = C.astype(np.float64)
        code = np.argmax(R @ C.T, axis=1)
        c = C[code]
        R = np_normalize(R - ((R * c).sum(1, keepdims=True) / (c * c).sum(1, keepdims=True)) * c)
        codes.append(code)
    return np.stack(codes, axis=1)


# ----------------------------------------------------------------------------- data


def make_embeddings(n: int = 400, d: int = 24, n_topics: int = 12, seed: int = 0) -> np.ndarray:
    """Unit vectors around topic directions that share one common direction (as text embeddings do)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=d)
    topics = rng.normal(size=(n_topics, d))
    X = 2.0 * common + topics[rng.integers(n_topics, size=n)] + 0.4 * rng.normal(size=(n, d))
    return np_normalize(X).astype(np.float32)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return make_embeddings()


@pytest.fixture(scope="module")
def fitted(X) -> PRQKMeans:
    return PRQKMeans(levels=3, codebook_size=8, random_state=0, progress=False).fit(X)


# ---------------------------------------------------------------------------- tests


def test_projection_residual_is_unit_and_orthogonal_to_selected_centroid(fitted, X):
    codes = fitted.encode(X)
    residuals = fitted.residuals(X)
    for level in range(fitted.levels - 1):
        nxt = residuals[level + 1]
        c = fitted.codebooks_[level][torch.from_numpy(codes[:, level])]
        assert float((nxt * c).sum(1).abs().max()) < 1e-5
        np.testing.assert_allclose(nxt.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_global_mean_direction_is_removed(fitted, X):
    first = fitted.residuals(X)[0]
    mean = fitted.mean_ / fitted.mean_.norm()
    assert float((first @ mean).abs().max()) < 1e-5
    np.testing.assert_allclose(first.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_assignments_match_numpy_reference(fitted, X):
    ref = np_prq_encode(X, fitted.mean_.numpy().astype(np.float64), [C.numpy() for C in fitted.codebooks_])
    np.testing.assert_array_equal(fitted.encode(X), ref)


def test_soft_topk_refinement_matches_numpy_reference():
    rng = np.random.default_rng(1)
    R = np_normalize(rng.normal(size=(60, 5))).astype(np.float32)
    C0 = np_normalize(rng.normal(size=(6, 5))).astype(np.float32)
    C = torch.from_numpy(C0)
    for _ in range(25):
        C, _ = soft_topk_pass(rows(torch.from_numpy(R), 7), C, top_k=2, beta=15.0)
    ref = np_soft_topk_refine(R, C0.astype(np.float64), top_k=2, beta=15.0, n_iter=25)
    np.testing.assert_allclose(C.numpy(), ref, atol=1e-5)
    codes = (torch.from_numpy(R) @ C.T).argmax(1)
    np.testing.assert_array_equal(codes.numpy(), np.argmax(R @ ref.T, axis=1))


def test_top_k_one_is_hard_spherical_kmeans():
    rng = np.random.default_rng(2)
    R = torch.from_numpy(np_normalize(rng.normal(size=(50, 4))).astype(np.float32))
    C = torch.from_numpy(np_normalize(rng.normal(size=(5, 4))).astype(np.float32))
    new, _ = soft_topk_pass(rows(R), C, top_k=1, beta=15.0)
    labels = (R @ C.T).argmax(1)
    for k in labels.unique():
        expected = R[labels == k].sum(0)
        torch.testing.assert_close(new[k], expected / expected.norm())


def test_codes_shape_range_and_types(fitted, X):
    codes = fitted.encode(X)
    assert isinstance(codes, np.ndarray) and codes.dtype == np.int64 and codes.shape == (len(X), 3)
    assert codes.min() >= 0 and codes.max() < 8
    as_tensor = fitted.encode(torch.from_numpy(X))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.int64
    np.testing.assert_array_equal(as_tensor.numpy(), codes)


def test_utilization_is_high_on_clustered_data(fitted, X):
    codes = fitted.encode(X)
    for level in range(fitted.levels):
        assert len(np.unique(codes[:, level])) / 8 > 0.5


def test_decode_is_flagged_as_no_reconstruction(fitted, X):
    assert PRQKMeans.reconstructs is False
    approx = fitted.decode(fitted.encode(X))
    assert approx.shape == X.shape
    # An approximation of the projected direction: closer with more levels.
    target = fitted.residuals(X)[0].numpy()
    cos = [np.mean(np.sum(np_normalize(fitted.decode(fitted.encode(X)[:, :l])) * target, axis=1)) for l in (1, 3)]
    assert cos[1] > cos[0] > 0


def test_save_load_round_trip(fitted, X, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = rqgmm.tokenizers.base.load(tmp_path / "model")
    assert isinstance(loaded, PRQKMeans)
    np.testing.assert_array_equal(loaded.encode(X), fitted.encode(X))
    np.testing.assert_array_equal(loaded.decode(fitted.encode(X)), fitted.decode(fitted.encode(X)))


def test_encode_changes_no_state(fitted, X):
    before = {k: v.clone() for k, v in fitted.state_tensors().items()}
    fitted.encode(X[:50])
    after = fitted.state_tensors()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_same_seed_same_codes(X):
    a = PRQKMeans(levels=2, codebook_size=[8, 4], random_state=3, progress=False).fit(X).encode(X)
    b = PRQKMeans(levels=2, codebook_size=[8, 4], random_state=3, progress=False).fit(X).encode(X)
    np.testing.assert_array_equal(a, b)
    assert a[:, 1].max() < 4


def test_bad_input_raises(fitted, X):
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fitted.encode(bad)
    with pytest.raises(InputError, match="NaN"):
        PRQKMeans(levels=1, codebook_size=4).fit(bad)
    with pytest.raises(InputError, match="has 10 features, but PRQKMeans is expecting"):
        fitted.encode(X[:, :10])
    with pytest.raises(InputError, match="codebook_size"):
        PRQKMeans(levels=2, codebook_size=[4, 4, 4]).fit(X)
