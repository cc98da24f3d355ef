"""Names the parser offers, importable without torch."""

#: layouts of a codes table on disk (:mod:`rqgmm.ids.codes`): c1..cL, one shared vocabulary, token strings
FORMATS = ("codes", "flat", "tokens")
