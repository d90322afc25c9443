"""``python -m builder``: the same as ``medtri-build``."""

from .cli import main

main()
