"""Formats and filesystem atomics: embeddings and model files (``formats``), atomic writes and locks (``atomic``),
output-path checks (``paths``), the item-id join and duplicate check (``itemjoin``) and the fusion of several embedding columns (``modalities``).

May import only :mod:`rqgmm.errors`.
"""
