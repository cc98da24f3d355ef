"""Formats and filesystem atomics: embeddings and model files (``formats``), atomic writes and locks (``atomic``),
output-path checks (``paths``) and the fusion of several embedding columns (``modalities``).

May import only :mod:`rqgmm.errors`.
"""
