"""The paper-style study behind ``rqgmm benchmark``.

MovieLens → item text embeddings → semantic IDs from every registered tokenizer
→ CTR backbones (FNN, DeepFM, DCNv2) → AUC and LogLoss, with tables and plots.

Data flows one way: the tokenizers see item embeddings only; the CTR models see
a codes table (or the raw embedding, or nothing), are trained on the training
rows, early-stopped on the validation rows, and scored once on the test rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import io
from ..codes import CodesTable
from ..ctr import TrainConfig, run_ctr
from ..ctr.train import evaluate
from ..data import DATASETS, cold_mask, get_embedder, load_dataset, random_split, subsample, time_split
from ..data.embedders import embed_items
from ..errors import InputError
from ..metrics import report, semantic_purity
from ..tokenizer import methods, tokenizer_class
from . import plots, tables


logger = logging.getLogger(__name__)

SPLIT_RULE = (
    "time: all interactions sorted by (timestamp, user_id, item_id); the first 80% train, the next 10% "
    "validation, the last 10% test (one global cut, so every training interaction precedes every test one). "
    "random: the same 80/10/10 cut after a seeded shuffle (seed 0)."
)
MIN_COLD_ROWS = 20


@dataclass(frozen=True)
class StudyConfig:
    """Everything one run of the study depends on."""

    datasets: tuple[str, ...] = ("movielens-100k",)
    seeds: tuple[int, ...] = (0, 1, 2)
    backbones: tuple[str, ...] = ("fnn", "deepfm", "dcnv2")
    splits: tuple[str, ...] = ("time", "random")
    settings: tuple[tuple[int, int], ...] = ((2, 128), (3, 256))
    ctr_setting: tuple[int, int] = (2, 128)
    sweep_sizes: tuple[int, ...] = (32, 64, 128, 256)
    sweep_methods: tuple[str, ...] = ("rqgmm", "rqkmeans")
    sweep_backbone: str = "fnn"
    embedder: str = "minilm"
    max_items: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    quick: bool = False


@dataclass
class ItemContent:
    """One dataset's items as the tokenizers and the CTR side see them."""

    item_ids: np.ndarray  # (N,)
    vectors: np.ndarray  # (N, D) float32
    genres: np.ndarray  # (N, G) bool


# ----------------------------------------------------------------------------- records


def _record(kind: str, dataset: str, **values) -> dict:
    base = dict(kind=kind, dataset=dataset, split=None, tokenizer=None, setting=None, backbone=None, seed=None,
                auc=None, logloss=None, rmse=None, relative_mse=None, utilization=None, prefix_utilization=None,
                collision_rate=None, icr=None, gini=None, perplexity=None, n_items=None, levels=None,
                codebook_size=None)
    base.update(values)
    return base


def _setting_name(levels: int, size: int) -> str:
    return f"{levels}x{size}"


def _capacity_note(levels: int, size: int, n_items: int) -> str | None:
    if size > n_items:
        return f"K={size} > {n_items} items: level 1 cannot use every code"
    if size**levels > n_items:
        share = n_items / size**levels
        return f"K^L = {size**levels} > {n_items} items: at most {share:.1%} of full IDs can be filled"
    return None


# --------------------------------------------------------------------------- tokenizers


