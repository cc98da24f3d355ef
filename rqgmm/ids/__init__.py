"""The semantic-ID values every consumer shares: the codes table and its schema (``codes``), mixed-radix keys
(``keys``), the prefix trie (``trie``), suffixes (``suffix``), collision-free reassignment (``reassign``) and the
ID metrics (``metrics``).

May import ``runtime/`` and ``files/``; never a tokenizer, the store or a task.
"""
