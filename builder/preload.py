"""The forkserver's preload (:data:`builder.forkserver.PRELOAD`), imported there alone and only for its effects."""

from __future__ import annotations

from builder.forkserver import leave_at_exit, load

__all__: list[str] = []

load()
leave_at_exit()
