"""Command line of the stable-ID tools: --warm-start, --align-to, --balance, --unique reassign, report --against."""

import json

import numpy as np
import pytest
from conftest import make_mixture

from rqgmm.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ids-cli")
    X = make_mixture(n_per=40, k=6, d=6, seed=4)[0].astype(np.float32)
    np.save(d / "x.npy", X)
    np.save(d / "x3.npy", X[:, :3])
    np.save(d / "grown.npy", np.concatenate([X, X[:24] + 0.1]))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        for method, out in (("rqgmm", "old"), ("prqkmeans", "prq")):
            assert main(["fit", "x.npy", "--method", method, "--levels", "2", "--codebook-size", "6", "--quiet",
                         "--out", out]) == 0
        assert main(["encode", "old", "x.npy", "--out", "old.parquet", "--quiet"]) == 0
    return d


def test_refits_state_their_churn_in_the_model_and_the_report(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    for flag, out in (("--warm-start", "warm"), ("--align-to", "aligned")):
        assert main(["fit", "grown.npy", "--levels", "2", "--codebook-size", "6", "--seed", "3", flag, "old",
                     "--quiet", "--out", out]) == 0
        lineage = json.loads((workdir / out / "config.json").read_text())["lineage"]
        assert lineage["how"] == {"--warm-start": "warm_start", "--align-to": "aligned"}[flag]
        assert lineage["n_items"] == 264 and len(lineage["code_changed"]) == 2
    assert main(["encode", "aligned", "x.npy", "--out", "new.parquet", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "x.npy", "new.parquet", "--model", "aligned", "--against", "old.parquet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lineage"]["how"] == "aligned" and result["churn"]["n_items"] == 240
    assert 0 <= result["churn"]["full_id_changed"] <= 1 and len(result["churn"]["adjusted_rand"]) == 2
    assert 0 < result["collided_items"] <= 1 and result["largest_collision"] >= 2
    assert "NaN" not in json.dumps(result)


@pytest.mark.parametrize("argv, expect", [
    (["fit", "x.npy", "--levels", "3", "--codebook-size", "6", "--warm-start", "old"], "has 2 levels of sizes"),
    (["fit", "x.npy", "--levels", "2", "--codebook-size", "6", "--method", "rqkmeans", "--warm-start", "old"],
     "fit with --method rqgmm"),
    (["fit", "x.npy", "--levels", "2", "--codebook-size", "6", "--method", "rqvae", "--warm-start", "old"],
     "--warm-start is supported for"),
    (["fit", "x.npy", "--levels", "2", "--codebook-size", "6", "--warm-start", "nowhere"], "does not exist"),
    (["fit", "x3.npy", "--levels", "2", "--codebook-size", "6", "--align-to", "old"], "has 3 features"),
    (["fit", "x.npy", "--levels", "2", "--codebook-size", "6,4", "--align-to", "old"], "--codebook-size 6,6"),
    (["fit", "x.npy", "--balance", "auction"], "invalid choice: 'auction'"),
    (["fit", "x.npy", "--max-cluster-size", "2"], "add --balance"),
    (["fit", "x.npy", "--balance", "greedy", "--max-cluster-size", "0.5"], "max_cluster_size must be a number >= 1"),
    (["fit", "x.npy", "--method", "prqkmeans", "--balance", "greedy"], "--balance applies to"),
    (["encode", "old", "x.npy", "--out", "c.parquet", "--unique", "always"], "invalid choice: 'always'"),
    (["encode", "prq", "x.npy", "--out", "c.parquet", "--unique", "reassign"], "use --unique suffix"),
    (["report", "x.npy", "old.parquet", "--against", "missing.parquet"], "does not exist"),
    (["report", "x.npy", "old.parquet", "--against", "short.npy"], "no item ids to match them by"),
])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(workdir, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(workdir)
    np.save("short.npy", np.zeros((5, 2), dtype=np.int64))
    before = sorted(p.name for p in workdir.iterdir())
    capsys.readouterr()
    assert main([*argv, *(["--out", "out"] if argv[0] == "fit" else []), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rqgmm: error: ") and expect in err, err
    assert sorted(p.name for p in workdir.iterdir()) == before
