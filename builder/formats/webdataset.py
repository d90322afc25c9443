"""WebDataset shards: ``<stem>-pNNN.tar`` parts, renamed by the engine at the end.

Each sample is ``<id>.png`` (the image), ``<id>.mask.png`` (the mask; an empty
one when the row has none, so every sample has the same members), ``<id>.txt``
(the caption) and ``<id>.json`` (every other field); ``sizes.json`` beside the
shards counts each shard's samples (open_clip reads it). A work group spreads a
split's rows over up to ``LANES`` shards. Member names are the row ids,
which hold no dot or slash, so every member stays inside the archive's folder.

The archives are written with the standard library's ``tarfile``, member for member as ``webdataset``'s
``TarWriter(encoder=False, mtime=0)`` writes them (:func:`add_sample`; a test holds the bytes equal): importing
``webdataset`` imports torch, 1.3 s and 200 MiB in the process that writes every shard of a build.
"""

from __future__ import annotations

import io
import json
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

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

LANES = 8  # shards per split at least (of a group with as many rows): a DataLoader's workers, or a GPU's, each need one
ALWAYS = ("image", "mask")  # members every sample has: a row without a mask gets an empty one of its size


@lru_cache(maxsize=64)
def empty_mask(width: int, height: int) -> bytes:
    """An all-zero 8-bit PNG: the mask of a row without ROIs drawn as a mask, so every sample has the same members
    (datasets' webdataset builder refuses samples that differ)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_of(row: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = {"__key__": row["id"]}
    for column in IMAGE_COLUMNS:
        if row.get(column):
            sample[webdataset_member(column)] = row[column]["bytes"]
        elif column in ALWAYS:
            sample[webdataset_member(column)] = empty_mask(int(row["width"]), int(row["height"]))
    sample["txt"] = (row.get("caption") or "").encode()  # what open_clip and img2dataset-style loaders read
    meta = {k: v for k, v in row.items() if k not in IMAGE_COLUMNS}
    sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
    return sample


def add_sample(tar: tarfile.TarFile, sample: dict[str, Any]) -> None:
    """One sample into ``tar``: a member ``<key>.<field>`` per field of ``sample`` (bytes), in sorted order,
    read-only, owned by ``bigdata``, dated 0: what ``webdataset.TarWriter(encoder=False, mtime=0)`` writes."""
    key = sample["__key__"]
    for field in sorted(k for k in sample if k != "__key__"):
        data = sample[field]
        info = tarfile.TarInfo(f"{key}.{field}")
        info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "bigdata", "bigdata"
        tar.addfile(info, io.BytesIO(data))


def sizes(shards: list[dict[str, Any]]) -> dict[str, str]:
    """``webdataset/<modality>/sizes.json``: samples per shard file, as open_clip's loader reads it (from the folder
    of the first shard it is given, by file name). Shards in sub-folders: each of their folders has the sizes of
    every shard of its config."""
    by_config: dict[str, dict[str, int]] = {}
    folders: dict[str, set[str]] = {}
    for shard in shards:
        if shard["format"] == "webdataset":
            folder, _, name = shard["path"].rpartition("/")
            config = "/".join(folder.split("/")[:2])
            by_config.setdefault(config, {})[name] = int(shard["rows"])
            folders.setdefault(config, set()).add(folder)
    text = {config: json.dumps(dict(sorted(found.items())), indent=1) + "\n" for config, found in by_config.items()}
    return {f"{folder}/sizes.json": text[config] for config, held in folders.items() for folder in sorted(held)}


class TarShardWriter(ShardStream):
    format = "webdataset"
    extension = "tar"

    def __init__(self, folder: Path, modality: str, split: str, stem: str, limits: ShardLimits,
                 on_shard: ShardHook | None = None) -> None:
        super().__init__(folder, modality, split, stem, limits, on_shard)
        self.stream: BinaryIO | None = None
        self.tar: tarfile.TarFile | None = None

    def write(self, row: dict[str, Any]) -> None:
        if self.tar is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.stream = open(temp_path(self._final()), "wb")  # noqa: SIM115 (open until the shard rolls over)
            self.tar = tarfile.open(fileobj=self.stream, mode="w|")  # noqa: SIM115 (closed in _finish)
        add_sample(self.tar, sample_of(row))
        if self.rolling.full_after(row):
            self._finish()

    def _finish(self) -> None:
        if self.tar is None or self.stream is None:
            return
        self.tar.close()  # the end-of-archive blocks; the stream stays open
        self.stream.close()
        self.tar = self.stream = None
        self._published()

    def close(self) -> list[Shard]:
        self._finish()
        return self.shards


BLOCK, RECORD = 512, 10240  # a tar's block, and the record its end is padded to


def merge(sources: list[Path], target: Path) -> None:
    """The samples of ``sources``, in order, into one tar at ``target``: each archive's members copied byte for
    byte up to its end-of-archive blocks, then one end for all."""
    with open(target, "wb") as out:
        for source in sources:
            with tarfile.open(source) as tar:
                end = max((m.offset_data + -(-m.size // BLOCK) * BLOCK for m in tar.getmembers()), default=0)
            with open(source, "rb") as fh:
                while end > 0:
                    chunk = fh.read(min(end, 1 << 20))
                    if not chunk:
                        raise ValueError(f"{source.name} ends before its last member does")
                    out.write(chunk)
                    end -= len(chunk)
        written = out.tell() + 2 * BLOCK
        out.write(b"\0" * (2 * BLOCK + (-written) % RECORD))


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
                          final_pattern="{split}-{index:06d}.tar", writer=TarShardWriter, merge=merge,
                          features=WEBDATASET_ROW, rows=check_rows, lanes=LANES, sidecars=sizes)
