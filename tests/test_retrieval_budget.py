"""The full mode's budget at scale (issue 27): its epoch rule, batch rule and validation sample leave a
MovieLens-100k-sized log as it was and bound a 100,000-user log; early stopping reads only its own cold rule."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from rqgmm.retrieval.model import ModelConfig
from rqgmm.retrieval.sequences import build_sequences
from rqgmm.retrieval.train import FULL, QUICK, _batch, epoch_budget, fit_retriever, histories, logit_bytes
from rqgmm.retrieval.vocab import ItemTokens

#: MovieLens-100k: at most 943 + 55,375 / 50 windows at H = 50; the 5M-row planted log of issue 27 at H = 37 (the
#: fixed cut; 153,955 on average over the random cuts' shifts, what the budget reads).
ML100K_WINDOWS, PLANTED_5M_WINDOWS, PLANTED_5M_MEAN = 943 + 55_375 // 50, 103_343, 153_955


def test_the_full_epoch_budget_keeps_small_logs_and_bounds_large_ones():
    assert epoch_budget(FULL, ML100K_WINDOWS) == FULL.max_epochs == 30
    assert epoch_budget(FULL, FULL.max_windows // 30) == 30  # the largest log that keeps every epoch
    assert epoch_budget(FULL, FULL.max_windows // 30 + 1) == 29
    assert epoch_budget(FULL, PLANTED_5M_WINDOWS) == 4 and epoch_budget(FULL, PLANTED_5M_MEAN) == 3
    assert epoch_budget(FULL, 10 * FULL.max_windows) == 1  # at least one epoch
    assert epoch_budget(QUICK, PLANTED_5M_WINDOWS) == QUICK.max_epochs  # the quick mode has no window budget
    budgets = [epoch_budget(FULL, r) for r in range(1, 200_000, 997)]
    assert all(a >= b for a, b in zip(budgets, budgets[1:]))  # more windows never train more epochs
    assert all(b * r <= FULL.max_windows or b == 1 for b, r in zip(budgets, range(1, 200_000, 997)))


def _card(monkeypatch, gib: int) -> None:
    """A CUDA card of ``gib`` GiB as far as the batch rule asks (the rule reads the total, never what is free)."""
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=gib << 30))


def test_the_batch_rule_is_unchanged_at_both_sizes(monkeypatch):
    _card(monkeypatch, 80)
    tokens = ItemTokens(np.zeros((1, 4), dtype=np.int64), (128, 128, 128, 4), 4)  # 3 x 128 and a dedup token
    for device in ("cpu", "cuda"):
        assert _batch(FULL, tokens, 51, ML100K_WINDOWS, torch.device(device)) == ML100K_WINDOWS // 100 == 20
        assert _batch(FULL, tokens, 38, PLANTED_5M_WINDOWS, torch.device(device)) == 256


def test_the_item_id_models_batch_follows_the_cards_memory(monkeypatch):
    """200,000 items, one token each: 91 MB of logits a window at 38 slots. A quarter of the card's memory, at most
    16 GiB: 188 windows on an 80 GB card, 70 on a 24 GB one (47 under the 4 GiB of before); 8 on the CPU."""
    tokens = ItemTokens.item_ids(200_000)
    assert logit_bytes(torch.device("cpu")) == 256 << 20
    assert _batch(FULL, tokens, 38, PLANTED_5M_WINDOWS, torch.device("cpu")) == 8
    for gib, batch in ((80, 188), (24, 70), (141, 188)):
        _card(monkeypatch, gib)
        assert logit_bytes(torch.device("cuda")) == min(16 << 30, (gib << 30) // 4)
        assert _batch(FULL, tokens, 38, PLANTED_5M_WINDOWS, torch.device("cuda")) == batch


def test_a_log_of_at_most_5000_users_validates_on_all_of_them():
    assert FULL.valid_users == 5000 and 943 <= FULL.valid_users
    for n in (943, 5000):
        rng = np.random.default_rng(0)
        assert np.array_equal(np.sort(rng.permutation(n)[:FULL.valid_users]), np.arange(n))


def _log():
    """Item i is followed by i + 1 (12 warm items); cold item 12 shares item 5's embedding."""
    sequences = [np.arange(s, s + 6) % 12 for s in range(12)] * 3 + [np.array([0, 1, 2, 3, 4, 12])] * 4
    items = np.concatenate(sequences)
    seqs = build_sequences(np.repeat(np.arange(len(sequences)), 6), items, np.ones(len(items)), None, 13)
    vectors = np.random.default_rng(0).standard_normal((13, 8)).astype(np.float32)
    vectors[12] = vectors[5]
    return seqs, ItemTokens.semantic(np.column_stack([np.arange(13) // 4, np.arange(13) % 4]), [4, 4]), vectors


def test_the_window_budget_ends_training_and_ranks_read_the_configured_rule():
    seqs, tokens, vectors = _log()
    config = replace(QUICK, model=ModelConfig(dim=16, layers=1, heads=2), max_epochs=10, patience=10, lr=1e-2,
                     max_windows=2 * 60 + 59)  # 40 windows at shifts 0 and 1, 80 at 2 and 3 (60 on average): 2 epochs
    retriever = fit_retriever(seqs, tokens, config, embeddings=vectors)
    assert len(retriever.valid_recall) == 2
    history, targets = histories(seqs, "test", retriever.length), seqs.test
    by_rule, id_rank = retriever.rule_ranks(history, targets)
    assert set(by_rule) == {"prefix", "tiger", "dense"}
    for rule in ("prefix", "tiger", "dense"):
        retriever.config = replace(config, cold=rule)
        item_rank, ids = retriever.ranks(history, targets)
        assert np.array_equal(item_rank, by_rule[rule]) and np.array_equal(ids, id_rank)
        assert set(retriever.rule_ranks(history, targets, (rule,))[0]) == {rule}


def test_the_cosine_schedule_spans_the_steps_the_shifted_epochs_take(monkeypatch):
    """Shifted cuts hold more windows than the fixed one; the schedule's budget is the steps actually taken, so
    the rate reaches 0 at the last step and not before (it once counted the fixed cut's steps)."""
    import rqgmm.retrieval.train as train

    seqs, tokens, vectors = _log()
    windows = train.Windows(seqs, 5, "random", torch.device("cpu"))
    counts = [len(windows.epoch(shift)) for shift in range(4)]
    assert counts == [windows.count(shift) for shift in range(4)] == [40, 40, 80, 80]
    assert windows.mean_count() == 60.0 and train.Windows(seqs, 5, "fixed", torch.device("cpu")).mean_count() == 40
    schedules, original = [], train.learning_rates

    def recorded(optimizer, schedule, steps):
        schedules.append((original(optimizer, schedule, steps), steps))
        return schedules[-1][0]

    monkeypatch.setattr(train, "learning_rates", recorded)
    config = replace(QUICK, model=ModelConfig(dim=16, layers=1, heads=2), max_epochs=6, patience=6, batch_size=8)
    fit_retriever(seqs, tokens, config)
    (scheduler, steps), = schedules
    assert scheduler.last_epoch == steps > 6 * 40 // 8  # every step of the budget taken, more than the fixed cut's
    assert scheduler.get_last_lr()[0] == 0.0


def test_the_prefix_depth_is_chosen_on_every_validation_user_not_early_stoppings_sample(monkeypatch):
    import rqgmm.retrieval.train as train

    seqs, tokens, vectors = _log()
    seen, original = [], train.Retriever.choose_depth

    def recorded(self, history, targets):
        seen.append((len(history), targets.copy()))
        return original(self, history, targets)

    monkeypatch.setattr(train.Retriever, "choose_depth", recorded)
    config = replace(QUICK, model=ModelConfig(dim=16, layers=1, heads=2), max_epochs=2, valid_users=3)
    fit_retriever(seqs, tokens, config, embeddings=vectors)
    (users, targets), = seen
    assert users == seqs.n_users == 40 and np.array_equal(targets, seqs.valid)
    monkeypatch.setattr(train, "DEPTH_USERS", 7)  # a larger log: a seeded sample of DEPTH_USERS users
    fit_retriever(seqs, tokens, config, embeddings=vectors)
    fit_retriever(seqs, tokens, config, embeddings=vectors)
    assert [users for users, _ in seen[1:]] == [7, 7] and np.array_equal(seen[1][1], seen[2][1])


def test_the_full_mode_trains_at_tf32_and_the_precision_leaves_a_cpu_fit_unchanged():
    import pytest

    from rqgmm.errors import InputError

    assert FULL.precision == "tf32" and QUICK.precision == "fp32"
    seqs, tokens, vectors = _log()
    config = replace(QUICK, model=ModelConfig(dim=16, layers=1, heads=2), max_epochs=2, lr=1e-2)
    fits = [fit_retriever(seqs, tokens, replace(config, precision=p), embeddings=vectors) for p in ("fp32", "tf32")]
    assert fits[0].valid_recall == fits[1].valid_recall
    for a, b in zip(fits[0].model.parameters(), fits[1].model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="retrieval precision 'fp16' is not a precision; use one of fp32, tf32, bf16"):
        fit_retriever(seqs, tokens, replace(config, precision="fp16"))
