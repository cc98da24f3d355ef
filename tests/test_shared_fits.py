"""A sweep over levels fits the deepest residual stack once and cuts the shallower shapes from it."""

from __future__ import annotations

import numpy as np
import pytest

from rqgmm.evaluate import tokenizer_stage
from rqgmm.evaluate.config import config_from
from rqgmm.evaluate.tokenizer_stage import SharedFits, fit_tokenizer

X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)


def one_shape(method: str, levels: int):
    return config_from(dict(embedding=["text_emb"], methods=method, levels=levels, codebook_size=8))


@pytest.mark.parametrize("method", ["rqkmeans", "rqgmm", "prqkmeans", "rqkmeans+balanced"])
def test_a_cut_shape_has_the_codes_and_metrics_of_its_own_fit(method, monkeypatch):
    fits, calls, real = SharedFits([(2, 8), (3, 8)]), [], tokenizer_stage.fit_model
    monkeypatch.setattr(tokenizer_stage, "fit_model", lambda m, X, config, seed: calls.append(config.levels)
                        or real(m, X, config, seed))
    shallow, table = fits.fit(method, X, np.arange(300), one_shape(method, 2), seed=3, modality="text_emb")
    deep, deep_table = fits.fit(method, X, np.arange(300), one_shape(method, 3), seed=3, modality="text_emb")
    assert calls == [3]  # one fit, of the deepest shape
    alone, alone_table = fit_tokenizer(method, X, np.arange(300), one_shape(method, 2), seed=3)
    np.testing.assert_array_equal(table.codes, alone_table.codes)
    np.testing.assert_array_equal(deep_table.codes[:, :2], table.codes)
    assert shallow["cut_from"] == "3x8" and "cut_from" not in deep
    for name in ("levels", "rmse", "collision_rate", "collided_items"):
        assert shallow[name] == pytest.approx(alone[name]), name
    assert shallow["history"] == alone["history"]  # per level, the deepest fit's first levels


def test_methods_that_do_not_nest_and_single_depths_fit_shape_by_shape():
    fits = SharedFits([(2, 8), (3, 8), (2, 16)])
    assert fits.deepest("rqgmm", (2, 8)) == 3 and fits.deepest("prqkmeans+balanced", (3, 8)) == 3
    assert fits.deepest("rqvae", (2, 8)) is None and fits.deepest("vqvae", (2, 8)) is None
    assert fits.deepest("rqkmeans", (2, 16)) is None  # no deeper shape at K=16


def test_the_sweep_cost_bench_prints_the_ratio_to_the_deepest_fit(capsys):
    import json

    from rqgmm.bench.sweep_cost import main

    main(["--rows", "400", "--dim", "4", "--topics", "20", "--codebook-size", "4", "--methods", "rqkmeans",
          "--unshared"])
    result = json.loads(capsys.readouterr().out)
    assert result["levels"] == [2, 3] and {"deepest_alone_s", "sweep_s", "ratio", "unshared_ratio"} <= set(
        result["rqkmeans"])


@pytest.mark.parametrize("method", ["rqkmeans", "rqgmm"])
def test_reconstruction_errors_where_the_model_decodes_equal_the_host_ones(method):
    """The device path of every depth's Σ|x − x̂_d|² (used on a GPU; run here on the CPU) equals the host one."""
    from rqgmm.evaluate.tokenizer_stage import Encoded, fit_model
    model, fit_warnings, _ = fit_model(method, X, one_shape(method, 3), seed=0)
    encoded = Encoded(model, X, fit_warnings, [1, 2, 3])
    on_device = encoded._errors_on(model.fitted_device, X, [1, 2, 3], chunk=128)
    assert on_device == pytest.approx(encoded.errors, rel=1e-9)
    assert encoded.errors[1] > encoded.errors[2] > encoded.errors[3] > 0
