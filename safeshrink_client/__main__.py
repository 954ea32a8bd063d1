"""`python -m safeshrink_client ...`: the `safeshrink` command line (safeshrink_client/cli.py)."""

import sys

from .cli import main

sys.exit(main())
