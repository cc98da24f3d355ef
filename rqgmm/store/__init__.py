"""The generations store, its one home: the append-only ``Store`` (``generations``), ``publish`` with its prefix
caps (``allocation``) and fallbacks (``nearest``), the serving exports (``exports``), the item-id join
(``itemjoin``) and a generation's report (``report``).

May import ``tokenizers/``, ``ids/``, ``runtime/`` and ``files/``; nothing below imports it.
"""
