"""Output formats: one object per format, in one registry.

``FORMATS`` maps a format name to its :class:`OutputFormat` (folder, extension,
final shard name, card glob and features, a row checker for ``verify``, a
writer). The engine, the card, ``verify``, ``pull`` and the command line iterate
over it; a format added here (or through the ``medtrinity_25m.formats`` entry
point) is written, named, carded, verified and pulled like the built-in ones.
The row itself is defined once, in ``medtrinity_25m``.
"""

from __future__ import annotations

from builder.formats.base import OutputFormat, Shard, ShardHook, ShardLimits, ShardWriter
from builder.formats.parquet import PARQUET
from builder.formats.webdataset import WEBDATASET
from builder.registry import Registry

FORMATS: Registry[OutputFormat] = Registry("formats", {"parquet": PARQUET, "webdataset": WEBDATASET})


def format_choices() -> dict[str, tuple[str, ...]]:
    """``--format`` values: each format alone, and ``both`` for every registered one."""
    return {**{name: (name,) for name in FORMATS}, "both": tuple(FORMATS)}


__all__ = ["FORMATS", "OutputFormat", "Shard", "ShardHook", "ShardLimits", "ShardWriter", "format_choices"]
