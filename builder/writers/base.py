"""The writer interface and the roll-over logic shared by every format.

A :class:`ShardWriter` writes the rows of one (modality, split) to numbered
shards, rolling over by row count and by bytes (after the ``ShardWriter`` of
webdataset). Each shard is written under a hidden temporary name and renamed
when complete, so no reader ever sees a partial file. ``on_shard`` is called
with every finished shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class ShardLimits:
    max_rows: int = 10_000
    max_bytes: int = 500 * 1024**2  # ~ the Hub's recommended Parquet shard size


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int
    modality: str
    split: str
    format: str


ShardHook = Callable[[Shard], None]


class ShardWriter(Protocol):
    """Rows of one (modality, split) into shards of one format."""

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> list[Shard]:
        """Finish the last shard; return every shard written, final names."""
        ...


def row_bytes(row: dict[str, Any]) -> int:
    """Roughly what a row weighs in a shard: its images plus its text."""
    size = 512 + sum(len(row.get(k) or "") for k in ("caption", "coarse_caption"))
    for key in ("image", "mask"):
        if row.get(key):
            size += len(row[key]["bytes"])
    return size


class RollingShards:
    """Counts rows and bytes of the open shard and says when to roll over."""

    def __init__(self, limits: ShardLimits) -> None:
        self.limits = limits
        self.rows = 0
        self.bytes = 0

    def full_after(self, row: dict[str, Any]) -> bool:
        self.rows += 1
        self.bytes += row_bytes(row)
        return self.rows >= self.limits.max_rows or self.bytes >= self.limits.max_bytes

    def reset(self) -> None:
        self.rows = self.bytes = 0


def temp_path(final: Path) -> Path:
    """A hidden name beside ``final``: ignored by ``load_dataset``'s patterns."""
    return final.with_name(f".{final.name}.tmp")


def publish(temp: Path, final: Path) -> None:
    """Make a finished file visible under its final name, atomically."""
    with open(temp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(temp, final)


class ShardStream:
    """What every format's writer shares: names, roll-over counts, finished shards, the hook.

    Parts are named ``<stem>-pNNN.<ext>``; a subclass writes a part under its
    temporary name and calls :meth:`_published` when the part is complete.
    """

    format = ""
    extension = ""

    def __init__(self, folder: Path, modality: str, split: str, stem: str, limits: ShardLimits,
                 on_shard: ShardHook | None = None) -> None:
        self.folder, self.modality, self.split, self.stem = folder, modality, split, stem
        self.rolling = RollingShards(limits)
        self.on_shard = on_shard
        self.shards: list[Shard] = []

    def _final(self) -> Path:
        return self.folder / f"{self.stem}-p{len(self.shards):03d}.{self.extension}"

    def _published(self) -> None:
        final = self._final()
        publish(temp_path(final), final)
        shard = Shard(final, self.rolling.rows, self.modality, self.split, self.format)
        self.shards.append(shard)
        if self.on_shard:
            self.on_shard(shard)
        self.rolling.reset()
