"""`python -m chimera ...` is the same as the `chimera` console script."""

import sys

from chimera.cli import main

sys.exit(main())
