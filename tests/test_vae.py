"""RQ-VAE and VQ-VAE: reconstruction, utilization, and the tokenizer contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rqgmm.tokenizers.base
from rqgmm.errors import InputError
from rqgmm.tokenizers.vae import RQVAE, VQVAE, Autoencoder, restart_dead_codes

SMALL = dict(latent_dim=8, hidden_sizes=(64, 32), epochs=40, batch_size=128, lr=3e-3, progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny networks on a shared machine: one thread avoids OpenMP oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixture(n: int = 1200, d: int = 16, k: int = 48, seed: int = 0) -> np.ndarray:
    """Gaussian mixture with more components than one codebook has codes."""
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.normal(size=(k, d))
    return (means[rng.integers(k, size=n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return mixture()


@pytest.fixture(scope="module")
def rqvae(X) -> RQVAE:
    return RQVAE(levels=2, codebook_size=16, random_state=0, **SMALL).fit(X)


@pytest.fixture(scope="module")
def vqvae(X) -> VQVAE:
    return VQVAE(codebook_size=16, random_state=0, **SMALL).fit(X)


def mse(model, X: np.ndarray) -> float:
    return float(np.mean((model.decode(model.encode(X)) - X) ** 2))


def test_rqvae_reconstructs_better_than_vqvae(rqvae, vqvae, X):
    assert mse(rqvae, X) < 0.7 * mse(vqvae, X)
    # More levels decode to a better reconstruction than the first level alone.
    assert mse(rqvae, X) < float(np.mean((rqvae.decode(rqvae.encode(X)[:, :1]) - X) ** 2))


def test_utilization_stays_above_half_with_restarts(rqvae, vqvae, X):
    for model in (rqvae, vqvae):
        codes = model.encode(X)
        for level, k in enumerate(model.codebook_sizes):
            assert len(np.unique(codes[:, level])) / k > 0.5


def test_restart_reseeds_exactly_the_dead_codes(X):
    torch.manual_seed(0)
    model = Autoencoder(16, [32], 4, [8, 8], beta=0.25)
    before = [cb.detach().clone() for cb in model.quantizer.codebooks]
    usage = [torch.tensor([0, 3, 0, 1, 1, 1, 1, 1]), torch.ones(8, dtype=torch.int64)]
    n = restart_dead_codes(model, torch.from_numpy(X[:100]), usage, torch.Generator().manual_seed(0))
    assert n == 2
    changed = (model.quantizer.codebooks[0].detach() != before[0]).any(dim=1)
    assert changed.tolist() == [True, False, True, False, False, False, False, False]
    assert torch.equal(model.quantizer.codebooks[1].detach(), before[1])


def test_codes_shape_range_and_types(rqvae, vqvae, X):
    for model, levels in ((rqvae, 2), (vqvae, 1)):
        codes = model.encode(X)
        assert isinstance(codes, np.ndarray) and codes.dtype == np.int64 and codes.shape == (len(X), levels)
        assert codes.min() >= 0 and codes.max() < 16
        as_tensor = model.encode(torch.from_numpy(X))
        assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.int64
        np.testing.assert_array_equal(as_tensor.numpy(), codes)
        assert model.decode(codes).shape == X.shape


@pytest.mark.parametrize("name", ["rqvae", "vqvae"])
def test_save_load_round_trip(name, request, X, tmp_path):
    model = request.getfixturevalue(name)
    model.save(tmp_path / "model")
    loaded = rqgmm.tokenizers.base.load(tmp_path / "model")
    assert type(loaded) is type(model)
    assert loaded.codebook_sizes == model.codebook_sizes
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))
    np.testing.assert_array_equal(loaded.decode(model.encode(X)), model.decode(model.encode(X)))


@pytest.mark.parametrize("name", ["rqvae", "vqvae"])
def test_encode_changes_no_state(name, request, X):
    model = request.getfixturevalue(name)
    before = {k: v.clone() for k, v in model.state_tensors().items()}
    model.encode(X[:100])
    model.decode(model.encode(X[:100]))
    after = model.state_tensors()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_same_seed_same_codes():
    X = mixture(n=300, seed=1)
    fit = dict(levels=2, codebook_size=[8, 4], random_state=7, **{**SMALL, "epochs": 5})
    a = RQVAE(**fit).fit(X).encode(X)
    b = RQVAE(**fit).fit(X).encode(X)
    np.testing.assert_array_equal(a, b)
    assert a[:, 1].max() < 4


def test_fit_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    RQVAE(levels=1, codebook_size=4, random_state=0, **{**SMALL, "epochs": 1}).fit(mixture(n=100))
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_input_raises(rqvae, X):
    bad = X.copy()
    bad[5, 0] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        rqvae.encode(bad)
    with pytest.raises(InputError, match="NaN or Inf"):
        RQVAE(levels=1, codebook_size=4, **SMALL).fit(bad)
    with pytest.raises(InputError, match="dimension"):
        rqvae.encode(X[:, :5])
    with pytest.raises(InputError, match="must lie in"):
        rqvae.decode(np.full((3, 2), 16))
    with pytest.raises(InputError, match="codebook_size"):  # parameters are stored as given and checked in fit
        RQVAE(levels=3, codebook_size=[4, 4]).fit(X)
    with pytest.raises(InputError, match="not fitted"):
        VQVAE(codebook_size=4).encode(X)
    with pytest.raises(InputError, match="exactly one level"):
        VQVAE(levels=2, codebook_size=4).fit(X)


def test_max_steps_bounds_training_to_whole_epochs(X):
    # 1,140 training items in batches of 128 -> 9 steps an epoch; 10 steps need 2 epochs.
    model = RQVAE(levels=1, codebook_size=4, random_state=0, **{**SMALL, "max_steps": 10}).fit(X)
    assert (model.n_epochs_, model.n_steps_) == (2, 18)
    assert len(model.history_) == 2
