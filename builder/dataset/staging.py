"""Replace files of a finished build all together: staged beside them, then put in place with ``build.json`` last.

A command that rewrites a published folder (``describe``) writes every new file as
``<name>.staged`` next to the one it replaces and syncs it to disk; then
:func:`commit` renames the staged files over the old ones, ``build.json`` last.
The staged ``build.json`` is the commit record: once it is on disk, every other
staged file is complete, so a run killed while renaming is finished by the next
:func:`recover` (roll forward). Staged files without it are from a run killed
while writing them and are removed (this module wrote them). Either way the
folder is left as one version, the old or the new, never a mix. Only the staged
copies of files a rewrite replaces (``build.json``, the card, the reject logs, the
shards ``build.json`` lists) are looked for, so no other file is ever touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from builder.layout import BUILD_JSON, read_build_json

__all__ = ["SUFFIX", "commit", "pending", "recover", "stage", "stage_copy"]

#: the files other than shards a rewrite may replace
REPLACEABLE = (BUILD_JSON, "README.md", "rejects.jsonl", ".private/rejects.jsonl")

SUFFIX = ".staged"


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def stage(target: Path, write: Callable[[Path], object]) -> Path:
    """``write`` the new content of ``target`` to its staged path, synced; the staged path."""
    staged = target.with_name(target.name + SUFFIX)
    write(staged)
    _sync(staged)
    return staged


def stage_copy(target: Path, append: bytes) -> Path:
    """Stage ``target`` with ``append`` added at its end (an append-only log)."""
    def write(staged: Path) -> None:
        shutil.copyfile(target, staged)
        with open(staged, "ab") as handle:
            handle.write(append)

    return stage(target, write)


def pending(out: Path) -> list[Path]:
    """The staged copies in ``out`` of the files a rewrite replaces (a rewrite never renames a shard)."""
    shards = [s.get("path") for s in (read_build_json(out) or {}).get("shards", []) if isinstance(s, dict)]
    targets = [*REPLACEABLE, *(p for p in shards if isinstance(p, str))]
    found = (out / (target + SUFFIX) for target in targets)
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def commit(out: Path) -> None:
    """Put every staged file of ``out`` in place; ``build.json``'s staged copy must exist and goes last."""
    record = out / (BUILD_JSON + SUFFIX)
    if not record.is_file():
        raise FileNotFoundError(f"{record}: no staged {BUILD_JSON} to commit")
    for staged in pending(out):
        if staged != record:
            os.replace(staged, staged.with_name(staged.name[: -len(SUFFIX)]))
    os.replace(record, out / BUILD_JSON)


def recover(out: Path) -> str | None:
    """Finish (or undo) an interrupted rewrite of ``out``: what was done, or None when there was none."""
    staged = pending(out)
    if not staged:
        return None
    if (out / (BUILD_JSON + SUFFIX)).is_file():
        commit(out)
        return f"finished an interrupted rewrite ({len(staged)} staged files put in place)"
    for path in staged:
        path.unlink()
    return f"removed {len(staged)} staged files of a rewrite interrupted before it was complete"
