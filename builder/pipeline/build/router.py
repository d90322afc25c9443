"""Routing rows to shard writers: one per (format, modality, split), formats from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.formats import FORMATS
from builder.formats.base import Shard, ShardHook, ShardLimits, ShardWriter


class DatasetWriter:
    """Routes rows to per-(format, modality, split) shard writers; a context manager.

    Shards land in ``<out>/<format folder>/<modality>/<split>-<tag>-pNNN.<ext>``.
    """

    def __init__(self, out: Path, formats: tuple[str, ...], limits: ShardLimits, tag: str = "g00000",
                 on_shard: ShardHook | None = None) -> None:
        self.out, self.formats, self.limits, self.tag, self.on_shard = out, formats, limits, tag, on_shard
        self.writers: dict[tuple[str, str, str], ShardWriter] = {}

    def write(self, row: dict[str, Any], split: str) -> None:
        for fmt in self.formats:
            key = (fmt, row["modality"], split)
            if key not in self.writers:
                spec = FORMATS[fmt]
                self.writers[key] = spec.writer(self.out / spec.folder / row["modality"], row["modality"], split,
                                                f"{split}-{self.tag}", self.limits, self.on_shard)
            self.writers[key].write(row)

    def close(self) -> list[Shard]:
        shards: list[Shard] = []
        for key in sorted(self.writers):
            shards += self.writers[key].close()
        self.writers = {}
        return shards

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            return
        for writer in self.writers.values():  # leave no temp file behind a failed build
            for temp in Path(getattr(writer, "folder", self.out)).glob(".*.tmp"):
                temp.unlink(missing_ok=True)


__all__ = ["DatasetWriter", "Shard", "ShardHook", "ShardLimits", "ShardWriter"]
