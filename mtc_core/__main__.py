"""`python -m mtc_core CMD ...`: the commands of mtc_core.cli.commands."""

import sys

from mtc_core.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
