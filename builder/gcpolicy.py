"""The garbage collector's settings for a build: what is loaded is frozen, young objects are collected less often.

A build makes many short-lived containers (rows, ROI records) that reference counting frees anyway, yet every 700
allocations Python's collector walks the youngest objects, every tenth time the middle generation too, and its
oldest generation holds every module the pipeline imported (numpy, pyarrow, pandas, nibabel, ...). On the atlas
benchmark that was 0.5-0.8 s of collections in a 9 s build, and 0.3 s more at the interpreter's exit.

- :func:`settle`, once the pipeline is imported (the build's process, each worker): ``gc.freeze()`` moves every
  object that exists now out of the collector's view, as the standard library advises for processes that fork
  (a worker then no longer writes to the pages it shares with the forkserver), and the first threshold rises, so
  young collections are rarer. Reference cycles made later are still collected.
- :func:`freeze_at_exit`: the command line's process freezes again when it exits, so the final collections do not
  walk every module once more.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["YOUNG", "freeze_at_exit", "settle"]

#: allocations between young collections (Python's default is 700)
YOUNG = 10_000


def settle() -> None:
    """Freeze what is loaded now and collect young objects less often (idempotent)."""
    gc.freeze()
    first, *older = gc.get_threshold()
    if first:  # 0: collection is off, left so
        gc.set_threshold(max(first, YOUNG), *older)


def freeze_at_exit() -> None:
    """Freeze everything at exit (registered first, so it runs after every other exit handler)."""
    atexit.register(gc.freeze)
