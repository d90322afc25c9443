"""The files of the official MedTrinity-25M release, local or streamed from the Hub.

The release (``UCSC-VLAA/MedTrinity-25M``) keeps captions in Parquet files
(``25M_demo``: with the image bytes; ``25M_full``: with a ``file_name``) and the
images of ``25M_full`` in zstd-compressed tars (``25M_accessible/*.tar.zst``,
members nested several folders deep, joined to a row by basename). Everything is
read as a stream: Parquet by record batches, tars member by member through a
zstd decompressor, nothing unpacked to disk. ``root`` is a local snapshot folder
or an ``hf://datasets/<repo>`` path read through ``huggingface_hub``'s file system.

Columns are detected by what they hold (:func:`detect`), not by one fixed name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import sqlite3
import tarfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from builder.layout import cache_dir

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Columns", "Member", "Truncated", "all_rows", "caption_index", "detect", "filesystem", "glob", "image_bytes",
           "lookup", "members", "parquet_batches", "parquet_schema"]

_CANDIDATES = {
    "id": ("id", "uuid", "image_id", "sample_id"),
    "caption": ("caption", "text", "description", "report"),
    "source": ("source", "dataset", "origin", "source_dataset"),
    "file_name": ("file_name", "filename", "image_path", "file", "path", "image_name"),
    "image": ("image", "img", "jpg", "png", "image_bytes"),
}


class Truncated(Exception):
    """A shard that ends before its archive does; ``read`` members came out of it whole."""

    def __init__(self, read: int, why: str) -> None:
        super().__init__(f"truncated after {read} member(s): {why}")
        self.read = read


def filesystem(root: str) -> tuple[Any, str]:
    """The fsspec file system of ``root`` and the path in it (``hf://`` through ``huggingface_hub``)."""
    if root.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem(), root[len("hf://"):]
    import fsspec

    return fsspec.filesystem("file"), root


def glob(fs: Any, base: str, *patterns: str) -> list[str]:
    """The files under ``base`` matching any pattern, sorted."""
    found: set[str] = set()
    for pattern in patterns:
        found.update(str(p) for p in fs.glob(posixpath.join(base, pattern)))
    return sorted(found)


@dataclass(frozen=True)
class Columns:
    """Which column of a Parquet file holds what (None: absent)."""

    caption: str | None
    id: str | None = None
    source: str | None = None
    file_name: str | None = None
    image: str | None = None

    def names(self) -> list[str]:
        return [n for n in (self.caption, self.id, self.source, self.file_name, self.image) if n]


def _parquet() -> Any:
    """``pyarrow.parquet``, imported by the first release read (a worker reading other files never loads it)."""
    import pyarrow.parquet as pq

    return pq


def parquet_schema(file: Any) -> pa.Schema:
    """The Arrow schema of an open Parquet file."""
    return _parquet().ParquetFile(file).schema_arrow


def _is_image(field: pa.Field) -> bool:
    import pyarrow as pa

    kind = field.type
    if pa.types.is_struct(kind):
        return any(kind.field(i).name == "bytes" for i in range(kind.num_fields))
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _is_text(field: pa.Field) -> bool:
    import pyarrow as pa

    return pa.types.is_string(field.type) or pa.types.is_large_string(field.type)


def detect(schema: pa.Schema) -> Columns:
    """The columns by name where a known name is there, by type where not (an image struct, a text column)."""
    fields = {f.name.lower(): f for f in schema}

    def pick(role: str, fits: Any) -> str | None:
        for name in _CANDIDATES[role]:
            if name in fields and fits(fields[name]):
                return fields[name].name
        return None

    image = pick("image", _is_image) or next((f.name for f in schema if _is_image(f)), None)
    return Columns(caption=pick("caption", _is_text), id=pick("id", _is_text), source=pick("source", _is_text),
                   file_name=pick("file_name", _is_text), image=image)


def parquet_batches(fs: Any, path: str, columns: list[str], rows: int = 256) -> Iterator[list[dict[str, Any]]]:
    """The rows of a Parquet file, ``rows`` at a time, only ``columns``."""
    with fs.open(path, "rb") as fh:
        for batch in _parquet().ParquetFile(fh).iter_batches(batch_size=rows, columns=columns):
            yield batch.to_pylist()


def image_bytes(value: Any) -> bytes | None:
    """The encoded image of a Parquet cell: ``datasets``' image struct or plain bytes."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes) and value else None


class _ZstdReader:
    """A read-only stream of the decompressed bytes; at the end, a frame left open raises :class:`EOFError`."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self.raw, self.error = raw, zstandard.ZstdError
        self.decompressor = zstandard.ZstdDecompressor().decompressobj()
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if not self.decompressor.eof and not self.buffer:  # what was decoded is read first
                    raise EOFError("the zstd stream ends inside a frame (unexpected end of file)")
                break
            self._feed(chunk)
        out, self.buffer = (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        return out

    def _feed(self, data: bytes) -> None:
        import zstandard

        while data:
            if self.decompressor.eof:  # the next of several frames
                self.decompressor = zstandard.ZstdDecompressor().decompressobj()
            try:
                self.buffer += self.decompressor.decompress(data)
            except self.error as exc:
                raise EOFError(f"zstd: {exc}") from None
            data = self.decompressor.unused_data if self.decompressor.eof else b""


@dataclass(frozen=True)
class Member:
    name: str  # the basename: what a Parquet row's file_name joins on
    data: bytes


def members(fs: Any, path: str) -> Iterator[Member]:
    """The files of a tar.zst shard in archive order; raises :class:`Truncated` where it ends early."""
    read = 0
    with fs.open(path, "rb") as raw:
        try:
            stream: Any = _ZstdReader(raw) if path.endswith(".zst") else raw
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    if not member.isfile():  # every file is an input: a non-image one ends as a reject line
                        continue
                    handle = archive.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    if len(data) != member.size:
                        raise EOFError(f"member {os.path.basename(member.name)} is cut short")
                    read += 1
                    yield Member(posixpath.basename(member.name), data)
        except (EOFError, tarfile.ReadError, OSError) as exc:
            raise Truncated(read, str(exc) or type(exc).__name__) from None


def _version(info: dict[str, Any]) -> str:
    """A file's version as its file system tells it: a local mtime, the Hub's blob id or ETag, its last commit."""
    return str(next((info[k] for k in ("mtime", "blob_id", "etag", "last_commit") if info.get(k)), ""))


def caption_index(fs: Any, files: list[str], folder: str | None = None) -> str:
    """A SQLite index of the caption rows of ``files`` by image basename, built once per set of files.

    Keyed by each file's path, size and version (:func:`_version`), so a changed
    snapshot builds a new one. Workers open it read-only to join shard members to rows.
    """
    folder = folder or str(cache_dir())
    stamp = [(f, (info := fs.info(f)).get("size"), _version(info)) for f in files]
    key = hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:20]
    path = os.path.join(folder, f"captions-{key}.sqlite")
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    partial = f"{path}.{os.getpid()}.part"
    with contextlib.closing(sqlite3.connect(partial)) as db:
        db.execute("CREATE TABLE rows (name TEXT, id TEXT, caption TEXT, source TEXT, file_name TEXT, "
                   "part TEXT, line INTEGER)")
        for part in files:
            with fs.open(part, "rb") as fh:
                columns = detect(parquet_schema(fh))
            line = 0
            for batch in parquet_batches(fs, part, columns.names(), rows=65536):
                db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", [
                    (posixpath.basename(str(r.get(columns.file_name or "") or "")) or None, r.get(columns.id or ""),
                     r.get(columns.caption or ""), r.get(columns.source or ""), r.get(columns.file_name or ""),
                     part, line + i) for i, r in enumerate(batch)])
                line += len(batch)
        db.execute("CREATE INDEX by_name ON rows (name)")
        db.commit()
    os.replace(partial, path)
    return path


def lookup(index: str) -> Callable[[str], list[dict[str, Any]]]:
    """The caption rows of an image basename, from a read-only connection to the index."""
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, check_same_thread=False)
    fields = ("id", "caption", "source", "file_name", "part", "line")

    def rows(name: str) -> list[dict[str, Any]]:
        found = db.execute("SELECT id, caption, source, file_name, part, line FROM rows WHERE name = ? "
                           "ORDER BY part, line", (name,))
        return [dict(zip(fields, row)) for row in found]

    return rows


def all_rows(index: str) -> Iterator[dict[str, Any]]:
    """Every caption row of the index, in file order."""
    with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
        fields = ("id", "caption", "source", "file_name", "part", "line")
        for row in db.execute("SELECT id, caption, source, file_name, part, line FROM rows ORDER BY part, line"):
            yield dict(zip(fields, row))
