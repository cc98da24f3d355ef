"""The command line: one module per verb group (fit/encode, report, evaluate/benchmark, publish, embed).

It talks to the library through its public interfaces only and may import every
other folder; nothing imports it but ``rqgmm.__main__`` and the console script.
"""

from rqgmm.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
