"""``python -m rqgmm`` is the ``rqgmm`` command (so ``torchrun -m rqgmm`` works)."""

import sys

from rqgmm.cli import main

sys.exit(main())
