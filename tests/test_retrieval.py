"""Generative retrieval (issue 22): leave-one-out split, constrained beam search, item-level metrics, the task."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rqgmm.data.planted import PlantedConfig, PlantedLog
from rqgmm.errors import InputError
from rqgmm.evaluate.command import echo_verdict
from rqgmm.retrieval.beam import TrieMasks, beam_search
from rqgmm.retrieval.metrics import IdGroups, inflation, ranks, recall_ndcg
from rqgmm.retrieval.model import ModelConfig, NextItemModel, step_context
from rqgmm.retrieval.sequences import build_sequences
from rqgmm.retrieval.train import (QUICK, fit_retriever, generate, histories, learning_rates, training_windows,
                                  untrained_retriever)
from rqgmm.retrieval.vocab import ItemTokens
from rqgmm.ids.trie import PrefixTrie


def _log(seed: int = 0, users: int = 30, items: int = 40):
    rng = np.random.default_rng(seed)
    n = users * 8
    return (rng.integers(0, users, n), rng.integers(0, items, n), rng.integers(0, 2, n), rng.permutation(n))


# ----------------------------------------------------------------------------- leave-one-out


def test_leave_one_out_holds_out_exactly_the_last_item_per_user():
    users, items, labels, times = _log()
    seqs = build_sequences(users, items, labels, times, 40)
    frame = pd.DataFrame(dict(u=users, i=items, y=labels, t=times))
    positives = frame[frame.y == 1].sort_values("t")
    per_user = positives.groupby("u")["i"].apply(list)
    kept = per_user[per_user.map(len) >= 3]
    assert seqs.n_users == len(kept) and seqs.dropped_users == int((per_user.map(len) < 3).sum())
    for u, sequence in enumerate(kept):
        assert seqs.test[u] == sequence[-1] and seqs.valid[u] == sequence[-2]
        assert seqs.history(u, "train").tolist() == sequence[:-2]
        assert seqs.history(u, "test").tolist() == sequence[:-1]
    assert seqs.training_mask().sum() == sum(len(s) - 2 for s in kept)
    assert seqs.popularity().sum() == seqs.training_mask().sum()


def test_every_row_without_time_keeps_row_order():
    users = np.array([0, 1, 0, 0, 1, 1, 0])
    items = np.array([5, 6, 7, 8, 9, 1, 2])
    seqs = build_sequences(users, items, np.zeros(7), None, 10, sequence="all")
    assert seqs.test.tolist() == [2, 1] and seqs.valid.tolist() == [8, 9]


def test_training_windows_cover_every_training_target_once():
    users, items, labels, times = _log(1)
    seqs = build_sequences(users, items, labels, times, 40)
    windows = training_windows(seqs, 3)
    targets = ((windows[:, 1:] >= 0) & (windows[:, :-1] >= 0)).sum()
    assert targets == seqs.training_mask().sum() - seqs.n_users  # all but each user's first training item
    hist = histories(seqs, "test", 4)
    assert hist.shape == (seqs.n_users, 4)
    assert (hist[:, -1] == seqs.valid).all()


def _pairs(windows: np.ndarray) -> list[tuple[int, int]]:
    """The (item before, target) pairs the windows train on, sorted."""
    target = (windows[:, 1:] >= 0) & (windows[:, :-1] >= 0)
    return sorted(zip(windows[:, :-1][target].tolist(), windows[:, 1:][target].tolist()))


@pytest.mark.parametrize("slots", [2, 3, 5, 8])
def test_shifted_windows_train_on_the_same_targets_as_the_fixed_cuts(slots):
    seqs = build_sequences(*_log(3), 40)
    reference = [(a, b) for u in range(seqs.n_users) for a, b in zip(seqs.history(u, "train")[:-1],
                                                                     seqs.history(u, "train")[1:])]
    for shift in range(max(1, slots - 1)):
        windows = training_windows(seqs, slots, shift)
        assert _pairs(windows) == sorted(reference)  # every training target once, after its own predecessor
        assert ((windows >= 0).sum(1) >= 1).all()
    np.testing.assert_array_equal(training_windows(seqs, slots, 0), training_windows(seqs, slots))
    with pytest.raises(ValueError, match="Expected shift in"):
        training_windows(seqs, slots, slots - 1)


def test_the_cosine_schedule_warms_up_then_falls_to_zero():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = learning_rates(optimizer, "cosine", 100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = int(np.argmax(rates))
    assert rates[0] < rates[peak] == pytest.approx(1.0) and peak == 4  # WARMUP = 5% of 100 steps
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])) and rates[-1] < 0.01
    constant = learning_rates(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5), "constant", 10)
    assert constant.get_last_lr() == [0.5]
    with pytest.raises(ValueError, match="Expected schedule in"):
        learning_rates(optimizer, "step", 10)


@pytest.mark.parametrize("labels, sequence, message", [
    (np.zeros(8, dtype=int), "positives", "marks no row positive"),
    (np.array([1, 1, 0, 1, 1, 0, 0, 0]), "positives", "no user has 3 or more positive items"),
])
def test_bad_sequences_are_input_errors(labels, sequence, message):
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    with pytest.raises(InputError, match=message):
        build_sequences(users, np.arange(8), labels, None, 8, sequence)


# ----------------------------------------------------------------------------- metrics


def test_collision_correction_on_a_hand_made_case():
    """The module docstring's case: IDs (1,0) x3 (counts 1, 5, 3), (2,1), (0,3); list (1,0), (2,1), (0,3)."""
    tokens = ItemTokens.semantic(np.array([[1, 0], [1, 0], [1, 0], [2, 1], [0, 3]]), [3, 4], dedup="none")
    groups = IdGroups.build(tokens.id_keys(), np.array([1, 5, 3, 2, 0]))
    generated = np.array([[[1, 0], [2, 1], [0, 3]]] * 2)
    item_rank, id_rank = ranks(generated, [3, 4], np.array([0, 3]), groups)
    assert item_rank.tolist() == [3, 4] and id_rank.tolist() == [1, 2]
    item, ids = recall_ndcg(item_rank, (1, 3, 5)), recall_ndcg(id_rank, (1, 3, 5))
    assert item["recall@1"] == 0.0 and ids["recall@1"] == 0.5
    assert item["recall@3"] == 0.5 and item["recall@5"] == 1.0
    assert item["ndcg@3"] == pytest.approx(0.5 * 0.5)
    assert item["ndcg@5"] == pytest.approx(0.5 * (0.5 + 1 / np.log2(5)))
    assert inflation(item, ids, (3, 5)) == {"recall@3": pytest.approx(1.0), "recall@5": pytest.approx(0.0)}
    assert tokens.tokens[:3, 2].tolist() == [0, 1, 2]  # the suffix tells the three apart in the input


