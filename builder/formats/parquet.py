"""Parquet shards: ``<stem>-pNNN.parquet`` parts, renamed by the engine at the end.

Images are stored as ``{bytes, path}`` structs (the ``datasets`` ``Image``
layout); row groups hold 100 rows, as ``datasets`` writes image data, which
keeps them small enough for the Hub's viewer.
"""

from __future__ import annotations

import io
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from builder.formats.base import (
    OutputFormat,
    RowCheck,
    Shard,
    ShardHook,
    ShardLimits,
    ShardStream,
    decode_problem,
    temp_path,
)
from medtrinity_25m import ARROW_SCHEMA, IMAGE_COLUMNS, ROW

ROW_GROUP_ROWS = 100
#: PNG bytes do not compress: spending zstd on them only costs the writing process time.
STORED = ("image.bytes", "mask.bytes", "restored.bytes")


@lru_cache(maxsize=1)
def _codecs() -> dict[str, str]:
    """zstd for every leaf column of the schema but the image bytes."""
    buf = io.BytesIO()
    pq.write_table(ARROW_SCHEMA.empty_table(), buf)
    schema = pq.ParquetFile(io.BytesIO(buf.getvalue())).schema
    paths = [schema.column(i).path for i in range(len(schema))]
    return {path: "none" if path in STORED else "zstd" for path in paths}


class _NoPandas:
    """A finder that answers "not installed" for pandas (first on ``sys.meta_path``, for one probe)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError("pandas is left out of this process", name=name)


def arrow_without_pandas() -> None:
    """Spare a process that never uses pandas its import (0.4 s) when pyarrow first converts Python rows.

    pyarrow's first conversion of Python objects (``Table.from_pylist``, even ``Schema.empty_table``) imports
    pandas only to ask whether the objects are pandas' (rows never are). Where pandas is not imported yet, this
    lets that one probe find it absent; pyarrow imports it for real when pandas is needed (``to_pandas``,
    ``from_pandas``). For a build's own process (``medtri-build build``), not for a library that imports this.
    """
    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's lazy probe runs once, now
    finally:
        sys.meta_path.remove(finder)


class ParquetShardWriter(ShardStream):
    format = "parquet"
    extension = "parquet"

    def __init__(self, folder: Path, modality: str, split: str, stem: str, limits: ShardLimits,
                 on_shard: ShardHook | None = None) -> None:
        super().__init__(folder, modality, split, stem, limits, on_shard)
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None

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
            self.writer = pq.ParquetWriter(temp_path(self._final()), ARROW_SCHEMA, compression=_codecs())
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=ARROW_SCHEMA),
                                row_group_size=ROW_GROUP_ROWS)
        self.buffer = []

    def _finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        self._published()

    def close(self) -> list[Shard]:
        self._flush()
        self._finish()
        return self.shards


def merge(sources: list[Path], target: Path) -> None:
    """The rows of ``sources``, in order, into one shard at ``target``: their row groups copied as they are (each of
    at most 100 rows), the columns' codecs kept."""
    schema = pq.ParquetFile(sources[0]).schema_arrow
    with pq.ParquetWriter(target, schema, compression=_codecs()) as writer:
        for source in sources:
            shard = pq.ParquetFile(source)
            for index in range(shard.num_row_groups):
                writer.write_table(shard.read_row_group(index))


def check_rows(path: Path, decode: bool) -> RowCheck:
    """(id, problem) of each row of a Parquet shard."""
    columns = ["id", "pixels_withheld", *IMAGE_COLUMNS] if decode else ["id"]
    shard = pq.ParquetFile(path)
    present = set(shard.schema_arrow.names)  # shards written before a column was added
    for batch in shard.iter_batches(batch_size=256, columns=[c for c in columns if c in present]):
        for row in batch.to_pylist():
            problem = None
            if decode:
                image = row["image"] or {}
                if row.get("pixels_withheld"):  # a source whose terms forbid sharing pixels: none may be here
                    held = [c for c in IMAGE_COLUMNS if row.get(c)]
                    yield row["id"], f"row's pixels are withheld but it holds {', '.join(held)}" if held else None
                    continue
                problem = "row has no image bytes" if not image.get("bytes") else next(
                    (p for p in (decode_problem(row[c]["bytes"]) for c in IMAGE_COLUMNS
                                 if row.get(c)) if p), None)
            yield row["id"], problem


PARQUET = OutputFormat(name="parquet", folder="data", extension="parquet",
                       final_pattern="{split}-{index:05d}-of-{total:05d}.parquet", writer=ParquetShardWriter,
                       features=ROW, rows=check_rows, merge=merge)
