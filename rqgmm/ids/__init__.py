"""The semantic-ID values every consumer shares: the codes table and its schema (``codes``), mixed-radix keys
(``keys``), the prefix trie (``trie``), suffixes (``suffix``), collision-free reassignment (``reassign``), the
ID metrics (``metrics``) and the checks of IDs against a click log that need no training (``diagnostics``).

May import ``runtime/`` and ``files/``; never a tokenizer, the store or a task.
"""