def test_missed_and_empty_generations_rank_nowhere():
    tokens = ItemTokens.item_ids(3)
    groups = IdGroups.build(tokens.id_keys(), np.zeros(3))
    item_rank, id_rank = ranks(np.array([[[2], [-1]]]), [3], np.array([1]), groups)
    assert recall_ndcg(item_rank, (20,))["recall@20"] == 0.0 == recall_ndcg(id_rank, (20,))["recall@20"]


# ----------------------------------------------------------------------------- beam search


@pytest.mark.parametrize("beam", [1, 7, 40])
def test_constrained_beam_search_returns_only_existing_ids(beam):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 6, (25, 2))  # 25 items on 36 possible IDs: many absent, some shared
    tokens = ItemTokens.semantic(codes, [6, 6], dedup="none")
    torch.manual_seed(0)
    model = NextItemModel(tokens, 4, ModelConfig(dim=16, layers=1, heads=2)).eval()
    trie = PrefixTrie.build(tokens.ids, [6, 6])
    history = torch.as_tensor(np.r_[rng.integers(-1, 25, (5, 3)), [[-1, -1, -1]]])
    ids, scores = beam_search(model, TrieMasks(trie, torch.device("cpu")), history, beam)
    existing = {tuple(r) for r in codes.tolist()}
    n_ids = len(existing)
    for row, score in zip(ids.numpy(), scores.numpy()):
        found = [tuple(r) for r, s in zip(row.tolist(), score) if np.isfinite(s)]
        assert set(found) <= existing and len(found) == len(set(found)) == min(beam, n_ids)
        assert (row[len(found):] == -1).all() and (np.diff(score[:len(found)]) <= 1e-6).all()


def test_cached_decoding_equals_the_full_forward_pass():
    rng = np.random.default_rng(1)
    tokens = ItemTokens.semantic(rng.integers(0, 5, (20, 3)), [5, 5, 5])
    torch.manual_seed(0)
    model = NextItemModel(tokens, 5, ModelConfig(dim=16, layers=2, heads=2)).eval()
    context = model.flat(torch.as_tensor(rng.integers(-1, 20, (3, 4))))
    prefix = torch.as_tensor(rng.integers(0, 5, (3, 2, 2))) + model.shift[:2]  # 2 beams per context
    full, _ = model.hidden(torch.cat([context.repeat_interleave(2, 0), prefix.flatten(0, 1)], 1))
    _, cache = model.hidden(context)
    cached, _ = model.hidden(prefix.flatten(0, 1), step_context(cache), context.shape[1])
    torch.testing.assert_close(cached, full[:, context.shape[1]:], rtol=1e-4, atol=1e-5)