def fit_tokenizer(method: str, levels: int, size: int, seed: int, content: ItemContent) -> tuple[dict, np.ndarray]:
    """Fit one tokenizer on the item vectors; returns its metrics (a partial record) and its codes (N, L)."""
    start = time.perf_counter()
    cls = tokenizer_class(method)
    model = cls(levels=cls.fixed_levels or levels, codebook_size=size, random_state=seed, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(content.vectors)
    seconds = time.perf_counter() - start
    for message in {str(w.message) for w in caught}:
        logger.info("%s %s seed %d: %s", method, _setting_name(levels, size), seed, message)
    codes = np.asarray(model.encode(content.vectors))
    X_hat = np.asarray(model.decode(codes)) if model.reconstructs else None
    metrics = report(codes, model.codebook_sizes, content.vectors if X_hat is not None else None, X_hat)
    history = getattr(model, "history_", None)  # per-level EM log-likelihoods (GMM levels only)
    per_level = isinstance(history, list) and all(isinstance(h, list) for h in history)
    metrics.update(
        purity={
            "level1": semantic_purity(codes, content.genres, 1, seed=seed),
            "prefix2": semantic_purity(codes, content.genres, 2, seed=seed) if codes.shape[1] > 1 else None,
            "random": semantic_purity(codes, content.genres, None, seed=seed),
        },
        history=history if per_level else [[] for _ in range(codes.shape[1])],
        fit_seconds=seconds,
    )
    return metrics, codes


def ctr_metrics(metrics: dict) -> dict:
    """The tokenizer metrics a CTR record carries (without purity, history and fit time)."""
    return {k: v for k, v in metrics.items() if k not in ("purity", "history", "fit_seconds")}


def codes_frame(item_ids: np.ndarray, codes: np.ndarray) -> pd.DataFrame:
    """A codes table: ``item_id``, ``c1..cL``."""
    return CodesTable(codes, item_ids).frame()


# ----------------------------------------------------------------------------- CTR


def _splits(interactions: pd.DataFrame, kinds: tuple[str, ...]) -> dict:
    makers = {"time": lambda: time_split(interactions), "random": lambda: random_split(interactions, seed=0)}
    return {kind: makers[kind]() for kind in kinds}


def _cold_metrics(test: pd.DataFrame, predictions: np.ndarray, mask: np.ndarray) -> dict:
    labels = test["label"].to_numpy()[mask]
    if mask.sum() < MIN_COLD_ROWS or len(np.unique(labels)) < 2:
        return {"cold_auc": None, "cold_logloss": None}
    cold = evaluate(labels, predictions[mask])
    return {"cold_auc": cold["auc"], "cold_logloss": cold["logloss"]}


def run_one_ctr(dataset, split, content_kwargs: dict, backbone: str, seed: int, train_config: TrainConfig) -> dict:
    """Train and score one backbone on one split with one content variant; returns the CTR fields of a record."""
    result = run_ctr(
        split.train, split.valid, split.test, dataset.users, dataset.items,
        backbone=backbone, user_fields=dataset.user_fields,
        train_config=replace(train_config, seed=seed), **content_kwargs,
    )
    mask = cold_mask(split.test, split.train)
    return dict(auc=result.metrics["auc"], logloss=result.metrics["logloss"], n_test=len(split.test),
                n_cold=int(mask.sum()), epochs=len(result.training.valid_auc),
                **_cold_metrics(split.test, result.predictions, mask))


# ----------------------------------------------------------------------------- study


class Study:
    """Runs the study for one configuration and collects the records."""

    def __init__(self, config: StudyConfig) -> None:
        self.config = config
        self.records: list[dict] = []
        self.seconds: dict[str, float] = {}

    def run(self) -> list[dict]:
        for name in self.config.datasets:
            start = time.perf_counter()
            self._run_dataset(name)
            self.seconds[name] = round(time.perf_counter() - start, 1)
            logger.info("%s done in %.0f s", name, self.seconds[name])
        return self.records

    def _run_dataset(self, name: str) -> None:
        cfg = self.config
        dataset = load_dataset(name)
        if cfg.max_items:
            dataset = subsample(dataset, cfg.max_items, seed=0)
        content = self._content(dataset)
        logger.info("%s: %d items, %d interactions", dataset.name, len(content.item_ids), len(dataset.interactions))
        codes = self._tokenizers(name, content)
        splits = _splits(dataset.interactions, cfg.splits)
        self._ctr(name, dataset, splits, content, codes)
        self._sweep(name, dataset, splits.get("time") or next(iter(splits.values())), content, codes)

    def _content(self, dataset) -> ItemContent:
        items = dataset.items
        vectors = embed_items(items["text"].tolist(), get_embedder(self.config.embedder))
        vocab = sorted({g for genres in items["genres"] for g in genres})
        genres = np.array([[g in set(row) for g in vocab] for row in items["genres"]], dtype=bool)
        return ItemContent(items["item_id"].to_numpy(), np.asarray(vectors, dtype=np.float32), genres)

    def _tokenizers(self, name: str, content: ItemContent) -> dict:
        """Fit every tokenizer at every setting and seed; keep the codes for the CTR runs."""
        cfg, kept = self.config, {}
        jobs = [(s, m, seed) for s in cfg.settings for m in methods() for seed in cfg.seeds]
        for (levels, size), method, seed in tqdm(jobs, desc=f"{name} tokenizers"):
            metrics, codes = fit_tokenizer(method, levels, size, seed, content)
            self.records.append(_record(
                "tokenizer", name, tokenizer=method, setting=_setting_name(levels, size), seed=seed,
                capacity_note=_capacity_note(levels, size, len(content.item_ids)), **metrics))
            kept[(method, levels, size, seed)] = (metrics, codes)
        return kept

    def _variants(self, content: ItemContent, codes: dict, seed: int, levels: int, size: int) -> dict:
        """Content variant name → (run_ctr keyword arguments, tokenizer metrics)."""
        variants = {"none": ({}, {}), "embedding": ({"item_embeddings": (content.item_ids, content.vectors)}, {})}
        for method in methods():
            metrics, table = codes[(method, levels, size, seed)]
            kwargs = {"codes": codes_frame(content.item_ids, table), "codebook_sizes": metrics["codebook_size"]}
            variants[method] = (kwargs, ctr_metrics(metrics))
        return variants

    def _ctr(self, name: str, dataset, splits: dict, content: ItemContent, codes: dict) -> None:
        cfg = self.config
        levels, size = cfg.ctr_setting
        n_variants = 2 + len(methods())
        bar = tqdm(total=len(splits) * n_variants * len(cfg.backbones) * len(cfg.seeds), desc=f"{name} CTR")
        for split_name, split in splits.items():
            for seed in cfg.seeds:
                for variant, (kwargs, metrics) in self._variants(content, codes, seed, levels, size).items():
                    for backbone in cfg.backbones:
                        fields = run_one_ctr(dataset, split, kwargs, backbone, seed, cfg.train)
                        setting = _setting_name(levels, size) if metrics else None
                        self.records.append(_record("ctr", name, split=split_name, tokenizer=variant, setting=setting,
                                                    backbone=backbone, seed=seed, **metrics, **fields))
                        bar.update()
                        bar.set_postfix(split=split_name, variant=variant, auc=f"{fields['auc']:.4f}")
        bar.close()

    def _sweep(self, name: str, dataset, split, content: ItemContent, codes: dict) -> None:
        cfg = self.config
        jobs = [(K, m, seed) for K in cfg.sweep_sizes for m in cfg.sweep_methods if m in methods() for seed in cfg.seeds]
        for size, method, seed in tqdm(jobs, desc=f"{name} K sweep"):
            key = (method, 2, size, seed)
            metrics, table = codes[key] if key in codes else fit_tokenizer(method, 2, size, seed, content)
            kwargs = {"codes": codes_frame(content.item_ids, table), "codebook_sizes": metrics["codebook_size"]}
            fields = run_one_ctr(dataset, split, kwargs, cfg.sweep_backbone, seed, cfg.train)
            self.records.append(_record(
                "sweep", name, split=split.kind, tokenizer=method, setting=_setting_name(2, size),
                backbone=cfg.sweep_backbone, seed=seed,
                **ctr_metrics(metrics), **fields))


# ----------------------------------------------------------------------------- outputs


def write_outputs(out: Path, records: list[dict], meta: dict) -> list[Path]:
    """Write results.json, report.md and the PNG plots into ``out``, replacing it whole."""
    with io.atomic_output(out, directory=True, marker="results.json") as tmp:
        (tmp / "results.json").write_text(json.dumps(records, indent=1, default=_json_default) + "\n")
        (tmp / "report.md").write_text(tables.render_report(records, meta))
        pngs = plots.plot_all(records, tmp)
    return [out / "results.json", out / "report.md", *(out / Path(p).name for p in pngs)]


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "results.json").exists())):
        raise InputError(
            f"{out} exists and is not the output of an earlier `rqgmm benchmark`; pass a new or empty --out directory"
        )


