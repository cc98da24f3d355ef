"""The names of the built-in tokenizers and balancing methods, importable without torch (for the parser)."""

#: method -> the module whose import registers its class (:func:`rqgmm.tokenizers.base.tokenizer_class`)
BUILTIN_METHODS = {
    "rqgmm": "rqgmm.tokenizers.residual",
    "rqkmeans": "rqgmm.tokenizers.residual",
    "prqkmeans": "rqgmm.tokenizers.prq",
    "rqvae": "rqgmm.tokenizers.vae",
    "vqvae": "rqgmm.tokenizers.vae",
}

#: size-constrained assignments of :mod:`rqgmm.tokenizers.balance`
BALANCE_METHODS = ("greedy", "sinkhorn")
