"""KMeans and DiagonalGMM where scikit-learn's own tests found them wanting: seeding, initial parameters,
non-finite results, warm starts, empty clusters, repeated centres, data far from the origin, the matmul
precision flags and storage errors. scikit-learn is the oracle where it has one."""

import io
import warnings
from contextlib import redirect_stderr

import numpy as np
import pytest
import torch
from conftest import make_mixture
from safetensors import SafetensorError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from rqgmm import FewDistinctWarning, InputError, KMeans
from rqgmm.bench.seeding import covers_every_cluster, planted_clusters
from rqgmm.runtime.device import cuda_tf32
from rqgmm.tokenizers.gmm import DiagonalGMM
from rqgmm.tokenizers.kmeans import kmeans_plusplus, n_local_trials
from rqgmm.runtime.seeding import cpu_generator


def quiet_fit(estimator, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, **kwargs)


def fitted_kmeans(centres) -> KMeans:
    """A KMeans whose fitted centres are ``centres`` (a warm start from given centres)."""
    centres = torch.as_tensor(np.asarray(centres, dtype=np.float64))
    return KMeans(centres.shape[0], dtype="float64").load_state({"cluster_centers": centres})


# ------------------------------------------------------------------------------------------- seeding


def test_greedy_seeding_draws_its_trials_and_keeps_the_lowest_potential():
    """Each step keeps, of 2 + floor(ln K) D²-drawn candidates, the one that lowers the potential most:
    never a higher potential than plain k-means++ on the same data, on average over seeds."""
    X, labels = planted_clusters(20, 16, 0)
    assert n_local_trials(20) == 2 + 2 and n_local_trials(256) == 7

    def potential(C):
        return float(((X[:, None, :] - C.numpy()[None]) ** 2).sum(-1).min(1).sum())

    plain = [potential(kmeans_plusplus(torch.from_numpy(X), 20, cpu_generator(s), 1)) for s in range(10)]
    greedy = [potential(kmeans_plusplus(torch.from_numpy(X), 20, cpu_generator(s))) for s in range(10)]
    assert np.mean(greedy) < np.mean(plain)
    covered = [covers_every_cluster(X, labels, 20, s, None) for s in range(10)]
    assert sum(covered) >= 8  # plain k-means++ covers every cluster in about 1 seeding of 4 here


@pytest.mark.parametrize("cls", [KMeans, DiagonalGMM])
def test_well_separated_clusters_are_recovered_for_every_seed(cls):
    X, labels = planted_clusters(20, 16, 1)
    scores = [adjusted_rand_score(labels, quiet_fit(cls(20, random_state=s, progress=False), X).predict(X))
              for s in range(6)]
    assert min(scores) >= 0.99


@pytest.mark.parametrize("cls, attribute", [(KMeans, "inertia_"), (DiagonalGMM, "lower_bound_")])
def test_n_init_keeps_the_best_start(cls, attribute):
    """n_init = n is the best of the n starts it runs (scikit-learn's meaning): no worse than its first."""
    X, _ = planted_clusters(20, 16, 2)
    one = quiet_fit(cls(20, random_state=3, progress=False, max_iter=3), X)
    best = quiet_fit(cls(20, n_init=4, random_state=3, progress=False, max_iter=3), X)
    sign = 1 if attribute == "inertia_" else -1
    assert sign * getattr(best, attribute) <= sign * getattr(one, attribute) + 1e-9 * abs(getattr(one, attribute))
    with pytest.raises(InputError, match="n_init must be an integer >= 1, got 0"):
        cls(3, n_init=0).fit(X)


# ------------------------------------------------------------------------------- initial parameters


def _two_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-5, 1, (100, 2)), rng.normal(5, 1, (300, 2))])
    return X, np.array([[-5.0, -5.0], [5.0, 5.0]])


