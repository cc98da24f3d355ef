"""RQGMM and RQKMeans: reconstruction, prefix property, determinism, model files."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
import torch
from conftest import make_mixture

import rqgmm
from rqgmm import RQGMM, FewDistinctWarning, RQKMeans
from rqgmm.ids.metrics import rmse

METHODS = [RQGMM, RQKMeans]


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(n_per=150, k=10, d=16, seed=11, spread=3.0)
    return X.astype(np.float32)


@pytest.fixture(scope="module", params=METHODS, ids=lambda c: c.method)
def fitted(request, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return request.param(levels=3, codebook_size=[8, 8, 4], random_state=0, progress=False).fit(data)


def test_codes_shape_dtype_range(fitted, data):
    codes = fitted.encode(data)
    assert codes.shape == (len(data), 3) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < np.array([8, 8, 4])).all()


def test_torch_in_torch_out(fitted, data):
    codes = fitted.encode(torch.from_numpy(data))
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.int64
    np.testing.assert_array_equal(codes.numpy(), fitted.encode(data))


def test_rmse_does_not_grow_with_levels(fitted, data):
    codes = fitted.encode(data)
    errors = [rmse(data, fitted.decode(codes[:, :l])) for l in range(1, 4)]
    assert errors[0] >= errors[1] >= errors[2]


def test_prefix_property(fitted, data):
    codes = fitted.encode(data)
    for l in (1, 2):
        np.testing.assert_array_equal(fitted.truncate(l).encode(data), codes[:, :l])


def test_same_seed_same_codes_and_after_save_load(data, tmp_path):
    for cls in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = cls(levels=2, codebook_size=8, random_state=5, progress=False).fit(data)
            b = cls(levels=2, codebook_size=8, random_state=5, progress=False).fit(data)
        np.testing.assert_array_equal(a.encode(data), b.encode(data))
        a.save(tmp_path / cls.method)
        loaded = rqgmm.load(tmp_path / cls.method)
        assert type(loaded) is cls
        np.testing.assert_array_equal(loaded.encode(data), a.encode(data))
        np.testing.assert_array_equal(loaded.decode(a.encode(data)), a.decode(a.encode(data)))


def test_encode_changes_no_parameter(fitted, data):
    before = {k: v.clone() for k, v in fitted.state_tensors().items()}
    fitted.encode(data), fitted.decode(fitted.encode(data))
    for k, v in fitted.state_tensors().items():
        assert torch.equal(before[k], v), k


def test_scale_invariance_of_codes(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = RQGMM(levels=2, codebook_size=8, random_state=0, dtype="float64", progress=False).fit(data).encode(data)
        for scale in (1e-8, 1e6):
            X = data.astype(np.float64) * scale
            codes = RQGMM(levels=2, codebook_size=8, random_state=0, dtype="float64", progress=False).fit(X).encode(X)
            assert (codes == ref).all(axis=1).mean() >= 0.99


def test_deep_levels_with_few_distinct_residuals_go_on():
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(20, 8)), 5, axis=0)
    with pytest.warns(FewDistinctWarning):
        model = RQGMM(levels=3, codebook_size=64, random_state=0, progress=False).fit(X)
    codes = model.encode(X)
    assert (codes < 64).all() and np.isfinite(model.decode(codes)).all()
    assert model.effective_codebook_sizes[0] == 20


def test_predict_proba_per_level(fitted, data):
    if not isinstance(fitted, RQGMM):
        pytest.skip("GMM levels only")
    probs = fitted.predict_proba(data)
    assert [p.shape for p in probs] == [(len(data), k) for k in fitted.effective_codebook_sizes]
    np.testing.assert_array_equal(np.stack([p.argmax(1) for p in probs], 1), fitted.encode(data))


def test_bad_input_messages(fitted, data):
    with pytest.raises(rqgmm.InputError, match="X has 5 features, but RQ.* is expecting 16 features as input"):
        fitted.encode(np.zeros((3, 5)))
    bad = data.copy()
    bad[[2, 7]] = np.nan
    with pytest.raises(rqgmm.InputError, match=r"NaN or Inf values in 2 of 1500 rows \(rows 2, 7\)"):
        fitted.encode(bad)
    with pytest.raises(rqgmm.InputError, match="must be 2-D"):
        fitted.encode(data[0])
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        RQGMM().encode(data)
    with pytest.raises(rqgmm.InputError, match="codebook_size lists 2 sizes for 3 levels"):
        RQGMM(levels=3, codebook_size=[4, 4]).fit(data)


def test_integer_and_half_inputs_are_converted(fitted, data):
    codes = fitted.encode(data)
    half = fitted.encode(torch.from_numpy(data).to(torch.float16))
    assert (half.numpy() == codes).all(axis=1).mean() > 0.95
    assert fitted.encode(np.rint(data).astype(np.int32)).shape == codes.shape
