"""The work of ``report EMB CODES`` (its parser is :mod:`rqgmm.cli.report`, which imports this when it runs);
with ``--interactions LOG``, the diagnostics of the codes against the log (:mod:`rqgmm.cli.report_log`)."""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from rqgmm.cli.report_log import diagnostics_lines, log_diagnostics, match_log, read_click_log
from rqgmm.cli.tokenize_run import model_columns, read_valid_embeddings
from rqgmm.errors import InputError
from rqgmm.files.itemjoin import positions
from rqgmm.ids.codes import CodesTable, as_codes, read_codes
from rqgmm.ids.metrics import report
from rqgmm.refit.churn import churn, common_items
from rqgmm.refit.lineage import fingerprint_of
from rqgmm.tokenizers.base import Tokenizer, load

logger = logging.getLogger("rqgmm")


def run_report(args: argparse.Namespace) -> None:
    """``report EMB CODES``: the metrics of a codes table (a store is reported by :mod:`rqgmm.cli.store`).

    Every input is read and checked before any warning is logged, so a refusal is one line."""
    _check_options(args)
    log = read_click_log(args.interactions, args.user, args.item, args.label, args.time) if args.interactions else None
    tokenizer = load(args.model) if args.model else None
    n_features = tokenizer.n_features_in_ if tokenizer is not None else None
    columns = model_columns(args, tokenizer) if tokenizer is not None else args.embedding
    emb_ids, X = read_valid_embeddings(args.emb, n_features=n_features, columns=columns)
    table = read_codes(args.codes)
    if len(table.codes) == 0:
        raise InputError(f"{args.codes} holds no codes; encode at least one item")
    X = _align(X, emb_ids, table.item_ids, len(table.codes), args)
    sizes = _check_codes_against_model(table, tokenizer, args) if tokenizer is not None else None
    pairs = _against_rows(table, args.against) if args.against is not None else None
    matched = match_log(log, table.item_ids, len(table.codes)) if log is not None else None
    sizes = sizes or _sizes(table, args)  # every check done: the warnings may follow
    _warn_fingerprint(table, tokenizer, args)
    X_hat = np.asarray(tokenizer.decode(table.codes)) if tokenizer is not None and tokenizer.reconstructs else None
    result = report(table.codes, sizes, np.asarray(X) if X_hat is not None else None, X_hat)
    if getattr(tokenizer, "lineage_", None) is not None:
        result["lineage"] = tokenizer.lineage_
    if pairs is not None:
        result["churn"] = churn(*pairs)
    if matched is not None:
        result["diagnostics"] = log_diagnostics(matched, table.codes)
    print(json.dumps(result) if args.json else _format_report(result))


def _check_options(args: argparse.Namespace) -> None:
    if args.codes is None:
        raise InputError(f"report takes EMB CODES, or a store directory; {args.emb} is no store: pass the codes too")
    if args.generation is not None:
        raise InputError("--generation reports a store; pass a store directory")
    if args.interactions is None and any(getattr(args, k, None) is not None for k in ("user", "label", "time")):
        raise InputError("--user, --label and --time name the columns of --interactions; pass the log too")


def _sizes(table: CodesTable, args: argparse.Namespace) -> list[int]:
    """K per level without a model: the table's, else the largest code + 1 (read_codes refused negative codes)."""
    if table.codebook_sizes is not None:
        return table.codebook_sizes
    sizes = [int(k) for k in table.codes.max(0) + 1]
    logger.warning("no --model and no codebook sizes in %s: taking K per level as the largest code + 1 (%s); "
                   "pass --model for exact K", args.codes, sizes)
    return sizes


def _against_rows(table: CodesTable, path: str) -> tuple[np.ndarray, np.ndarray]:
    """The old codes (M, L) of the file ``path`` and the new codes (M, L) of ``table`` on their common items."""
    try:
        old = read_codes(path)  # the codes table's one validation: schema, codes >= 0 and within the codebooks
    except InputError as exc:
        raise InputError(f"--against {exc}") from None
    if old.levels != table.levels:
        raise InputError(f"--against {path} has {old.levels} levels of codes, the codes {table.levels}; "
                         "compare codes of models with the same levels")
    new_rows, old_rows = common_items(old.item_ids, table.item_ids, len(old), len(table))
    return old.codes[old_rows], table.codes[new_rows]


def _check_codes_against_model(table: CodesTable, tokenizer: Tokenizer, args: argparse.Namespace) -> list[int]:
    codes = table.codes
    if codes.shape[1] > tokenizer.levels:
        raise InputError(f"{args.codes} has {codes.shape[1]} levels but the model has {tokenizer.levels}; "
                         "pass the model the codes came from")
    try:
        as_codes(codes, levels=tokenizer.levels, codebook_sizes=tokenizer.effective_codebook_sizes)
    except InputError as exc:
        raise InputError(f"{args.codes}: {exc}; pass the model the codes came from") from None
    return tokenizer.codebook_sizes[: codes.shape[1]]


def _warn_fingerprint(table: CodesTable, tokenizer: Tokenizer | None, args: argparse.Namespace) -> None:
    if tokenizer is not None and table.fingerprint is not None and table.fingerprint != fingerprint_of(tokenizer):
        logger.warning("%s was made by the model with fingerprint %s, not by %s; the metrics may mean little",
                       args.codes, table.fingerprint, args.model)


def _align(X: np.ndarray, emb_ids, code_ids, n_codes: int, args: argparse.Namespace) -> np.ndarray:
    """Rows of X in the order of the codes table (by item_id when both files have one)."""
    if emb_ids is not None and code_ids is not None:  # code_ids are distinct: read_codes checked them
        found, position = positions(code_ids, emb_ids)
        if not found.all():
            missing = np.flatnonzero(~found)
            raise InputError(f"{len(missing)} item_ids of {args.codes} are not in {args.emb} "
                             f"(first: {code_ids[missing[0]]}); pass the embeddings the codes came from")
        return np.asarray(X)[position]
    if len(X) != n_codes:
        raise InputError(f"{args.emb} has {len(X)} rows but {args.codes} has {n_codes}; "
                         "pass the embeddings the codes came from")
    return X


def _format_report(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if key == "diagnostics":
            lines += diagnostics_lines(value)
            continue
        if isinstance(value, dict):
            lines.append(_format_report({f"{key}.{k}": v for k, v in value.items()}))
            continue
        if isinstance(value, list):
            value = "  ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{key:<20} {value}")
    return "\n".join(lines)