def _einsum_attend_after(q, k, v, past_k, past_v):
    """The cached attention as it was written before step_context (einsum over the raw cache), the reference."""
    B, n = past_k.shape[0], q.shape[2]
    w = q.shape[0] // B
    scale = q.shape[-1] ** -0.5
    qb = q.view(B, w, *q.shape[1:])
    before = torch.einsum("bwhqe,bhke->bwhqk", qb, past_k) * scale
    own = torch.einsum("bwhqe,bwhke->bwhqk", qb, k.view(B, w, *k.shape[1:])) * scale
    own = own.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    weights = torch.softmax(torch.cat([before, own], -1), -1)
    n0 = past_k.shape[2]
    out = (torch.einsum("bwhqk,bhke->bwhqe", weights[..., :n0], past_v)
           + torch.einsum("bwhqk,bwhke->bwhqe", weights[..., n0:], v.view(B, w, *v.shape[1:])))
    return out.reshape(q.shape)


@pytest.mark.parametrize("limit", [None, 1, 20000])
def test_the_cached_attention_equals_its_einsum_form_bit_for_bit(limit, monkeypatch):
    """Contexts laid out once (step_context), scores normalised a few rows at a time: the einsum form's bits."""
    from rqgmm.retrieval import model as model_module

    monkeypatch.setitem(model_module.STEP_SCORE_BYTES, "cpu", limit) if limit else monkeypatch.delitem(
        model_module.STEP_SCORE_BYTES, "cpu")
    g = torch.Generator().manual_seed(0)
    B, w, h, n, n0, e = 7, 5, 2, 3, 11, 8
    q, k, v = (torch.randn(B * w, n, 3, h, e, generator=g).permute(2, 0, 3, 1, 4)[i] for i in range(3))
    past_k, past_v = (torch.randn(B, n0, h, e, generator=g).transpose(1, 2) for _ in range(2))
    expected = _einsum_attend_after(q, k, v, past_k, past_v)
    got = model_module._attend_after(q, k, v, *step_context([(past_k, past_v)])[0])
    assert torch.equal(got, expected)


def test_the_dense_query_read_beside_the_beam_equals_its_own_forward_pass():
    """generate() reads each history once for the beam and the dense query: the same bits as two separate reads."""
    rng = np.random.default_rng(3)
    seqs = build_sequences(*_log(4, users=40), 40)
    tokens = ItemTokens.semantic(rng.integers(0, 4, (40, 2)), [4, 4])
    config = replace(QUICK, model=ModelConfig(dim=16, layers=2, heads=2))
    retriever = untrained_retriever(seqs, tokens, config, rng.standard_normal((40, 6)).astype(np.float32))
    history = histories(seqs, "valid", retriever.length)
    model = retriever.model.eval()
    ids, logp, query = generate(model, retriever.masks, history, 7, batch=16, dense=True)
    alone = generate(model, retriever.masks, history, 7, batch=16)
    assert alone[2] is None and np.array_equal(alone[0], ids) and np.array_equal(alone[1], logp)
    with torch.no_grad():
        expected = torch.cat([model.query(torch.as_tensor(history[i:i + 16])) for i in range(0, len(history), 16)])
    assert np.array_equal(query, expected.numpy())


