"""Every tokenizer behind one face: the face, registry and ``load`` (``base``), the levels with their one
iteration loop (``level``, ``gmm``, ``kmeans``, ``stats``, ``balance``), the residual stack (``residual``, ``walk``,
``prq``), the VAEs (``vae``) and fit checkpoints (``checkpoint``).

May import ``runtime/``, ``ids/``, ``refit/`` and ``files/``; never ``store/``, ``ctr/``, ``retrieval/``, ``evaluate/``.
"""
