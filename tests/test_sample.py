"""rqgmm fit --sample: a seeded sample, reproducible and recorded in the model."""

import json

import numpy as np

import rqgmm
from rqgmm.cli import main


def _fit(tmp_path, name, *extra):
    args = ["fit", str(tmp_path / "x.npy"), "--levels", "2", "--codebook-size", "4", "--seed", "3", "--quiet",
            "--out", str(tmp_path / name), *extra]
    assert main(args) == 0
    return json.loads((tmp_path / name / "config.json").read_text())


def test_sample_is_reproducible_recorded_and_is_the_library_fit_of_those_rows(tmp_path):
    X = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    a = _fit(tmp_path, "a", "--sample", "120")
    b = _fit(tmp_path, "b", "--sample", "120")
    assert a["fit_sample"] == {"rows": 120, "of": 500, "seed": 3}
    assert a == b
    rows = np.sort(np.random.default_rng(3).choice(500, 120, replace=False))
    library = rqgmm.RQGMM(levels=2, codebook_size=4, random_state=3, progress=False).fit(X[rows])
    np.testing.assert_array_equal(rqgmm.load(tmp_path / "a").encode(X), library.encode(X))
    assert rqgmm.load(tmp_path / "a").fit_sample_ == a["fit_sample"]


def test_a_sample_larger_than_the_file_takes_every_row(tmp_path):
    X = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    config = _fit(tmp_path, "m", "--sample", "1000")
    assert config["fit_sample"] == {"rows": 50, "of": 50, "seed": 3}
    plain = _fit(tmp_path, "plain")
    np.testing.assert_array_equal(rqgmm.load(tmp_path / "m").encode(X), rqgmm.load(tmp_path / "plain").encode(X))
    assert "fit_sample" not in plain


def test_a_bad_sample_size_is_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((5, 2), np.float32))
    assert main(["fit", str(tmp_path / "x.npy"), "--sample", "0", "--out", str(tmp_path / "m")]) == 2
    assert "--sample" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
