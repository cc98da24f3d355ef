"""Measurement scripts only (speed, memory, GPU, refit, balance, seeding, publish, parity, sweep cost): each a module with a
``main`` that prints ratios measured side by side in one run. The CTR study lives in :mod:`rqgmm.evaluate`.

May import every folder; nothing imports it.
"""
