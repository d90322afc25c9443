"""Reading a built folder's Parquet shards: which files, which split, which rows.

Shards are named ``data/<modality>/<split>-NNNNN-of-MMMMM.parquet``
(:mod:`builder.engine.journal` publishes them under those names).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow.parquet as pq

#: A shard's file name; its group is the split (a regex DuckDB understands too).
SHARD_NAME = r"([^/\\]+)-[0-9]{5}-of-[0-9]{5}\.parquet$"
_SHARD = re.compile(SHARD_NAME)


def parquet_files(out: Path, config: str | None = None) -> list[Path]:
    """The shards of one modality (``config``), or of all of them."""
    modality = config if config not in (None, "all") else "*"
    return sorted((out / "data").glob(f"{modality}/*.parquet"))


def split_of(path: Path) -> str:
    match = _SHARD.search(path.name)
    return match.group(1) if match else "train"


def iter_rows(out: Path, columns: Sequence[str] | None = None, config: str | None = None,
              batch_size: int = 256) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, row) of every row, ``columns`` only when given, one shard after another."""
    for path in parquet_files(out, config):
        split = split_of(path)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size,
                                                       columns=list(columns) if columns else None):
            for row in batch.to_pylist():
                yield split, row
