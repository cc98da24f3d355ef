"""The names and defaults ``rqgmm evaluate --help`` shows, importable without torch (for the parser).

:mod:`rqgmm.evaluate.config` takes its option names from here; :data:`DEFAULTS` and
:data:`BACKBONE_NAMES` repeat EvaluateConfig's defaults and the keys of
:data:`rqgmm.ctr.models.BACKBONES` (tests/test_startup.py keeps them equal).
"""

VARIANTS = ("none", "embedding", "ids", "ids+embedding")
TOKENIZE = ("fused", "per-modality")
#: What ``evaluate`` measures: the CTR task, generative retrieval (rqgmm.retrieval), or both.
TASKS = ("ctr", "retrieval", "both")
#: The retrieval task's sequences: each user's positive rows (the label), or every row.
SEQUENCES = ("positives", "all")
#: The CTR backbones, in the order of rqgmm.ctr.models.BACKBONES.
BACKBONE_NAMES = ("fnn", "deepfm", "dcnv2", "ipnn")
#: Seeds under ``quick`` when none is given, and its epoch cap.
QUICK_SEEDS = 1
QUICK_MAX_EPOCHS = 4
#: EvaluateConfig's defaults of the options whose help names them.
DEFAULTS = dict(user="user_id", item="item_id", label="label", time="timestamp", embedding=("embedding",),
                methods=("rqgmm", "rqkmeans"), backbones=BACKBONE_NAMES, variants=VARIANTS, seeds=3,
                device="cpu", tokenize="fused", task="ctr", sequence="positives", dedup="generated", epsilon=0.1)
