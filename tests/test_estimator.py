"""The tokenizers and their levels are scikit-learn estimators, and output follows input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from rqgmm import RQGMM, RQKMeans
from rqgmm.tokenizers.gmm import DiagonalGMM
from rqgmm.tokenizers.kmeans import KMeans, kmeans_plusplus
from rqgmm.runtime.seeding import cpu_generator

ESTIMATORS = [
    DiagonalGMM(n_components=3, max_iter=20, random_state=0),
    KMeans(n_clusters=3, max_iter=20, random_state=0),
    RQGMM(levels=2, codebook_size=3, max_iter=10, random_state=0),
    RQKMeans(levels=2, codebook_size=3, max_iter=10, random_state=0),
]

_PROBA_PER_LEVEL = (
    "predict_proba returns one (N, K_l) array per level, a list as multi-output classifiers do; "
    "the check indexes that list by rows"
)


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, RQGMM):
        return {
            "check_methods_sample_order_invariance": _PROBA_PER_LEVEL,
            "check_methods_subset_invariance": _PROBA_PER_LEVEL,
        }
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures)
@pytest.mark.filterwarnings("ignore::rqgmm.ConvergenceWarning")  # 10 EM iterations on its tiny data
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 8)) * 4
    return (centres[rng.integers(0, 6, 300)] + rng.normal(size=(300, 8))).astype(np.float32)


@pytest.mark.filterwarnings("ignore::rqgmm.ConvergenceWarning")  # the tiny fits of ESTIMATORS
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_get_params_set_params(estimator, X):
    params = estimator.get_params()
    copy = clone(estimator)
    assert copy.get_params() == params
    key = "max_iter"
    copy.set_params(**{key: 3})
    assert copy.get_params()[key] == 3 and estimator.get_params()[key] == params[key]
    fitted = clone(estimator).fit(X)
    assert clone(fitted).get_params() == params
    assert not hasattr(clone(fitted), "n_features_in_")


@pytest.mark.parametrize("method", [RQGMM, RQKMeans])
def test_pipeline_with_a_scaler(method, X):
    pipe = Pipeline([("scale", StandardScaler()), ("ids", method(levels=2, codebook_size=4, random_state=0))])
    codes = pipe.fit_transform(X)
    assert codes.shape == (len(X), 2) and codes.dtype == np.int64
    alone = method(levels=2, codebook_size=4, random_state=0).fit(StandardScaler().fit_transform(X))
    np.testing.assert_array_equal(codes, alone.encode(StandardScaler().fit_transform(X)))
    assert pipe.set_params(ids__levels=1).fit_transform(X).shape == (len(X), 1)


def _public_outputs(estimator, X):
    """Every public array-returning method of a fitted estimator, applied to X."""
    if isinstance(estimator, DiagonalGMM):
        return {m: getattr(estimator, m)(X) for m in ("predict", "predict_proba", "score_samples")}
    if isinstance(estimator, KMeans):
        return {"predict": estimator.predict(X)}
    codes = estimator.encode(X)
    out = {"encode": codes, "transform": estimator.transform(X), "decode": estimator.decode(codes)}
    if isinstance(estimator, RQGMM):
        out.update({f"predict_proba[{i}]": p for i, p in enumerate(estimator.predict_proba(X))})
    return out


@pytest.mark.filterwarnings("ignore::rqgmm.ConvergenceWarning")  # the tiny fits of ESTIMATORS
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_numpy_in_numpy_out_tensor_in_tensor_out(estimator, X):
    fitted = clone(estimator).fit(X)
    as_numpy = _public_outputs(fitted, X)
    as_tensor = _public_outputs(fitted, torch.from_numpy(X))
    for name, value in as_numpy.items():
        assert isinstance(value, np.ndarray), name
        assert isinstance(as_tensor[name], torch.Tensor), name
        np.testing.assert_allclose(as_tensor[name].numpy(), value, rtol=1e-6, err_msg=name)
    assert isinstance(clone(estimator).fit(torch.from_numpy(X)).fit_transform(X) if hasattr(fitted, "fit_transform")
                      else clone(estimator).fit_predict(X), np.ndarray)


@pytest.mark.filterwarnings("ignore::rqgmm.ConvergenceWarning")  # the tiny fits of ESTIMATORS
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fitting_leaves_the_global_random_streams_alone(estimator, X):
    """Draws come from the estimator's own CPU generator, never a device's global stream."""
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    clone(estimator).fit(X)
    assert torch.equal(torch.random.get_rng_state(), before)


def _second_devices() -> list[str]:
    return ["cuda"] if torch.cuda.is_available() else []


@pytest.mark.skipif(not _second_devices(), reason="no second device on this machine (the CUDA figure is in BENCHMARKS.md)")
@pytest.mark.parametrize("device", _second_devices())
def test_initial_parameters_are_equal_on_every_device(device, X):
    on_cpu = kmeans_plusplus(torch.from_numpy(X), 5, cpu_generator(7))
    on_device = kmeans_plusplus(torch.from_numpy(X).to(device), 5, cpu_generator(7))
    torch.testing.assert_close(on_device.cpu(), on_cpu)
    cpu_codes = RQGMM(levels=2, codebook_size=4, random_state=0, max_iter=1).fit(X).encode(X)
    device_codes = RQGMM(levels=2, codebook_size=4, random_state=0, max_iter=1, device=device).fit(X).encode(X)
    np.testing.assert_array_equal(device_codes, cpu_codes)
