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
        self.writers: dict[tuple[str, str, str, int], ShardWriter] = {}
        self.counts: dict[tuple[str, str, str], int] = {}

    def write(self, row: dict[str, Any], split: str) -> None:
        for fmt in self.formats:
            spec = FORMATS[fmt]
            counted = (fmt, row["modality"], split)
            lane = self.counts.get(counted, 0) % spec.lanes  # round-robin over the format's lanes
            self.counts[counted] = self.counts.get(counted, 0) + 1
            key = (fmt, row["modality"], split, lane)
            if key not in self.writers:
                stem = f"{split}-{self.tag}" + (f"-l{lane:02d}" if spec.lanes > 1 else "")
                self.writers[key] = spec.writer(self.out / spec.folder / row["modality"], row["modality"], split,
                                                stem, self.limits, self.on_shard)
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
