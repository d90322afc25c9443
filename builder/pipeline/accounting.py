"""Accounting: every input ends as rows or as a reject line.

A :class:`Ledger` counts files and rows as they stream past (a few counters,
never the rows) and keeps the reject lines of its work group. Ledgers of
finished groups are saved in the build's journal and merged at the end, where
``rejects.jsonl`` is written; the invariant
``files.seen == files.accepted + files.rejected`` holds for each and for the sum.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from builder.errors import Stage
from builder.privacy import redact, scrub

REJECTS = "rejects.jsonl"
COUNTERS = ("by_modality", "by_split", "by_organ", "by_disease", "by_stage", "roi_origins", "notes", "skipped",
            "rois_per_row", "roi_area")
MANY_ROIS = 20  # rows with more ROIs are counted together ("20+")


def area_bin(ratio: float) -> str:
    """The decade of an ROI's area ratio: "1e-3" holds 0.001 <= ratio < 0.01 (smaller ones all in "1e-5")."""
    return f"1e{max(-5, min(0, math.floor(math.log10(max(ratio, 1e-12))))):d}"
#: Keys of a reject line as published; the local log adds nothing but real paths in ``file``.
PUBLIC_KEYS = ("file", "source", "stage", "reason", "rule", "id")


def _line(file: str, source: str, stage: str, reason: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A reject line as kept in the journal: local ``file`` and the ``public`` name, ``names`` to scrub."""
    line: dict[str, Any] = {"file": file, "source": source, "stage": Stage(stage).value, "reason": redact(reason)}
    line.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in extra.items() if v is not None})
    line.setdefault("public", source)
    return line


def public_line(line: dict[str, Any]) -> dict[str, Any]:
    """The published form of a reject line: no input path, no local path, no credential."""
    names = [line["file"], *line.get("names", [])]
    out = {key: line[key] for key in PUBLIC_KEYS if line.get(key) is not None}
    out["file"] = line.get("public") or line["source"]
    public = line.get("public") or ""
    out["reason"] = scrub(line["reason"], names, public.split(":", 1)[-1] if public != line["source"] else "")
    return out


def local_line(line: dict[str, Any]) -> dict[str, Any]:
    """The local form: real paths, for the person who runs the build."""
    return {key: line[key] for key in PUBLIC_KEYS if line.get(key) is not None}


@dataclass
class Ledger:
    files_seen: int = 0
    files_accepted: int = 0
    files_rejected: int = 0
    other_rejects: int = 0
    by_modality: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    by_organ: Counter = field(default_factory=Counter)
    by_disease: Counter = field(default_factory=Counter)
    by_stage: Counter = field(default_factory=Counter)
    roi_origins: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)  # what readers decided: pixels cleaned, unmapped body parts
    skipped: Counter = field(default_factory=Counter)  # files passed over on purpose, by kind (no reject line)
    rois_per_row: Counter = field(default_factory=Counter)  # "0" .. "19", "20+": the card's ROI chart
    roi_area: Counter = field(default_factory=Counter)  # area-ratio decades (area_bin): the card's ROI chart
    sources: dict[str, Counter] = field(default_factory=dict)  # name -> files, rejected, rows
    lines: list[dict[str, Any]] = field(default_factory=list)  # this ledger's reject lines

    def _reject(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        self.by_stage[line["stage"]] += 1

    def _source(self, name: str) -> Counter:
        return self.sources.setdefault(name, Counter())

    def reject_file(self, source: str, file: str, stage: str, reason: str, **extra: Any) -> None:
        """An input file that gives no sample (``extra``: ``id``, ``rule`` when known)."""
        self.files_seen += 1
        self.files_rejected += 1
        self._source(source).update(files=1, rejected=1)
        self._reject(_line(file, source, stage, reason, extra))

    def reject_other(self, source: str, file: str, stage: str, reason: str, **extra: Any) -> None:
        """A side-table row, a mask, or one row of an accepted file that could not be used."""
        self.other_rejects += 1
        self._reject(_line(file, source, stage, reason, extra))

    def accept_file(self, source: str, rows: list[dict[str, Any]], split: str) -> None:
        self.files_seen += 1
        self.files_accepted += 1
        self._source(source).update(files=1, rows=len(rows))
        for row in rows:
            self.by_modality[row["modality"]] += 1
            self.by_split[split] += 1
            self.by_organ[row["organ"]] += 1
            self.by_disease[row["disease"] or "(none)"] += 1
            self.roi_origins.update(roi["origin"] for roi in row["rois"])
            count = len(row["rois"])
            self.rois_per_row[str(count) if count < MANY_ROIS else f"{MANY_ROIS}+"] += 1
            self.roi_area.update(area_bin(roi["area_ratio"]) for roi in row["rois"])

    def skip(self, source: str, kind: str) -> None:
        """A file a listing passed over on purpose (``kind``: why), counted: neither a row nor a reject."""
        self.skipped[kind] += 1
        self._source(source).update(skipped=1)

    def note(self, notes: dict[str, int]) -> None:
        self.notes.update(notes)

    @property
    def rows_total(self) -> int:
        return sum(self.by_modality.values())

    def merge(self, other: Ledger) -> None:
        """Add another ledger's counts (its reject lines are not kept)."""
        self.files_seen += other.files_seen
        self.files_accepted += other.files_accepted
        self.files_rejected += other.files_rejected
        self.other_rejects += other.other_rejects
        for name in COUNTERS:
            getattr(self, name).update(getattr(other, name))
        for source, counts in other.sources.items():
            self._source(source).update(counts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: dict(getattr(self, name)) for name in COUNTERS}
        data.update(files=[self.files_seen, self.files_accepted, self.files_rejected], other=self.other_rejects,
                    sources={k: dict(v) for k, v in self.sources.items()})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        seen, accepted, rejected = data["files"]
        ledger = cls(seen, accepted, rejected, data["other"])
        for name in COUNTERS:
            getattr(ledger, name).update(data.get(name, {}))
        ledger.sources = {k: Counter(v) for k, v in data["sources"].items()}
        return ledger

    def summary(self) -> dict[str, Any]:
        return {
            "files": {"seen": self.files_seen, "accepted": self.files_accepted, "rejected": self.files_rejected,
                      "skipped": sum(self.skipped.values())},
            "rows": {
                "total": self.rows_total,
                "by_modality": dict(sorted(self.by_modality.items())),
                "by_split": dict(sorted(self.by_split.items())),
            },
            "rejects": {
                "total": self.files_rejected + self.other_rejects,
                "files": self.files_rejected,
                "other": self.other_rejects,
                "by_stage": dict(sorted(self.by_stage.items())),
            },
            "rois": dict(sorted(self.roi_origins.items())),
            "notes": dict(sorted(self.notes.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }

    @property
    def internal(self) -> int:
        """Rejects that are bugs of the pipeline, not bad input."""
        return int(self.by_stage.get(Stage.INTERNAL.value, 0))
