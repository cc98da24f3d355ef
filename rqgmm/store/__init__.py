"""The generations store, its one home: the append-only ``Store`` (``generations``), ``publish`` with its prefix
caps (``allocation``) and fallbacks (``nearest``), the serving exports (``exports``)
and a generation's report (``report``); the item-id join it uses is :mod:`rqgmm.files.itemjoin`.

May import ``tokenizers/``, ``ids/``, ``runtime/`` and ``files/``; nothing below imports it.
"""
