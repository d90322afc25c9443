"""``medtri-build verify``: is a dataset folder whole and what its card says?

Checks, each problem naming the file and why:

- ``build.json`` lists every shard with its rows and sha256: each is present, its
  checksum matches, its row count matches; no unlisted shard lies beside them;
- every shard opens, every image and mask decodes, ids are unique;
- the card's ``configs:`` match the files present (no config without files);
- no ``.py`` file, which would make ``load_dataset`` refuse the folder.

``config`` restricts the check to one config's shards (a partial download).
"""

from __future__ import annotations

import fnmatch
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
import yaml
from PIL import Image

from .engine import BUILD_JSON, sha256_file

SHARD_GLOBS = ("data/*/*.parquet", "webdataset/*/*.tar")


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def card_configs(out: Path) -> list[dict[str, Any]]:
    text = (out / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError("the card has no YAML header")
    header = yaml.safe_load(text.split("---", 2)[1]) or {}
    return list(header.get("configs") or [])


def _decodes(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _parquet_rows(path: Path, decode: bool) -> Iterator[tuple[str, str | None]]:
    """(id, problem) of each row of a Parquet shard."""
    columns = ["id", "image", "mask"] if decode else ["id"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
        for row in batch.to_pylist():
            problem = None
            if decode:
                problem = _decodes((row["image"] or {}).get("bytes")) or (
                    _decodes(row["mask"]["bytes"]) if row.get("mask") else None)
                if row["image"] is None or not row["image"].get("bytes"):
                    problem = "row has no image bytes"
            yield row["id"], problem


def _tar_rows(path: Path, decode: bool) -> Iterator[tuple[str, str | None]]:
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith(".."):
                yield member.name, "member name leaves the archive's folder"
                continue
            key, _, ext = member.name.partition(".")
            if ext == "json":
                yield key, None
            elif decode and ext.endswith("png"):
                problem = _decodes(tar.extractfile(member).read())  # type: ignore[union-attr]
                if problem:
                    yield f"{key}.{ext}", problem


def verify(out: Path, config: str | None = None, decode: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    if not (out / BUILD_JSON).is_file():
        return [Problem(BUILD_JSON, "missing: not a built dataset folder")]
    listed = json.loads((out / BUILD_JSON).read_text(encoding="utf-8")).get("shards", [])
    wanted = [s for s in listed if config in (None, "all", s["modality"])]
    problems += [Problem(p.relative_to(out).as_posix(), "a .py file makes load_dataset refuse the folder")
                 for p in out.rglob("*.py")]
    present = {p.relative_to(out).as_posix() for g in SHARD_GLOBS for p in out.glob(g)}
    names = {s["path"] for s in listed}
    problems += [Problem(p, "shard not listed in build.json") for p in sorted(present - names)]
    ids: dict[str, dict[str, str]] = {"parquet": {}, "webdataset": {}}
    for shard in wanted:
        problems += _check_shard(out, shard, decode, ids[shard["format"]])
    problems += _check_card(out, present, config)
    return problems


def _check_shard(out: Path, shard: dict[str, Any], decode: bool, seen: dict[str, str]) -> list[Problem]:
    path, name = out / shard["path"], shard["path"]
    if not path.is_file():
        return [Problem(name, "missing (listed in build.json)")]
    if sha256_file(path) != shard["sha256"]:
        return [Problem(name, "sha256 does not match build.json: the file changed or is corrupt")]
    problems, rows = [], 0
    reader = _parquet_rows if shard["format"] == "parquet" else _tar_rows
    try:
        for row_id, problem in reader(path, decode):
            if problem:
                problems.append(Problem(name, f"{row_id}: {problem}"))
                continue
            rows += 1
            if row_id in seen:
                problems.append(Problem(name, f"id {row_id} also in {seen[row_id]}"))
            seen[row_id] = name
    except Exception as exc:  # a shard that does not open
        return [Problem(name, f"does not open ({type(exc).__name__}: {exc})")]
    if rows != shard["rows"]:
        problems.append(Problem(name, f"holds {rows} rows, build.json says {shard['rows']}"))
    return problems


def _check_card(out: Path, present: set[str], config: str | None) -> list[Problem]:
    try:
        configs = card_configs(out)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return [Problem("README.md", f"card unreadable: {exc}")]
    if not configs:
        return [Problem("README.md", "the card lists no configs")]
    problems = []
    for entry in configs:
        name = entry.get("config_name")
        if config not in (None, "all") and name != config:
            continue
        for files in entry.get("data_files", []):
            if not any(fnmatch.fnmatch(p, files["path"]) for p in present):
                problems.append(Problem("README.md", f"config {name!r} split {files['split']!r} names "
                                                     f"{files['path']}: no such files"))
    return problems
