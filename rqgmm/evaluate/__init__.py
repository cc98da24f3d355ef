"""``rqgmm evaluate``: what semantic IDs are worth on the user's own click log.

The product, apart from the measurement scripts of :mod:`rqgmm.bench`:
config (``config``), the input checks (``inputs``), the tokenizer stage both tasks receive
(``tokenizer_stage``), the CTR task (``run``),
popularity slices (``slices``), tables, plots and the report (``report``), the
command (``command``), the retrieval task (``retrieval_task``) and the MovieLens study behind
``rqgmm benchmark`` (``study``). It orchestrates both tasks and may import every folder below it; only
``cli/`` and ``bench/`` import it.
"""
