"""The build journal: what lets an interrupted build resume exactly.

Units (input files, in manifest order) are cut into work groups of
``shard_units`` consecutive units. A group writes its shards into the hidden
``OUT/.build/shards/`` and, once all are complete, appends one line to
``OUT/.build/journal.jsonl`` with their row counts and checksums, its accounting
and its reject lines (fsynced). A build run again skips the groups found there
and redoes the others. At the end the shards are renamed, in group order (the
small ones of a stream merged up to the shard limits: :mod:`.parts`), to
their public names (``data/<modality>/<split>-NNNNN-of-MMMMM.parquet``,
``webdataset/<modality>/<split>-NNNNNN.tar``): nothing under ``data/`` is ever a
partial file, and a build killed at any moment ends, when run again, with the
rows of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from builder.formats import FORMATS, ShardLimits
from builder.layout import JOURNAL_DIR, PLAN, nesting
from builder.options import differences
from builder.pipeline.build.parts import entry, parts, publish_part


class JournalError(RuntimeError):
    """A journal that belongs to another build."""


class Journal:
    def __init__(self, out: Path, limits: ShardLimits | None = None) -> None:
        self.out = out
        self.limits = limits or ShardLimits()  # the size of a published shard, the most files in one folder
        self.root = out / JOURNAL_DIR
        self.shards = self.root / "shards"
        self.provenance = self.root / "provenance"  # one file per group: row ids -> input file (local)
        self.path = self.root / "journal.jsonl"

    def exists(self) -> bool:
        return (self.root / "state.json").is_file()

    def start(self, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
        """Open (or resume) the journal of a build with this fingerprint; return its records."""
        state = self.root / "state.json"
        if state.is_file():
            try:
                found = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise JournalError(f"{state} is unreadable; pass --overwrite to start over") from None
            found = {k: v for k, v in found.items() if k != "writer"} if isinstance(found, dict) else {}
            if found != fingerprint:
                changed = differences(found, fingerprint)
                raise JournalError(f"{self.out} holds an unfinished build with other settings ({', '.join(changed)}); "
                                   "run it with the same ones to resume, or pass --overwrite")
        else:
            self.shards.mkdir(parents=True, exist_ok=True)
            _write_whole(state, json.dumps({**fingerprint, "writer": "medtrinity-25m"}, indent=2, sort_keys=True))
        records = self.records()
        self._sweep(records)
        return records

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the torn last line of a killed build
                break
        return records

    def _sweep(self, records: list[dict[str, Any]]) -> None:
        """Remove staged files that no committed group owns (a killed group's)."""
        owned = {s["staged"] for r in records for s in r.get("shards", [])}
        for path in self.shards.rglob("*"):
            if path.is_file() and path.relative_to(self.root).as_posix() not in owned:
                path.unlink()

    def commit(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _targets(self, records: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], Path]]:
        """Each part of the staged shards (:mod:`.parts`), in group order, with its public path."""
        staged = [s for r in sorted(records, key=lambda r: r["group"]) for s in r.get("shards", [])]
        by_stream: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for shard in staged:
            by_stream.setdefault((shard["format"], shard["modality"], shard["split"]), []).append(shard)
        grouped = {key: parts(shards, self.limits, FORMATS[key[0]].merge is not None)
                   for key, shards in by_stream.items()}
        per_folder = self.limits.files_per_folder
        depth = {fmt: nesting({(m, s): len(v) for (f, m, s), v in grouped.items() if f == fmt}, per_folder)
                 for fmt in {f for f, _, _ in grouped}}
        targets = []
        for (fmt, modality, split), found in sorted(grouped.items()):
            spec = FORMATS[fmt]
            for index, members in enumerate(found):
                final = spec.final_path(modality, split, index, len(found), depth[fmt], per_folder)
                targets.append((members, self.out / final))
        return targets

    def plan(self, records: list[dict[str, Any]], others: list[str]) -> None:
        """Write down, before the first is written, every file that publishing writes (the shards' public names
        and ``others``): a build killed while publishing is resumed over them, not refused as a stranger's."""
        files = [final.relative_to(self.out).as_posix() for _, final in self._targets(records)] + others
        _write_whole(self.root / PLAN, json.dumps(sorted(files)))

    def entries(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """build.json's shard entries as :meth:`publish` will give them (their final paths; a merged part's
        checksum only once it is written), before it runs."""
        return [entry(members, final.relative_to(self.out).as_posix()) for members, final in self._targets(records)]

    def publish(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put every part at its public name; idempotent. Return build.json's shard entries."""
        entries = []
        for members, final in self._targets(records):
            spec = FORMATS[members[0]["format"]]
            try:
                publish_part(self.root, members, final, spec.merge or _no_merge)
            except FileNotFoundError as exc:
                raise JournalError(f"{exc} is neither staged nor published") from None
            entries.append(entry(members, final.relative_to(self.out).as_posix(), final))
        return entries

    def write_last(self, name: str, text: str) -> None:
        """Write ``OUT/name`` whole or not at all (staged in the journal, then renamed): the build's last file."""
        _write_whole(self.out / name, text, staged=self.root / f"{name}.tmp")

    def remove(self) -> None:
        """Remove the journal, its state last: a removal cut short is taken up by the next run."""
        for child in self.root.iterdir() if self.root.is_dir() else ():
            if child.name != "state.json":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        (self.root / "state.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()


def _no_merge(sources: list[Path], target: Path) -> None:
    raise JournalError(f"{target.name}: its format cannot merge shards")


def _write_whole(path: Path, text: str, staged: Path | None = None) -> None:
    """``path`` holds ``text`` whole or is as it was: written beside it (or at ``staged``), synced, renamed."""
    staged = staged or path.with_name(path.name + ".tmp")
    with open(staged, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, path)
