"""Where rows, devices, seeds, processes and checked parameters come from: row sources (``source``), the device
rule and thread settings (``device``), named child seeds (``seeding``), the process group (``parallel``), the
declared-constraint validator (``validation``) and counts of log-sized arrays in bounded memory (``counting``)
and freed memory handed back to the system between stages (``heap``).

May import only :mod:`rqgmm.errors`: every other folder builds on it.
"""
