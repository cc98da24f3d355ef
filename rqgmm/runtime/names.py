"""Names the parser offers, importable without torch."""

#: Matrix-product precisions on a GPU (:mod:`rqgmm.runtime.device`). On a CPU every one computes in fp32.
PRECISIONS = ("fp32", "tf32", "bf16")
