"""The names and defaults ``rqgmm evaluate`` shows and checks, importable without torch (for the parser and
the config's checks, which answer before the CTR stack loads).

:mod:`rqgmm.evaluate.config` takes its option names from here; :data:`DEFAULTS`,
:data:`BACKBONE_NAMES`, :data:`DEDUP`, :data:`EPSILON` and :data:`BALANCED_METHODS` repeat
EvaluateConfig's defaults, the keys of :data:`rqgmm.ctr.models.BACKBONES`, the retrieval
library's names and the built-in tokenizers that take ``balance`` (tests/test_startup.py keeps them equal).
"""

VARIANTS = ("none", "embedding", "ids", "ids+embedding")
TOKENIZE = ("fused", "per-modality")
#: What ``evaluate`` measures: the CTR task, generative retrieval (rqgmm.retrieval), or both.
TASKS = ("ctr", "retrieval", "both")
#: The retrieval task's sequences: each user's positive rows (the label), or every row.
SEQUENCES = ("positives", "all")
#: The CTR backbones, in the order of rqgmm.ctr.models.BACKBONES.
BACKBONE_NAMES = ("fnn", "deepfm", "dcnv2", "ipnn")
#: The retrieval task's treatment of the dedup token (rqgmm.retrieval.vocab.DEDUP) and the default share of
#: cold items by the prefix rule (rqgmm.retrieval.cold.EPSILON).
DEDUP = ("generated", "none")
EPSILON = 0.1
#: The retrieval task's twin records of one model: the same beam's list with another cold-item placement, ids
#: suffixed: TIGER's placement of the prefix rule (rqgmm.retrieval.cold) and LIGER's dense re-rank
#: (rqgmm.retrieval.dense). The unsuffixed record places prefix-rule candidates by log pi.
COLD_TWINS = {"tiger": "+tiger", "dense": "+dense"}
#: The built-in tokenizers with balanced codes (a ``balance`` parameter): each also runs as ``METHOD+balanced``.
BALANCED_METHODS = ("rqgmm", "rqkmeans")
#: Seeds under ``quick`` when none is given, and its epoch cap.
QUICK_SEEDS = 1
QUICK_MAX_EPOCHS = 4
#: EvaluateConfig's defaults of the options whose help names them.
DEFAULTS = dict(user="user_id", item="item_id", label="label", time="timestamp", embedding=("embedding",),
                methods=("rqgmm", "rqkmeans"), backbones=BACKBONE_NAMES, variants=VARIANTS, seeds=3,
                device="cpu", tokenize="fused", task="ctr", sequence="positives", dedup="generated", epsilon=EPSILON)
#: The grid's folder of finished runs under ``--out`` and its settings file (:mod:`rqgmm.evaluate.grid`); the
#: marker shows ``OUT`` to be an earlier evaluate's output that holds finished runs.
RUNS = "runs"
MANIFEST = "grid.json"
MARKER = f"{RUNS}/{MANIFEST}"
