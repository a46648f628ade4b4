"""`python -m govbus`: the same as the `govbus` console script."""

from govbus.cli import main

main()
