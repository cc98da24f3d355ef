"""A model's lineage across refits: fingerprints and compatibility (``lineage``), renumbering codes to agree with
an earlier model (``align``) and the churn between two codings (``churn``).

May import ``ids/`` and ``files/``; never a tokenizer module (models arrive as objects).
"""