def test_weights_and_precisions_are_honoured_without_means():
    """weights_init and precisions_init count even without means_init: the first E-step uses them
    (scikit-learn, given the same means, gives the same first lower bound)."""
    X, _ = _two_clusters()
    truth = [X[:100].mean(0), X[100:].mean(0)]  # what k-means finds here, in its order
    weights, precisions = np.array([0.4, 0.6]), np.full((2, 2), 4.0)
    ours = quiet_fit(DiagonalGMM(2, weights_init=weights, precisions_init=precisions, max_iter=1, random_state=0,
                                 dtype="float64", progress=False), X)
    firsts = []
    for means in (truth, truth[::-1]):
        sk = quiet_fit(GaussianMixture(2, covariance_type="diag", means_init=np.array(means), weights_init=weights,
                                       precisions_init=precisions, max_iter=1), X)
        firsts.append(sk.lower_bound_)
    assert min(abs(ours.history_[0] - f) for f in firsts) < 1e-9
    default = quiet_fit(DiagonalGMM(2, max_iter=1, random_state=0, dtype="float64", progress=False), X)
    assert abs(default.history_[0] - ours.history_[0]) > 1e-3


@pytest.mark.parametrize("params, message", [
    ({"weights_init": [0.5, 0.3, 0.2]}, r"The parameter 'weights' should have the shape of \(2,\), but got \(3,\)"),
    ({"weights_init": [1.2, -0.2]}, r"The parameter 'weights' should be in the range \[0, 1\], but got max value "
                                    r"1.20000, min value -0.20000"),
    ({"weights_init": [0.2, 0.2]}, r"The parameter 'weights' should be normalized, but got sum\(weights\) = 0.40000"),
    ({"means_init": np.zeros((3, 2))}, r"The parameter 'means' should have the shape of \(2, 2\), but got \(3, 2\)"),
    ({"precisions_init": np.zeros((2, 3))}, r"The parameter 'diag precision' should have the shape of \(2, 2\)"),
    ({"precisions_init": -np.ones((2, 2))}, r"'diag precision' should be positive"),
])
def test_bad_initial_parameters_are_refused_as_scikit_learn_does(params, message):
    X, _ = _two_clusters()
    with pytest.raises(InputError, match=message):
        DiagonalGMM(2, progress=False, **params).fit(X)
    with pytest.raises(ValueError, match=message.split(", but got")[0]):  # scikit-learn swaps max and min
        GaussianMixture(2, covariance_type="diag", **params).fit(X)


def test_given_means_without_the_rest_start_uniform_at_the_data_variance():
    """The documented difference: with means_init alone no k-means runs; weights start uniform and
    variances at the data's (scikit-learn takes both from a k-means start)."""
    X, means = _two_clusters()
    gmm = quiet_fit(DiagonalGMM(2, means_init=means, max_iter=1, dtype="float64", progress=False), X)
    variance = X.var(0) + 1e-6
    p = np.log(0.5) - 0.5 * (np.log(2 * np.pi * variance) + (X[:, None, :] - means[None]) ** 2 / variance).sum(-1)
    expected = np.mean(np.logaddexp.reduce(p, axis=1))
    assert gmm.history_[0] == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------------------------- non-finite


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # collapsed data, on purpose
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_fit_never_returns_non_finite_parameters(dtype):
    """Collapsed data with every floor off: a clear error (scikit-learn's wording) where a variance is 0,
    finite parameters otherwise; never NaN (these fits returned NaN means and variances before)."""
    with pytest.raises(InputError, match="ill-defined empirical covariance.*increase reg_covar or variance_floor"):
        quiet_fit(DiagonalGMM(2, reg_covar=0.0, variance_floor=0.0, random_state=0, dtype=dtype, progress=False),
                  np.ones((40, 3)))
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        GaussianMixture(2, covariance_type="diag", reg_covar=0.0, random_state=0).fit(np.ones((40, 3)))
    for X in (np.repeat([[1.0, 2.0], [3.0, 4.0]], 20, axis=0), np.repeat([[1.0, 2.0], [3.0, 4.0], [5, 6]], 20, axis=0)):
        for k in (2, 3):
            try:
                gmm = quiet_fit(DiagonalGMM(k, reg_covar=0.0, variance_floor=0.0, random_state=0, dtype=dtype,
                                            progress=False), X)
            except InputError:
                continue
            assert all(bool(torch.isfinite(t).all()) for t in gmm.state_tensors().values() if t is not None)


# ------------------------------------------------------------------------------------- warm starts


