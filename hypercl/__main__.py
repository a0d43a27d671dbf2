# PYTHON_ARGCOMPLETE_OK
"""`python -m hypercl`: the same command as the `hypercl` script."""

import sys

from orchestrator.cli import main

sys.exit(main())
