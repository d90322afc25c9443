"""``medtri-build``: the command line. One module per side; each command imports what it uses when it runs."""

from builder.cli import build, dataset, kb  # noqa: F401 (each registers its commands)
from builder.cli.common import main

__all__ = ["main"]
