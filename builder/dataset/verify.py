"""``medtri-build verify``: is a dataset folder whole and what its card says?

Checks, each problem naming the file and why:

- ``build.json`` is readable and lists every shard with its rows and sha256: each
  is present, its checksum matches, its row count matches;
- the folder holds nothing ``build.json`` does not list (a ``data/patients.csv``,
  a nested ``data/ct/old/x.parquet``), a running build's hidden journal aside;
- split and config names are plain (``[A-Za-z0-9_]+``); the dataset holds rows;
- every shard opens, every image and mask decodes, ids are unique;
- the card's ``configs:`` match the files present (no config without files);
- no ``.py`` file, which would make ``load_dataset`` refuse the folder.

``config`` restricts the check to one config's shards (a partial download).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from builder.dataset import staging
from builder.errors import Problem
from builder.formats import FORMATS
from builder.layout import BUILD_JSON, NAME, listed_files, sha256_file, unlisted
from builder.yamlsafe import YamlError, load_yaml

SHARD_KEYS = {"path": str, "sha256": str, "rows": int, "format": str, "modality": str, "split": str}


def card_configs(out: Path) -> list[dict[str, Any]]:
    text = (out / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError("the card has no YAML header")
    header = load_yaml(text.split("---", 2)[1], "README.md") or {}
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise ValueError("the card's configs are not a list of mappings")
    for entry in configs:
        if not NAME.match(str(entry.get("config_name", ""))):
            raise ValueError(f"config name {entry.get('config_name')!r} is not plain ([A-Za-z0-9_]+)")
    return configs


def read_listing(out: Path) -> tuple[dict[str, Any], list[Problem]]:
    """build.json, and what is wrong with it (unreadable, shard entries missing keys or with odd names)."""
    try:
        doc = json.loads((out / BUILD_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [Problem(BUILD_JSON, f"unreadable ({type(exc).__name__}: {exc})")]
    if not isinstance(doc, dict) or not isinstance(doc.get("shards", []), list):
        return {}, [Problem(BUILD_JSON, "not a build.json: no list of shards")]
    problems = []
    good = []
    for number, shard in enumerate(doc.get("shards", [])):
        bad = [k for k, kind in SHARD_KEYS.items() if not isinstance(shard, dict) or not isinstance(shard.get(k), kind)]
        if bad:
            problems.append(Problem(BUILD_JSON, f"shard entry {number} lacks {', '.join(bad)}"))
        elif not (NAME.match(shard["split"]) and NAME.match(shard["modality"])):
            problems.append(Problem(BUILD_JSON, f"shard entry {number} has a split or config name that is not "
                                                "plain ([A-Za-z0-9_]+)"))
        else:
            good.append(shard)
    return {**doc, "shards": good}, problems


def _unlisted_reason(path: str, staged: set[str]) -> str:
    if path.endswith(".py"):
        return "a .py file makes load_dataset refuse the folder"
    if path in staged:
        return "left by an interrupted describe: run `medtri-build describe` on the folder again to finish or undo it"
    return "not written by the build (build.json does not list it)"


def verify(out: Path, config: str | None = None, decode: bool = True) -> list[Problem]:
    """Every problem of a built folder (``config``: only that config's shards, as a partial download has)."""
    if not (out / BUILD_JSON).is_file():
        return [Problem(BUILD_JSON, "missing: not a built dataset folder")]
    doc, problems = read_listing(out)
    if not doc:
        return problems
    listed = doc["shards"]
    wanted = [s for s in listed if config in (None, "all", s["modality"])]
    published, local = listed_files(doc)
    known = published | local | {s["path"] for s in listed}
    staged = {p.relative_to(out).as_posix() for p in staging.pending(out)}
    problems += [Problem(p, _unlisted_reason(p, staged)) for p in unlisted(out, known)]
    present = {p for p in published | {s["path"] for s in listed} if (out / p).is_file()}
    ids: dict[str, dict[str, str]] = {"parquet": {}, "webdataset": {}}
    rows = 0
    for shard in wanted:
        problems += _check_shard(out, shard, decode, ids.setdefault(shard["format"], {}))
        rows += shard["rows"]
    if not rows and not problems:
        problems.append(Problem(BUILD_JSON, "the dataset holds no rows"))
    problems += _check_card(out, present, config)
    return problems


def _check_shard(out: Path, shard: dict[str, Any], decode: bool, seen: dict[str, str]) -> list[Problem]:
    path, name = out / shard["path"], shard["path"]
    if not path.is_file():
        return [Problem(name, "missing (listed in build.json)")]
    if sha256_file(path) != shard["sha256"]:
        return [Problem(name, "sha256 does not match build.json: the file changed or is corrupt")]
    problems, rows = [], 0
    if shard["format"] not in FORMATS:
        return [Problem(name, f"format {shard['format']!r} is not one this version reads")]
    try:
        for row_id, problem in FORMATS[shard["format"]].rows(path, decode):
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
    except (OSError, ValueError, YamlError) as exc:
        return [Problem("README.md", f"card unreadable: {exc}")]
    if not configs:
        return [Problem("README.md", "the card lists no configs")]
    problems = []
    for entry in configs:
        name = entry.get("config_name")
        if config not in (None, "all") and name != config:
            continue
        for files in entry.get("data_files") or []:
            if not isinstance(files, dict) or not NAME.match(str(files.get("split", ""))):
                problems.append(Problem("README.md", f"config {name!r} has a data_files entry without a plain split"))
                continue
            if not any(fnmatch.fnmatch(p, str(files.get("path"))) for p in present):
                problems.append(Problem("README.md", f"config {name!r} split {files['split']!r} names "
                                                     f"{files['path']}: no such files"))
    return problems
