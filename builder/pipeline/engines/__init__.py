"""Engines: where work units run. One module and one options dataclass each.

``ENGINES`` maps ``--engine`` to the engine's options class; the class's fields
are its options (the command line fills them by name), and ``start`` returns an
:class:`Engine` (``map``, ``describer``, ``info``, ``close``). Spark or Dask would
be one more module and one more entry (or a ``medtrinity_25m.engines`` entry point).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from builder.pipeline.engines.base import Engine, EngineError, EngineOptions
from builder.pipeline.engines.local import LocalOptions
from builder.pipeline.engines.ray import RayOptions
from builder.registry import Registry

ENGINES: Registry[type] = Registry("engines", {"local": LocalOptions, "ray": RayOptions})


def engine_options(name: str, flags: Mapping[str, Any]) -> Any:
    """The options of engine ``name`` from command-line flags named after its fields."""
    cls = ENGINES[name]
    return cls(**{f.name: flags[f.name] for f in dataclasses.fields(cls) if f.name in flags})


__all__ = ["ENGINES", "Engine", "EngineError", "EngineOptions", "engine_options"]