def test_repeated_one_iteration_warm_fits_converge_as_scikit_learn_warm_start():
    X, _ = make_mixture(n_per=100, k=3, d=4, seed=2, spread=4.0)
    means = X[:3]
    common = dict(max_iter=1, tol=1e-3, reg_covar=1e-6)
    sk = GaussianMixture(3, covariance_type="diag", warm_start=True, means_init=means, weights_init=np.ones(3) / 3,
                         precisions_init=np.ones((3, 4)), **common)
    ours = quiet_fit(DiagonalGMM(3, means_init=means, weights_init=np.ones(3) / 3, precisions_init=np.ones((3, 4)),
                                 min_component_count=0, dtype="float64", progress=False, **common), X)
    quiet_fit(sk, X)
    sk_calls = ours_calls = None
    for call in range(2, 200):
        quiet_fit(sk, X)
        ours = quiet_fit(DiagonalGMM(3, dtype="float64", progress=False, **common), X, init=ours)
        sk_calls = sk_calls or (call if sk.converged_ else None)
        ours_calls = ours_calls or (call if ours.converged_ else None)
        if sk_calls and ours_calls:
            break
    assert ours_calls == sk_calls
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)


def test_a_warm_kmeans_from_converged_centres_stops_at_once():
    X, _ = make_mixture(n_per=100, k=3, d=4, seed=2)
    cold = KMeans(3, random_state=0, dtype="float64", progress=False).fit(X)
    warm = KMeans(3, dtype="float64", progress=False).fit(X, init=cold)
    assert warm.converged_ and warm.n_iter_ == 1


# --------------------------------------------------------------------------------- empty clusters


def test_empty_cluster_relocation_leaves_centres_the_means_of_their_points():
    """scikit-learn's test_kmeans_relocated_clusters: inertia 0.25, centres (0.25, 0) and (0.75, 1)."""
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    km = KMeans(2, dtype="float64", progress=False).fit(X, init=fitted_kmeans([[0.5, 0.5], [3, 3]]))
    assert km.inertia_ == pytest.approx(0.25)
    assert km.n_split_[0] == 1
    centres = sorted(map(tuple, km.cluster_centers_.numpy().round(12)))
    assert centres == [(0.25, 0.0), (0.75, 1.0)]


def test_repeated_given_centres_on_few_distinct_points_converge_with_a_warning():
    """Given centres with a repeat, data with fewer distinct points than K: the surplus cluster stays
    empty (never chosen), with a warning, and the fit converges at once; a cold start shrinks K instead."""
    X = np.repeat(np.eye(3), 10, axis=0)
    given = fitted_kmeans(np.vstack([np.eye(3), np.eye(3)[2:]]))
    with pytest.warns(FewDistinctWarning, match="1 of 4 clusters are empty and every point repeats its centre"):
        warm = KMeans(4, dtype="float64", progress=False).fit(X, init=given)
    assert warm.converged_ and warm.n_iter_ <= 2 and warm.inertia_ == 0.0
    np.testing.assert_array_equal(warm.predict(X), np.repeat([0, 1, 2], 10))
    with pytest.warns(FewDistinctWarning, match="effective K=3"):
        cold = KMeans(4, random_state=0, progress=False).fit(X)
    assert cold.n_clusters_ == 3 and cold.converged_


# ---------------------------------------------------------------------------------- far from the origin


@pytest.mark.parametrize("offset", [300.0, 1e4])
def test_float32_far_from_the_origin_matches_float64(offset):
    X, _ = make_mixture(n_per=150, k=4, d=6, seed=9, spread=3.0)
    X = X + offset
    g64 = quiet_fit(DiagonalGMM(4, random_state=0, dtype="float64", progress=False), X)
    g32 = quiet_fit(DiagonalGMM(4, random_state=0, dtype="float32", progress=False), X.astype(np.float32))
    assert g32.score(X.astype(np.float32)) == pytest.approx(g64.score(X), rel=1e-3)
    assert g32.lower_bound_ == pytest.approx(g64.lower_bound_, rel=1e-3)
    assert g32.means_.numpy() == pytest.approx(g64.means_.numpy(), abs=1e-2 * offset / 1e3 + 1e-2)  # caller's frame
    np.testing.assert_array_equal(g32.predict(X.astype(np.float32)), g64.predict(X))
    k32 = KMeans(4, random_state=0, progress=False).fit(X.astype(np.float32))
    k64 = KMeans(4, random_state=0, dtype="float64", progress=False).fit(X)
    assert k32.inertia_ == pytest.approx(k64.inertia_, rel=1e-3)
    np.testing.assert_array_equal(k32.predict(X.astype(np.float32)), k64.predict(X))