# ----------------------------------------------------------------------------- command line


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A StudyConfig from the command-line options, validated."""
    if args.dataset != "all" and args.dataset not in DATASETS:
        raise InputError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)} or all")
    datasets = tuple(DATASETS) if args.dataset == "all" else (args.dataset,)
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if n_seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {n_seeds}")
    train = TrainConfig(max_epochs=4, patience=1) if args.quick else TrainConfig()
    return StudyConfig(datasets=datasets, seeds=tuple(range(n_seeds)), embedder=args.embedder,
                       max_items=args.max_items, train=train, quick=args.quick)


def run_benchmark(args: argparse.Namespace) -> None:
    """``rqgmm benchmark``: run the study and write its outputs."""
    config = config_from_args(args)
    out = Path(args.out)
    _check_out(out)
    start = time.perf_counter()
    study = Study(config)
    records = study.run()
    meta = dict(seconds_per_dataset=study.seconds, command="rqgmm benchmark " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in _cli_options(args)),
                datasets=list(config.datasets), seeds=list(config.seeds), embedder=config.embedder,
                backbones=list(config.backbones), tokenizers=methods(), split_rule=SPLIT_RULE, quick=config.quick,
                elapsed_seconds=time.perf_counter() - start)
    written = write_outputs(out, records, meta)
    logger.info("wrote %d files to %s in %.0f s", len(written), out, meta["elapsed_seconds"])


def _cli_options(args: argparse.Namespace):
    for key in ("dataset", "seeds", "embedder", "max_items"):
        value = getattr(args, key)
        if value is not None:
            yield key, value
