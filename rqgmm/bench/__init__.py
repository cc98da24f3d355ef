"""Measurement scripts only (speed, memory, GPU, refit, balance); the CTR study lives in :mod:`rqgmm.evaluate`."""