def test_centred_data_gets_no_origin():
    X, _ = make_mixture(n_per=50, k=3, d=4, seed=1)
    assert DiagonalGMM(3, random_state=0, progress=False).fit(X - X.mean(0)).origin_ is None


# ------------------------------------------------------------------------------- precision flags


def _flags():
    """Every getter of torch's float32 matmul precision, or the error it raises."""
    getters = {"legacy": torch.get_float32_matmul_precision,
               "cuda.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
               "cuda.fp32_precision": lambda: torch.backends.cuda.matmul.fp32_precision,
               "mkldnn.fp32_precision": lambda: torch.backends.mkldnn.matmul.fp32_precision}
    out = {}
    for name, get in getters.items():
        try:
            out[name] = get()
        except RuntimeError as exc:
            out[name] = f"raises {str(exc)[:40]}"
    return out


CALLER_SETTINGS = {
    "nothing": lambda: None,
    "legacy allow_tf32": lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", True),
    "legacy high then allow_tf32 off": lambda: (torch.set_float32_matmul_precision("high"),
                                                setattr(torch.backends.cuda.matmul, "allow_tf32", False)),
    "medium": lambda: torch.set_float32_matmul_precision("medium"),
    "new API tf32": lambda: setattr(torch.backends.cuda.matmul, "fp32_precision", "tf32"),
    "legacy then new API": lambda: (setattr(torch.backends.cuda.matmul, "allow_tf32", True),
                                    setattr(torch.backends.cuda.matmul, "fp32_precision", "ieee")),
}


@pytest.fixture
def restore_torch_flags():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cuda, mkldnn = torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision
        yield
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision = cuda, mkldnn


@pytest.mark.parametrize("setting", CALLER_SETTINGS)
def test_precision_control_works_whatever_the_caller_set_and_restores_it(setting, restore_torch_flags):
    """cuBLAS checks exactly what ``torch.backends.cuda.matmul.allow_tf32`` reads (legacy and new records
    agree for CUDA) before every float32 product: inside the block that read must not raise and must give
    the requested precision; after it, every getter reads (or raises) as before."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CALLER_SETTINGS[setting]()
        before = _flags()
        for tf32 in (True, False, True):
            with cuda_tf32(tf32):
                assert torch.backends.cuda.matmul.allow_tf32 is tf32
            assert _flags() == before


# ---------------------------------------------------------------------------------- storage errors


def _cli(*args):
    from rqgmm.cli import main

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def _no_leftovers(directory, name):
    return not any(p.name.startswith(name) or p.name.startswith(f".{name}") for p in directory.iterdir())


def test_a_failed_model_write_in_a_library_error_type_is_exit_2(tmp_path, monkeypatch):
    X, _ = make_mixture(n_per=20, k=2, d=4)
    np.save(tmp_path / "x.npy", X.astype(np.float32))

    def full_disk(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr("rqgmm.files.formats.save_file", full_disk)
    code, err = _cli("fit", str(tmp_path / "x.npy"), "--method", "rqkmeans", "--levels", "1", "--codebook-size", "2",
                     "--quiet", "--out", str(tmp_path / "model"))
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert _no_leftovers(tmp_path, "model")


@pytest.mark.parametrize("suffix, writer", [(".parquet", "pyarrow.parquet.write_table"), (".npy", "numpy.save")])
def test_a_failed_codes_write_is_exit_2(tmp_path, monkeypatch, suffix, writer):
    X, _ = make_mixture(n_per=20, k=2, d=4)
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    assert _cli("fit", str(tmp_path / "x.npy"), "--method", "rqkmeans", "--levels", "1", "--codebook-size", "2",
                "--quiet", "--out", str(tmp_path / "model"))[0] == 0

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, full_disk)
    code, err = _cli("encode", str(tmp_path / "model"), str(tmp_path / "x.npy"), "--out", str(tmp_path / f"c{suffix}"))
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert _no_leftovers(tmp_path, "c")
