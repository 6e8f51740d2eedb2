"""`python -m lesspy_kernel`: the same program as the `lesspy` command."""

import sys

from .cli import main

sys.exit(main(prog="python -m lesspy_kernel"))
