"""``python -m rqgmm`` is the ``rqgmm`` command (so ``torchrun -m rqgmm`` works)."""

import sys

from .cli import main

sys.exit(main())
