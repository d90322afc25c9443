"""The output folder: one build at a time, and never a file the build did not write.

- **Lock.** A build holds an exclusive lock (``flock``) on ``OUT/.medtri.lock``
  from start to end; a second build into the same folder is refused at once.
- **What a build wrote.** ``build.json`` lists every published file (``published``)
  and every local one (``local``: the lock, the private provenance map and the
  private rejects log). ``--overwrite`` removes exactly those, and refuses a
  folder that holds anything else: inputs in ``data/raw/``, a user's
  ``README.md``, a stray ``data/patients.csv``. A folder that is not empty and
  holds no earlier build is refused too; the message never suggests deleting.
- **Demo.** ``demo`` replaces only an earlier demo (``build.json`` says so).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from builder.layout import (
    BUILD_JSON,
    JOURNAL_DIR,
    LOCK,
    PRIVATE,
    journal_ours,
    journal_plan,
    listed_files,
    read_build_json,
    unlisted,
)

__all__ = ["BUILD_JSON", "LOCK", "PRIVATE", "FolderError", "folder_lock", "prepare"]

STARTING = f"{JOURNAL_DIR}/state.json.tmp"  # a journal being started: what a build killed at its first write leaves


class FolderError(RuntimeError):
    """An output folder a build must not write into (the message says why)."""


def _safe(out: Path, rel: Any) -> Path | None:
    """``out / rel`` if ``rel`` is a plain relative path that stays inside ``out``, else None."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        return None
    path = out / rel
    base = os.path.realpath(out)
    parent = os.path.realpath(path.parent)
    return path if os.path.commonpath([parent, base]) == base else None


def _remove(out: Path, files: set[str]) -> None:
    parents: set[Path] = set()
    for rel in files:
        path = _safe(out, rel)
        if path is not None and (path.is_file() or path.is_symlink()):
            path.unlink()
            parents.update(p for p in path.parents if p != out and out in p.parents)
    for folder in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with suppress(OSError):
            folder.rmdir()  # only folders the removal left empty


def prepare(out: Path, overwrite: bool, demo: bool = False) -> None:
    """Check that a build may write into ``out``; with ``overwrite``, remove the earlier build's files.

    An unfinished build's folder (its journal is there) is resumed, also when it was killed while publishing:
    the files its journal says publishing writes are its own, and a ``build.json`` beside a journal is the
    last file of a build killed before it removed the journal.
    """
    if (out / f"{out.name}.py").exists():
        raise FolderError(f"{out} holds {out.name}.py: load_dataset refuses such a folder; choose another folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise FolderError(f"{out} is not a folder")
    resuming = journal_ours(out)
    planned = journal_plan(out) if resuming else set()
    finished = (out / BUILD_JSON).exists() and not resuming
    doc = read_build_json(out) if finished else {}
    if doc is None:
        raise FolderError(f"{out}/{BUILD_JSON} is unreadable: nothing can say which files a build wrote there; "
                          "build into an empty or new folder")
    published, local = listed_files(doc) if finished else (set(), set())
    foreign = unlisted(out, published | local | planned | {LOCK, STARTING})
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FolderError(f"{out} holds {len(foreign)} file(s) that no build wrote ({shown}); "
                          "build into an empty or new folder")
    if demo and finished and not doc.get("demo"):
        raise FolderError(f"{out} holds a build that is not a demo; the demo writes only into a new folder "
                          "or an earlier demo")
    if finished and not overwrite:
        raise FolderError(f"{out} already holds a finished build; pass --overwrite to replace it")
    if finished:
        _remove(out, (published | local) - {LOCK})
    if overwrite and resuming:
        _remove(out, planned - {LOCK})
        shutil.rmtree(out / JOURNAL_DIR)


@contextmanager
def folder_lock(out: Path) -> Iterator[Path]:
    """Hold ``OUT/.medtri.lock`` exclusively; a second build into ``out`` fails at once.

    A build that fails before it wrote anything leaves no folder it created (nor its lock) behind.
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    try:
        with _locked(out, path):
            yield path
    except BaseException:
        if created and {p.name for p in out.iterdir()} <= {LOCK}:
            path.unlink(missing_ok=True)
            with suppress(OSError):
                out.rmdir()
        raise


@contextmanager
def _locked(out: Path, path: Path) -> Iterator[None]:
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no lock either
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FolderError(f"{out} is in use by another build; wait for it to finish, or build into "
                              "another folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
