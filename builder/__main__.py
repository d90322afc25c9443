"""``python -m builder``: the same as ``medtri-build``."""

from builder.cli import main

main()
