"""Issue 27: generated dedup tokens, TIGER's prefix rule for cold items, the baselines, tie order, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rqgmm.errors import InputError
from rqgmm.retrieval.baselines import content_knn_ranks, most_popular_ranks
from rqgmm.retrieval.cold import cold_cap, prefix_rule_ranks
from rqgmm.retrieval.metrics import MISS
from rqgmm.retrieval.sequences import build_sequences
from rqgmm.retrieval.vocab import ItemTokens
from test_retrieval import _evaluate, _tables


def test_generated_dedup_token_makes_every_generated_id_one_item():
    codes = np.array([[1, 0], [1, 0], [1, 0], [2, 1], [0, 3]])
    unique, shared = ItemTokens.semantic(codes, [3, 4]), ItemTokens.semantic(codes, [3, 4], dedup="none")
    assert unique.generated == 3 and shared.generated == 2 and unique.prefix_length == 2
    assert len(np.unique(unique.id_keys())) == 5 and len(np.unique(shared.id_keys())) == 3
    assert (unique.ids[:, :2] == codes).all() and unique.tokens.tolist() == shared.tokens.tolist()
    with pytest.raises(InputError, match="unknown dedup mode 'tiger'"):
        ItemTokens.semantic(codes, [3, 4], dedup="tiger")
    with pytest.raises(InputError, match="more than 2\\*\\*62 distinct IDs"):
        ItemTokens.semantic(codes, [2**40, 2**40])


def test_prefix_rule_on_the_module_docstring_case():
    """Warm a, b, c (prefixes p, q, p); cold x, y (p), z (q); cap 2: the list a, x, y, b, c."""
    prefix, cold = np.array([7, 9, 7, 7, 7, 9]), np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    items = np.array([[0, 1, 2]] * 5)
    ranks = prefix_rule_ranks(items, prefix, cold, np.array([4, 2, 5, 3, 0]), cap=2)
    assert ranks.tolist() == [3, 5, MISS, 2, 1]
    assert prefix_rule_ranks(items[:2], prefix, cold, np.array([4, 5]), cap=0).tolist() == [MISS, MISS]
    assert prefix_rule_ranks(items[:2], prefix, cold, np.array([5, 1]), cap=3).tolist() == [5, 4]
    assert cold_cap(0.1, 20) == 2 and cold_cap(1.0, 20) == 20 and cold_cap(0.0, 20) == 0


def test_baselines_rank_by_popularity_and_by_content():
    assert most_popular_ranks(np.array([3, 9, 3, 0]), np.array([1, 0, 2, 3])).tolist() == [1, 2, 3, 4]
    embeddings = np.eye(4) + 0.01
    history = np.array([[-1, 2], [0, 1]])  # user 1: item 1 is the latest, weighted most
    assert content_knn_ranks(embeddings, history, np.array([2, 1])).tolist() == [1, 1]
    assert content_knn_ranks(embeddings, history, np.array([3, 3])).tolist() == [4, 4]


def test_content_knn_in_torch_blocks_ranks_as_numpy_ties_included():
    """The device path's block loop (here torch on the CPU, 7 users a block) gives numpy's ranks: with unit vectors
    of +-0.5 entries and one history item, every cosine is exact, so exact ties are ordered by item row in both."""
    import functools

    import torch

    from rqgmm.retrieval import baselines

    rng = np.random.default_rng(0)
    unit = rng.choice([-0.5, 0.5], size=(300, 4)).astype(np.float32)  # 16 distinct vectors: heavy ties
    history = np.concatenate([np.full((50, 3), -1), rng.integers(0, 300, (50, 1))], 1)
    targets = rng.integers(0, 300, 50)
    expected = content_knn_ranks(unit, history, targets)
    query = baselines.recent_query(baselines.unit_rows(unit), history)
    found = baselines._ranks(*(torch.as_tensor(a) for a in (query, unit, targets)), 7,
                             functools.partial(torch.arange, device="cpu"))
    assert found.dtype == np.int64 and found.tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 5 and expected.min() >= 1


def test_same_timestamp_ties_follow_a_seeded_hash_not_item_id_or_file_order():
    users, items = np.repeat(np.arange(200), 4), np.tile(np.arange(4), 200)  # every user: 4 items, one timestamp
    seqs = build_sequences(users, items, np.ones(800), np.zeros(800), 4)
    flipped = build_sequences(users[::-1], items[::-1], np.ones(800), np.zeros(800), 4)
    assert seqs.items.tolist() == flipped.items.tolist()  # file order does not matter
    assert len(set(seqs.test.tolist())) == 4  # the largest item id is not always held out


def test_bad_retrieval_settings_exit_2_with_one_line_and_write_nothing(tmp_path):
    rows, items = _tables(label=lambda n: np.ones(n, dtype=int))
    for flags, message in ((("--epsilon", "1.5"), "--epsilon must be a number in [0, 1], got 1.5"),
                           (("--dedup", "tiger"), "--dedup")):
        result, out = _evaluate(tmp_path, rows, items, "--task", "retrieval", *flags)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
        assert not out.exists()


def test_the_same_command_twice_gives_the_same_numbers(tmp_path):
    rows, items = _tables(label=lambda n: np.ones(n, dtype=int))
    flags = ("--task", "retrieval", "--quick", "--methods", "rqkmeans", "--codebook-size", "4", "--sequence", "all")
    found = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        result, out = _evaluate(tmp_path / name, rows, items, *flags)
        assert result.returncode == 0, result.stderr
        records = json.loads((out / "results.json").read_text())["records"]
        found.append([{k: v for k, v in r.items() if not k.endswith("seconds") and k != "fit_s"} for r in records])
    assert found[0] == found[1]


def test_one_task_into_the_other_tasks_out_keeps_its_sections(tmp_path):
    rows, items = _tables(users=30)
    common = ("--sequence", "all", "--methods", "rqkmeans", "--codebook-size", "4", "--backbones", "fnn",
              "--variants", "none,ids", "--quick")
    for step, task in enumerate(("ctr", "retrieval", "ctr")):  # the last resumes its runs, keeps the retrieval's
        result, out = _evaluate(tmp_path, rows, items, "--task", task, *common)
        assert result.returncode == 0, result.stderr
        report = (out / "report.md").read_text()
        assert "## CTR" in report and ("## Generative retrieval" in report) == (step > 0)
    kinds = [r["kind"] for r in json.loads((out / "results.json").read_text())["records"]]
    assert {"ctr", "comparison", "retrieval"} <= set(kinds) and kinds.count("tokenizer") == 1


def _record(ids: str, seed: int, hits: np.ndarray, cold: np.ndarray) -> dict:
    """A retrieval record of per-user hits (U,) bool, cold users (U,) bool."""
    targets = {name: dict(n=int(mask.sum()), **{"recall@10": float(hits[mask].mean()) if mask.any() else None})
               for name, mask in (("all", np.ones_like(cold)), ("warm", ~cold), ("cold", cold))}
    return {"kind": "retrieval", "ids": ids, "seed": seed, "users": len(hits), "targets": targets,
            "hits@10": np.flatnonzero(hits).tolist(), "cold_users": np.flatnonzero(cold).tolist()}


def test_verdict_beats_only_with_the_user_sampling_in_its_interval():
    from rqgmm.evaluate.retrieval_verdict import retrieval_comparisons, verdict_words

    rng = np.random.default_rng(0)
    cold = np.arange(2000) < 14
    strong = [_record("strong", s, (rng.random(2000) < 0.3) & ~cold, cold) for s in range(3)]
    weak = [_record("weak", s, (rng.random(2000) < 0.1) & ~cold, cold) for s in range(3)]
    one_hit = np.zeros(2000, dtype=bool)
    one_hit[0] = True  # one cold user hit by a seedless baseline, no cold hit by the models
    knn = [_record("knn", s, one_hit, cold) for s in range(3)]
    comps = retrieval_comparisons(strong + weak + knn, ["strong", "weak", "knn"])
    words = verdict_words(comps)
    assert words[0].startswith("all targets (2,000 users): strong retrieves best") and "it beats weak" in words[0]
    assert words[2].startswith("cold targets (14 users): knn retrieves best") and "no difference shown" in words[2]
    assert all(c["low"] < c["high"] for c in comps if c["question"] is None)  # never a zero-width interval


def test_the_verdict_says_whether_the_best_semantic_ids_beat_most_popular_and_reach_the_item_id_model():
    from rqgmm.evaluate.retrieval_verdict import retrieval_comparisons, verdict_words

    rng = np.random.default_rng(1)
    cold = np.zeros(2000, dtype=bool)
    rows = {"item-id": 0.30, "rqkmeans": 0.20, "rqgmm": 0.12, "most-popular": 0.10}
    recs = [_record(name, s, rng.random(2000) < p, cold) for name, p in rows.items() for s in range(3)]
    comps = retrieval_comparisons(recs, list(rows))
    said = [w for w in verdict_words(comps) if w.startswith("Semantic IDs")]
    assert len(said) == 1 and said[0].startswith(
        "Semantic IDs (2,000 users, all targets): the best semantic-ID row, rqkmeans, item Recall@10 0.1955; "
        "against most-popular (0.1018, 1.92x) +0.0937 [")
    assert ": it beats most-popular; against the item-ID model (0.2987, 0.65x) −0.1032 [" in said[0]
    assert said[0].endswith("the item-ID model retrieves better.")
    semantic = [c for c in comps if (c["question"] or "").startswith("semantic:")]
    assert [c["other"] for c in semantic] == ["most-popular", "item-id"] and comps[0]["family"] == len(comps)
    alone = [r for r in recs if r["ids"] in ("rqkmeans", "rqgmm")]
    assert not [w for w in verdict_words(retrieval_comparisons(alone, ["rqkmeans", "rqgmm"]))
                if w.startswith("Semantic IDs")]  # neither reference in the study: no sentence


def test_the_verdict_says_whether_semantic_ids_or_content_knn_serve_cold_items_better():
    from rqgmm.evaluate.retrieval_verdict import retrieval_comparisons, verdict_words

    rng = np.random.default_rng(0)
    cold = np.arange(2000) < 400
    ids = [_record("rqkmeans", s, rng.random(2000) < np.where(cold, 0.3, 0.2), cold) for s in range(3)]
    knn = [_record("content-knn", s, cold & (np.arange(2000) % 10 == 0), cold) for s in range(3)]
    comps = retrieval_comparisons(ids + knn, ["rqkmeans", "content-knn"])
    said = verdict_words(comps)[-1]
    assert said.startswith("Cold items (400 users): the best semantic-ID row, rqkmeans, has cold Recall@10 0.2892 [")
    assert "so semantic IDs reach cold items" in said and said.endswith("semantic IDs serve cold items better "
                                                                       "than content KNN.")
    assert {c["question"] for c in comps} == {None, "reach", "knn"} and comps[0]["family"] == len(comps)
    nothing = [_record("rqkmeans", s, rng.random(2000) < 0.2 * ~cold, cold) for s in range(3)]
    said = verdict_words(retrieval_comparisons(nothing + knn, ["rqkmeans", "content-knn"]))[-1]
    assert "rqkmeans, retrieves no cold target at any seed, so semantic IDs are not shown" in said
    assert said.endswith("content KNN serves cold items better than semantic IDs.")


def test_the_difference_table_of_one_seed_has_the_bootstrap_interval_not_n_1():
    from rqgmm.evaluate.retrieval_report import _difference_table
    from rqgmm.evaluate.retrieval_verdict import recall_difference

    rng = np.random.default_rng(1)
    cold = np.arange(500) < 40
    recs = [_record(ids, 0, rng.random(500) < p, cold) for ids, p in (("rqkmeans", 0.3), ("random", 0.2),
                                                                       ("item-id", 0.25))]
    table = _difference_table(recs)
    assert "(n=1)" not in table and "recall@10 cold (40 users)" in table
    diff = recall_difference(recs[:1], recs[1:2], "all")
    low, high = diff.interval(0.05)
    assert low < diff.mean < high and f"| rqkmeans - random | {diff.mean:+.4f} [" in table.replace("−", "-")


def test_the_differences_of_many_pairs_at_once_equal_each_pair_alone():
    from rqgmm.evaluate.retrieval_verdict import recall_difference, recall_differences

    rng = np.random.default_rng(2)
    cold = np.arange(600) < 50
    recs = {ids: [_record(ids, s, rng.random(600) < p, cold) for s in range(2)]
            for ids, p in (("rqkmeans", 0.3), ("random", 0.2), ("item-id", 0.25))}
    pairs = [(recs[a], None if b is None else recs[b], t) for a, b in (("rqkmeans", "random"), ("item-id", None),
                                                                       ("random", "item-id"))
             for t in ("all", "cold", "warm")]
    for pair, together in zip(pairs, recall_differences(pairs)):
        alone = recall_difference(*pair)
        assert together.mean == alone.mean and together.n == alone.n == 2
        np.testing.assert_allclose(together.samples, alone.samples, atol=1e-7)  # the same draws, float32 sums
        assert np.isclose(together.se, alone.se, rtol=1e-6)


def test_twins_of_random_ids_are_controls_and_each_row_is_followed_by_its_twins():
    """A cold-placement twin of random IDs is never "the best semantic-ID row", however many cold items it reaches;
    the tables list every row's twins right after it."""
    from rqgmm.evaluate.retrieval_report import _difference_table, id_kinds
    from rqgmm.evaluate.retrieval_verdict import is_semantic, retrieval_comparisons, verdict_words

    rng = np.random.default_rng(3)
    cold = np.arange(2000) < 400
    rows = {"content-knn": 0.02, "random+tiger": 0.30, "rqkmeans": 0.0, "rqkmeans+tiger": 0.10, "random": 0.0,
            "rqkmeans+dense": 0.0, "item-id": 0.0}
    recs = [_record(name, s, cold & (rng.random(2000) < p), cold) for name, p in rows.items() for s in range(2)]
    assert id_kinds(recs) == ["rqkmeans", "rqkmeans+tiger", "rqkmeans+dense", "random", "random+tiger", "item-id",
                              "content-knn"]
    assert [is_semantic(n) for n in ("rqgmm+balanced", "rqgmm+balanced+tiger", "random+dense", "item-id")] == [
        True, True, False, False]
    said = verdict_words(retrieval_comparisons(recs, id_kinds(recs)))[-1]
    assert said.startswith("Cold items (400 users): the best semantic-ID row, rqkmeans+tiger, has cold Recall@10")
    table = _difference_table(recs)
    assert "| rqkmeans+tiger − random |" in table and "random+tiger −" not in table
