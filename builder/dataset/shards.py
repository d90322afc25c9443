"""Reading a built folder's Parquet shards: which files, which split, which rows.

Shards are named ``data/<modality>/<split>-NNNNN-of-MMMMM.parquet``, or
``data/<modality>/<split>/NNNN/<split>-...`` when a folder would hold too many
(:mod:`builder.pipeline.build.journal` publishes them under those names).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow.parquet as pq

from builder.layout import NAME

#: A shard's file name; its group is the split, a plain name (a regex DuckDB understands too).
SHARD_NAME = r"([A-Za-z0-9_]+)-[0-9]{5}-of-[0-9]{5}\.parquet$"
_SHARD = re.compile(SHARD_NAME)


class LayoutError(ValueError):
    """A config or split name that is not plain, read back from a folder or an argument."""


def parquet_files(out: Path, config: str | None = None) -> list[Path]:
    """The shards of one modality (``config``), or of all of them; only plain config and split names."""
    if config not in (None, "all") and not NAME.match(str(config)):
        raise LayoutError(f"config {config!r} is not a plain name ([A-Za-z0-9_]+)")
    modality = config if config not in (None, "all") else "*"
    files = sorted((out / "data").glob(f"{modality}/**/*.parquet"))
    for path in files:
        if not _well_placed(path.relative_to(out / "data").parts):
            raise LayoutError(f"{path.relative_to(out)} is not a shard of a plain config and split name "
                              "(data/<config>/[<split>/NNNN/]<split>-NNNNN-of-MMMMM.parquet, names [A-Za-z0-9_]+)")
    return files


def _well_placed(parts: tuple[str, ...]) -> bool:
    """``<config>/<name>`` or ``<config>/<split>/<digits>/.../<name>`` (:func:`builder.layout.nesting`)."""
    match = _SHARD.match(parts[-1])
    if not (match and NAME.match(parts[0])):
        return False
    return len(parts) == 2 or (len(parts) >= 4 and parts[1] == match.group(1) and all(p.isdigit() for p in parts[2:-1]))


def split_of(path: Path) -> str:
    match = _SHARD.match(path.name)
    if match is None:
        raise LayoutError(f"{path.name} is not a shard name <split>-NNNNN-of-MMMMM.parquet with a plain split")
    return match.group(1)


def iter_rows(out: Path, columns: Sequence[str] | None = None, config: str | None = None,
              batch_size: int = 256) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, row) of every row, ``columns`` only when given, one shard after another."""
    for path in parquet_files(out, config):
        split = split_of(path)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size,
                                                       columns=list(columns) if columns else None):
            for row in batch.to_pylist():
                yield split, row
