"""Imported last by the workers' forkserver, for its one effect: the collector settled before any fork.

The standard library's advice for a process that forks workers (``gc.freeze``): freeze what the parent loaded
right before forking, so the children's collections never touch (and copy) the parent's pages; and freezing at
exit spares the forkserver's own final collections their walk over every module it preloaded (a quarter of a
second after the build's last row). See :mod:`builder.gcpolicy`.
"""

from __future__ import annotations

from builder.gcpolicy import freeze_at_exit, settle

__all__: list[str] = []

settle()
freeze_at_exit()
