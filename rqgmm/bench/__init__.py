"""The ``rqgmm benchmark`` study: tokenizers → semantic IDs → CTR models, with tables and plots."""
