"""Replace files of a finished build all together: staged beside them, then put in place with ``build.json`` last.

A command that rewrites a published folder (``describe``) writes every new file as
``<name>.staged`` next to the one it replaces and syncs it to disk; then
:func:`commit` renames the staged files over the old ones, ``build.json`` last.
The staged ``build.json`` is the commit record: once it is on disk, every other
staged file is complete, so a run killed while renaming is finished by the next
:func:`recover` (roll forward). Staged files without it are from a run killed
while writing them and are removed (this module wrote them). Either way the
folder is left as one version, the old or the new, never a mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from builder.layout import BUILD_JSON

__all__ = ["SUFFIX", "commit", "recover", "stage", "stage_copy"]

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


def _staged(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*" + SUFFIX) if p.is_file() and not p.is_symlink())


def commit(out: Path) -> None:
    """Put every staged file of ``out`` in place; ``build.json``'s staged copy must exist and goes last."""
    record = out / (BUILD_JSON + SUFFIX)
    if not record.is_file():
        raise FileNotFoundError(f"{record}: no staged {BUILD_JSON} to commit")
    for staged in _staged(out):
        if staged != record:
            os.replace(staged, staged.with_name(staged.name[: -len(SUFFIX)]))
    os.replace(record, out / BUILD_JSON)


def recover(out: Path) -> str | None:
    """Finish (or undo) an interrupted rewrite of ``out``: what was done, or None when there was none."""
    staged = _staged(out)
    if not staged:
        return None
    if (out / (BUILD_JSON + SUFFIX)).is_file():
        commit(out)
        return f"finished an interrupted rewrite ({len(staged)} staged files put in place)"
    for path in staged:
        path.unlink()
    return f"removed {len(staged)} staged files of a rewrite interrupted before it was complete"
