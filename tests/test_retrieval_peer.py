"""bench.retrieval_peer (issue 27, item 7): Cornac's SASRec and TIGER on the project's split; cornac optional."""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

from rqgmm.bench import retrieval_peer


def _data(tmp_path, users: int = 20, per_user: int = 8, n_items: int = 25):
    rng = np.random.default_rng(0)
    n = users * per_user
    pd.DataFrame(dict(user_id=np.repeat(np.arange(users), per_user), item_id=rng.integers(0, n_items, n),
                      label=np.ones(n, dtype=int), timestamp=np.arange(n))).to_parquet(tmp_path / "interactions.parquet")
    vectors = rng.standard_normal((n_items, 8)).astype(np.float32)
    pd.DataFrame(dict(item_id=np.arange(n_items), embedding=list(vectors))).to_parquet(tmp_path / "items.parquet")
    return tmp_path


def test_without_cornac_exits_2_with_the_install_line(tmp_path, monkeypatch, capsys):
    real = builtins.__import__

    def no_cornac(name, *args, **kwargs):
        if name == "cornac" or name.startswith("cornac."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cornac)
    assert retrieval_peer.main([str(_data(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install cornac==3.0.1" in err


def test_the_cornac_split_holds_our_training_validation_and_test_items(tmp_path):
    seqs, _, _ = retrieval_peer.load(_data(tmp_path))
    train, valid, test = retrieval_peer.cornac_splits(seqs)
    for u in range(seqs.n_users):
        whole = [int(i) for s, i, _ in test if s == str(u)]
        assert whole[-1] == seqs.test[u] and [int(i) for s, i, _ in valid if s == str(u)][-1] == seqs.valid[u]
        assert [int(i) for s, i, _ in train if s == str(u)] == seqs.history(u, "train").tolist()


def test_cornac_runs_on_our_split(tmp_path):
    pytest.importorskip("cornac")
    found = retrieval_peer.run_cornac(_data(tmp_path), seed=0)
    assert set(found) == {"cornac SASRec", "cornac TIGER"} and all(0 <= v <= 1 for v in found.values())


@pytest.mark.parametrize("argv, message", [
    (["--tiger-epochs", "0"], "argument --tiger-epochs: expected an integer between 1 and 1000, got 0"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
])
def test_a_bad_argument_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert retrieval_peer.main([str(_data(tmp_path)), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