def test_training_learns_a_deterministic_successor():
    """Item i is always followed by item i + 1: the trained model ranks it first, with any IDs."""
    items = np.concatenate([np.arange(s, s + 6) % 12 for s in range(12)] * 3)
    users = np.repeat(np.arange(36), 6)
    seqs = build_sequences(users, items, np.ones(len(items)), None, 12)
    codes = np.column_stack([np.arange(12) // 4, np.arange(12) % 4])
    config = replace(QUICK, model=ModelConfig(dim=32, layers=1, heads=2), max_epochs=40, patience=40, lr=1e-2,
                     num_threads=1, schedule="constant")  # its own rate and budget (cosine: recall@1 0.83-0.92)
    for tokens in (ItemTokens.semantic(codes, [3, 4]), ItemTokens.item_ids(12)):
        retriever = fit_retriever(seqs, tokens, config)
        item_rank, _ = retriever.ranks(histories(seqs, "test", retriever.length), seqs.test)
        assert recall_ndcg(item_rank, (1,))["recall@1"] >= 0.9
        assert max(retriever.valid_recall) >= 0.9


def _tiny_retrieval(seed: int):
    seqs = build_sequences(*_log(2), 40)
    config = replace(QUICK, model=ModelConfig(dim=8, layers=1, heads=2), max_epochs=2, patience=2, seed=seed)
    return fit_retriever(seqs, ItemTokens.random_like(np.arange(80).reshape(40, 2) % 5, [5, 5], seed), config)


def test_retrieval_training_leaves_the_global_random_state_alone_and_repeats_with_its_seed():
    torch.manual_seed(5)
    np.random.seed(5)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    first = _tiny_retrieval(seed=3)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    again, other = _tiny_retrieval(seed=3), _tiny_retrieval(seed=4)
    np.testing.assert_array_equal(first.tokens.ids, again.tokens.ids)
    assert first.valid_recall == again.valid_recall
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(value, again.model.state_dict()[name], rtol=0, atol=0)
    theirs = other.model.state_dict()
    assert any(not torch.equal(value, theirs[name]) for name, value in first.model.state_dict().items())


# ----------------------------------------------------------------------------- the task, end to end


def _evaluate(tmp_path, rows, items, *flags):
    rows_path, items_path = tmp_path / "rows.parquet", tmp_path / "items.parquet"
    rows.to_parquet(rows_path)
    items.to_parquet(items_path)
    out = tmp_path / "out"
    return subprocess.run([sys.executable, "-m", "rqgmm", "evaluate", str(rows_path), "--items", str(items_path),
                           "--out", str(out), "--quiet", *flags], capture_output=True, text=True), out


def _tables(users: int = 24, per_user: int = 6, n_items: int = 30, label=None):
    rng = np.random.default_rng(0)
    n = users * per_user
    rows = pd.DataFrame(dict(user_id=np.repeat(np.arange(users), per_user), item_id=rng.integers(0, n_items, n),
                             label=rng.integers(0, 2, n) if label is None else label(n), timestamp=np.arange(n)))
    vectors = rng.standard_normal((n_items, 8)).astype(np.float32)
    items = pd.DataFrame(dict(item_id=np.arange(n_items), embedding=list(vectors)))
    return rows, items


@pytest.mark.parametrize("label, message", [
    (lambda n: np.zeros(n, dtype=int), "label column 'label' marks no row positive"),
    (lambda n: (np.arange(n) % 6 < 2).astype(int), "no user has 3 or more positive items"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, label, message):
    rows, items = _tables(label=label)
    result, out = _evaluate(tmp_path, rows, items, "--task", "retrieval")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_retrieval_task_end_to_end_and_resume(tmp_path, caplog):
    rows, items = _tables(label=lambda n: np.ones(n, dtype=int))
    flags = ("--task", "retrieval", "--quick", "--methods", "rqkmeans", "--codebook-size", "4", "--seeds", "2",
             "--sequence", "all")
    result, out = _evaluate(tmp_path, rows, items, *flags)
    assert result.returncode == 0, result.stderr
    records = json.loads((out / "results.json").read_text())["records"]
    runs = [r for r in records if r["kind"] == "retrieval"]
    assert sorted((r["ids"], r["seed"]) for r in runs) == sorted(
        (ids, s) for ids in ("rqkmeans", "rqkmeans+tiger", "rqkmeans+dense", "random", "random+tiger", "random+dense",
                             "item-id", "most-popular", "content-knn") for s in (0, 1))
    for r in runs:
        assert r["users"] == 24 and r["dropped_users"] == 0
        assert 0 <= r["item"]["recall@10"] <= 1 and 0 <= r["id"]["recall@10"] <= 1
        assert sum(r["slices"][c]["n"] for c in ("cold", "tail", "torso", "head")) == 24
    report = (out / "report.md").read_text()
    assert "## Generative retrieval" in report and "rqkmeans − random" in report
    assert "| rqkmeans+dense |" in report and "LIGER's dense re-rank" in report  # both cold rules side by side
    assert "| rqkmeans+tiger |" in report and "TIGER's placement" in report  # and both placements of the prefix rule
    twin = next(r for r in runs if r["ids"] == "rqkmeans+tiger")
    assert twin["cold_weight"] == 0.0 and twin["cold_depth"] in (1, 2, 3)
    assert "### Retrieval verdict" in report and "bootstrap over test users" in report  # 2 seeds: no "(n=1)"
    for target in ("all targets", "warm targets", "cold targets"):
        assert target in report.split("## Settings")[0]  # the verdict opens the report, in words
    with caplog.at_level(logging.INFO, logger="rqgmm.evaluate.command"):
        echo_verdict(records)  # the terminal's lines
    assert "retrieval verdict" in caplog.text and "cold targets" in caplog.text
    assert "- task: retrieval" in report and "- backbones" not in report  # the header: this task's settings
    assert "## Costs of the content part" not in report  # no CTR variants, no empty cost table
    assert (out / "retrieval_rows.png").is_file()
    stored = sorted(p.name for p in (out / "runs").glob("retrieval-*.json"))
    again, _ = _evaluate(tmp_path, rows, items, *flags)  # resumes: every run found, nothing trained
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (out / "runs").glob("retrieval-*.json")) == stored
    assert json.loads((out / "results.json").read_text())["records"] == records


# ----------------------------------------------------------------------------- planted sequential structure


def _successive_same_topic(config) -> float:
    """The share of a user's consecutive rows whose items share a topic; the rows only draw released items."""
    log = PlantedLog(config)
    chunk = log.chunk(0).to_pandas()
    t = (np.arange(len(chunk)) + 0.5) / config.rows
    assert (log.world.release[chunk["item_id"]] <= t).all()
    topic = pd.Series(log.world.topic[chunk["item_id"]], index=chunk.index)
    same = topic.groupby(chunk["user_id"]).apply(lambda s: (s.to_numpy()[1:] == s.to_numpy()[:-1]).mean())
    return float(same.mean())


def test_planted_sequential_structure_makes_next_items_share_the_topic():
    base = PlantedConfig(rows=4_000, items=400, users=40, topics=8, widths=(4,), row_group=4_000, seed=2)
    plain, sequential = _successive_same_topic(base), _successive_same_topic(replace(base, sequential=0.8,
                                                                                     sessions=4))
    assert plain < 0.3 < 0.6 < sequential  # chance is about 1/8 of consecutive rows


def test_movielens_export_writes_what_evaluate_reads(tmp_path):
    from rqgmm.bench.retrieval import main as export_main

    assert export_main(["--dataset", "movielens-100k", "--embedder", "hashing-8", "--out", str(tmp_path)]) == 0
    rows, items = pd.read_parquet(tmp_path / "interactions.parquet"), pd.read_parquet(tmp_path / "items.parquet")
    assert list(rows.columns) == ["user_id", "item_id", "label", "timestamp"] and len(rows) == 100_000
    assert set(rows["item_id"]) <= set(items["item_id"]) and len(items["embedding"].iloc[0]) == 8
    assert export_main(["--dataset", "movielens-1m", "--out", str(tmp_path / "x")]) == 2


def test_both_tasks_from_a_toml_file_share_the_tokenizer(tmp_path):
    rows, items = _tables(users=30)
    config = tmp_path / "evaluate.toml"
    config.write_text('task = "both"\nsequence = "all"\nmethods = "rqkmeans"\ncodebook-size = 4\nbackbones = "fnn"\n'
                      'variants = "none,ids"\nquick = true\n')
    result, out = _evaluate(tmp_path, rows, items, "--config", str(config))
    assert result.returncode == 0, result.stderr
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["kind"] for r in records} == {"inputs", "tokenizer", "diagnostic", "ctr", "comparison", "retrieval"}
    assert len([r for r in records if r["kind"] == "tokenizer"]) == 1
    report = (out / "report.md").read_text()
    assert "## CTR" in report and "## Generative retrieval" in report


def test_both_tasks_fit_each_tokenizer_once_without_a_store(monkeypatch):
    """--task both: the CTR and retrieval tasks read one tokenizer stage, so with nothing stored to find again
    each (method, seed, modality) is fitted once and its record appears once."""
    from rqgmm.evaluate import tokenizer_stage
    from rqgmm.evaluate.config import config_from
    from rqgmm.evaluate.inputs import check_inputs
    from rqgmm.evaluate.retrieval_task import evaluate_tasks

    rows, items = _tables(users=30)
    config = config_from(dict(task="both", sequence="all", methods="rqkmeans", codebook_size=4, backbones="fnn",
                              variants="none,ids", quick=True))
    fitted, real_fit = [], tokenizer_stage.fit_tokenizer
    monkeypatch.setattr(tokenizer_stage, "fit_tokenizer",
                        lambda method, *args, seed: fitted.append((method, seed)) or real_fit(method, *args, seed=seed))
    records, seconds = evaluate_tasks(check_inputs(rows, items, config), config, "d", None, False)
    assert fitted == [("rqkmeans", 0)]
    assert [(r["tokenizer"], r["seed"]) for r in records if r["kind"] == "tokenizer"] == fitted
    assert {"tokenizers", "ctr", "retrieval tokenizers", "retrieval models"} <= set(seconds)
