"""Parquet shards: ``data/<modality>/<split>-NNNNN-of-MMMMM.parquet``.

Images are stored as ``{bytes, path}`` structs (the ``datasets`` ``Image``
layout); row groups hold 100 rows, as ``datasets`` writes image data, which
keeps them small enough for the Hub's viewer. Shards are numbered when the
writer closes, since the total is known only then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medtrinity_25m import ARROW_SCHEMA

from .base import RollingShards, Shard, ShardHook, ShardLimits, publish, temp_path

ROW_GROUP_ROWS = 100


class ParquetShardWriter:
    format = "parquet"

    def __init__(self, folder: Path, modality: str, split: str, limits: ShardLimits,
                 on_shard: ShardHook | None = None) -> None:
        self.folder, self.modality, self.split = folder, modality, split
        self.rolling = RollingShards(limits)
        self.on_shard = on_shard
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.done: list[tuple[Path, int]] = []  # finished temp files and their rows

    def _temp(self, index: int) -> Path:
        return temp_path(self.folder / f"{self.split}-{index:05d}.parquet")

    def write(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        full = self.rolling.full_after(row)
        if len(self.buffer) >= ROW_GROUP_ROWS or full:
            self._flush()
        if full:
            self._finish()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self._temp(len(self.done)), ARROW_SCHEMA, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=ARROW_SCHEMA),
                                row_group_size=ROW_GROUP_ROWS)
        self.buffer = []

    def _finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        self.done.append((self._temp(len(self.done)), self.rolling.rows))
        self.rolling.reset()

    def close(self) -> list[Shard]:
        self._flush()
        self._finish()
        shards = []
        total = len(self.done)
        for index, (temp, rows) in enumerate(self.done):
            final = self.folder / f"{self.split}-{index:05d}-of-{total:05d}.parquet"
            publish(temp, final)
            shard = Shard(final, rows, self.modality, self.split, self.format)
            if self.on_shard:
                self.on_shard(shard)
            shards.append(shard)
        return shards
