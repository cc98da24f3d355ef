"""The core's single rules: child seeds, the device default, the declared parameter constraints, the walk."""

import numpy as np
import pytest
import torch

from rqgmm import RQGMM, DiagonalGMM, InputError, KMeans
from rqgmm.runtime.device import default_device
from rqgmm.tokenizers.prq import SphericalKMeans
from rqgmm.runtime.seeding import child_seed, child_seeds
from rqgmm.tokenizers.vae import RQVAE
from rqgmm.tokenizers.walk import codeword_sum, final_residual, residual_walk


def test_child_seeds_are_independent_per_name_and_reproducible():
    assert child_seeds(7, "levels", 3) == child_seeds(7, "levels", 3)
    assert len(set(child_seeds(7, "levels", 3))) == 3
    assert child_seeds(7, "levels", 3)[:2] == child_seeds(7, "levels", 2)  # spawn: a prefix stays a prefix
    assert child_seed(7, "sample") != child_seed(7, "start") != child_seed(8, "start")
    assert child_seeds(None, "ctr", 2) == [None, None]
    assert all(0 <= s < 2**32 for s in child_seeds(2**40, "ctr", 4))


def test_a_gmm_and_its_kmeans_initialiser_draw_from_different_streams():
    """gmm.py hands its k-means initialiser a child seed, never its own random_state."""
    X = np.random.default_rng(0).normal(size=(200, 3))
    gmm = DiagonalGMM(4, random_state=5, max_iter=1, progress=False)
    seen = []
    original = KMeans.fit

    def spy(self, *args, **kwargs):
        seen.append(self.random_state)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KMeans, "fit", spy)
        with pytest.warns(Warning):
            gmm.fit(X)
    assert seen and seen[0] not in (5, None)


def test_the_default_device_is_the_inputs():
    assert default_device(np.zeros((2, 2))) == torch.device("cpu")
    assert default_device(torch.zeros(2, 2)) == torch.device("cpu")
    assert default_device(np.zeros((2, 2)), "cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="is not a device name"):
        default_device(np.zeros((2, 2)), "nonsense")


@pytest.mark.parametrize("estimator, message", [
    (KMeans(n_clusters=0), "n_clusters must be an integer >= 1, got 0"),
    (DiagonalGMM(reg_covar=-1.0), "reg_covar must be a number >= 0, got -1.0"),
    (DiagonalGMM(dtype="float16"), r"dtype must be one of \['float32', 'float64'\], got 'float16'"),
    (SphericalKMeans(beta=0.0), "beta must be a number > 0, got 0.0"),
    (SphericalKMeans(dtype="half"), "dtype must be one of"),  # it used to skip the shared checks
    (KMeans(random_state=-1), "random_state must be an integer >= 0, got -1"),
    (RQGMM(levels=2, codebook_size=[4, 4, 4]), "codebook_size lists 3 sizes for 2 levels"),
    (RQVAE(holdout=0.7), r"holdout must be a number in \[0, 0.5\], got 0.7"),
])
def test_every_argument_is_checked_by_its_declaration_in_fit(estimator, message):
    with pytest.raises(InputError, match=message):
        estimator.fit(np.zeros((10, 2)))


def test_rqvae_stores_its_arguments_as_given():
    model = RQVAE(codebook_size=[4, 4], levels=2, hidden_sizes=(8,), lr=1, device=None)
    assert model.get_params()["codebook_size"] == [4, 4] and model.get_params()["hidden_sizes"] == (8,)
    assert model.get_params()["lr"] == 1 and model.get_params()["device"] is None


def test_the_walk_and_the_decode_sum_invert_each_other():
    rng = np.random.default_rng(1)
    books = [torch.from_numpy(rng.normal(size=(5, 3))) for _ in range(3)]
    x = torch.from_numpy(rng.normal(size=(7, 3)))
    nearest = lambda level, r: torch.cdist(r, books[level]).argmin(1)  # noqa: E731
    codes = torch.stack([z for _, _, z in residual_walk(x, books, nearest)], 1)
    last = final_residual(x, books, codes)
    torch.testing.assert_close(codeword_sum(books, codes) + last, x)
    assert torch.equal(final_residual(x, [], codes[:, :0]), x)
