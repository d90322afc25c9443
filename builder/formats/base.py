"""The writer interface and the roll-over logic shared by every format.

A :class:`ShardWriter` writes the rows of one (modality, split) to numbered
shards, rolling over by row count and by bytes (after the ``ShardWriter`` of
webdataset). Each shard is written under a hidden temporary name and renamed
when complete, so no reader ever sees a partial file. ``on_shard`` is called
with every finished shard.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import click
from PIL import Image

from builder.layout import FILES_PER_FOLDER, folder_glob, shard_folders
from builder.options import NoOptions, option
from medtrinity_25m import IMAGE_COLUMNS


@dataclass(frozen=True)
class ShardLimits:
    """When a shard rolls over to the next: by rows and by size."""

    max_rows: int = option(10_000, flag="shard-rows", resume=True,
                           help="Roll over to a new shard after this many rows.")
    max_mb: int = option(500, flag="shard-mb", resume=True,  # ~ the Hub's recommended Parquet shard size
                         help="Roll over to a new shard after about this many MiB.")

    files_per_folder: int = option(FILES_PER_FOLDER, cli={"type": click.IntRange(min=3)},
                                   help="At most this many files in one folder of the dataset (the Hub's limit): "
                                        "more shards go into numbered sub-folders, the card's globs following.")

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 2**20


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


RowCheck = Iterator[tuple[str, "str | None"]]  # (row id or member, problem) of each row of a shard


@dataclass(frozen=True)
class OutputFormat:
    """One output format: where its shards live, how they are named, read back and written.

    The engine's journal names final shards with it, the card points configs at
    ``data_files`` with its ``features``, ``verify`` checks shards with ``rows``,
    and ``pull`` downloads its ``folder``. A new format is one module that builds
    one of these, registered in :data:`builder.formats.FORMATS`.
    """

    name: str
    folder: str  # under the dataset folder: "data", "webdataset"
    extension: str
    final_pattern: str  # "{split}-{index:05d}-of-{total:05d}.parquet"
    writer: type  # a ShardStream subclass: (folder, modality, split, stem, limits, on_shard)
    features: dict[str, Any]  # the row the card declares for this layout (medtrinity_25m.ROW: plain data)
    rows: Callable[[Path, bool], RowCheck]  # (path, decode) -> (id, problem) per row
    options: type = NoOptions  # the format's own settings (none yet: ShardLimits are every format's)
    lanes: int = 1  # a split's rows of a work group go round-robin to this many shards (one per reader's worker)
    sidecars: Callable[[list[dict[str, Any]]], dict[str, str]] | None = None  # published shards -> {path: text}
    merge: Callable[[list[Path], Path], None] | None = None  # shards, in order -> one shard with their rows

    def final_name(self, split: str, index: int, total: int) -> str:
        return self.final_pattern.format(split=split, index=index, total=total)

    def final_path(self, modality: str, split: str, index: int, total: int, depth: int = 0,
                   per_folder: int = FILES_PER_FOLDER) -> str:
        """Where the ``index``-th of ``total`` shards of a split is published, ``depth`` folders below its config's
        (:func:`builder.layout.nesting`)."""
        parts = [self.folder, modality, *shard_folders(split, index, depth, per_folder)]
        return "/".join([*parts, self.final_name(split, index, total)])

    def data_files(self, modality: str, split: str, depth: int = 0) -> str:
        """The glob a card config names for one split of one modality ("*" for every modality)."""
        return f"{self.folder}/{folder_glob(modality, split, depth)}/{split}-*.{self.extension}"


def decode_problem(data: bytes | None) -> str | None:
    """Why image bytes do not decode, or None."""
    if data is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except Exception as exc:  # any decoder failure is the shard's problem, named
        return f"{type(exc).__name__}: {exc}"
    return None


def row_bytes(row: dict[str, Any]) -> int:
    """Roughly what a row weighs in a shard: its images plus its text."""
    size = 512 + sum(len(row.get(k) or "") for k in ("caption", "coarse_caption"))
    for key in IMAGE_COLUMNS:
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


def finalize(temp: Path, final: Path) -> None:
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
        finalize(temp_path(final), final)
        shard = Shard(final, self.rolling.rows, self.modality, self.split, self.format)
        self.shards.append(shard)
        if self.on_shard:
            self.on_shard(shard)
        self.rolling.reset()
