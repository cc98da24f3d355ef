"""Every verb's name, one-line help and the module that builds its parser, importable without torch.

``rqgmm --help`` lists the verbs from here alone; ``rqgmm VERB ...`` imports only
VERB's module (:func:`rqgmm.cli.app.build_parser`), and each module imports its
heavy libraries (torch, scikit-learn, the CTR stack) only when the verb runs, so
``--help`` and a refused argument answer at once.
"""

from __future__ import annotations

from typing import NamedTuple


class Verb(NamedTuple):
    module: str
    help: str


# in the order ``rqgmm --help`` lists them; the modules' own parsers take ``help`` from here
# (evaluate's and benchmark's are also written in rqgmm.cli.evaluate: tests/test_startup.py keeps them equal)
VERBS = {
    "fit": Verb("rqgmm.cli.tokenize", "fit a tokenizer on embeddings and save the model directory"),
    "encode": Verb("rqgmm.cli.tokenize", "encode embeddings into codes with a saved model"),
    "report": Verb("rqgmm.cli.report", "print quality metrics of a codes table, or the report of a store's generation"),
    "benchmark": Verb("rqgmm.cli.evaluate", "run the CTR study on real data (tables, plots)"),
    "evaluate": Verb("rqgmm.cli.evaluate",
                     "what semantic IDs are worth in CTR models on your data (report, plots)"),
    "publish": Verb("rqgmm.cli.store", "publish a catalogue's IDs as the next generation of an append-only store"),
    "check": Verb("rqgmm.cli.store", "verify every file of a store against the checksums of its manifest"),
    "embed": Verb("rqgmm.cli.embed", "embed item text into the item_id + embedding parquet fit and evaluate read"),
}
