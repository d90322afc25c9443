"""WebDataset shards: ``<stem>-pNNN.tar`` parts, renamed by the engine at the end.

Each sample is ``<id>.png`` (the image), ``<id>.mask.png`` (when the row has a
mask) and ``<id>.json`` (every other field). Member names are the row ids,
which hold no dot or slash, so every member stays inside the archive's folder.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

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
from medtrinity_25m import IMAGE_COLUMNS, WEBDATASET_ROW, webdataset_member


def sample_of(row: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = {"__key__": row["id"]}
    for column in IMAGE_COLUMNS:
        if row.get(column):
            sample[webdataset_member(column)] = row[column]["bytes"]
    meta = {k: v for k, v in row.items() if k not in IMAGE_COLUMNS}
    sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
    return sample


class TarShardWriter(ShardStream):
    format = "webdataset"
    extension = "tar"

    def __init__(self, folder: Path, modality: str, split: str, stem: str, limits: ShardLimits,
                 on_shard: ShardHook | None = None) -> None:
        super().__init__(folder, modality, split, stem, limits, on_shard)
        self.stream: BinaryIO | None = None
        self.tar: Any = None

    def write(self, row: dict[str, Any]) -> None:
        import webdataset as wds

        if self.tar is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.stream = open(temp_path(self._final()), "wb")  # noqa: SIM115 (open until the shard rolls over)
            self.tar = wds.TarWriter(self.stream, mtime=0, encoder=False)
        self.tar.write(sample_of(row))
        if self.rolling.full_after(row):
            self._finish()

    def _finish(self) -> None:
        if self.tar is None:
            return
        self.tar.close()  # closes the stream too
        self.tar = self.stream = None
        self._published()

    def close(self) -> list[Shard]:
        self._finish()
        return self.shards


def check_rows(path: Path, decode: bool) -> RowCheck:
    """(key, problem) of each sample of a tar shard; members must stay inside the archive's folder."""
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith(".."):
                yield member.name, "member name leaves the archive's folder"
                continue
            key, _, ext = member.name.partition(".")
            if ext == "json":
                yield key, None
            elif decode and ext.endswith("png"):
                handle = tar.extractfile(member)
                problem = decode_problem(handle.read() if handle else None)
                if problem:
                    yield f"{key}.{ext}", problem


WEBDATASET = OutputFormat(name="webdataset", folder="webdataset", extension="tar",
                          final_pattern="{split}-{index:06d}.tar", writer=TarShardWriter,
                          features=WEBDATASET_ROW, rows=check_rows)
