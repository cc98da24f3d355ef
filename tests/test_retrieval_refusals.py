"""``evaluate --task retrieval``: the sequence refusals come before any log line, and the dropped users add up.

Issue 29 items 4 and 9: a refusal of the sequences ("marks no row positive", "no user has 3 or more positive
items") is one line on stderr, not an INFO "encoded N rows" line and then the error; every user of the log is
either kept or counted as dropped, users with no positive row included.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rqgmm.errors import InputError
from rqgmm.retrieval.sequences import MIN_ITEMS, build_sequences, check_sequences


def _tables(label, users: int = 24, per_user: int = 6, n_items: int = 30):
    rng = np.random.default_rng(0)
    n = users * per_user
    rows = pd.DataFrame(dict(user_id=np.repeat(np.arange(users), per_user), item_id=rng.integers(0, n_items, n),
                             label=label(n), timestamp=np.arange(n)))
    items = pd.DataFrame(dict(item_id=np.arange(n_items),
                              embedding=list(rng.standard_normal((n_items, 8)).astype(np.float32))))
    return rows, items


@pytest.mark.parametrize("task, label, message", [
    ("retrieval", lambda n: np.zeros(n, dtype=int), "label column 'label' marks no row positive"),
    ("retrieval", lambda n: (np.arange(n) % 6 < 2).astype(int), "no user has 3 or more positive items"),
    ("both", lambda n: (np.arange(n) % 6 < 2).astype(int), "no user has 3 or more positive items"),
])
def test_sequence_refusal_is_the_only_line_without_quiet(tmp_path, task, label, message):
    rows, items = _tables(label)
    rows.to_parquet(tmp_path / "rows.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "rqgmm", "evaluate", str(tmp_path / "rows.parquet"), "--items",
                             str(tmp_path / "items.parquet"), "--out", str(out), "--task", task],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


@pytest.mark.parametrize("labels, message", [
    (np.zeros(8, dtype=int), "marks no row positive"),
    (np.array([1, 1, 0, 1, 1, 0, 0, 0]), "no user has 3 or more positive items"),
])
def test_check_sequences_refuses_what_build_sequences_refuses(labels, message):
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    for check in (lambda: check_sequences(users, labels), lambda: build_sequences(users, np.arange(8), labels,
                                                                                   None, 8)):
        with pytest.raises(InputError, match=message):
            check()


@pytest.mark.parametrize("seed", range(5))
def test_kept_and_dropped_users_add_up_to_the_users_of_the_log(seed):
    rng = np.random.default_rng(seed)
    n = 400
    users, items = rng.integers(0, 60, n), rng.integers(0, 50, n)
    labels = (rng.random(n) < 0.3).astype(int)
    labels[users == users[0]] = 1  # at least one user long enough
    seqs = build_sequences(users, items, labels, rng.permutation(n), 50)
    assert seqs.n_users + seqs.dropped_users == len(np.unique(users))
    positives = pd.Series(users[labels == 1]).value_counts()
    no_positive = len(np.unique(users)) - len(positives)
    assert seqs.dropped_users == int((positives < MIN_ITEMS).sum()) + no_positive


def test_a_user_without_positives_counts_as_dropped():
    users = np.array([0, 0, 0, 1, 1, 2])
    seqs = build_sequences(users, np.arange(6), np.array([1, 1, 1, 0, 0, 1]), None, 6)
    assert (seqs.n_users, seqs.dropped_users) == (1, 2)
