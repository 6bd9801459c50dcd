"""``python -m helm.cli`` — the same as the ``helm`` console script."""

import sys

from helm.cli import main

sys.exit(main())
