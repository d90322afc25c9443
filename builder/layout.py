"""The layout of a built dataset folder: the one thing the read side and the engine share.

::

    OUT/
      README.md  build.json  rejects.jsonl           published
      data/<config>/<split>-NNNNN-of-MMMMM.parquet   published (build.json "published", "shards")
      data/<config>/<split>/NNNN/<split>-...parquet  the same, when a folder would hold more than the Hub's
                                                     10,000 entries (see :func:`nesting`)
      webdataset/<config>/<split>-NNNNNN.tar
      .private/rejects.jsonl .private/provenance.jsonl  local: real paths, never published
      .medtri.lock                                    local: one build at a time
      .build/                                         a running or unfinished build's journal

``build.json`` lists what the build wrote: ``published`` and ``local``. Config
and split names are plain (``[A-Za-z0-9_]+``) wherever they are read back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "BUILD_JSON",
    "FILES_PER_FOLDER",
    "JOURNAL_DIR",
    "LOCK",
    "NAME",
    "PRIVATE",
    "cache_dir",
    "depth_of",
    "folder_glob",
    "listed_files",
    "nesting",
    "read_build_json",
    "sha256_file",
    "shard_folders",
    "unlisted",
]

BUILD_JSON = "build.json"
JOURNAL_DIR = ".build"
PLAN = "publishing.json"  # in the journal: every file a build's publishing writes, listed before it starts
LOCK = ".medtri.lock"
PRIVATE = ".private"  # local only: provenance map and rejects with real paths; never published
NAME = re.compile(r"^[A-Za-z0-9_]+$")  # a split or config name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_build_json(out: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((out / BUILD_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def listed_files(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(published, local) files a build.json says its build wrote (older builds: shards and fixed names)."""
    if isinstance(doc.get("published"), list):
        published = {str(f) for f in doc["published"]}
    else:
        published = {str(s.get("path")) for s in doc.get("shards", []) if isinstance(s, dict)}
        published |= {"README.md", "rejects.jsonl"}
    local = {str(f) for f in doc.get("local", [])} if isinstance(doc.get("local"), list) else {LOCK}
    return published | {BUILD_JSON}, local


def journal_ours(out: Path) -> bool:
    return (out / JOURNAL_DIR / "state.json").is_file()


def journal_plan(out: Path) -> set[str]:
    """The files an unfinished build's publishing writes (empty before publishing starts)."""
    try:
        files = json.loads((out / JOURNAL_DIR / PLAN).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    return {str(f) for f in files} if isinstance(files, list) else set()


#: Folders other tools keep inside a dataset folder: huggingface_hub's download metadata (``pull``).
TOOL_FOLDERS = (".cache/huggingface",)


def unlisted(out: Path, known: set[str]) -> list[str]:
    """Files in ``out`` that are not in ``known`` (a running build's journal and tools' caches aside)."""
    journal = journal_ours(out)
    found = []
    for root, dirs, files in os.walk(out):
        rel_root = Path(root).relative_to(out)
        if journal and rel_root.parts[:1] == (JOURNAL_DIR,):
            continue
        if any(rel_root.as_posix() == t or rel_root.as_posix().startswith(t + "/") for t in TOOL_FOLDERS):
            continue
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = (rel_root / name).as_posix()
            if rel not in known:
                found.append(rel)
    return sorted(found)


def cache_dir() -> Path:
    """The user's cache of this project (caption indexes, model answers): ``$MEDTRI_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/medtrinity-25m``, else ``~/.cache/medtrinity-25m``. Local, never published."""
    if os.environ.get("MEDTRI_CACHE_DIR"):
        return Path(os.environ["MEDTRI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medtrinity-25m"


#: The most entries (files and folders) the Hub accepts in one folder of a repository.
FILES_PER_FOLDER = 10_000


def nesting(counts: Mapping[tuple[str, str], int], per_folder: int = FILES_PER_FOLDER) -> int:
    """The folder levels one format's shards need below ``<folder>/<config>/<split>/`` so that no folder holds more
    than ``per_folder`` entries; ``counts``: shards per (config, split). 0 (flat, ``<folder>/<config>/<name>``) while
    every config's shards fit its folder with a place to spare; otherwise each split gets its own folder, and its
    shards go ``per_folder - 1`` to a numbered leaf (the spare place is for a sidecar such as ``sizes.json``), as
    many levels of numbered folders deep as it takes."""
    if per_folder < 3:
        raise ValueError(f"files per folder must be at least 3, not {per_folder}")
    by_config: Counter[str] = Counter()
    for (config, _), n in counts.items():
        by_config[config] += n
    if max(by_config.values(), default=0) < per_folder:
        return 0
    leaves = max(math.ceil(n / (per_folder - 1)) for n in counts.values())
    depth = 1
    while per_folder**depth < leaves:
        depth += 1
    return depth


def shard_folders(split: str, index: int, depth: int, per_folder: int = FILES_PER_FOLDER) -> list[str]:
    """The folders between ``<folder>/<config>/`` and the ``index``-th shard of ``split`` (none when flat)."""
    if depth == 0:
        return []
    leaf, width, digits = index // (per_folder - 1), len(str(per_folder - 1)), []
    for _ in range(depth):
        leaf, digit = divmod(leaf, per_folder)
        digits.append(f"{digit:0{width}d}")
    return [split, *reversed(digits)]


def depth_of(paths: Iterable[str]) -> int:
    """How deep published shards are nested (``data/ct/train-...``: 0; ``data/ct/train/0001/train-...``: 1)."""
    return max((max(0, len(path.split("/")) - 4) for path in paths), default=0)


def folder_glob(config: str, split: str, depth: int) -> str:
    """The folders of one split's shards as a glob (``ct``; ``ct/train/*`` one level deep), below a format's folder."""
    return "/".join([config, *([split] + ["*"] * depth if depth else [])])
