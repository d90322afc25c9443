"""Engines: where work units run. One module and one options dataclass each.

``ENGINES`` maps ``--engine`` to an :class:`EngineEntry` holding the engine's
options class: its fields are its settings (:func:`builder.options.option`: the
command line's flags are made from them) and ``start`` returns an :class:`Engine`
(``map``, ``describer``, ``describer_concurrency``, ``info``, ``close``). Spark or
Dask would be one more module and one more entry (or a ``medtrinity_25m.engines``
entry point).
"""

from __future__ import annotations

from builder.pipeline.engines.base import Engine, EngineEntry, EngineError, EngineOptions
from builder.pipeline.engines.local import LocalOptions
from builder.pipeline.engines.ray import RayOptions
from builder.registry import Registry

ENGINES: Registry[EngineEntry] = Registry("engines", {
    "local": EngineEntry(LocalOptions, "this machine's processes"),
    "ray": EngineEntry(RayOptions, "Ray tasks on a cluster or a local Ray; model describers as actors"),
})

__all__ = ["ENGINES", "Engine", "EngineEntry", "EngineError", "EngineOptions"]
